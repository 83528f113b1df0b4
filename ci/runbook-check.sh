#!/usr/bin/env bash
# Runs RUNBOOK.md and DEPLOYMENT_CHECKLIST.md as written: every shell block marked runnable
# (an HTML comment line `<!-- runnable -->` right before a ```sh fence) is executed with bash,
# in document order, against one real compose stack in a scratch directory. Podman stands in
# for Docker: a `docker` shim first on PATH maps `docker compose …` to podman-compose and
# `docker …` to podman. A block that fails stops the run with its file, line and text.
#
#   bash ci/runbook-check.sh                      # every block (what CI runs)
#   bash ci/runbook-check.sh --except doctor      # skip blocks whose section or text matches
#   bash ci/runbook-check.sh --only 'Health|Start' # run only blocks whose section matches
#   bash ci/runbook-check.sh --list               # print the blocks found, run nothing
#
# Needs the image task-api:1.0, the postgres:16-alpine image (or its stand-in) and task-db's
# image built from it (ci/task-db-image.sh) in local storage, podman and podman-compose (ci/container-stage.sh provides all of them and calls this
# script). Settings (environment):
#   HOST_PORT=3000             host port of the API (the documents' localhost:3000 follows it)
#   CONTAINER_STAGE_CACHE=DIR  where ci/container-stage.sh keeps podman-compose
#   BLOCK_TIMEOUT=300          seconds one block may take
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="runbook check"
# shellcheck source=ci/lib.sh
. ci/lib.sh
readonly REPO=$PWD
readonly DOCUMENTS=(RUNBOOK.md DEPLOYMENT_CHECKLIST.md)
readonly CONTAINERS=(task-api task-db task-api-backup)
readonly VOLUMES=(task-db-data)
readonly NETWORKS=(task-network task-db-internal)
readonly IMAGES=(task-api:1.0 docker.io/library/postgres:16-alpine localhost/task-db:16-alpine)

CACHE=${CONTAINER_STAGE_CACHE:-/var/cache/task-api-container-stage}
HOST_PORT=${HOST_PORT:-3000}
BLOCK_TIMEOUT=${BLOCK_TIMEOUT:-300}
only="" except="" list=false
while [ $# -gt 0 ]; do
  case $1 in
    --list) list=true; shift ;;
    --only) only=${2:?--only needs a regular expression}; shift 2 ;;
    --except) except=${2:?--except needs a regular expression}; shift 2 ;;
    *) echo "runbook-check: unknown argument $1 (use --only REGEX, --except REGEX or --list)" >&2; exit 2 ;;
  esac
done


