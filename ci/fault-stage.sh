#!/usr/bin/env bash
# Fault stage of CI: the fault-injection harness (tools/fault-harness) against the real task-api
# binary and a private PostgreSQL cluster on this host, loopback only. Ten clients create tasks
# while the API is killed (-9) and stopped (SIGTERM) and PostgreSQL is crashed and frozen; the
# run fails if one acknowledged task is lost, anything unexpected or duplicated appears, or an
# outage was not answered with a quick 503 and a quick recovery.
#
# Standalone, from the repository root:   bash ci/fault-stage.sh
# Settings (environment): FAULT_DURATION (default 180s), FAULT_COUNT (default 30).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="fault stage"
# shellcheck source=ci/lib.sh
. ci/lib.sh
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
trap 'failure_banner $?' EXIT

# Nothing in this stage runs ps, pgrep, pkill, free or top: the harness and pg-sandbox read
# /proc themselves, so procps is not needed.
step "prerequisites (PostgreSQL server binaries)"
missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
apt_install "${missing[@]}"

# The container stage runs this same binary (.ci/run passes it on as FAULT_HARNESS).
step "build task-api and fault-harness"
cargo build --locked -p task-api -p fault-harness
cargo test --locked -p fault-harness
target/debug/fault-harness --help >/dev/null

step "host faults: kill -9, SIGTERM, PostgreSQL crash and freeze under load"
start=$(date +%s)
target/debug/fault-harness host --api-bin target/debug/task-api \
  --duration "${FAULT_DURATION:-180s}" --faults "${FAULT_COUNT:-30}"
printf '  fault stage: %s s\n' "$(($(date +%s) - start))"
