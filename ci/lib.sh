# shellcheck shell=bash
# Shared by the CI scripts (sourced, not run): step banners, failure messages, prerequisites.
# A script sets STAGE (its name in banners, e.g. "container stage") before sourcing this file;
# .ci/run leaves it empty. Every failure names the step it happened in.

STAGE=${STAGE:-}
current="setup"

# step NAME: prints a banner; later failures name this step.
step() {
  current=$1
  printf '\n=== %s%s ===\n' "${STAGE:+$STAGE: }" "$current"
}

note() { printf '  %s\n' "$*"; }

die() {
  printf 'FAILED (%s%s): %s\n' "${STAGE:+$STAGE: }" "$current" "$*" >&2
  exit 1
}

now_ms() { date +%s%3N; }

# For `trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR` (with set -E, so functions are seen too):
# the command that failed, where, and in which step.
on_error() {
  printf 'FAILED (%s%s): command failed at %s line %s: %s\n' "${STAGE:+$STAGE: }" "$current" \
    "${BASH_SOURCE[1]:-?}" "$1" "$2" >&2
}

# The last line of a failed run, for an EXIT or ERR trap: `failure_banner $?`.
failure_banner() {
  local name=${STAGE:-CI}
  [ "$1" -eq 0 ] || printf '\n%s FAILED at step: %s (exit %s)\n' "${name^^}" "$current" "$1" >&2
}

# apt_install [APT-OPTION...] PACKAGE...: installs these Debian packages; callers pass only
# what is missing (CI machines start fresh, a developer's machine usually has everything).
apt_install() {
  [ $# -gt 0 ] || return 0
  note "installing: $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# install_debs PACKAGE...: installs those of these Debian packages that are not installed.
install_debs() {
  local absent=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || absent+=("$p"); done
  apt_install "${absent[@]}"
}

# wait_until SECONDS INTERVAL MESSAGE COMMAND...: runs COMMAND every INTERVAL seconds until it
# succeeds; after SECONDS, fails the step with MESSAGE.
wait_until() {
  local deadline=$(($(date +%s) + $1)) interval=$2 message=$3
  shift 3
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || die "$message"
    sleep "$interval"
  done
}

# The lines of a marked block of a Markdown file, without the fences.
markdown_block() {
  local name=$1 file=$2
  sed -n "/<!-- begin: $name/,/<!-- end: $name/p" "$file" | sed '/^ *```/d; /^ *<!--/d'
}