current="extraction"
# --- extraction ------------------------------------------------------------------------------
WORK=$(mktemp -d /tmp/runbook-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/blocks"
# One file per block (NNN.sh) and one line of metadata per block: "NNN<TAB>file:line<TAB>section".
extract() {
  local doc=$1
  awk -v doc="$doc" -v out="$WORK/blocks" -v start="$2" '
    function fail(msg) { printf "%s:%d: %s\n", doc, NR, msg > "/dev/stderr"; bad = 1; exit 1 }
    inblock && /^```[[:space:]]*$/ { inblock = 0; close(file); next }
    inblock { print > file; next }
    /^```/ && !marked { other = !other; next }
    other { next }
    /^#+ / { section = $0 }
    marked {
      if ($0 !~ /^```(sh|bash)[[:space:]]*$/) fail("<!-- runnable --> must be followed by a ```sh fence")
      n++; marked = 0; inblock = 1
      file = sprintf("%s/%03d.sh", out, start + n)
      printf "%03d\t%s:%d\t%s\n", start + n, doc, NR + 1, section
      next
    }
    /^<!-- runnable -->[[:space:]]*$/ { marked = 1; next }
    END { if (!bad && (inblock || marked)) fail("unterminated runnable block"); if (!bad && n == 0) fail("no runnable block") }
  ' "$REPO/$doc"
}
: >"$WORK/index"
for doc in "${DOCUMENTS[@]}"; do
  [ -f "$doc" ] || die "$doc is missing"
  count=$(wc -l <"$WORK/index")
  extract "$doc" "$count" >>"$WORK/index" || die "$doc: cannot extract its runnable blocks"
done
echo "runbook-check: $(wc -l <"$WORK/index") runnable blocks in ${DOCUMENTS[*]}"
if $list; then
  while IFS=$'\t' read -r id where section; do
    printf '\n=== %s  %s ===\n' "$where" "$section"
    cat "$WORK/blocks/$id.sh"
  done <"$WORK/index"
  exit 0
fi

current="prerequisites"
# --- prerequisites ---------------------------------------------------------------------------
command -v podman >/dev/null || die "podman is not installed (apt-get install podman)"
for tool in curl jq timeout; do
  command -v "$tool" >/dev/null || die "$tool is not installed (apt-get install $tool)"
done
COMPOSE=$CACHE/venv/bin/podman-compose
[ -x "$COMPOSE" ] || COMPOSE=$(command -v podman-compose) ||
  die "podman-compose not found in $CACHE/venv/bin or on PATH (pip install 'podman-compose==1.6.*')"
for image in "${IMAGES[@]}"; do
  podman image exists "$image" || die "image $image is missing: run ci/container-stage.sh (it builds it)"
done
for c in "${CONTAINERS[@]}"; do
  ! podman container exists "$c" || die "a container named $c already exists; remove it first (podman rm -f $c)"
done
for v in "${VOLUMES[@]}"; do
  ! podman volume exists "$v" || die "a volume named $v already exists; remove it first (podman volume rm $v)"
done
for n in "${NETWORKS[@]}"; do
  ! podman network exists "$n" || die "a network named $n already exists; remove it first (podman network rm $n)"
done
! (exec 3<>"/dev/tcp/127.0.0.1/$HOST_PORT") 2>/dev/null || die "host port $HOST_PORT is taken (set HOST_PORT)"

STACK=$WORK/task-api
cleanup() {
  local rc=$?
  set +e
  (cd "$STACK" 2>/dev/null && "$COMPOSE" down -v >/dev/null 2>&1)
  for c in "${CONTAINERS[@]}"; do podman rm -f -v -t 0 "$c" >/dev/null 2>&1; done
  for v in "${VOLUMES[@]}"; do podman volume rm -f "$v" >/dev/null 2>&1; done
  for n in "${NETWORKS[@]}"; do podman network rm -f "$n" >/dev/null 2>&1; done
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# --- the stack's directory, as users have it: the compose file, .env.example, scripts -------
mkdir -p "$STACK" "$WORK/bin"
cp compose.yaml compose.offsite.yaml .env.example "$STACK/"
cp -r scripts "$STACK/"
mkdir -p "$STACK/deploy" && cp -r deploy/postgres "$STACK/deploy/"
cat >"$WORK/bin/docker" <<SHIM
#!/usr/bin/env bash
# docker → podman, docker compose → podman-compose (test scaffolding of ci/runbook-check.sh)
if [ "\${1:-}" = compose ]; then shift; exec "$COMPOSE" "\$@"; fi
exec podman "\$@"
SHIM
chmod +x "$WORK/bin/docker"

current="blocks"
# --- execution -------------------------------------------------------------------------------
export PATH="$WORK/bin:$PATH" TASK_API_PORT=$HOST_PORT
ran=0 skipped=0
: >"$WORK/timings"
while IFS=$'\t' read -r id where section; do
  block=$WORK/blocks/$id.sh
  if [ -n "$only" ] && ! grep -Eq -- "$only" <<<"$section"; then skipped=$((skipped + 1)); continue; fi
  if [ -n "$except" ] && { grep -Eq -- "$except" <<<"$section" || grep -Eq -- "$except" "$block"; }; then
    echo "--- skipped (--except): $where $section"
    skipped=$((skipped + 1))
    continue
  fi
  [ "$HOST_PORT" = 3000 ] || sed -i "s/localhost:3000/localhost:$HOST_PORT/g" "$block"
  printf '\n=== %s  %s ===\n' "$where" "$section"
  sed 's/^/  $ /' "$block"
  started=$(date +%s%3N)
  if ! (cd "$STACK" && timeout "$BLOCK_TIMEOUT" bash -eu -o pipefail "$block") </dev/null 2>&1 | sed 's/^/  | /'; then
    printf '\nRUNBOOK CHECK FAILED at %s (%s); the block:\n' "$where" "$section" >&2
    cat -n "$block" >&2
    exit 1
  fi
  elapsed=$(($(date +%s%3N) - started))
  printf '%8d ms  %s  %s\n' "$elapsed" "$where" "$section" >>"$WORK/timings"
  ran=$((ran + 1))
done <"$WORK/index"

printf '\n=== runbook-check: %d blocks passed, %d skipped ===\n' "$ran" "$skipped"
cat "$WORK/timings"
[ "$ran" -gt 0 ] || die "no block ran"
