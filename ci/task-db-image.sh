#!/usr/bin/env bash
# Builds the compose stack's database image (deploy/postgres) as task-db:16-alpine, FROM the
# local postgres:16-alpine stand-in (bash ci/standins/build.sh first). Rebuilt only when its
# sources change (their hash is a label of the image).
#
# Test scaffolding: on machines whose HTTPS goes through a proxy with its own certificate
# authority, pip inside the build trusts the host's CA bundle through a mounted pip.conf;
# nothing of it stays in the image. Users build with plain `docker compose build`.
#
# From the repository root, as root, with podman:   bash ci/task-db-image.sh
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="task-db image"
# shellcheck source=ci/lib.sh
. ci/lib.sh
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

readonly DB_IMAGE=localhost/task-db:16-alpine
readonly HOST_CA=/etc/ssl/certs/ca-certificates.crt
WORK=$(mktemp -d /tmp/task-db-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

current="build"
podman image exists docker.io/library/postgres:16-alpine ||
  die "no postgres:16-alpine image: run bash ci/standins/build.sh first"
sources=$( (cat deploy/postgres/*; podman image inspect -f '{{.Id}}' docker.io/library/postgres:16-alpine) |
  sha256sum | cut -c1-16)
if podman image exists "$DB_IMAGE" && [ "$(podman image inspect -f \
  '{{index .Labels "task-api.db-image-sources"}}' "$DB_IMAGE")" = "$sources" ]; then
  note "$DB_IMAGE: cached"
  exit 0
fi
mounts=()
if [ -r "$HOST_CA" ]; then
  printf '[global]\ncert = /run/host-ca.crt\n' >"$WORK/pip.conf"
  mounts=(-v "$WORK/pip.conf:/etc/pip.conf:ro" -v "$HOST_CA:/run/host-ca.crt:ro")
fi
start=$(now_ms)
podman build --pull=never --format docker -q "${mounts[@]}" \
  --label "task-api.db-image-sources=$sources" -t "$DB_IMAGE" deploy/postgres >"$WORK/build.log" 2>&1 ||
  die "podman build of deploy/postgres failed: $(tail -n 20 "$WORK/build.log")"
note "$DB_IMAGE: built in $(($(now_ms) - start)) ms"
