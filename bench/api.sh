#!/usr/bin/env bash
# HTTP API at scale: task-api's endpoints under wrk, each beside pgbench running the exact SQL
# that endpoint sends, on the same PostgreSQL server in the same run; and the same endpoints on
# SQLite. Single-connection latency (median, p99) and throughput at CONNECTIONS connections.
#
#   bench/api.sh                              # 10k, 100k and 1M tasks, PostgreSQL and SQLite
#   SIZES=100000 BACKENDS=postgres bench/api.sh
#   QUICK=1 bench/api.sh                      # smoke (CI): 10k tasks, 2 s runs, four endpoints
#
# Knobs: SIZES ("10000 100000 1000000"), BACKENDS ("postgres sqlite"), DURATION (10s, each
# run at CONNECTIONS connections), C1_DURATION (5s, each single-connection run), CONNECTIONS
# (32), THREADS (2, wrk threads and pgbench jobs), ENDPOINTS ("id list status search offset
# cursor create"), SEARCH (ffff, the search term), QUICK=1, KEEP=1 (keep the work directory:
# logs, generated wrk and pgbench scripts), TASK_API_BIN (a binary to use instead of building
# one). The server's own settings (DB_MAX_CONNECTIONS, …) pass through from the environment.
#
# The SQL an endpoint sends is captured, not copied from src/: log_statement=all is switched on
# for a few requests (the log has every statement with its parameter values), cross-checked
# against pg_stat_statements, and written as a pgbench script with the same statements in the
# same order (transaction included) and the same parameter values (-M prepared, so plan caching
# behaves as in the service). Non-2xx answers, failed transactions or a missing figure make the
# exit status non-zero; there are no timing thresholds.
#
# Needs: PostgreSQL server binaries with pg_stat_statements and pgbench (apt-get install
# postgresql), wrk (apt-get install wrk; installed automatically when run as root), curl,
# python3. Starts its own throwaway PostgreSQL server and the service on 127.0.0.1 and removes
# both at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench/api.sh: $*" >&2; exit 1; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  SIZES=${SIZES:-10000}
  DURATION=${DURATION:-2s}
  C1_DURATION=${C1_DURATION:-1s}
  ENDPOINTS=${ENDPOINTS:-id list cursor create}
fi
SIZES=${SIZES:-10000 100000 1000000}
BACKENDS=${BACKENDS:-postgres sqlite}
DURATION=${DURATION:-10s}
C1_DURATION=${C1_DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ENDPOINTS=${ENDPOINTS:-id list status search offset cursor create}
SEARCH=${SEARCH:-ffff}
CAPTURE_REQUESTS=5
ALL_ENDPOINTS="id list status search offset cursor create"

# --- settings and tools -------------------------------------------------------------------
seconds_of() { # 10s or 10 -> 10
  local v=${1%s}
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "$2 must be whole seconds such as 10s, not '$1'"
  echo "$v"
}
DUR_S=$(seconds_of "$DURATION" DURATION)
C1_S=$(seconds_of "$C1_DURATION" C1_DURATION)
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || die "CONNECTIONS must be a positive integer, not '$CONNECTIONS'"
[[ $THREADS =~ ^[1-9][0-9]*$ ]] || die "THREADS must be a positive integer, not '$THREADS'"
for s in $SIZES; do
  { [[ $s =~ ^[0-9]+$ ]] && [ "$s" -ge 1000 ]; } || die "SIZES must be integers of at least 1000, not '$s'"
done
[ -n "${SIZES// /}" ] || die "SIZES is empty"
for b in $BACKENDS; do
  case $b in postgres | sqlite) ;; *) die "BACKENDS takes postgres and/or sqlite, not '$b'" ;; esac
done
[ -n "${BACKENDS// /}" ] || die "BACKENDS is empty"
for e in $ENDPOINTS; do
  [[ " $ALL_ENDPOINTS " == *" $e "* ]] || die "ENDPOINTS takes some of: $ALL_ENDPOINTS; not '$e'"
done
[[ $SEARCH =~ ^[A-Za-z0-9]+$ ]] || die "SEARCH must be letters and digits, not '$SEARCH'"

