#!/usr/bin/env bash
# The web pages at scale: what a first visit to the board transfers (the HTML, the stylesheet
# and the script), and how long the pages take to answer over one connection (median, p99)
# with SIZE tasks, beside GET /tasks (the JSON listing of the same page size) as the baseline
# measured in the same run.
#
#   bench/web.sh                               # 1M tasks, PostgreSQL and SQLite
#   SIZES=100000 BACKENDS=postgres bench/web.sh
#   QUICK=1 bench/web.sh                       # smoke: 10k tasks, 1 s runs
#
# Knobs: SIZES ("1000000"), BACKENDS ("postgres sqlite"), C1_DURATION (5s per page),
# KEEP=1 (keep the work directory), TASK_API_BIN (a binary to use instead of building one).
# The tasks are seeded as bench/api.sh seeds them (seed_tasks, bench/lib.sh). Non-2xx answers
# or a missing figure make the exit status non-zero; there are no timing thresholds.
#
# Needs: PostgreSQL server binaries (apt-get install postgresql), wrk (apt-get install wrk;
# installed automatically when run as root), curl, python3.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench/web.sh: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  SIZES=${SIZES:-10000}
  C1_DURATION=${C1_DURATION:-1s}
fi
SIZES=${SIZES:-1000000}
BACKENDS=${BACKENDS:-postgres sqlite}
C1_DURATION=${C1_DURATION:-5s}
C1_S=${C1_DURATION%s}
[[ $C1_S =~ ^[1-9][0-9]*$ ]] || die "C1_DURATION must be whole seconds such as 5s, not '$C1_DURATION'"
for s in $SIZES; do
  { [[ $s =~ ^[0-9]+$ ]] && [ "$s" -ge 1000 ]; } || die "SIZES must be integers of at least 1000, not '$s'"
done
for b in $BACKENDS; do
  case $b in postgres | sqlite) ;; *) die "BACKENDS takes postgres and/or sqlite, not '$b'" ;; esac
done

PG_BIN=${PG_BIN:-$(default_pg_bin)}
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found: apt-get install postgresql"
require_wrk
command -v curl >/dev/null || die "curl not found: apt-get install curl"
command -v python3 >/dev/null || die "python3 not found: apt-get install python3"
if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (apt-get install postgresql)"; fi

if [ -z "${TASK_API_BIN:-}" ]; then
  echo "building the release binary..."
  cargo build --release --locked --quiet -p task-api || die "cargo build --release --locked -p task-api failed"
  TASK_API_BIN=target/release/task-api
fi
[ -x "$TASK_API_BIN" ] || die "TASK_API_BIN is not an executable: $TASK_API_BIN"

# Nothing from the caller's environment may point the service elsewhere or close the pages.
unset DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD DB_PASSWORD_FILE API_TOKENS_FILE METRICS_TOKENS_FILE PGDATABASE PGPASSWORD PGSERVICE

WORK=$(mktemp -d /tmp/web-bench.XXXXXX)
# A private copy: a rebuild during the run cannot change the binary under test.
BIN=$WORK/bench-server
cp "$TASK_API_BIN" "$BIN"
PG_PORT=$(free_port)
API_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"
trap cleanup_bench EXIT
trap 'exit 130' INT TERM

start_postgres "$WORK/pgdata" "$PG_PORT" </dev/null
psql() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"; }

# wrk script: records the result line the report reads; any non-2xx answer counts as an error.
cat >"$WORK/one.lua" <<'EOF'
local bad = 0
function response(status) if status < 200 or status > 299 then bad = bad + 1 end end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.3f %.3f %d %d\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout + bad))
end
EOF

# time_page PATH: median and p99 (ms) over one connection for C1_S seconds.
time_page() {
  local line r
  wrk -t 1 -c 1 -d "${C1_S}s" --latency -s "$WORK/one.lua" "$API$1" >"$WORK/wrk.out" 2>&1 ||
    die "wrk failed on $1: $(tail -n 2 "$WORK/wrk.out")"
  line=$(grep '^RESULT ' "$WORK/wrk.out" | tail -n 1)
  [ -n "$line" ] || die "wrk gave no result for $1"
  read -r -a r <<<"${line#RESULT }"
  [ "${r[3]}" = 0 ] || die "$1: ${r[3]} failed requests of ${r[2]}"
  printf '  %-34s median %7.3f ms   p99 %7.3f ms   (%s requests)\n' "$1" "${r[0]}" "${r[1]}" "${r[2]}"
}

# asset_bytes NAME: bytes transferred for the asset the board links as /assets/NAME?v=….
asset_bytes() {
  local path h b
  path=$(grep -o "/assets/$1?v=[0-9a-f]*" "$WORK/board.html" | head -n 1)
  [ -n "$path" ] || die "the board does not link $1"
  read -r h b < <(curl -sf -o /dev/null -w '%{size_header} %{size_download}\n' "$API$path") || die "GET $path failed"
  echo $((h + b))
}

# weight: bytes a first visit to / transfers (status lines, headers and bodies; no compression).
weight() {
  local html css js icon total h b
  curl -sf -o "$WORK/board.html" -w '%{size_header} %{size_download}\n' "$API/" >"$WORK/w" || die "GET / failed"
  read -r h b <"$WORK/w"; html=$((h + b))
  css=$(asset_bytes app.css)
  js=$(asset_bytes app.js)
  icon=$(asset_bytes icon.svg)
  total=$((html + css + js + icon))
  printf '  first load: %.1f KB (HTML %.1f KB, CSS %.1f KB, JS %.1f KB, icon %.1f KB)\n' \
    "$(kb "$total")" "$(kb "$html")" "$(kb "$css")" "$(kb "$js")" "$(kb "$icon")"
}
kb() { echo "$1 / 1024" | bc -l; }
command -v bc >/dev/null || die "bc not found: apt-get install bc"

for SIZE in $SIZES; do
  DB=tasks_$SIZE
  seed_tasks "$DB" "$SIZE"
  if [[ " $BACKENDS " == *" sqlite "* ]]; then copy_to_sqlite "$DB"; fi
  for BACKEND in $BACKENDS; do
    echo "$BACKEND, $SIZE tasks:"
    if [ "$BACKEND" = postgres ]; then start_api "$(url "$DB")"; else start_api "sqlite://$WORK/sqlite/tasks.db"; fi
    weight
    # The board shows 50 tasks a page: the JSON listing of the same 50 is the baseline.
    # A search's cost is the listing's own: its JSON twin is measured beside it.
    for path in '/tasks?limit=50' / '/?view=board' '/?status=pending' '/tasks?limit=50&q=task' '/?q=task' /status; do
      time_page "$path"
    done
    stop_api
  done
  psql -d postgres -c "DROP DATABASE $DB" >/dev/null
  rm -rf "$WORK/sqlite" "$WORK/backup"
done
