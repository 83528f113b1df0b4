#!/usr/bin/env bash
# Installs Barman's cloud tools (barman-cloud-backup, -restore, -wal-archive, -wal-restore) into
# a virtualenv reused across runs, and prints its bin directory on stdout (progress goes to
# stderr). Fast when the virtualenv is already there.
#
#   bash ci/barman.sh
#
# BARMAN_VENV overrides the directory. As root the default is under /var/cache, because
# PostgreSQL runs the tools (archive_command, restore_command) as the `postgres` user, who
# cannot enter root's private home; the virtualenv is built from the system's Python for the
# same reason (a pyenv Python under /root would not be reachable).
set -euo pipefail

readonly BARMAN_VERSION=3.19.1

say() { printf '%s\n' "$*" >&2; }
die() { say "barman: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  venv="${BARMAN_VENV:-/var/cache/task-api/barman-venv}"
else
  venv="${BARMAN_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/task-api/barman-venv}"
fi
python=/usr/bin/python3
[ -x "$python" ] || python=$(command -v python3) || die "python3 is missing: apt-get install python3-venv"

installed() {
  [ -x "$venv/bin/barman-cloud-wal-archive" ] &&
    "$venv/bin/python" -c 'import barman, boto3, psycopg2, dateutil' 2>/dev/null &&
    [ "$("$venv/bin/python" -c 'import barman; print(barman.__version__)')" = "$BARMAN_VERSION" ]
}

if ! installed; then
  say "installing barman $BARMAN_VERSION (cloud tools) into $venv"
  # A half-built virtualenv from an interrupted run is replaced, not patched. It is built in
  # place: its scripts' first lines name its path, so it cannot be moved afterwards.
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "python3 cannot create a virtualenv: apt-get install python3-venv"
    say "installing python3-venv"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >&2
    rm -rf "$venv"
    "$python" -m venv "$venv"
  fi
  # Barman's own requirements pull in more than the cloud tools use; these are what they need.
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    psycopg2-binary python-dateutil boto3 >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
    "barman==$BARMAN_VERSION" >&2
  installed || die "the virtualenv in $venv does not run barman $BARMAN_VERSION"
fi
# The server's user runs these tools.
chmod -R a+rX "$venv"
printf '%s\n' "$venv/bin"
