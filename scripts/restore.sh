#!/usr/bin/env bash
# Restores a backup into the running stack's database, by running `task-api restore` in the
# stack's backup container. Arguments are those of `task-api restore`:
#
#   ./scripts/restore.sh --latest            # the newest backup in ./backups
#   ./scripts/restore.sh FILE [--force]      # a file in ./backups; --force replaces existing tasks
#
# A FILE given as a host path (./backups/NAME) is passed on as /backups/NAME, where the
# container sees it. Engine and container: see scripts/container-engine.sh.
set -euo pipefail
# shellcheck source=scripts/container-engine.sh
. "$(dirname "$0")/container-engine.sh"

if [ $# -eq 0 ]; then
  echo "usage: $(basename "$0") FILE|--latest [--force]" >&2
  exit 2
fi
args=()
for arg in "$@"; do
  case "$arg" in
    -*) args+=("$arg") ;;
    /backups/*) args+=("$arg") ;;
    *) args+=("/backups/$(basename "$arg")") ;;
  esac
done

echo "restore: $engine exec $container /task-api restore ${args[*]}"
"$engine" exec "$container" /task-api restore "${args[@]}"
echo "restore: done"