PG_BIN=${PG_BIN:-$(default_pg_bin)}
{ [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pgbench" ]; } ||
  die "PostgreSQL server binaries and pgbench not found: apt-get install postgresql"
[ -f "$("$PG_BIN/pg_config" --sharedir)/extension/pg_stat_statements.control" ] ||
  die "pg_stat_statements not found next to $PG_BIN: apt-get install postgresql (or postgresql-contrib)"
require_wrk
command -v curl >/dev/null || die "curl not found: apt-get install curl"
command -v python3 >/dev/null || die "python3 not found: apt-get install python3"
if [ "$(id -u)" = 0 ]; then id postgres >/dev/null 2>&1 || die "running as root needs the postgres OS user (apt-get install postgresql)"; fi

if [ -n "${TASK_API_BIN:-}" ]; then
  [ -x "$TASK_API_BIN" ] || die "TASK_API_BIN is not an executable: $TASK_API_BIN"
else
  # The binary the image ships, built as the Dockerfile builds it (statically linked), so the
  # memory figures are the container's: a dynamically linked build also maps libc and libm.
  TARGET=$(rustc -vV | sed -n 's/^host: //p')
  echo "building the release binary (static, as in the image)..."
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked --quiet -p task-api --target "$TARGET" ||
    die "cargo build --release --locked -p task-api --target $TARGET failed"
  TASK_API_BIN=target/$TARGET/release/task-api
fi
START=$SECONDS

# Nothing from the caller's environment may point the service elsewhere.
unset DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD DB_PASSWORD_FILE API_TOKENS_FILE PGDATABASE PGPASSWORD PGSERVICE

WORK=$(mktemp -d /tmp/api-bench.XXXXXX)
# A private copy under a name of its own: a rebuild of target/ during the run cannot change the
# binary under test, and stopping other task-api processes by name cannot stop this one.
BIN=$WORK/bench-server
cp "$TASK_API_BIN" "$BIN"
PG_PORT=$(free_port)
API_PORT=$(free_port)
API="http://127.0.0.1:$API_PORT"
trap cleanup_bench EXIT
trap 'exit 130' INT TERM

# --- PostgreSQL ---------------------------------------------------------------------------
start_postgres "$WORK/pgdata" "$PG_PORT" <<EOF
max_connections = 200
shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
log_line_prefix = '@@bench %p %a|%d| '
log_parameter_max_length = -1
EOF
# Not exported: sqlx reads PGHOST, PGAPPNAME and the like too, and the service must not.
psql() { PGAPPNAME=bench "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres "$@"; }
url() { echo "postgres://postgres@127.0.0.1:$PG_PORT/$1"; }
psql -d postgres -c "CREATE EXTENSION pg_stat_statements" >/dev/null

# --- helpers written once -----------------------------------------------------------------
# capture.py LOG OFFSET DB NREQ RANDOM_VALUE ROWS PSS_JSON OUT_PREFIX: the statements one request
# sent, from the server log between the markers, as OUT.sql (pgbench script), OUT.defs
# (-D name=value, one a line) and OUT.txt (what was captured, for the report).
cat >"$WORK/capture.py" <<'EOF'
import collections, json, re, sys
log, offset, db, nreq, random_value, rows, pss_json, out = sys.argv[1:]
offset, nreq, rows = int(offset), int(nreq), int(rows)
text = open(log, "rb").read()[offset:].decode("utf-8", "replace")
head = re.compile(r"^@@bench (\d+) (.*?)\|(.*?)\| ([A-Z]+):  (.*)$")
entries = []
for line in text.split("\n"):
    m = head.match(line)
    if m:
        entries.append(list(m.groups()))
    elif entries:
        entries[-1][4] += "\n" + line
requests, current = [], None
for i, (pid, app, dbname, level, msg) in enumerate(entries):
    if app == "bench":
        m = re.fullmatch(r"statement: SELECT 'bench-mark (\d+)'", msg)
        if m:
            current = [] if int(m.group(1)) <= nreq else None
            if current is not None:
                requests.append(current)
        continue
    if current is None or dbname != db:
        continue
    if level == "LOG":
        m = re.match(r"(?:statement|execute [^:]*): (.*)$", msg, re.S)
        if not m:
            continue
        sql = m.group(1).strip()
        if sql.rstrip(";").strip() in ("", "SELECT 1") or "SQLx ping" in sql:
            continue  # the pool's connection check
        current.append([sql, {}])
    elif level == "DETAIL" and msg.startswith("parameters: ") and current:
        for n, value, quoted in re.findall(r"\$(\d+) = (NULL|'((?:[^']|'')*)')", msg):
            current[-1][1][int(n)] = None if value == "NULL" else quoted.replace("''", "'")
    elif level == "ERROR":
        sys.exit(f"the service's SQL failed during capture: {msg}")
if len(requests) != nreq:
    sys.exit(f"capture: found {len(requests)} of {nreq} requests in the server log")
if not any(requests):
    sys.exit("capture: no SQL was logged for these requests")
shapes = collections.Counter(tuple(s for s, _ in r) for r in requests[1:] or requests)
shape = shapes.most_common(1)[0][0]
chosen = [r for r in requests if tuple(s for s, _ in r) == shape][-1]

script, defs, shown = [], [], []
for i, (sql, params) in enumerate(chosen, 1):
    def sub(m):
        n = int(m.group(1))
        if n not in params:
            sys.exit(f"capture: no value logged for ${n} of: {sql}")
        value, name = params[n], f"s{i}p{n}"
        if value is None:
            return "NULL"
        if value == "":
            return "''"  # pgbench -D cannot define an empty variable
        if random_value and value == random_value:
            script.append(f"\\set {name} random(1, {rows})")
        else:
            if "\n" in value:
                sys.exit(f"capture: a parameter value spans lines: {value!r}")
            defs.append(f"{name}={value}")
        return ":" + name
    body = re.sub(r"\$(\d+)\b", sub, sql)
    script.append(body if body.endswith(";") else body + ";")
    shown.append((sql, params))

pss = json.loads(open(pss_json).read() or "[]") or []
norm = lambda s: " ".join(s.split()).rstrip(";")
# pg_stat_statements shows constants as $n too: compare with every constant and parameter blanked.
shape_of = lambda s: re.sub(r"'(?:[^']|'')*'|\$\d+|\b\d+(?:\.\d+)?\b", "?", norm(s))
calls = collections.defaultdict(int)
for row in pss:
    if row["toplevel"]:
        calls[shape_of(row["query"])] += row["calls"]
with open(out + ".txt", "w") as f:
    if len(shapes) > 1:
        f.write(f"    note: requests sent {len(shapes)} different statement sequences; the most common one is used\n")
    for sql, params in shown:
        one = norm(sql)
        one = one if len(one) <= 400 else one[:397] + "..."
        per = calls.get(shape_of(sql))
        seen = f"{per / nreq:.1f}x/request" if per else "NOT IN pg_stat_statements"
        values = ", ".join(f"${n}={v!r}" for n, v in sorted(params.items()))
        f.write(f"    {one}  [{seen}]{'  ' + values if values else ''}\n")
    for row in pss:
        if not row["toplevel"]:
            f.write(f"    (nested, run by the server: {norm(row['query'])[:120]}  [{row['calls'] / nreq:.1f}x/request])\n")
missing = [norm(s) for s, _ in shown if shape_of(s) not in calls]
open(out + ".sql", "w").write("\n".join(script) + "\n")
open(out + ".defs", "w").write("".join(d + "\n" for d in defs))
if missing:
    sys.exit(f"capture: the server log and pg_stat_statements disagree on: {missing[0][:120]}")
EOF

# pct.py FILE...: p50 and p99 (ms) of pgbench per-transaction logs, then failed transactions.
cat >"$WORK/pct.py" <<'EOF'
import sys
lat, failed = [], 0
for name in sys.argv[1:]:
    for line in open(name):
        f = line.split()
        if len(f) >= 3 and f[2].isdigit():
            lat.append(int(f[2]))
        elif len(f) >= 3:
            failed += 1
lat.sort()
pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] / 1000 if lat else float("nan")
print(f"{pick(0.50):.3f} {pick(0.99):.3f} {failed}")
EOF

# lua FILE METHOD RANDOM_MAX: a wrk script; RANDOM_MAX > 0 requests /tasks/<random id>.
lua() {
  cat >"$1" <<EOF
wrk.method = "$2"
local random_max = $3
if wrk.method == "POST" then
  wrk.body = [[{"title":"bench task"}]]
  wrk.headers["Content-Type"] = "application/json"
end
local threads = 0
function setup(thread) threads = threads + 1; thread:set("tid", threads) end
function init(args) math.randomseed(os.time() * 7919 + (tid or 0)) end
if random_max > 0 then
  request = function() return wrk.format(nil, "/tasks/" .. math.random(1, random_max)) end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %.1f %.3f %.3f %d %d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout))
end
EOF
}

