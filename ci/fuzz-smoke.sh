#!/usr/bin/env bash
# CI stage: a short, bounded run of every cargo-fuzz target in fuzz/ (the request body and the
# listing's query string, parsed and validated by the server's own code). A crash, a panic or
# a failed assertion fails the stage and names the target; libFuzzer prints the input, which
# is also saved under fuzz/artifacts/<target>/.
#
# Environment: FUZZ_SECONDS per target (default 30).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="fuzz smoke"
# shellcheck source=ci/lib.sh
. ci/lib.sh
cd fuzz

SECONDS_PER_TARGET="${FUZZ_SECONDS:-30}"

trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
work="$(mktemp -d -t task-api-fuzz.XXXXXX)"
cleanup() {
  local rc=$?
  rm -rf "$work"
  failure_banner "$rc"
}
trap cleanup EXIT

step "nightly toolchain"
rustup toolchain list | grep -q '^nightly' ||
  die "cargo-fuzz needs a nightly Rust toolchain and none is installed: run 'rustup toolchain install nightly'"
cargo +nightly --version

step "install cargo-fuzz"
command -v cargo-fuzz >/dev/null || cargo +nightly install cargo-fuzz --locked --quiet
cargo +nightly fuzz --version

# cargo fuzz has no --locked: check that the committed lock file needs no change first.
step "fuzz/Cargo.lock is current"
cargo +nightly metadata --locked --format-version 1 >/dev/null

step "build the fuzz targets"
cargo +nightly fuzz build

for target in $(cargo +nightly fuzz list); do
  step "fuzz $target for ${SECONDS_PER_TARGET}s"
  # libFuzzer adds what it finds to the first corpus directory: a scratch copy, so the
  # committed seeds stay as they are.
  mkdir -p "$work/$target"
  cp -R "corpus/$target/." "$work/$target/"
  cargo +nightly fuzz run "$target" "$work/$target" -- \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 ||
    die "fuzz $target: it crashed (input saved under fuzz/artifacts/$target/)"
done

echo "fuzz smoke passed"
