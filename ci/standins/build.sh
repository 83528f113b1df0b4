#!/usr/bin/env bash
# Local stand-ins for the public base images the Dockerfile and compose.yaml name, tagged with
# the same names: no registry is reachable on CI machines. Each is built once and then found in
# local image storage; the PostgreSQL one is rebuilt whenever its sources change.
#
# From the repository root, as root, with podman and debootstrap (ci/provision-podman.sh):
#   bash ci/standins/build.sh
set -Eeuo pipefail
cd "$(dirname "$0")/../.."
STAGE="stand-ins"
# shellcheck source=ci/lib.sh
. ci/lib.sh
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

readonly DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
readonly RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
readonly POSTGRES_IMAGE=docker.io/library/postgres:16-alpine
WORK=$(mktemp -d /tmp/standins.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The host's Rust toolchain is copied into the rust stand-in: it must be the Dockerfile's.
rust_toolchain() {
  command -v rustc >/dev/null || die "no rust toolchain on this machine: install rustup and Rust 1.95"
  local version
  version=$(rustc --version)
  note "$version"
  case "$version" in
    "rustc 1.95."*) ;;
    *) die "the rust stand-in must be 1.95 (the Dockerfile's rust:1.95-slim-bookworm), found: $version" ;;
  esac
}

standins() {
  if podman image exists "$DEBIAN_IMAGE"; then
    note "$DEBIAN_IMAGE: cached"
  else
    local root=$WORK/debian-root start
    start=$(now_ms)
    debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null ||
      die "debootstrap of Debian bookworm failed"
    rm -f "$root/etc/apt/sources.list"
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
    tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
    rm -rf "$root"
    note "$DEBIAN_IMAGE: built in $(($(now_ms) - start)) ms"
  fi
  if podman image exists "$RUST_IMAGE"; then
    note "$RUST_IMAGE: cached"
  else
    local sysroot rustup_bin start
    sysroot=$(readlink -f "$(rustc --print sysroot)")
    rustup_bin=$(readlink -f "$(command -v rustup)")
    start=$(now_ms)
    podman build --pull=never -q -t "$RUST_IMAGE" \
      -v "$sysroot:/host-toolchain:ro" -v "$rustup_bin:/host-rustup:ro" \
      ci/standins/rust >/dev/null || die "building the $RUST_IMAGE stand-in failed"
    note "$RUST_IMAGE: built in $(($(now_ms) - start)) ms"
  fi
  # The stand-in is rebuilt whenever its sources change (their hash is a label of the image).
  local pg_sources
  pg_sources=$(cat ci/standins/postgres/* | sha256sum | cut -c1-16)
  if podman image exists "$POSTGRES_IMAGE" && [ "$(podman image inspect -f \
    '{{index .Labels "task-api.standin-sources"}}' "$POSTGRES_IMAGE")" = "$pg_sources" ]; then
    note "$POSTGRES_IMAGE: cached"
  else
    local start
    start=$(now_ms)
    podman build --pull=never -q -t "$POSTGRES_IMAGE" --label "task-api.standin-sources=$pg_sources" \
      ci/standins/postgres >/dev/null ||
      die "building the $POSTGRES_IMAGE stand-in failed"
    note "$POSTGRES_IMAGE: built in $(($(now_ms) - start)) ms (PostgreSQL 15 from Debian)"
  fi
}

current="host rust toolchain"
rust_toolchain
current="images"
standins