RESULTS=$WORK/results
: >"$RESULTS"
rec() { echo "$BACKEND $SIZE $*" >>"$RESULTS"; }
check_api() { # WHEN: fails if the service is no longer running
  local rc=0
  kill -0 "$API_PID" 2>/dev/null && return 0
  wait "$API_PID" 2>/dev/null || rc=$?
  API_PID=
  die "the service exited $1 (exit status $rc$( [ "$rc" -gt 128 ] && echo ", signal $((rc - 128))"))"
}
rss_kib() { # VmRSS|VmHWM of the service
  local v
  v=$(awk -v k="$1:" '$1 == k {print $2}' "/proc/$API_PID/status" 2>/dev/null)
  [ -n "$v" ] || die "no $1 in /proc/$API_PID/status: see $WORK/api.log"
  echo "$v"
}

# The service with room for every wrk connection.
start_bench_api() { # DATABASE_URL
  local max=$((CONNECTIONS * 2 > 256 ? CONNECTIONS * 2 : 256))
  start_api "$1" MAX_CONCURRENT_REQUESTS="$max" MAX_CONNECTIONS=$((max > 1024 ? max : 1024))
}

# call METHOD PATH [BODY]: one request, the body to $WORK/body; fails unless 2xx.
call() {
  local code
  if [ "$1" = POST ]; then
    code=$(curl -s --max-time 60 -o "$WORK/body" -w '%{http_code}' -X POST -H 'Content-Type: application/json' -d "$3" "$API$2") || code=000
  else
    code=$(curl -s --max-time 60 -o "$WORK/body" -w '%{http_code}' "$API$2") || code=000
  fi
  [[ $code == 2* ]] || die "$1 $2 answered $code: $(head -c 300 "$WORK/body" 2>/dev/null)"
}
json_field() { # PATH.IN.BODY -> value ('' for null or absent)
  python3 - "$WORK/body" "$1" <<'EOF'
import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."):
    v = v.get(k) if isinstance(v, dict) else None
print("" if v is None else v)
EOF
}

