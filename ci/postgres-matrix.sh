#!/usr/bin/env bash
# PostgreSQL matrix: the full suite runs on Debian's PostgreSQL (15) in the tests step; this runs
# the suites that lean on the server hardest (contract, outage, backups, migrations, upgrade, pitr) on
# 16, 17 and 18, checks pg-sandbox's stop/crash/kill/freeze on each, then restores a backup taken
# on every major onto every other (tests/api/majors.rs) once with all four.
#
# Standalone, from the repository root:   bash ci/postgres-matrix.sh
# It reuses the test binary `cargo test` built (only the server bin directory changes, through
# TASK_API_TEST_PG_BIN) and the server builds ci/postgres-majors.sh caches.
set -euo pipefail
cd "$(dirname "$0")/.."

# The suites run per major.
readonly SUITES=(contract:: outage:: backups:: migrations:: upgrade:: pitr::)
# Their tests that never touch PostgreSQL ran in the tests step: skipped here, together with
# every test named after SQLite (the ::sqlite side of for_each_backend! and sqlite_ tests).
# Each name is checked, so a renamed test fails this stage instead of running again unseen.
readonly SQLITE_ONLY=(
  backups::a_backup_killed_midway_leaves_nothing_that_passes_for_a_backup
  backups::a_failing_schedule_is_counted_retried_and_does_not_hurt_the_api
  backups::a_full_disk_fails_the_backup_cleanly
  backups::damaged_or_foreign_files_are_refused_and_the_database_is_untouched
  backups::list_verify_and_prune_report_and_keep_what_they_should
  backups::restore_refuses_a_non_empty_database_without_force_and_replaces_it_with_force
  backups::scheduled_backups_run_in_serve_and_standalone_and_report_their_outcome
  upgrade::migrate_says_whether_it_backed_up_first
)

say() { printf '%s\n' "$*"; }
die() { say "postgres matrix: $*" >&2; exit 1; }

# The major the tests step used: the same rule as the tests (TASK_API_TEST_PG_BIN, else the
# newest Debian server).
if [ -n "${TASK_API_TEST_PG_BIN:-}" ]; then
  base="$TASK_API_TEST_PG_BIN"
else
  base=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1)
fi
if [ -z "$base" ] || [ ! -x "$base/initdb" ]; then
  die "no PostgreSQL server under /usr/lib/postgresql/*/bin: apt-get install postgresql"
fi

say "--- installing PostgreSQL 16, 17 and 18 (ci/postgres-majors.sh)"
# A plain substitution, so its failure stops this script.
installed=$(bash ci/postgres-majors.sh)
mapfile -t others <<<"$installed"

say "--- building the tests once (nothing to do after cargo test)"
cargo test --locked --test api --no-run
cargo test --locked -p pg-sandbox --no-run
listed=$(cargo test --locked --test api -q -- --list "${SUITES[@]}")
skips=(--skip sqlite)
for name in "${SQLITE_ONLY[@]}"; do
  grep -qxF "$name: test" <<<"$listed" \
    || die "$name is no longer a test: update SQLITE_ONLY in ci/postgres-matrix.sh"
  skips+=(--skip "$name")
done

summary=()
for bin in "${others[@]}"; do
  version=$("$bin/postgres" --version | awk '{print $3}')
  say "--- PostgreSQL $version ($bin)"
  start=$(date +%s)
  TASK_API_TEST_PG_BIN="$bin" cargo test --locked -q -p pg-sandbox
  TASK_API_TEST_PG_BIN="$bin" cargo test --locked --test api -- "${SUITES[@]}" "${skips[@]}"
  seconds=$(($(date +%s) - start))
  say "  PostgreSQL $version: ${seconds} s"
  summary+=("PostgreSQL $version: ${seconds} s")
done

say "--- a backup from each major restores on every major (majors::)"
start=$(date +%s)
all=$(IFS=:; printf '%s' "$base:${others[*]}")
TASK_API_TEST_PG_MAJORS="$all" cargo test --locked --test api -- majors:: --nocapture
summary+=("cross-major backups: $(($(date +%s) - start)) s")

say "--- postgres matrix passed"
printf '  %s\n' "${summary[@]}"
