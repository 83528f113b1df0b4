#!/bin/sh
# Turns on continuous WAL archiving to BACKUP_REMOTE when it is set, then hands over to the base
# image's own entry point. The settings go on the server's command line, so they follow the
# environment at every start and never linger in the data directory.
set -eu

if [ "${1:-}" = postgres ] && [ -n "${BACKUP_REMOTE:-}" ]; then
  shift
  # archive_timeout bounds what a quiet server can lose: the RPO.
  set -- postgres \
    -c wal_level=replica \
    -c archive_mode=on \
    -c "archive_command=/usr/local/bin/pitr archive-wal %p" \
    -c "archive_timeout=${ARCHIVE_TIMEOUT:-60s}" \
    "$@"
fi
exec docker-entrypoint.sh "$@"