# capture NAME METHOD PATH RANDOM_VALUE: the endpoint's SQL as $WORK/sql/<backend>-<size>-NAME.*
capture() {
  local name=$1 method=$2 path=$3 random_value=$4 out="$WORK/sql/$BACKEND-$SIZE-$1" offset i
  mkdir -p "$WORK/sql"
  psql -d postgres -c "ALTER SYSTEM SET log_statement = 'all'" -c "SELECT pg_reload_conf()" >/dev/null
  sleep 0.5 # the reload reaches the service's idle connections before their next statement
  offset=$(stat -c %s "$WORK/server.log")
  psql -d postgres -c "SELECT pg_stat_statements_reset()" >/dev/null
  for i in $(seq "$CAPTURE_REQUESTS"); do
    psql -d postgres -c "SELECT 'bench-mark $i'" >/dev/null
    call "$method" "$path" '{"title":"bench task"}'
  done
  psql -d postgres -c "SELECT 'bench-mark $((CAPTURE_REQUESTS + 1))'" >/dev/null
  psql -d postgres -Atc "SELECT coalesce(json_agg(json_build_object('query', query, 'calls', calls,
      'toplevel', toplevel, 'mean_ms', mean_exec_time) ORDER BY calls DESC), '[]')
    FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = '$DB')
      AND query NOT ILIKE '%pg_stat_statements%'" >"$out.pss.json"
  psql -d postgres -c "ALTER SYSTEM RESET log_statement" -c "SELECT pg_reload_conf()" >/dev/null
  python3 "$WORK/capture.py" "$WORK/server.log" "$offset" "$DB" "$CAPTURE_REQUESTS" "$random_value" \
    "$SIZE" "$out.pss.json" "$out" || die "capturing the SQL of $method $path failed"
  CAPTURED=$out
}

