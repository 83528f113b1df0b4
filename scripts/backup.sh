#!/usr/bin/env bash
# Writes one backup of the running stack's database into ./backups now, by running
# `task-api backup` in the stack's backup container. Extra arguments go to `task-api backup`.
#
#   ./scripts/backup.sh
#
# Engine and container: see scripts/container-engine.sh (CONTAINER_ENGINE, TASK_API_BACKUP_CONTAINER).
set -euo pipefail
# shellcheck source=scripts/container-engine.sh
. "$(dirname "$0")/container-engine.sh"

echo "backup: $engine exec $container /task-api backup $*"
"$engine" exec "$container" /task-api backup "$@"
echo "backup: done; the files are in the container's BACKUP_DIR (./backups in the compose stack)"
