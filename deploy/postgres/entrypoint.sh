#!/bin/sh
# Turns on continuous WAL archiving to BACKUP_REMOTE when it is set, and scheduled base backups
# (BASE_BACKUP_EVERY, or off), then hands over to the base image's own entry point. The settings go on the server's command line, so they follow the
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
  # Base backups on a schedule, in a process of its own: started from a subshell that exits at
  # once, so it is the init process's child (compose sets init: true), never the server's.
  if [ "${BASE_BACKUP_EVERY:-24h}" != off ]; then
    (/usr/local/bin/pitr schedule &)
  fi
fi
exec docker-entrypoint.sh "$@"