# wrk_run CONNS SECONDS LUA URL -> "req/s p50_ms p99_ms requests errors"
wrk_run() {
  local t=$((THREADS < $1 ? THREADS : $1)) line
  wrk -t "$t" -c "$1" -d "$2s" --timeout 30s --latency -s "$3" "$4" >"$WORK/wrk.out" 2>&1 ||
    die "wrk failed on $4: $(tail -n 2 "$WORK/wrk.out")"
  line=$(grep '^RESULT ' "$WORK/wrk.out" | tail -n 1)
  [ -n "$line" ] || die "wrk gave no result for $4"
  echo "${line#RESULT }"
}

# pgbench_run CONNS SECONDS PREFIX -> "tps latency_avg_ms p50_ms p99_ms failed"
pgbench_run() {
  local prefix=$3 defs=() d tps avg
  while IFS= read -r d; do defs+=(-D "$d"); done <"$prefix.defs"
  rm -f "$WORK"/pgb_log*
  ( cd "$WORK" && "$PG_BIN/pgbench" -h 127.0.0.1 -p "$PG_PORT" -U postgres -M prepared -n -c "$1" -j "$((THREADS < $1 ? THREADS : $1))" -T "$2" \
      -l --log-prefix=pgb_log "${defs[@]}" -f "$prefix.sql" "$DB" ) >"$WORK/pgbench.out" 2>&1 ||
    die "pgbench failed on $prefix.sql: $(grep -m1 -iE 'error|abort' "$WORK/pgbench.out")"
  tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$WORK/pgbench.out" | tail -n 1)
  avg=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$WORK/pgbench.out")
  { [ -n "$tps" ] && [ -n "$avg" ]; } || die "pgbench gave no tps or latency for $prefix.sql"
  echo "$tps $avg $(python3 "$WORK/pct.py" "$WORK"/pgb_log*)"
}

label() {
  case $1 in
    id) echo 'GET /tasks/{id}' ;;
    list) echo 'GET /tasks' ;;
    status) echo '?status=completed' ;;
    search) echo "?q=$SEARCH" ;;
    offset) echo '?offset=n-100' ;;
    cursor) echo 'next page by cursor' ;;
    create) echo 'POST /tasks' ;;
  esac
}

