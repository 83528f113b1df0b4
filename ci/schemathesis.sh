#!/usr/bin/env bash
# CI stage: property-based tests of the real task-api binary against its own OpenAPI document
# (/openapi.json), with schemathesis: every check, 200 examples per operation, a fixed seed,
# the examples, coverage, fuzzing and stateful phases. Zero failures or the stage fails.
#
# Settings that differ from schemathesis's defaults, each with its reason, are in
# ci/schemathesis.toml. No check is excluded.
#
# Environment: SCHEMATHESIS_SEED (default 20261125), SCHEMATHESIS_MAX_EXAMPLES (default 200),
# SCHEMATHESIS_TIME_LIMIT in seconds for the whole run (default 900).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"
STAGE="schemathesis"
# shellcheck source=ci/lib.sh
. ci/lib.sh

SCHEMATHESIS_VERSION=4.32.5
SEED="${SCHEMATHESIS_SEED:-20261125}"
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-200}"
TIME_LIMIT="${SCHEMATHESIS_TIME_LIMIT:-900}"
CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/task-api-ci"
VENV="$CACHE_DIR/schemathesis-$SCHEMATHESIS_VERSION"

trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

work="$(mktemp -d -t task-api-schemathesis.XXXXXX)"
server_pid=""
cleanup() {
  local rc=$?
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
  failure_banner "$rc"
}
trap cleanup EXIT

step "install schemathesis $SCHEMATHESIS_VERSION"
python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install python3-venv
command -v curl >/dev/null || apt_install curl
installed="$("$VENV/bin/schemathesis" --version 2>/dev/null || true)"
if [[ "$installed" != *"$SCHEMATHESIS_VERSION"* ]]; then
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
"$VENV/bin/schemathesis" --version

step "build task-api"
cargo build --locked --quiet --bin task-api
binary="$repo/target/debug/task-api"

step "start task-api on loopback with a fresh SQLite database"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
PORT="$port" BIND_ADDRESS=127.0.0.1 DATA_DIR="$work/data" BACKUP_DIR="$work/backups" \
  LOG_FORMAT=json LOG_LEVEL=warn "$binary" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  curl -fsS -o /dev/null "$base/readyz" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; die "task-api exited at start"; }
  sleep 0.1
done
curl -fsS -o /dev/null "$base/readyz"
echo "serving on $base"

step "run schemathesis (seed $SEED, $MAX_EXAMPLES examples per operation)"
# Only what the run caused counts below (the readiness wait above logs its own 503s).
log_lines_before="$(wc -l <"$work/server.log")"
status=0
(cd "$work" && timeout "$TIME_LIMIT" "$VENV/bin/schemathesis" \
  --config-file "$repo/ci/schemathesis.toml" \
  run "$base/openapi.json" \
  --checks all \
  --phases examples,coverage,fuzzing,stateful \
  --max-examples "$MAX_EXAMPLES" \
  --seed "$SEED" \
  --generation-database none \
  --request-timeout 10 \
  --no-color) || status=$?
[ "$status" -ne 124 ] || die "over the ${TIME_LIMIT}s limit"

step "server still up after the run"
kill -0 "$server_pid" 2>/dev/null || { tail -n 50 "$work/server.log" >&2; die "task-api is gone"; }
run_errors="$(tail -n "+$((log_lines_before + 1))" "$work/server.log" | grep '"level":"ERROR"' || true)"
if [ -n "$run_errors" ]; then
  echo "server errors during the run (a 5xx is a failure even if schemathesis missed it):" >&2
  head -n 20 <<<"$run_errors" >&2
  die "the server logged errors during the run"
fi

[ "$status" -eq 0 ] || die "schemathesis found failures (above)"
echo "schemathesis stage passed"
