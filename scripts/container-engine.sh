# shellcheck shell=bash
# Shared by backup.sh and restore.sh (sourced, not run): picks the container engine and the
# container that runs the task-api commands.
#
# CONTAINER_ENGINE=docker|podman  the engine (default: docker when its daemon answers, else podman)
# TASK_API_BACKUP_CONTAINER=NAME  the container (default: task-api-backup, compose.yaml's backup
#                                 service, which has ./backups mounted on /backups)

engine=${CONTAINER_ENGINE:-}
if [ -z "$engine" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    engine=docker
  elif command -v podman >/dev/null 2>&1; then
    engine=podman
  else
    echo "$(basename "$0"): neither a running docker nor podman found; set CONTAINER_ENGINE" >&2
    exit 2
  fi
fi
case "$engine" in
  docker | podman) ;;
  *)
    echo "$(basename "$0"): CONTAINER_ENGINE must be docker or podman, not '$engine'" >&2
    exit 2
    ;;
esac

container=${TASK_API_BACKUP_CONTAINER:-task-api-backup}
if [ "$("$engine" container inspect -f '{{.State.Running}}' "$container" 2>/dev/null)" != true ]; then
  if [ "$engine" = docker ]; then up="docker compose up -d"; else up="podman-compose up -d"; fi
  echo "$(basename "$0"): container $container is not running; start the stack first: $up" >&2
  exit 1
fi