# bench_endpoint NAME: every figure of one endpoint on the running service.
bench_endpoint() {
  local name=$1 method=GET path random_max=0 random_value='' url r res total
  case $name in
    id) path=/tasks/$((SIZE / 3)); random_max=$SIZE; random_value=$((SIZE / 3)) ;;
    list) path=/tasks ;;
    status) path='/tasks?status=completed' ;;
    search) path="/tasks?q=$SEARCH" ;;
    offset) path="/tasks?offset=$((SIZE - 100))" ;;
    cursor)
      call GET "/tasks?offset=$((SIZE / 2))"
      path=$(json_field pagination.next)
      if [ -z "$path" ]; then
        echo "  $(label cursor): n/a (the listing has no pagination.next)"
        rec cursor na 1
        return 0
      fi ;;
    create) method=POST path=/tasks ;;
  esac
  url=$API$path
  call "$method" "$path" '{"title":"bench task"}'
  if [ "$method" = GET ] && [ "$name" != id ]; then
    total=$(json_field pagination.total)
    [ -z "$total" ] || rec "$name" total "$total"
  fi
  lua "$WORK/$name.lua" "$method" "$random_max"

  echo "  $(label "$name")  ($method $path)"
  if [ "$BACKEND" = postgres ]; then
    capture "$name" "$method" "$path" "$random_value"
    cat "$CAPTURED.txt"
  fi
  res=$(wrk_run 1 "$C1_S" "$WORK/$name.lua" "$url")
  read -r -a r <<<"$res"
  rec "$name" "api1_p50 ${r[1]}"; rec "$name" "api1_p99 ${r[2]}"; rec "$name" "api1_n ${r[3]}"; rec "$name" "api1_err ${r[4]}"
  if [ "$BACKEND" = postgres ]; then
    res=$(pgbench_run 1 "$C1_S" "$CAPTURED")
    read -r -a r <<<"$res"
    rec "$name" "pg1_p50 ${r[2]}"; rec "$name" "pg1_p99 ${r[3]}"; rec "$name" "pg1_fail ${r[4]}"
  fi
  res=$(wrk_run "$CONNECTIONS" "$DUR_S" "$WORK/$name.lua" "$url")
  read -r -a r <<<"$res"
  rec "$name" "api_rps ${r[0]}"; rec "$name" "api_p50 ${r[1]}"; rec "$name" "api_p99 ${r[2]}"; rec "$name" "api_err ${r[4]}"
  if [ "$BACKEND" = postgres ]; then
    res=$(pgbench_run "$CONNECTIONS" "$DUR_S" "$CAPTURED")
    read -r -a r <<<"$res"
    rec "$name" "pg_tps ${r[0]}"; rec "$name" "pg_avg ${r[1]}"; rec "$name" "pg_p50 ${r[2]}"; rec "$name" "pg_p99 ${r[3]}"; rec "$name" "pg_fail ${r[4]}"
  fi
}

# --- the runs -----------------------------------------------------------------------------
for SIZE in $SIZES; do
  DB=tasks_$SIZE
  seed_tasks "$DB" "$SIZE"
  psql -d "$DB" -Atc "SELECT '  ' || count(*) || ' tasks, ' || pg_size_pretty(pg_total_relation_size('tasks')) || ' with indexes; '
    || count(*) FILTER (WHERE status = 'completed') || ' completed; '
    || count(*) FILTER (WHERE title ILIKE '%$SEARCH%' OR description ILIKE '%$SEARCH%') || ' match q=$SEARCH' FROM tasks"
  if [[ " $BACKENDS " == *" sqlite "* ]]; then copy_to_sqlite "$DB"; fi

  for BACKEND in $BACKENDS; do
    echo "$BACKEND, $SIZE tasks:"
    if [ "$BACKEND" = postgres ]; then start_bench_api "$(url "$DB")"; else start_bench_api "sqlite://$WORK/sqlite/tasks.db"; fi
    check_api "at start"
    rss=$(rss_kib VmRSS)
    rec - rss_idle "$rss"
    for name in $ALL_ENDPOINTS; do
      if [[ " $ENDPOINTS " == *" $name "* ]]; then
        bench_endpoint "$name"
        check_api "during $(label "$name")"
      fi
    done
    check_api "during the load"
    rss=$(rss_kib VmRSS)
    rec - rss_after "$rss"
    rss=$(rss_kib VmHWM)
    rec - rss_peak "$rss"
    stop_api
  done
  psql -d postgres -c "DROP DATABASE $DB" >/dev/null
  rm -rf "$WORK/sqlite" "$WORK/backup"
done

# --- report -------------------------------------------------------------------------------
python3 - "$RESULTS" "$ENDPOINTS" "$SIZES" "$BACKENDS" "$CONNECTIONS" "$SEARCH" <<'EOF'
import collections, math, sys
results, endpoints, sizes, backends, conns, search = sys.argv[1:]
order = ["id", "list", "status", "search", "offset", "cursor", "create"]
endpoints = [e for e in order if e in endpoints.split()]
sizes, backends = [int(s) for s in sizes.split()], backends.split()
label = {"id": "GET /tasks/{id}", "list": "GET /tasks", "status": "?status=completed",
         "search": f"?q={search}", "offset": "?offset=n-100", "cursor": "next page by cursor",
         "create": "POST /tasks"}
