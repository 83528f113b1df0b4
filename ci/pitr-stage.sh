#!/usr/bin/env bash
# Point-in-time recovery through the compose stack, with podman: runs the blocks of RUNBOOK.md
# marked `<!-- runnable: pitr -->`, in order, as written, against a stack whose .env and
# secrets/ point at an S3-compatible store (s3s-fs in a container on task-backup-egress): archiving
# on, a base backup, a mistake at a known time, recovery to just before it with the deleted
# tasks checked by id, a logical backup uploaded by the backup service, and a new host recovered
# from the store alone. Then the plain stack (no BACKUP_REMOTE) is checked to run without
# archiving, as before.
#
# Standalone, from the repository root, as root, after ci/provision-podman.sh and with the
# task-api:1.0 image built (ci/container-stage.sh builds it):   bash ci/pitr-stage.sh
#
# Settings (environment): HOST_PORT (default 3000), CONTAINER_STAGE_CACHE (podman-compose's
# virtualenv), TASK_API_TEST_S3S_FS (the s3s-fs binary; default /var/cache/task-api/s3s-fs),
# BLOCK_TIMEOUT (seconds one block may take, default 300).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="pitr stage"
# shellcheck source=ci/lib.sh
. ci/lib.sh

CACHE=${CONTAINER_STAGE_CACHE:-/var/cache/task-api-container-stage}
HOST_PORT=${HOST_PORT:-3000}
API=http://127.0.0.1:$HOST_PORT
S3S_FS=${TASK_API_TEST_S3S_FS:-/var/cache/task-api/s3s-fs/bin/s3s-fs}
readonly S3_KEY_ID=pitr-stage-key S3_KEY=pitr-stage-secret-key
WORK=$(mktemp -d /tmp/pitr-stage.XXXXXX)
dir=$WORK/task-api

compose() { (cd "$dir" && "$CACHE/venv/bin/podman-compose" "$@"); }
pitr_compose() { compose -f compose.yaml -f compose.offsite.yaml "$@"; }
sql() { podman exec task-db psql -U taskuser -d taskmanager -Atc "$1"; }

cleanup() {
  local rc=$?
  set +e
  trap - EXIT ERR
  if [ -f "$dir/compose.offsite.yaml" ]; then pitr_compose down -v >/dev/null 2>&1; fi
  podman rm -f -t 0 task-s3 >/dev/null 2>&1
  podman network rm -f task-backup-egress >/dev/null 2>&1
  rm -rf "$WORK"
  failure_banner "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

# test_at_least N COMMAND...: COMMAND prints a number of at least N.
test_at_least() {
  local n=$1
  shift
  [ "$("$@")" -ge "$n" ]
}
db_ready() { podman exec task-db pg_isready -q -U taskuser -d taskmanager 2>/dev/null; }
healthy() { curl -fsS --max-time 2 -o /dev/null "$API/health" 2>/dev/null; }
status_of() { curl -s -o /dev/null -w '%{http_code}' "$API/tasks/$1"; }

step "prerequisites"
for tool in podman curl jq; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[ -x "$CACHE/venv/bin/podman-compose" ] || die "no podman-compose in $CACHE: bash ci/provision-podman.sh"
[ -x "$S3S_FS" ] || die "no s3s-fs at $S3S_FS: cargo install --locked --features binary --root /var/cache/task-api/s3s-fs s3s-fs@0.14.1"
podman image exists task-api:1.0 || die "no task-api:1.0 image: bash ci/container-stage.sh builds it"
for name in task-api task-db task-api-backup task-s3; do
  ! podman container exists "$name" || die "a container named $name exists already"
done
bash ci/standins/build.sh
bash ci/task-db-image.sh

step "a stack directory whose .env and secrets/ point at a store"
mkdir -p "$dir/deploy"
cp compose.yaml compose.offsite.yaml .env.example "$dir/"
cp -r deploy/postgres "$dir/deploy/"
(
  cd "$dir"
  cp .env.example .env
  install -d -m 700 secrets
  (umask 022 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >secrets/db_password.txt)
  (umask 022 && printf '%s' "$S3_KEY_ID" >secrets/backup_key_id.txt &&
    printf '%s' "$S3_KEY" >secrets/backup_key.txt)
  mkdir -p backups && chown 1001:1001 backups
  # A short archive_timeout: the stage waits for it (the stack's default is 60s).
  printf 'TASK_API_PORT=%s\nBACKUP_REMOTE=s3://task-backups/prod\nAWS_ENDPOINT_URL=http://task-s3:9000\nARCHIVE_TIMEOUT=10s\n' \
    "$HOST_PORT" >>.env
)
mkdir -p "$WORK/s3/task-backups"
podman network create task-backup-egress >/dev/null
podman run -d --name task-s3 --network task-backup-egress -v "$S3S_FS:/usr/local/bin/s3s-fs:ro" \
  -v "$WORK/s3:/data" docker.io/library/debian:bookworm-slim \
  s3s-fs --host 0.0.0.0 --port 9000 --access-key "$S3_KEY_ID" --secret-key "$S3_KEY" /data >/dev/null
step "RUNBOOK.md: the blocks marked <!-- runnable: pitr -->"
mkdir -p "$WORK/blocks" "$WORK/bin"
# One file per block, in document order: NNN.sh, and "NNN<TAB>line" in the index.
awk -v out="$WORK/blocks" '
  inblock && /^```[[:space:]]*$/ { inblock = 0; close(file); next }
  inblock { print > file; next }
  marked {
    if ($0 !~ /^```(sh|bash)[[:space:]]*$/) { printf "RUNBOOK.md:%d: <!-- runnable: pitr --> must be followed by a ```sh fence\n", NR > "/dev/stderr"; exit 1 }
    n++; marked = 0; inblock = 1; file = sprintf("%s/%03d.sh", out, n)
    printf "%03d\t%d\n", n, NR + 1
    next
  }
  /^<!-- runnable: pitr -->[[:space:]]*$/ { marked = 1 }
