#!/usr/bin/env bash
# The web pages in a real browser: tests/browser/run.mjs drives Debian's Chromium through
# playwright-core (which never downloads a browser) against task-api on a free loopback port
# with a fresh SQLite database, and checks every page with axe-core.
#
# Needs: chromium (apt-get install chromium), Node.js 18+ and npm (apt-get install nodejs npm);
# run as root with apt-get, the missing ones are installed. npm packages come from
# tests/browser/package-lock.json. CHROMIUM points at another Chromium binary.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE="browser stage"
# shellcheck source=ci/lib.sh
. ci/lib.sh

work=$(mktemp -d)
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
on_exit() {
  local rc=$?
  cleanup
  failure_banner "$rc"
}
trap on_exit EXIT

step "prerequisites"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    install_debs "${missing[@]}"
  fi
  [ -x "$CHROMIUM" ] || die "no Chromium at $CHROMIUM: apt-get install chromium (or set CHROMIUM)"
  command -v node >/dev/null || die "node not found: apt-get install nodejs"
  command -v npm >/dev/null || die "npm not found: apt-get install npm"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node.js $node_major is too old: 18 or newer is needed"
note "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM"), node $(node --version)"

step "npm packages"
# No browser download: the tests use the Chromium above.
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) ||
  die "npm ci in tests/browser failed (is the npm registry reachable?)"

step "task-api"
cargo build --quiet --bin task-api || die "cargo build failed"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env -u API_TOKENS_FILE -u METRICS_TOKENS_FILE -u DATABASE_URL -u DB_HOST \
  PORT="$port" BIND_ADDRESS=127.0.0.1 DATA_DIR="$work/data" BACKUP_DIR="$work/backups" \
  LOG_LEVEL=warn target/debug/task-api serve >"$work/server.log" 2>&1 &
server_pid=$!
ready() { curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; }
wait_until 30 0.2 "task-api did not become ready: $(tail -n 3 "$work/server.log")" ready
note "serving on 127.0.0.1:$port"

step "pages in Chromium"
TASK_API_URL="http://127.0.0.1:$port" CHROMIUM="$CHROMIUM" node tests/browser/run.mjs ||
  die "browser tests failed (server log: $(tail -n 3 "$work/server.log"))"
