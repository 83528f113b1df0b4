#!/usr/bin/env bash
# Supply-chain checks of one image build, run by the container stage right after it builds:
#   1. the shipped binary carries its dependency list (cargo auditable's .dep-v0 section);
#   2. `cargo audit bin` finds no known vulnerability in exactly those crates (offline database);
#   3. a CycloneDX SBOM is written for the build and lists every crate in the binary.
#
# Usage: ci/image-supply-chain.sh IMAGE OUT_DIR    (from the repository root; podman)
# Settings: ADVISORY_DB (default ../shared/advisory-db)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="supply chain"
# shellcheck source=ci/lib.sh
. ci/lib.sh

readonly CARGO_CYCLONEDX_VERSION=0.5.9
readonly RUST_AUDIT_INFO_VERSION=0.5.4
readonly TARGET=x86_64-unknown-linux-gnu

image=${1:?usage: ci/image-supply-chain.sh IMAGE OUT_DIR}
out=${2:?usage: ci/image-supply-chain.sh IMAGE OUT_DIR}
db=$(realpath -m "${ADVISORY_DB:-../shared/advisory-db}")
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

current="tools"
[ -d "$db" ] || die "no advisory database at $db (set ADVISORY_DB)"
installed() { cargo install --list | grep -qxF "$1 v$2:"; }
install_tool() { # crate version
  if ! installed "$1" "$2"; then
    printf '  installing %s %s\n' "$1" "$2"
    cargo install --locked --quiet "$1@$2" || die "cargo install $1@$2 failed"
  fi
}
command -v cargo-audit >/dev/null || cargo install --locked --quiet cargo-audit
install_tool rust-audit-info "$RUST_AUDIT_INFO_VERSION"
install_tool cargo-cyclonedx "$CARGO_CYCLONEDX_VERSION"

mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

current="embedded dependency list, cargo audit bin"
# The check must be able to fail: a binary without the section is refused.
if rust-audit-info "$(command -v podman)" >/dev/null 2>&1; then
  die "rust-audit-info accepted a binary that has no embedded dependency data"
fi
# README's own commands ("What is inside"), run as written: podman for docker, and cargo audit
# pointed at the offline database.
block=$(awk '/^### What is inside/ { found = 1 }
  found && /^```sh$/ { inside = 1; next }
  inside && /^```$/ { exit }
  inside { print }' README.md)
[ -n "$block" ] || die "README.md has no shell block under \"### What is inside\""
[ "$image" = task-api:1.0 ] || block=${block//task-api:1.0/$image}
# From the repository root, so .cargo/audit.toml (its one justified ignore) applies.
rm -f task-api-bin
(
  # shellcheck disable=SC2317 # called by the eval below
  docker() { podman "$@"; }
  # shellcheck disable=SC2317
  cargo() {
    if [ "$1" = audit ]; then
      shift
      command cargo audit --db "$db" --no-fetch "$@"
    else
      command cargo "$@"
    fi
  }
  eval "$block"
) || die "README's image check failed: no binary copied out, or cargo audit bin found a vulnerable crate"
mv task-api-bin "$work/task-api"
rust-audit-info "$work/task-api" >"$work/embedded.json" ||
  die "the image's /task-api has no embedded dependency data: was it built with cargo auditable?"
jq -r '.packages[] | select(.source != "local" and .kind != "build") | "\(.name) \(.version)"' "$work/embedded.json" |
  sort -u >"$work/embedded.txt"
crates=$(wc -l <"$work/embedded.txt")
[ "$crates" -gt 50 ] || die "only $crates crates embedded; expected the full dependency tree"
grep -q '^axum ' "$work/embedded.txt" || die "axum missing from the embedded dependency list"
printf '  %s crates recorded in the binary\n' "$crates"

current="over-reported crates"
# The embedded list comes from `cargo metadata` and names sqlx-mysql (and through it rsa, whose
# advisory .cargo/audit.toml ignores) although the build never compiles them: prove that here.
for crate in rsa sqlx-mysql; do
  [ -z "$(cargo tree --locked --target "$TARGET" -e normal -i "$crate" 2>/dev/null)" ] ||
    die "$crate is compiled into task-api: the RUSTSEC-2023-0071 ignore no longer holds"
done

current="CycloneDX SBOM"
image_id=$(podman image inspect -f '{{.Id}}' "$image")
cargo cyclonedx --quiet --format json --spec-version 1.5 --describe binaries --no-build-deps \
  --target "$TARGET" >/dev/null
# --describe binaries writes one file per binary, named after it.
sbom=task-api_bin.cdx.json
# The other workspace member (the CI fault harness) gets one too; it is not in the image.
rm -f tools/fault-harness/fault-harness_bin.cdx.json
[ -f "$sbom" ] || die "cargo cyclonedx wrote no SBOM"
dest="$out/task-api-${image_id:0:12}.cdx.json"
# Ties the SBOM to the image it describes.
jq --arg id "$image_id" --arg image "$image" \
  '.metadata.properties = ((.metadata.properties // []) + [
     {name: "oci:image:id", value: $id}, {name: "oci:image:name", value: $image}])' \
  "$sbom" >"$dest"
rm -f "$sbom"
jq -e '.bomFormat == "CycloneDX" and .specVersion == "1.5" and .metadata.component.name == "task-api"' \
  "$dest" >/dev/null ||
  die "$dest is not a CycloneDX 1.5 document"
jq -r '.components[]? | "\(.name) \(.version)"' "$dest" | sort -u >"$work/sbom.txt"
missing=$(comm -23 "$work/embedded.txt" "$work/sbom.txt")
[ -z "$missing" ] || die "crates in the binary but not in the SBOM: $(tr '\n' ' ' <<<"$missing")"
printf '  SBOM %s: %s components, every crate of the binary listed\n' \
  "$dest" "$(wc -l <"$work/sbom.txt")"
