#!/usr/bin/env bash
# The web pages in a real browser: tests/browser/run.mjs drives Debian's Chromium through
# playwright-core (which never downloads a browser) and checks every page with axe-core. The
# whole suite runs twice, on SQLite and on PostgreSQL (a throwaway cluster this script starts
# from Debian's server binaries), each time against two servers on a free loopback port:
#
# - an open one (no token files) whose BACKUP_DIR holds a backup taken by `task-api backup`
#   and then aged three days against an expected interval of one day, so /status shows it late;
# - one with API_TOKENS_FILE and METRICS_TOKENS_FILE (written here), for login and logout.
#
# The SQLite run also writes the screenshots the README links (docs/screenshots/*.png).
#
# Needs: chromium, Node.js 18+ and npm, PostgreSQL server binaries (apt-get install chromium
# nodejs npm postgresql); run as root with apt-get, the missing ones are installed. npm
# packages come from tests/browser/package-lock.json. CHROMIUM points at another Chromium
# binary; BROWSER_BACKENDS="sqlite" (or "postgres") runs one backend only.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE="browser stage"
# shellcheck source=ci/lib.sh
. ci/lib.sh

work=$(mktemp -d)
pg_dir=
pg_bin=
server_pids=()
as_root=false
[ "$(id -u)" != 0 ] || as_root=true

