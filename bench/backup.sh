#!/usr/bin/env bash
# Backup and restore at scale: task-api against pg_dump -Fc / pg_restore, side by side in one
# run on the same PostgreSQL server, with wall time (median of RUNS) and peak memory (max RSS).
# Then the off-site path against a loopback S3 server (s3s-fs): a backup with its upload and
# read-back, a restore on an empty backup directory straight from the remote, and the remote
# drill, whose restore time (download included) is the recovery time of a lost host.
#
#   bench/backup.sh            # 1,000,000 tasks, 3 runs each
#   ROWS=100000 RUNS=1 bench/backup.sh
#
# Needs: the PostgreSQL server binaries (apt-get install postgresql), GNU time (apt-get install
# time), s3s-fs (cargo install s3s-fs@0.14.1 --locked --features binary; S3S_FS=PATH names
# another copy). Starts its own throwaway servers on loopback and removes them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "bench/backup.sh: $*" >&2; exit 2; }
# shellcheck source=bench/lib.sh
. bench/lib.sh

ROWS=${ROWS:-1000000}
RUNS=${RUNS:-3}
PG_BIN=${PG_BIN:-$(default_pg_bin)}
[ -x "$PG_BIN/initdb" ] || die "PostgreSQL server binaries not found: apt-get install postgresql"
[ -x /usr/bin/time ] || die "GNU time not found: apt-get install time"
S3S_FS=${S3S_FS:-$(command -v s3s-fs || echo /var/cache/task-api/s3s-fs/bin/s3s-fs)}
[ -x "$S3S_FS" ] || die "s3s-fs not found: cargo install s3s-fs@0.14.1 --locked --features binary"

cargo build --release --locked --quiet
BIN=$PWD/target/release/task-api

WORK=$(mktemp -d /tmp/task-api-bench.XXXXXX)
PORT=$(free_port)
S3_PORT=$(free_port)
cleanup() {
  stop_postgres "$WORK/data"
  [ -z "${S3_PID:-}" ] || kill "$S3_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
start_postgres "$WORK/data" "$PORT" </dev/null

mkdir -p "$WORK/s3/task-backups"
"$S3S_FS" --host 127.0.0.1 --port "$S3_PORT" --access-key bench --secret-key bench-secret "$WORK/s3" \
  >"$WORK/s3.log" 2>&1 &
S3_PID=$!
export BACKUP_REMOTE=s3://task-backups/bench AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT \
  AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret

export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
psql() { "$PG_BIN/psql" -q -v ON_ERROR_STOP=1 "$@"; }
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1"; }

echo "loading $ROWS tasks..."
psql -d postgres -c "CREATE DATABASE source"
DATABASE_URL=$(url source) "$BIN" migrate >/dev/null
psql -d source -c "
  INSERT INTO tasks (title, description, status, created_at, updated_at)
  SELECT 'Task ' || g || ': ' || substr(md5(g::text), 1, 8 + g % 24),
         repeat(md5((g * 7)::text) || ' ', g % 6) || 'note ' || g,
         (ARRAY['pending', 'in-progress', 'completed'])[g % 3 + 1],
         date_trunc('milliseconds', now() - make_interval(secs => g)),
         date_trunc('milliseconds', now() - make_interval(secs => g / 2))
  FROM generate_series(1, $ROWS) AS g;"
psql -d source -c "VACUUM ANALYZE tasks"
psql -d source -Atc "SELECT 'source: ' || count(*) || ' tasks, ' || pg_size_pretty(pg_total_relation_size('tasks')) FROM tasks"

# measure NAME COMMAND...: appends "NAME seconds max_rss_kib" to the results.
RESULTS=$WORK/results
measure() {
  local name=$1; shift
  /usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || { cat "$WORK/err" >&2; exit 1; }
  echo "$name $(cat "$WORK/time")" >> "$RESULTS"
}

for run in $(seq "$RUNS"); do
  echo "run $run of $RUNS"
  rm -rf "$WORK/backups" "$WORK/dump"
  measure pg_dump "$PG_BIN/pg_dump" -Fc -d source -f "$WORK/dump"
  measure task-api-backup env -u BACKUP_REMOTE DATABASE_URL="$(url source)" BACKUP_DIR="$WORK/backups" "$BIN" backup

  psql -d postgres -c "DROP DATABASE IF EXISTS pgr" -c "CREATE DATABASE pgr"
  measure pg_restore "$PG_BIN/pg_restore" -d pgr "$WORK/dump"
  psql -d postgres -c "DROP DATABASE IF EXISTS tar" -c "CREATE DATABASE tar"
  measure task-api-restore env DATABASE_URL="$(url tar)" BACKUP_DIR="$WORK/backups" "$BIN" restore --latest

  measure task-api-drill env DATABASE_URL="$(url source)" BACKUP_DIR="$WORK/backups" "$BIN" drill

  # Off-site: backup + upload + read-back; a host with no backups restoring from the remote.
  rm -rf "$WORK/offsite" "$WORK/empty-host"
  measure backup-remote env DATABASE_URL="$(url source)" BACKUP_DIR="$WORK/offsite" "$BIN" backup
  psql -d postgres -c "DROP DATABASE IF EXISTS rem" -c "CREATE DATABASE rem"
  measure restore-remote env DATABASE_URL="$(url rem)" BACKUP_DIR="$WORK/empty-host" "$BIN" restore --remote --latest
  rm -rf "$WORK/offsite"
  measure drill-remote env DATABASE_URL="$(url source)" BACKUP_DIR="$WORK/offsite" "$BIN" drill --remote
  DATABASE_URL="$(url source)" BACKUP_DIR="$WORK/offsite" "$BIN" drill --remote |
    sed -n 's/^  restore: .* in \([0-9.]*\) s .*/\1/p' >> "$WORK/rto"
done
psql -d rem -Atc "SELECT 'restored from the remote: ' || count(*) || ' tasks' FROM tasks"
echo "uploaded per backup: $(stat -c %s "$WORK"/empty-host/*.zst | head -n 1) bytes"
echo "remote drill RTO (download + restore), seconds per run: $(tr '\n' ' ' < "$WORK/rto")"
psql -d tar -Atc "SELECT 'restored: ' || count(*) || ' tasks' FROM tasks"
stat -c 'file: %s %n' "$WORK/dump" "$WORK"/backups/*.zst

python3 - "$RESULTS" "$ROWS" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, secs, rss = line.split()
    rows.setdefault(name, []).append((float(secs), int(rss)))
med = {n: statistics.median(s for s, _ in v) for n, v in rows.items()}
peak = {n: max(r for _, r in v) / 1024 for n, v in rows.items()}
print(f"\n{int(sys.argv[2]):,} tasks, median of {len(rows['pg_dump'])} runs")
print(f"{'step':<18}{'seconds':>9}{'peak MiB':>10}")
for n in ["pg_dump", "task-api-backup", "pg_restore", "task-api-restore", "task-api-drill",
          "backup-remote", "restore-remote", "drill-remote"]:
    print(f"{n:<18}{med[n]:>9.2f}{peak[n]:>10.1f}")
print(f"backup  time ratio task-api / pg_dump -Fc : {med['task-api-backup'] / med['pg_dump']:.2f} (target <= 1.5)")
print(f"restore time ratio task-api / pg_restore  : {med['task-api-restore'] / med['pg_restore']:.2f} (target <= 1.0)")
EOF
