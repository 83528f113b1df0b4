#!/bin/sh
# Point-in-time recovery of the stack's PostgreSQL with Barman's cloud tools, against
# BACKUP_REMOTE (s3://bucket/prefix, the remote the API's backups use; Barman keeps its files
# under <prefix>/task-db/). AWS_ENDPOINT_URL and AWS_REGION as for the API; the keys are read at
# each call from AWS_ACCESS_KEY_ID_FILE / AWS_SECRET_ACCESS_KEY_FILE (or AWS_ACCESS_KEY_ID /
# AWS_SECRET_ACCESS_KEY).
#
#   pitr archive-wal PATH        archive_command (the entry point sets it when BACKUP_REMOTE is set)
#   pitr restore-wal NAME PATH   restore_command
#   pitr backup                  a base backup of the running server
#   pitr list                    the base backups in the remote
#   pitr prune                   deletes base backups, and the WAL only they need, outside
#                                PITR_RETENTION (default: RECOVERY WINDOW OF 7 DAYS); the newest
#                                base backup is always kept
#   pitr schedule                runs until stopped: a base backup whenever the newest is older
#                                than BASE_BACKUP_EVERY (default 24h; s, m, h or d), each followed
#                                by a prune (the entry point starts it when BACKUP_REMOTE is set)
#   pitr restore [--replace] [TIME]
#                                with the server stopped: the latest base backup into PGDATA, set
#                                to replay archived WAL up to TIME (default: PITR_TARGET_TIME; all
#                                of it without either), then to promote; --replace empties a
#                                non-empty PGDATA first
set -eu

die() { echo "pitr: $*" >&2; exit 1; }

: "${BACKUP_REMOTE:?pitr: BACKUP_REMOTE is not set (s3://bucket/prefix)}"
server=${BARMAN_SERVER_NAME:-task-db}
barman=/opt/barman/bin

# The tools must run as the server's user: the files they write belong to the server.
if [ "$(id -u)" = 0 ]; then
  if command -v su-exec >/dev/null; then exec su-exec postgres "$0" "$@"; fi
  if command -v gosu >/dev/null; then exec gosu postgres "$0" "$@"; fi
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

secret_from_file() {
  eval "file=\${${1}_FILE:-}"
  if [ -n "$file" ]; then
    [ -r "$file" ] || die "cannot read ${1}_FILE ($file)"
    value=$(cat "$file")
    export "$1=$value"
  fi
}
secret_from_file AWS_ACCESS_KEY_ID
secret_from_file AWS_SECRET_ACCESS_KEY
if [ -n "${AWS_REGION:-}" ]; then export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-$AWS_REGION}"; fi

# tool NAME [OPTION...] -- [ARGUMENT...]: barman-cloud-NAME with the remote and server name
# between its options and its other arguments.
tool() {
  name=$1
  shift
  options=""
  while [ $# -gt 0 ] && [ "$1" != -- ]; do
    options="$options $1"
    shift
  done
  [ $# -gt 0 ] && shift
  endpoint=""
  if [ -n "${AWS_ENDPOINT_URL:-}" ]; then endpoint="--endpoint-url $AWS_ENDPOINT_URL"; fi
  # Options and the endpoint hold no spaces: word splitting is wanted here.
  # shellcheck disable=SC2086
  "$barman/barman-cloud-$name" $endpoint $options "$BACKUP_REMOTE" "$server" "$@"
}

# seconds DURATION: 90s, 15m, 24h or 7d in seconds.
seconds() {
  number=${1%[smhd]}
  case "$number" in
    "" | *[!0-9]* | "$1") die "BASE_BACKUP_EVERY: '$1' is not a duration such as 30m, 24h or 7d" ;;
  esac
  case "$1" in
    *s) echo "$number" ;;
    *m) echo $((number * 60)) ;;
    *h) echo $((number * 3600)) ;;
    *) echo $((number * 86400)) ;;
  esac
}