# initdb and postgres refuse to run as root: the cluster belongs to the postgres user then.
as_pg() {
  if [ "$as_root" = true ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

stop_servers() {
  local pid
  for pid in "${server_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  server_pids=()
}

cleanup() {
  stop_servers
  if [ -n "$pg_dir" ] && [ -f "$pg_dir/data/postmaster.pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work" ${pg_dir:+"$pg_dir"}
}
on_exit() {
  local rc=$?
  cleanup
  failure_banner "$rc"
}
trap on_exit EXIT

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

step "prerequisites"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
read -r -a backends <<<"${BROWSER_BACKENDS:-sqlite postgres}"
for backend in "${backends[@]}"; do
  case $backend in
    sqlite | postgres) ;;
    *) die "unknown backend '$backend' in BROWSER_BACKENDS (sqlite, postgres)" ;;
  esac
done
wants_pg=false
case " ${backends[*]} " in *" postgres "*) wants_pg=true ;; esac
# The newest installed major.
find_pg_bin() {
  find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1
}
missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v python3 >/dev/null || missing+=(python3)
command -v curl >/dev/null || missing+=(curl)
if [ "$wants_pg" = true ] && [ -z "$(find_pg_bin)" ]; then missing+=(postgresql); fi
if [ ${#missing[@]} -gt 0 ] && [ "$as_root" = true ] && command -v apt-get >/dev/null; then
  install_debs "${missing[@]}"
fi
[ -x "$CHROMIUM" ] || die "no Chromium at $CHROMIUM: apt-get install chromium (or set CHROMIUM)"
command -v node >/dev/null || die "node not found: apt-get install nodejs"
command -v npm >/dev/null || die "npm not found: apt-get install npm"
command -v python3 >/dev/null || die "python3 not found (picks free ports): apt-get install python3"
command -v curl >/dev/null || die "curl not found (readiness probes): apt-get install curl"
if [ "$wants_pg" = true ]; then
  pg_bin=$(find_pg_bin)
  if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/initdb" ] || [ ! -x "$pg_bin/pg_ctl" ]; then
    die "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: apt-get install postgresql"
  fi
  if [ "$as_root" = true ]; then
    id postgres >/dev/null 2>&1 || die "no postgres user to run the cluster as: apt-get install postgresql"
  fi
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 18 ] || die "Node.js $node_major is too old: 18 or newer is needed"
note "$("$CHROMIUM" --version 2>/dev/null || echo "$CHROMIUM"), node $(node --version)"
[ "$wants_pg" = false ] || note "PostgreSQL from $pg_bin"

step "npm packages"
# No browser download: the tests use the Chromium above.
(cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) ||
  die "npm ci in tests/browser failed (is the npm registry reachable?)"

step "task-api"
cargo build --quiet --bin task-api || die "cargo build failed"

# Tokens for the second server: plain in the files, as the README allows (at least 16
# visible characters); the tests log in with them.
api_token="browser-api-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
metrics_token="browser-metrics-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
printf '# board logins in the browser tests\n%s\n' "$api_token" >"$work/api-tokens"
printf '# status page logins in the browser tests\n%s\n' "$metrics_token" >"$work/metrics-tokens"

# start_server NAME ENV=VALUE...: task-api serve on a free loopback port, with the settings
# given; sets server_port once /readyz answers (not run in a subshell: the pid is kept).
start_server() {
  local name=$1 port
  shift
  port=$(free_port)
  env -u API_TOKENS_FILE -u METRICS_TOKENS_FILE -u DATABASE_URL -u DB_HOST -u BACKUP_DIR \
    -u BACKUP_EVERY -u BACKUP_AT -u BACKUP_EXPECTED_INTERVAL \
    PORT="$port" BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn "$@" \
    target/debug/task-api serve >"$work/$name.log" 2>&1 &
  server_pids+=($!)
  ready() { curl -sf -o /dev/null "http://127.0.0.1:$port/readyz"; }
  wait_until 30 0.2 "task-api ($name) did not become ready: $(tail -n 3 "$work/$name.log")" ready
  server_port=$port
}

start_postgres() {
  pg_dir=$(mktemp -d)
  [ "$as_root" = false ] || chown postgres:postgres "$pg_dir"
  local port
  port=$(free_port)
  as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U postgres --auth=trust --no-sync >"$pg_dir/initdb.log" 2>&1 ||
    die "initdb failed: $(tail -n 3 "$pg_dir/initdb.log")"
  # A throwaway cluster: durability is not what is tested here.
  as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -w -t 30 -l "$pg_dir/server.log" \
    -o "-p $port -k $pg_dir -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null ||
    die "PostgreSQL did not start: $(tail -n 3 "$pg_dir/server.log")"
  pg_url="postgres://postgres@127.0.0.1:$port/postgres"
  note "PostgreSQL $(as_pg "$pg_bin/postgres" --version | awk '{print $3}') as $(as_pg id -un) on 127.0.0.1:$port"
}

timings=()
for backend in "${backends[@]}"; do
  step "$backend: servers"
  started=$(date +%s)
  data="$work/$backend"
  mkdir -p "$data/backups"
  if [ "$backend" = postgres ]; then
    start_postgres
    db_open=(DATABASE_URL="$pg_url")
    db_tokens=(DATABASE_URL="$pg_url")
  else
    # One SQLite file per server: two processes need not share one.
    db_open=(DATA_DIR="$data/open")
    db_tokens=(DATA_DIR="$data/tokens")
  fi
  start_server "$backend-open" "${db_open[@]}" BACKUP_DIR="$data/backups" BACKUP_EXPECTED_INTERVAL=1d
  open_port=$server_port
  start_server "$backend-tokens" "${db_tokens[@]}" BACKUP_DIR="$data/backups-tokens" \
    API_TOKENS_FILE="$work/api-tokens" METRICS_TOKENS_FILE="$work/metrics-tokens"
  token_port=$server_port
  note "open server on 127.0.0.1:$open_port, token server on 127.0.0.1:$token_port"

  # A real backup, then aged: its name carries the time it was taken (what /status reads), so
  # it is renamed three days back, and its file time follows for consistency.
  env -u DATABASE_URL -u DB_HOST -u BACKUP_ENCRYPT_TO "${db_open[@]}" BACKUP_DIR="$data/backups" \
    LOG_LEVEL=warn target/debug/task-api backup >"$work/$backend-backup.log" 2>&1 ||
    die "task-api backup failed: $(tail -n 3 "$work/$backend-backup.log")"
  taken=$(find "$data/backups" -maxdepth 1 -name 'taskmanager_backup_*.jsonl.zst' | head -n 1)
  [ -n "$taken" ] || die "task-api backup wrote no backup into $data/backups"
  aged="$data/backups/taskmanager_backup_$(date -u -d '3 days ago' +%Y%m%d_%H%M%S).jsonl.zst"
  mv "$taken" "$aged"
  touch -d '3 days ago' "$aged"
  note "backup aged to $(basename "$aged")"

  step "$backend: pages in Chromium"
  shots=()
  if [ "$backend" = sqlite ]; then
    shots=(SCREENSHOT_DIR="$PWD/docs/screenshots")
  fi
  env "${shots[@]}" BACKEND="$backend" TASK_API_URL="http://127.0.0.1:$open_port" \
    TOKEN_URL="http://127.0.0.1:$token_port" API_TOKEN="$api_token" METRICS_TOKEN="$metrics_token" \
    CHROMIUM="$CHROMIUM" node tests/browser/run.mjs ||
    die "browser tests on $backend failed (server logs: $(tail -n 3 "$work/$backend-open.log" "$work/$backend-tokens.log"))"
  [ "$backend" != sqlite ] || note "screenshots written to docs/screenshots/"

  stop_servers
  if [ "$backend" = postgres ]; then
    as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -w -m fast stop >/dev/null
    rm -rf "$pg_dir"
    pg_dir=
  fi
  timings+=("$backend $(($(date +%s) - started)) s")
done

step "summary"
for t in "${timings[@]}"; do note "$t"; done
