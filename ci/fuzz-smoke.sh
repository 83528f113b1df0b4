#!/usr/bin/env bash
# CI stage: a short, bounded run of every cargo-fuzz target in fuzz/ (the request body and the
# listing's query string, parsed and validated by the server's own code). A crash, a panic or
# a failed assertion fails the stage and names the target; libFuzzer prints the input, which
# is also saved under fuzz/artifacts/<target>/.
#
# Environment: FUZZ_SECONDS per target (default 30).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

step() { printf '\n--- fuzz smoke: %s ---\n' "$*"; }
current="setup"
on_error() { printf '\nfuzz smoke FAILED at step: %s\n' "$current" >&2; }
trap on_error ERR

work="$(mktemp -d -t task-api-fuzz.XXXXXX)"
trap 'rm -rf "$work"' EXIT

current="nightly toolchain"; step "$current"
if ! rustup toolchain list | grep -q '^nightly'; then
  echo "cargo-fuzz needs a nightly Rust toolchain and none is installed:" \
    "run 'rustup toolchain install nightly'" >&2
  false
fi
cargo +nightly --version

current="install cargo-fuzz"; step "$current"
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked --quiet
cargo +nightly fuzz --version

# cargo fuzz has no --locked: check that the committed lock file needs no change first.
current="fuzz/Cargo.lock is current"; step "$current"
cargo +nightly metadata --locked --format-version 1 >/dev/null

current="build the fuzz targets"; step "$current"
cargo +nightly fuzz build

for target in $(cargo +nightly fuzz list); do
  current="fuzz $target for ${SECONDS_PER_TARGET}s"; step "$current"
  # libFuzzer adds what it finds to the first corpus directory: a scratch copy, so the
  # committed seeds stay as they are.
  mkdir -p "$work/$target"
  cp -R "corpus/$target/." "$work/$target/"
  if ! cargo +nightly fuzz run "$target" "$work/$target" -- \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    current="fuzz $target: it crashed (input saved under fuzz/artifacts/$target/)"
    false
  fi
done

trap - ERR
echo "fuzz smoke passed"