# The newest completed base backup's age in seconds; nothing when there is none.
newest_backup_age() {
  tool backup-list --format json -- | /opt/barman/bin/python3 -c '
import datetime, json, sys
done = [b["end_time_iso"] for b in json.load(sys.stdin)["backups_list"]
        if b.get("status") == "DONE" and b.get("end_time_iso")]
if done:
    newest = max(datetime.datetime.fromisoformat(t) for t in done)
    print(int((datetime.datetime.now(datetime.timezone.utc) - newest).total_seconds()))
'
}

command=${1:-}
[ $# -gt 0 ] && shift
case "$command" in
  archive-wal)
    [ $# -eq 1 ] || die "usage: pitr archive-wal PATH"
    tool wal-archive -- "$1"
    ;;
  restore-wal)
    [ $# -eq 2 ] || die "usage: pitr restore-wal NAME PATH"
    tool wal-restore -- "$1" "$2"
    ;;
  backup)
    tool backup --immediate-checkpoint -U "${POSTGRES_USER:-postgres}" -d "${POSTGRES_DB:-postgres}" --
    ;;
  list)
    tool backup-list --
    ;;
  prune)
    retention=${PITR_RETENTION:-RECOVERY WINDOW OF 7 DAYS}
    endpoint=""
    if [ -n "${AWS_ENDPOINT_URL:-}" ]; then endpoint="--endpoint-url $AWS_ENDPOINT_URL"; fi
    # The policy holds spaces: it cannot go through tool's word-split options.
    # shellcheck disable=SC2086
    "$barman/barman-cloud-backup-delete" $endpoint --minimum-redundancy 1 \
      --retention-policy "$retention" "$BACKUP_REMOTE" "$server"
    echo "pitr: pruned to $retention (at least one base backup kept)"
    ;;
  schedule)
    every=$(seconds "${BASE_BACKUP_EVERY:-24h}")
    [ "$every" -gt 0 ] || die "BASE_BACKUP_EVERY must be longer than 0s"
    while :; do
      # Over TCP: the entry point's first-start server listens on the socket only, and must not
      # be backed up.
      until pg_isready -q -h 127.0.0.1 -p "${PGPORT:-5432}"; do sleep 5; done
      if ! age=$(newest_backup_age); then
        echo "pitr schedule: cannot list the base backups; trying again in 5 minutes" >&2
        sleep 300
        continue
      fi
      if [ -n "$age" ] && [ "$age" -lt "$every" ]; then
        sleep $((every - age))
        continue
      fi
      echo "pitr schedule: base backup started (newest was ${age:-none}${age:+ s old})"
      if "$0" backup && "$0" prune; then
        echo "pitr schedule: base backup done"
      else
        echo "pitr schedule: base backup or prune failed; trying again in 5 minutes" >&2
        sleep 300
      fi
    done
    ;;
  restore)
    replace=false
    if [ "${1:-}" = --replace ]; then replace=true; shift; fi
    target=${1:-${PITR_TARGET_TIME:-}}
    : "${PGDATA:?pitr: PGDATA is not set}"
    [ ! -f "$PGDATA/postmaster.pid" ] || die "the server in $PGDATA is running (or crashed): stop it first"
    if [ -n "$(ls -A "$PGDATA" 2>/dev/null)" ]; then
      [ "$replace" = true ] || die "$PGDATA is not empty: add --replace to empty it first"
      find "$PGDATA" -mindepth 1 -delete
    fi
    tool restore -- latest "$PGDATA"
    {
      echo "# pitr restore $(date -u +%Y-%m-%dT%H:%M:%SZ)"
      echo "restore_command = '/usr/local/bin/pitr restore-wal %f %p'"
      echo "recovery_target_action = 'promote'"
      # Always written: an empty target (replay everything) overrides one an earlier restore
      # left in a backup's copy of this file.
      echo "recovery_target_time = '$target'"
    } >>"$PGDATA/postgresql.auto.conf"
    touch "$PGDATA/recovery.signal"
    echo "pitr: restored the latest base backup into $PGDATA; start the server to replay WAL${target:+ up to $target}"
    ;;
  *)
    die "usage: pitr archive-wal PATH | restore-wal NAME PATH | backup | list | prune | schedule | restore [--replace] [TIME]"
    ;;
esac