' RUNBOOK.md >"$WORK/index" || die "RUNBOOK.md: cannot extract the pitr blocks"
[ -s "$WORK/index" ] || die "RUNBOOK.md has no block marked <!-- runnable: pitr -->"
cat >"$WORK/bin/docker" <<SHIM
#!/usr/bin/env bash
# docker → podman, docker compose → podman-compose (test scaffolding of ci/pitr-stage.sh)
if [ "\${1:-}" = compose ]; then shift; exec "$CACHE/venv/bin/podman-compose" "\$@"; fi
exec podman "\$@"
SHIM
chmod +x "$WORK/bin/docker"
: >"$WORK/timings"
while IFS=$'\t' read -r id line; do
  block=$WORK/blocks/$id.sh
  [ "$HOST_PORT" = 3000 ] || sed -i "s/localhost:3000/localhost:$HOST_PORT/g" "$block"
  printf '\n--- RUNBOOK.md:%s\n' "$line"
  sed 's/^/  $ /' "$block"
  started=$(now_ms)
  if ! (cd "$dir" && PATH="$WORK/bin:$PATH" timeout "${BLOCK_TIMEOUT:-300}" bash -eu -o pipefail "$block") \
    </dev/null 2>&1 | sed 's/^/  | /'; then
    die "the block at RUNBOOK.md:$line failed"
  fi
  printf '%8d ms  RUNBOOK.md:%s  %s\n' "$(($(now_ms) - started))" "$line" "$(head -n 1 "$block")" >>"$WORK/timings"
done <"$WORK/index"
# What the blocks showed, checked: archiving was on, the deleted tasks are back.
[ "$(sql 'SHOW archive_mode')" = on ] || die "archive_mode is not on with BACKUP_REMOTE set"
while read -r id; do
  [ "$(status_of "$id")" = 200 ] || die "task $id is missing after the recoveries"
done <"$dir/pitr-ids.txt"
note "tasks $(tr '\n' ' ' <"$dir/pitr-ids.txt")are back after both recoveries"
# The backup service's uploads, seen from the store's side: objects directly under the prefix.
uploaded=$(find "$WORK/s3/task-backups/prod" -maxdepth 1 -type f -name '*.jsonl.zst' | wc -l)
[ "$uploaded" -ge 1 ] || die "the backup service uploaded no backup to the store"
note "the backup service uploaded $uploaded logical backups beside the WAL archive"
cat "$WORK/timings"

step "scheduled base backups and their retention"
# Every 20 s, keeping 2: the scheduler's backups, each followed by a prune, leave exactly the
# two newest of all the stage's base backups.
printf 'BASE_BACKUP_EVERY=20s\nPITR_RETENTION=REDUNDANCY 2\n' >>"$dir/.env"
pitr_compose down >/dev/null 2>&1
pitr_compose up -d >"$WORK/up.log" 2>&1 || die "compose up failed: $(tail -n 20 "$WORK/up.log")"
scheduled_backups() { podman logs task-db 2>&1 | grep -c 'pitr schedule: base backup done' || true; }
wait_until 240 2 "the scheduler did not take two base backups: $(podman logs --tail 20 task-db 2>&1)" \
  test_at_least 2 scheduled_backups
kept=$(podman exec task-db pitr list | grep -cE '^[0-9]{8}T[0-9]{6} ' || true)
[ "$kept" = 2 ] || die "PITR_RETENTION=REDUNDANCY 2 kept $kept base backups: $(podman exec task-db pitr list)"
note "two scheduled base backups taken; retention kept the 2 newest"

step "the plain stack: no BACKUP_REMOTE, no archiving"
pitr_compose down -v >/dev/null 2>&1
sed -i '/^BACKUP_REMOTE=/d' "$dir/.env"
compose up -d >"$WORK/up.log" 2>&1 || die "compose up failed: $(tail -n 20 "$WORK/up.log")"
wait_until 90 0.5 "task-db did not become ready" db_ready
wait_until 90 0.2 "the API did not become healthy" healthy
[ "$(sql 'SHOW archive_mode')" = off ] || die "archive_mode is on without BACKUP_REMOTE"
note "archive_mode off; the API is healthy"
compose down -v >/dev/null 2>&1

trap - ERR
step "point-in-time recovery through compose: all checks passed"