R = collections.defaultdict(dict)
for line in open(results):
    b, s, e, k, v = line.split()
    R[(b, int(s), e)][k] = v
problems = []
def num(b, s, e, k):
    v = R[(b, s, e)].get(k)
    try:
        x = float(v)
    except (TypeError, ValueError):
        x = math.nan
    if math.isnan(x):
        problems.append(f"{b}, {s} tasks, {label.get(e, e)}: {k} missing")
    return x
def ran(b, s, e):
    return "na" not in R[(b, s, e)]
f2 = lambda x: "-" if math.isnan(x) else (f"{x:.2f}" if x < 100 else f"{x:.0f}")
f0 = lambda x: "-" if math.isnan(x) else f"{x:.0f}"
mib = lambda k: f"{k / 1024:.1f}"

for b in backends:
    pg = b == "postgres"
    for s in sizes:
        m = {k: num(b, s, "-", k) for k in ("rss_idle", "rss_after", "rss_peak")}
        print(f"\n### {b}, {s:,} tasks (server RSS idle {mib(m['rss_idle'])} MiB, after load "
              f"{mib(m['rss_after'])} MiB, peak {mib(m['rss_peak'])} MiB; latencies in ms)\n")
        head = ["endpoint", "matches", "1 conn p50", "1 conn p99"]
        head += ["pgbench 1 conn p50"] if pg else []
        head += [f"{conns} conns req/s", "p50", "p99"]
        head += [f"pgbench tps", "pgbench lat avg", "pgbench p99", "API/pgbench"] if pg else []
        head += ["errors"]
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for e in endpoints:
            if not ran(b, s, e):
                print(f"| {label[e]} | " + " | ".join(["n/a"] * (len(head) - 1)) + " |")
                continue
            v = lambda k: num(b, s, e, k)
            total = R[(b, s, e)].get("total", "")
            row = [label[e], f"{int(total):,}" if total.isdigit() else "", f2(v("api1_p50")), f2(v("api1_p99"))]
            row += [f2(v("pg1_p50"))] if pg else []
            row += [f0(v("api_rps")), f2(v("api_p50")), f2(v("api_p99"))]
            errors = v("api1_err") + v("api_err")
            if pg:
                row += [f0(v("pg_tps")), f2(v("pg_avg")), f2(v("pg_p99")), f"{v('api_rps') / v('pg_tps'):.2f}"]
                errors += v("pg1_fail") + v("pg_fail")
            row.append(f0(errors))
            if errors > 0:
                problems.append(f"{b}, {s} tasks, {label[e]}: {errors:.0f} failed requests or transactions")
            print("| " + " | ".join(row) + " |")

for b in backends:
    pg = b == "postgres"
    print(f"\n### Scale, {b}: single-connection median latency in ms"
          + (" (API / pgbench with the same SQL)" if pg else "")
          + (f"; last column req/s at {conns} connections" + (" (API / pgbench tps)" if pg else "") if "list" in endpoints else "")
          + "\n")
    head = ["tasks"] + [label[e] for e in endpoints] + ([f"GET /tasks at {conns} conns"] if "list" in endpoints else [])
    head += ["RSS idle → after, MiB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for s in sizes:
        row = [f"{s:,}"]
        for e in endpoints:
            if not ran(b, s, e):
                row.append("n/a")
                continue
            a = f2(num(b, s, e, "api1_p50"))
            row.append(f"{a} / {f2(num(b, s, e, 'pg1_p50'))}" if pg else a)
        if "list" in endpoints:
            a = f0(num(b, s, "list", "api_rps"))
            row.append(f"{a} / {f0(num(b, s, 'list', 'pg_tps'))}" if pg else a)
        row.append(f"{mib(num(b, s, '-', 'rss_idle'))} → {mib(num(b, s, '-', 'rss_after'))}")
        print("| " + " | ".join(row) + " |")

if problems:
    print("\nFAILED:", *problems, sep="\n  ", file=sys.stderr)
    sys.exit(1)
EOF
echo
echo "done in $((SECONDS - START)) s after the build"
