# Shared by the benchmarks (sourced, not run): each starts its own throwaway PostgreSQL server
# and service on 127.0.0.1 in a work directory of its own. The caller defines die and, before
# calling the functions that use them, sets PG_BIN, WORK, BIN, API_PORT and API.
# shellcheck shell=bash

# A free TCP port on the loopback interface.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL refuses to run as root: as root, run its tools as the postgres OS user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# The newest installed PostgreSQL server binaries, unless PG_BIN names others.
default_pg_bin() { printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1; }

# wrk, installed from Debian's packages when running as root.
require_wrk() {
  command -v wrk >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing wrk..."
    apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq wrk >/dev/null 2>&1; } ||
      die "wrk not found and apt-get install wrk failed: install wrk (Debian package wrk)"
  else
    die "wrk not found: apt-get install wrk"
  fi
}

# start_postgres DATADIR PORT: a new cluster in DATADIR on 127.0.0.1:PORT (trust, UTF8), its
# socket in WORK; lines on standard input are added to postgresql.conf.
start_postgres() {
  local data=$1 port=$2
  [ "$(id -u)" != 0 ] || chown postgres "$WORK"
  as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >/dev/null || die "initdb failed"
  {
    printf "listen_addresses = '127.0.0.1'\nport = %s\nunix_socket_directories = '%s'\nshared_buffers = 256MB\n" \
      "$port" "$WORK"
    cat
  } >>"$data/postgresql.conf"
  as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$WORK/server.log" -w start >/dev/null ||
    die "PostgreSQL did not start: see $WORK/server.log"
}
stop_postgres() { as_pg "$PG_BIN/pg_ctl" -D "$1" stop -m immediate >/dev/null 2>&1 || true; }

# start_api DATABASE_URL [NAME=VALUE...]: `task-api serve` in the background (API_PID), its log
# in WORK/api.log, waited for until /readyz answers.
API_PID=
start_api() {
  local database_url=$1
  shift
  env DATABASE_URL="$database_url" PORT="$API_PORT" BIND_ADDRESS=127.0.0.1 LOG_LEVEL=warn LOG_FORMAT=json \
    BACKUP_DIR="$WORK/backups-serve" DATA_DIR="$WORK/data-serve" NO_BACKUP_BEFORE_MIGRATE=true "$@" \
    "$BIN" serve >"$WORK/api.log" 2>&1 &
  API_PID=$!
  for _ in $(seq 600); do
    curl -sf -o /dev/null --max-time 2 "$API/readyz" && return 0
    kill -0 "$API_PID" 2>/dev/null || { tail -n 5 "$WORK/api.log" >&2; API_PID=; die "task-api serve exited at start"; }
    sleep 0.1
  done
  die "task-api serve was not ready within 60 s: see $WORK/api.log"
}
stop_api() {
  [ -n "$API_PID" ] || return 0
  kill "$API_PID" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$API_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$API_PID" 2>/dev/null || true
  wait "$API_PID" 2>/dev/null || true
  API_PID=
}

# The EXIT trap of a benchmark with a service and a server in WORK/pgdata: the work directory
# is kept with KEEP=1 or after a failure, with the service's last log lines.
cleanup_bench() {
  local rc=$?
  stop_api
  stop_postgres "$WORK/pgdata"
  if [ "${KEEP:-0}" = 1 ] || [ "$rc" != 0 ]; then
    [ "$rc" = 0 ] || { [ -f "$WORK/api.log" ] && tail -n 5 "$WORK/api.log" >&2; }
    echo "work directory kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
}

# seed_tasks DB SIZE: database DB, migrated, holding SIZE tasks (the caller defines psql and url).
BENCH_WORDS="'report','invoice','deploy','review','backup','meeting','budget','release','server',
  'design','update','migrate','customer','ticket','email','schedule','audit','database',
  'network','security','payroll','contract','launch','feature','bug','test','plan','refactor',
  'document','call','order','shipping','training','hiring','cleanup','monitor','support','task',
  'archive','renew'"
seed_tasks() {
  local db=$1 size=$2
  echo "seeding $size tasks into PostgreSQL..."
  psql -d postgres -c "SET client_min_messages = warning" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
  DATABASE_URL=$(url "$db") BACKUP_DIR="$WORK/backups-migrate" NO_BACKUP_BEFORE_MIGRATE=true \
    "$BIN" migrate >"$WORK/migrate.log" 2>&1 || die "task-api migrate failed: $(tail -n 1 "$WORK/migrate.log")"
  # Titles of three words out of 40 and a hex fragment (so 'task' is in about 7% of titles and
  # a hex term like 'ffff' is rare), descriptions of a sentence and hex; ids and timestamps rise
  # together, one task a second; 60% completed, 25% pending, 15% in progress.
  psql -d "$db" -c "
    WITH v AS (SELECT ARRAY[$BENCH_WORDS] AS w)
    INSERT INTO tasks (title, description, status, created_at, updated_at)
    SELECT initcap(w[1 + (g * 7) % 40]) || ' ' || w[1 + (g * 13 + g / 40) % 40] || ' '
             || w[1 + (g * 31 + g / 1600) % 40] || ' ' || substr(md5(g::text), 1, 4 + g % 9),
           CASE WHEN g % 7 = 0 THEN ''
                ELSE 'Notes on the ' || w[1 + (g * 17) % 40] || ' ' || w[1 + (g * 23 + g / 40) % 40]
                  || ' for ' || w[1 + (g * 29) % 40] || '. ' || repeat(md5((g * 7)::text) || ' ', g % 4)
           END,
           CASE WHEN (hashint4(g) & 1023) % 20 < 12 THEN 'completed'
                WHEN (hashint4(g) & 1023) % 20 < 17 THEN 'pending' ELSE 'in-progress' END,
           date_trunc('milliseconds', now() - make_interval(secs => $size - g)),
           date_trunc('milliseconds', now() - make_interval(secs => ($size - g) / 2))
    FROM v, generate_series(1, $size) AS g" >/dev/null
  psql -d "$db" -c "VACUUM ANALYZE" >/dev/null
}

# copy_to_sqlite DB: the same tasks in WORK/sqlite/tasks.db, through a backup and a restore.
copy_to_sqlite() {
  rm -rf "$WORK/backup" "$WORK/sqlite"
  mkdir -p "$WORK/sqlite"
  DATABASE_URL=$(url "$1") BACKUP_DIR="$WORK/backup" "$BIN" backup >"$WORK/backup.log" 2>&1 ||
    die "task-api backup failed: $(tail -n 1 "$WORK/backup.log")"
  DATABASE_URL="sqlite://$WORK/sqlite/tasks.db" BACKUP_DIR="$WORK/backup" "$BIN" restore --latest >"$WORK/restore.log" 2>&1 ||
    die "task-api restore into SQLite failed: $(tail -n 1 "$WORK/restore.log")"
}
