#!/usr/bin/env bash
# Point-in-time recovery through the compose stack, with podman: the stack with
# compose.pitr.yaml archives WAL to an S3-compatible store (s3s-fs in a container on
# task-db-egress), takes a base backup, suffers a mistake at a known time, and is recovered to
# just before it with the commands of the README; the deleted tasks are checked back by id.
# Then the plain stack (no BACKUP_REMOTE) is checked to run without archiving, as before.
#
# Standalone, from the repository root, as root, after ci/provision-podman.sh and with the
# task-api:1.0 image built (ci/container-stage.sh builds it):   bash ci/pitr-stage.sh
#
# Settings (environment): HOST_PORT (default 3000), CONTAINER_STAGE_CACHE (podman-compose's
# virtualenv), TASK_API_TEST_S3S_FS (the s3s-fs binary; default /var/cache/task-api/s3s-fs).
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
pitr_compose() { compose -f compose.yaml -f compose.pitr.yaml "$@"; }
sql() { podman exec task-db psql -U taskuser -d taskmanager -Atc "$1"; }

cleanup() {
  local rc=$?
  set +e
  trap - EXIT ERR
  if [ -f "$dir/compose.pitr.yaml" ]; then pitr_compose down -v >/dev/null 2>&1; fi
  podman rm -f -t 0 task-s3 >/dev/null 2>&1
  podman network rm -f task-db-egress >/dev/null 2>&1
  rm -rf "$WORK"
  failure_banner "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

db_ready() { podman exec task-db pg_isready -q -U taskuser -d taskmanager 2>/dev/null; }
healthy() { curl -fsS --max-time 2 -o /dev/null "$API/health" 2>/dev/null; }
promoted() { [ "$(sql 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; }
# archived WAL: the WAL file WAL (or a later one) is in the store.
archived() {
  local last
  last=$(sql "SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver")
  [ -n "$last" ] && ! [[ "${last:0:24}" < "$1" ]]
}
create() {
  curl -fsS -X POST -H 'content-type: application/json' -d "{\"title\": \"$1\"}" "$API/tasks" |
    jq -er .data.id
}
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

step "the stack with compose.pitr.yaml"
mkdir -p "$dir/deploy"
cp compose.yaml compose.pitr.yaml .env.example "$dir/"
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
podman network create task-db-egress >/dev/null
podman run -d --name task-s3 --network task-db-egress -v "$S3S_FS:/usr/local/bin/s3s-fs:ro" \
  -v "$WORK/s3:/data" docker.io/library/debian:bookworm-slim \
  s3s-fs --host 0.0.0.0 --port 9000 --access-key "$S3_KEY_ID" --secret-key "$S3_KEY" /data >/dev/null
pitr_compose up -d >"$WORK/up.log" 2>&1 || die "compose up failed: $(tail -n 20 "$WORK/up.log")"
wait_until 90 0.5 "task-db did not become ready" db_ready
wait_until 90 0.2 "the API did not become healthy" healthy
[ "$(sql 'SHOW archive_mode')" = on ] || die "archive_mode is not on with BACKUP_REMOTE set"
note "archive_mode on, archive_timeout $(sql 'SHOW archive_timeout')"

step "base backup"
start=$(now_ms)
pitr_compose exec -T task-db pitr backup >"$WORK/backup.log" 2>&1 ||
  die "pitr backup failed: $(tail -n 20 "$WORK/backup.log")"
note "base backup in $(($(now_ms) - start)) ms"
pitr_compose exec -T task-db pitr list | sed 's/^/  /'

step "a mistake at a known time"
kept=()
for title in first second third; do kept+=("$(create "$title")"); done
target=$(sql 'SELECT clock_timestamp()')
sleep 1
for id in "${kept[@]:0:2}"; do
  curl -fsS -o /dev/null -X DELETE "$API/tasks/$id" || die "DELETE /tasks/$id failed"
done
later=$(create "after the mistake")
mistake_done=$(now_ms)
wal=$(sql 'SELECT pg_walfile_name(pg_current_wal_lsn())')
wait_until 60 0.5 "$wal was not archived within 60 s" archived "$wal"
note "tasks ${kept[*]} created, ${kept[*]:0:2} deleted after $target; $wal archived $(($(now_ms) - mistake_done)) ms after the mistake (no forced WAL switch)"

step "recovery to just before the mistake"
start=$(now_ms)
pitr_compose stop task-db >/dev/null 2>&1
pitr_compose run --rm --no-deps --entrypoint pitr task-db restore --replace "$target" |
  sed 's/^/  /'
pitr_compose start task-db >/dev/null 2>&1
wait_until 120 0.5 "task-db did not finish recovery" promoted
note "recovered in $(($(now_ms) - start)) ms (stop, restore, WAL replay, promotion)"
wait_until 60 0.2 "the API did not become healthy after the recovery" healthy
for id in "${kept[@]}"; do
  [ "$(status_of "$id")" = 200 ] || die "task $id is missing after the recovery"
done
[ "$(status_of "$later")" = 404 ] || die "task $later, created after the target, is there"
note "tasks ${kept[*]} are there, task $later (after the target) is not"

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
