#!/usr/bin/env bash
# No import cycle between the crate's modules: cargo-cycles reads every `use` of src/ and fails
# on a circle. The check is first shown to fail on a copy with a cycle planted, so a tool that
# stopped seeing cycles cannot pass silently.
set -euo pipefail
cd "$(dirname "$0")/.."
STAGE="module cycles"
# shellcheck source=ci/lib.sh
. ci/lib.sh
trap 'failure_banner $?' EXIT

CYCLES_VERSION=0.2.0

step "cargo-cycles $CYCLES_VERSION"
if ! cargo install --list | grep -qxF "cargo-cycles v$CYCLES_VERSION:"; then
  cargo install "cargo-cycles@$CYCLES_VERSION" --locked --quiet
fi

work=$(mktemp -d)
cleanup() { rm -rf "$work"; }
trap 'cleanup; failure_banner $?' EXIT

# cargo-cycles names modules after the directory it is given and reads one package's src/, so
# each check runs on a copy laid out as a lone `task_api` package.
copy_crate() { # DIR
  mkdir -p "$1/task_api"
  cp -r src "$1/task_api/src"
  printf '[package]\nname = "task_api"\nversion = "0.0.0"\nedition = "2024"\n' >"$1/task_api/Cargo.toml"
}

# cycles DIR: runs the tool on the copy in DIR; its exit code says whether a cycle was found.
cycles() {
  (cd "$1/task_api" && cargo-cycles --workspace "$1/task_api" 2>&1)
}

step "a planted cycle is caught"
copy_crate "$work/planted"
# config sits below storage; one import of storage from config closes a circle.
sed -i '0,/^use /s//use crate::storage::Database as _;\nuse /' "$work/planted/task_api/src/config/mod.rs"
if report=$(cycles "$work/planted"); then
  printf '%s\n' "$report"
  die "cargo-cycles passed a crate with a planted import cycle (config -> storage -> config)"
fi
grep -q 'task_api::config ->' <<<"$report" || die "the planted cycle is not the one reported: $report"
note "planted config -> storage -> config: reported"

step "src/ has no import cycle"
copy_crate "$work/clean"
if ! report=$(cycles "$work/clean"); then
  printf '%s\n' "$report" | grep -v '^\s*$' >&2
  die "import cycle between modules (see above): make the lower module stop importing the upper"
fi
note "no circular module dependencies"
