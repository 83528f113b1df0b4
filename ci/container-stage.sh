#!/usr/bin/env bash
# Container stage of CI: builds the shipped Dockerfile once as task-api:1.0 and proves, with real
# containers (podman, which takes Docker's arguments), the workflow users run with Docker:
# `docker run` with the documented flags, --read-only, the compose stack and its backups, and
# the Kubernetes Deployment of deploy/k8s run by `podman kube play`.
#
# Standalone, from the repository root, as root on Debian 12:   bash ci/container-stage.sh
#
# No registry is needed: public base images the Dockerfile names are replaced by local
# stand-ins tagged with the same names (built once, then cached in local image storage).
#
# Settings (environment):
#   HOST_PORT=3000              host port for the API (default 3000, another one if taken)
#   CONTAINER_STAGE_CACHE=DIR   where the Python tools are kept between runs
#   FAULT_HARNESS=PATH          a fault-harness binary built earlier in this CI run (otherwise
#                               this stage builds tools/fault-harness)
#   FAULT_DURATION=75s, FAULT_COUNT=9   length of the fault-harness run and its least faults
#
# The behaviour checks with load and verdicts (burst, SIGTERM under load, faults, the disaster
# exercise) are subcommands of tools/fault-harness; this script sets up what they run against.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="container stage"
# shellcheck source=ci/lib.sh
. ci/lib.sh

readonly IMAGE=task-api:1.0
readonly DEBUG_IMAGE=task-api:1.0-debug
readonly CONTAINERS=(task-api task-db task-api-backup task-api-debug)
readonly VOLUMES=(task-db-data task-api-data task-api-backups)
readonly NETWORKS=(task-network task-db-internal)
readonly MEMORY_LIMIT_BYTES=$((512 * 1024 * 1024))

CACHE=${CONTAINER_STAGE_CACHE:-/var/cache/task-api-container-stage}
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
WORK=$(mktemp -d /tmp/container-stage.XXXXXX)
# A fresh password per run: the secret checks look for this exact string.
DB_PASSWORD="stage-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
HOST_PORT=${HOST_PORT:-}
API=""
HARNESS=""
own_names=false
compose_dir=""
kube_manifests=()
declare -A REPORT=()

# --- cleanup ---------------------------------------------------------------------------------

compose() { "$CACHE/venv/bin/podman-compose" "$@"; }

cleanup() {
  local rc=$?
  set +e
  trap - EXIT ERR
  for m in "${kube_manifests[@]}"; do podman kube down "$m" >/dev/null 2>&1; done
  if [ -n "$compose_dir" ] && [ -f "$compose_dir/compose.yaml" ]; then
    (cd "$compose_dir" && compose down -v >/dev/null 2>&1)
  fi
  if $own_names; then
    for c in "${CONTAINERS[@]}"; do podman rm -f -v -t 0 "$c" >/dev/null 2>&1; done
    for v in "${VOLUMES[@]}"; do podman volume rm -f "$v" >/dev/null 2>&1; done
    for n in "${NETWORKS[@]}"; do podman network rm -f "$n" >/dev/null 2>&1; done
  fi
  rm -rf "$WORK"
  failure_banner "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

# --- helpers ---------------------------------------------------------------------------------

# HTTP request to the API: prints the status code, leaves the body in $WORK/body.
http() {
  local method=$1 path=$2 body=${3:-}
  local args=(-sS -o "$WORK/body" -w '%{http_code}' -X "$method" --max-time 10)
  if [ -n "$body" ]; then
    args+=(-H 'Content-Type: application/json' -d "$body")
  fi
  curl "${args[@]}" "$API$path"
}
expect() {
  local want=$1 method=$2 path=$3 body=${4:-} got
  got=$(http "$method" "$path" "$body") || die "$method $path: no answer"
  [ "$got" = "$want" ] || die "$method $path answered $got, expected $want: $(head -c 400 "$WORK/body")"
}
field() { jq -er "$1" "$WORK/body"; }

wait_http_healthy() {
  local deadline=$(($(date +%s) + ${1:-60}))
  until curl -fsS --max-time 2 -o /dev/null "$API/health" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the API did not become healthy at $API/health"
    sleep 0.05
  done
}
wait_db_ready() {
  local deadline=$(($(date +%s) + 90))
  until podman exec task-db pg_isready -q -U taskuser -d taskmanager 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "task-db did not become ready"
    sleep 0.5
  done
}
wait_running() {
  local deadline=$(($(date +%s) + 60))
  until [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "container $1 is not running"
    sleep 0.5
  done
}
pid_of() { podman inspect -f '{{.State.Pid}}' "$1"; }
human() { numfmt --to=iec-i --suffix=B "$1"; }

# The API container exactly as users start it (README "Containers"), plus any extra flags.
run_api() {
  podman run -d --name task-api --network task-network \
    -e DB_HOST=task-db -e DB_PORT=5432 -e DB_NAME=taskmanager -e DB_USER=taskuser \
    -e DB_PASSWORD="$DB_PASSWORD" -e PORT=3000 -p "$HOST_PORT:3000" \
    --cpus 0.5 --memory 512m --tmpfs /tmp:rw,noexec,nosuid,size=100m \
    --restart unless-stopped "$@" "$IMAGE" >/dev/null
}

# --- steps -----------------------------------------------------------------------------------

prerequisites() {
  step "prerequisites (ci/provision-podman.sh: podman, runc, dnsname, debootstrap, python tools)"
  CONTAINER_STAGE_CACHE=$CACHE bash ci/provision-podman.sh
}

# The harness of the behaviour checks: the binary this CI run's fault stage built, or a build.
harness() {
  step "fault-harness binary"
  if [ -n "${FAULT_HARNESS:-}" ]; then
    [ -x "$FAULT_HARNESS" ] ||
      die "FAULT_HARNESS=$FAULT_HARNESS is not an executable: build it (cargo build --locked -p fault-harness)"
    HARNESS=$FAULT_HARNESS
    note "built earlier in this run: $HARNESS"
  else
    cargo build --locked -q -p fault-harness || die "cannot build tools/fault-harness"
    HARNESS=target/debug/fault-harness
    note "built: $HARNESS"
  fi
  "$HARNESS" --version
}

preflight() {
  step "preflight (no leftovers, free port)"
  local c v n
  for c in "${CONTAINERS[@]}"; do
    ! podman container exists "$c" || die "a container named $c already exists; remove it first (podman rm -f $c)"
  done
  for v in "${VOLUMES[@]}"; do
    ! podman volume exists "$v" || die "a volume named $v already exists; remove it first (podman volume rm $v)"
  done
  for n in "${NETWORKS[@]}"; do
    ! podman network exists "$n" || die "a network named $n already exists; remove it first (podman network rm $n)"
  done
  own_names=true
  port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
  if [ -z "$HOST_PORT" ]; then
    HOST_PORT=3000
    while ! port_free "$HOST_PORT"; do HOST_PORT=$((HOST_PORT + 1)); done
  fi
  port_free "$HOST_PORT" || die "host port $HOST_PORT is taken"
  API="http://127.0.0.1:$HOST_PORT"
  note "API will be published on host port $HOST_PORT"
}

# Shell scripts are checked by .ci/run's shellcheck step, with every other script.
lint() {
  step "lint (hadolint, checkov)"
  "$CACHE/venv/bin/hadolint" --failure-threshold info Dockerfile
  note "hadolint: clean"
  # checkov has no compose policies: it scans compose.yaml and .env.example for secrets only,
  # and compose.yaml's hardening is asserted on the running stack instead (step "compose").
  # Without a network namespace's network: checkov would otherwise call its vendor's API.
  BC_SKIP_MAPPING=TRUE unshare --net "$CACHE/venv/bin/checkov" --skip-download --quiet --compact \
    --framework dockerfile secrets -f Dockerfile -f compose.yaml -f .env.example
  note "checkov: clean"
}

standins() {
  step "stand-ins for public base images (ci/standins/build.sh, cached)"
  bash ci/standins/build.sh
}

build_image() {
  step "build $IMAGE once (and the debug target)"
  cargo fetch --locked
  # The build runs offline: installing the Dockerfile's cargo-auditable here first puts its
  # crates in the registry mounted into the build.
  local auditable
  auditable=$(sed -n 's/^ARG CARGO_AUDITABLE_VERSION=//p' Dockerfile)
  [ -n "$auditable" ] || die "the Dockerfile names no CARGO_AUDITABLE_VERSION"
  cargo auditable --version 2>/dev/null | grep -qF "$auditable" ||
    cargo install --locked --quiet "cargo-auditable@$auditable" ||
    die "cargo install cargo-auditable@$auditable failed"
  local offline=$WORK/cargo-offline.toml start
  # Offline through a mounted cargo config: nothing about the build machine ends up in the image.
  printf '[net]\noffline = true\n' >"$offline"
  local build_args=(--pull=never --format docker
    -v "$CARGO_HOME/registry:/usr/local/cargo/registry"
    -v "$offline:/usr/local/cargo/config.toml:ro")
  start=$(now_ms)
  podman build "${build_args[@]}" -t "$IMAGE" . || die "podman build of $IMAGE failed"
  REPORT[build]="$(($(now_ms) - start)) ms"
  start=$(now_ms)
  podman build "${build_args[@]}" --target debug -t "$DEBUG_IMAGE" . >/dev/null ||
    die "podman build --target debug failed"
  REPORT[debug_build]="$(($(now_ms) - start)) ms"
  local size
  size=$(podman image inspect -f '{{.Size}}' "$IMAGE")
  REPORT[size]="$(human "$size") ($size bytes)"
  note "image size: ${REPORT[size]}"
  [ "$size" -lt $((20 * 1000 * 1000)) ] || die "$IMAGE is ${REPORT[size]}, the goal is under 20 MB"
}

supply_chain() {
  step "supply chain of the image (cargo auditable data, cargo audit bin, CycloneDX SBOM)"
  bash ci/image-supply-chain.sh "$IMAGE" "${SBOM_DIR:-target/sbom}"
}

image_contract() {
  step "image contract (user, port, entrypoint, health check, labels, no secret)"
  local cfg
  cfg=$(podman image inspect "$IMAGE")
  [ "$(jq -r '.[0].Config.User' <<<"$cfg")" = "1001:1001" ] || die "image USER is not 1001:1001"
  jq -e '.[0].Config.ExposedPorts | has("3000/tcp")' <<<"$cfg" >/dev/null || die "3000/tcp not exposed"
  [ "$(jq -c '.[0].Config.Entrypoint' <<<"$cfg")" = '["/task-api"]' ] || die "ENTRYPOINT is not [\"/task-api\"]"
  [ "$(jq -c '.[0].Config.Cmd' <<<"$cfg")" = '["serve"]' ] || die "CMD is not [\"serve\"]"
  jq -e '.[0].Healthcheck.Test | index("healthcheck")' <<<"$cfg" >/dev/null ||
    die "no HEALTHCHECK running task-api healthcheck (was it built with --format docker?)"
  for label in version source licenses; do
    jq -e --arg l "org.opencontainers.image.$label" '.[0].Config.Labels[$l] | length > 0' <<<"$cfg" \
      >/dev/null || die "OCI label org.opencontainers.image.$label missing"
  done
  if jq -r '.[0].Config.Env[]' <<<"$cfg" | grep -Ei 'PASSWORD|SECRET|TOKEN'; then
    die "the image's default environment names a secret"
  fi
  if podman history --no-trunc --format '{{.CreatedBy}}' "$IMAGE" | grep -Ei 'PASSWORD=|SECRET=|TOKEN='; then
    die "a layer's history carries a secret"
  fi
  # This run's password (given to containers below) must not be anywhere in the image either.
  if { podman history --no-trunc "$IMAGE"; podman image inspect "$IMAGE"; } | grep -qF "$DB_PASSWORD"; then
    die "the image's history or configuration holds the database password"
  fi
  note "$(jq -r '.[0].Config.Labels | to_entries | map("\(.key)=\(.value)") | join(" ")' <<<"$cfg")"
  note "history: $(podman history -q "$IMAGE" | wc -l) layers, none naming a secret"
}

start_database() {
  step "database task-db on task-network with volume task-db-data"
  podman network create task-network >/dev/null
  podman volume create task-db-data >/dev/null
  podman run -d --name task-db --network task-network \
    -e POSTGRES_DB=taskmanager -e POSTGRES_USER=taskuser -e POSTGRES_PASSWORD="$DB_PASSWORD" \
    -v task-db-data:/var/lib/postgresql/data postgres:16-alpine >/dev/null
  wait_db_ready
  note "task-db ready"
}

check_users_command() {
  step "the users' docker run command, unchanged"
  local start elapsed
  start=$(now_ms)
  run_api
  wait_http_healthy 60
  elapsed=$(($(now_ms) - start))
  podman healthcheck run task-api >/dev/null || die "podman healthcheck run task-api failed"
  [ "$(podman inspect -f '{{.State.Health.Status}}' task-api)" = healthy ] ||
    die "health status is $(podman inspect -f '{{.State.Health.Status}}' task-api)"
  podman exec task-api /task-api healthcheck | sed 's/^/  /'
  [ "$(podman inspect -f '{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}' task-api)" = "536870912 500000000" ] ||
    die "limits are not 512m and 0.5 CPU"
  REPORT[cold_start]="$elapsed ms from podman run to /health 200, healthcheck: healthy"
  note "cold start: ${REPORT[cold_start]}"

  expect 200 GET /health
  if [ "$(field .status)" != healthy ] || [ "$(field .database)" != connected ]; then
    die "/health does not report healthy/connected: $(cat "$WORK/body")"
  fi
  expect 200 GET /livez
  expect 200 GET /readyz
  expect 200 GET /metrics
  # The service reads the limits of `--memory 512m --cpus 0.5` from its own cgroup.
  grep -Eqx "container_memory_limit_bytes $MEMORY_LIMIT_BYTES(\.0)?" "$WORK/body" ||
    die "/metrics does not show the 512m limit: $(grep '^container_' "$WORK/body" || true)"
  grep -Eqx 'container_cpu_limit_cores 0\.5' "$WORK/body" ||
    die "/metrics does not show the 0.5 CPU limit: $(grep '^container_' "$WORK/body" || true)"
  note "/metrics: $(grep -E '^container_(memory_limit_bytes|cpu_limit_cores)' "$WORK/body" | tr '\n' ' ')"
  expect 200 GET /openapi.json

  local id
  expect 201 POST /tasks '{"title": "Container check", "description": "written through task-api:1.0"}'
  id=$(field .data.id)
  expect 200 GET "/tasks/$id"
  [ "$(field .data.title)" = "Container check" ] || die "GET /tasks/$id returned another task"
  expect 200 GET '/tasks?status=pending&q=container'
  [ "$(field .pagination.total)" -ge 1 ] || die "the listing does not find the new task"
  expect 200 PUT "/tasks/$id" '{"title": "Container check", "status": "in-progress"}'
  expect 200 PATCH "/tasks/$id" '{"status": "completed"}'
  [ "$(field .data.status)" = completed ] || die "PATCH did not change the status"
  expect 200 DELETE "/tasks/$id"
  expect 404 GET "/tasks/$id"
  note "CRUD: create, read, list, replace, patch, delete, 404 after delete"

  # Runs as 1001: what the engine was told, what the process is, what `docker top` shows.
  [ "$(podman inspect -f '{{.Config.User}}' task-api)" = "1001:1001" ] || die "container user is not 1001:1001"
  grep -Eq '^Uid:\s+1001\s+1001\s+1001\s+1001$' "/proc/$(pid_of task-api)/status" ||
    die "the task-api process does not run as UID 1001"
  grep -Eq '^Gid:\s+1001\s+1001\s+1001\s+1001$' "/proc/$(pid_of task-api)/status" ||
    die "the task-api process does not run as GID 1001"
  podman top task-api | tee "$WORK/top" | sed 's/^/  /'
  awk 'NR == 2 { print $1 }' "$WORK/top" | grep -Eq '^(task-api|1001)$' || die "podman top shows another user"

  # Reads and writes go to PostgreSQL; the container's own layer stays as built.
  podman diff task-api >"$WORK/diff"
  grep -Ev '^[AC] /(etc(/(hosts|hostname|resolv\.conf))?|run(/\.containerenv)?)$' "$WORK/diff" \
    >"$WORK/diff-unexpected" || true
  [ ! -s "$WORK/diff-unexpected" ] || die "files changed in the container layer: $(tr '\n' ' ' <"$WORK/diff-unexpected")"
  note "podman diff: nothing but the engine's own mount points ($(tr '\n' ' ' <"$WORK/diff"))"

  sleep 2
  REPORT[idle_memory]="$(podman stats --no-stream --format '{{.MemUsage}}' task-api) (cgroup); process $(awk '/^VmRSS/ { print $2 " " $3 }' "/proc/$(pid_of task-api)/status") RSS"
  note "idle memory: ${REPORT[idle_memory]}"
  podman stats --no-stream task-api | sed 's/^/  /'
  podman rm -f -t 10 task-api >/dev/null
}

check_read_only() {
  step "read-only root, tmpfs /tmp, restarts"
  run_api --read-only --read-only-tmpfs=false
  wait_http_healthy 60
  [ "$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' task-api)" = true ] || die "ReadonlyRootfs is not set"
  podman inspect -f '{{json .HostConfig.Tmpfs}}' task-api | tee "$WORK/tmpfs" | sed 's/^/  tmpfs: /'
  grep -q '"/tmp":"rw,noexec,nosuid,size=100m[,"]' "$WORK/tmpfs" || die "HostConfig.Tmpfs does not hold the /tmp options"

  local pid mounts
  pid=$(pid_of task-api)
  mounts=/proc/$pid/mounts
  awk '$2 == "/" || $2 == "/tmp"' "$mounts" | sed 's/^/  mount: /'
  awk '$2 == "/" { split($4, o, ","); if (o[1] != "ro") exit 1 }' "$mounts" || die "/ is not mounted read-only"
  awk '$2 == "/tmp" && $3 == "tmpfs" && $4 ~ /(^|,)rw(,|$)/ && $4 ~ /(^|,)noexec(,|$)/ &&
       $4 ~ /(^|,)nosuid(,|$)/ && $4 ~ /(^|,)size=102400k(,|$)/ { found = 1 } END { exit !found }' \
    "$mounts" || die "/tmp is not a tmpfs with rw,noexec,nosuid,size=100m"

  # Writable for the service: /tmp only. Everything the image holds is read-only.
  echo probe >"/proc/$pid/root/tmp/written-before-restart" || die "cannot write to /tmp"
  local dir
  for dir in / /data /backups /etc; do
    if (echo probe >"/proc/$pid/root${dir%/}/container-stage-probe") 2>/dev/null; then
      die "$dir is writable in a --read-only container"
    fi
  done
  note "writable: /tmp; read-only: / /data /backups /etc"
  # noexec: a copy of the binary in /tmp cannot be run.
  cp "/proc/$pid/root/task-api" "/proc/$pid/root/tmp/task-api-copy"
  if podman exec task-api /tmp/task-api-copy --version >/dev/null 2>&1; then
    die "a binary in /tmp could be executed (noexec missing)"
  fi
  rm -f "/proc/$pid/root/tmp/task-api-copy"
  note "noexec: a binary copied to /tmp does not run"
  # The engine's own writable mounts, for the record (/dev/shm is there in every container).
  awk '$4 ~ /(^|,)rw(,|$)/ && $3 ~ /tmpfs|shm|mqueue/ && $2 !~ /^\/(proc|sys)\// { print $2 }' "$mounts" | tr '\n' ' ' |
    sed 's/^/  writable mounts: /'
  echo

  podman restart -t 10 task-api >/dev/null
  wait_http_healthy 60
  pid=$(pid_of task-api)
  [ ! -e "/proc/$pid/root/tmp/written-before-restart" ] || die "/tmp kept a file across podman restart"
  note "podman restart: /tmp came back empty"

  # --restart unless-stopped: kill the process from the host (podman stop would disable it).
  kill -KILL "$pid"
  local deadline=$(($(date +%s) + 30))
  until [ "$(pid_of task-api)" != "$pid" ] && [ "$(pid_of task-api)" != 0 ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the container was not restarted after its process was killed"
    sleep 0.2
  done
  wait_http_healthy 60
  note "restart policy: killed process restarted ($(podman inspect -f '{{.RestartCount}}' task-api) restart)"

  podman diff task-api >"$WORK/diff"
  grep -Ev '^[AC] /(etc(/(hosts|hostname|resolv\.conf))?|run(/\.containerenv)?)$' "$WORK/diff" \
    >"$WORK/diff-unexpected" || true
  [ ! -s "$WORK/diff-unexpected" ] || die "files changed in the container layer: $(tr '\n' ' ' <"$WORK/diff-unexpected")"
  note "podman diff: nothing written outside /tmp"
}

# run_check REPORT-KEY SUBCOMMAND [ARGS...]: a fault-harness check, shown indented; its last
# line is the summary kept for the report.
run_check() {
  local key=$1 log=$WORK/$2.log
  shift
  "$HARNESS" "$@" | tee "$log" | sed 's/^/  /' || die "fault-harness $1 failed (see above)"
  REPORT[$key]=$(tail -n 1 "$log")
}

check_burst() {
  step "memory under a burst of 100 creates (fault-harness burst)"
  run_check burst burst --api-url "$API" --container task-api --creates 100 --concurrency 20 \
    --request-timeout 20s --memory-limit-mib $((MEMORY_LIMIT_BYTES / 1024 / 1024))
}

check_sigterm() {
  step "SIGTERM under load: exit 0, no failed request (fault-harness sigterm)"
  run_check sigterm sigterm --api-url "$API" --container task-api --db-container task-db \
    --clients 4 --warmup 2s --stop-timeout 10
  podman rm -f task-api >/dev/null
}

# tools/fault-harness against this stack: under load from ten clients, the database's network
# is cut and restored, the database paused and unpaused, and the API's process killed from the
# host (its restart policy brings it back). The API gets the documented fast-failure settings.
check_faults() {
  step "faults against the stack: network cut, pause, kill -9 (fault-harness)"
  run_api -e DB_ACQUIRE_TIMEOUT=1s -e DB_STATEMENT_TIMEOUT=2s
  wait_http_healthy 60
  local start
  start=$(date +%s)
  run_check faults container --api-url "$API" --api-container task-api \
    --db-container task-db --network task-network --duration "${FAULT_DURATION:-75s}" \
    --faults "${FAULT_COUNT:-9}"
  REPORT[faults]+=" in $(($(date +%s) - start)) s"
  podman rm -f -t 10 task-api >/dev/null
}

check_debug_target() {
  step "debug target: the same binary with a shell"
  podman run -d --name task-api-debug --network task-network \
    -e DB_HOST=task-db -e DB_NAME=taskmanager -e DB_USER=taskuser -e DB_PASSWORD="$DB_PASSWORD" \
    --read-only --tmpfs /tmp:rw,noexec,nosuid,size=100m "$DEBUG_IMAGE" >/dev/null
  local deadline=$(($(date +%s) + 30))
  until podman exec task-api-debug /task-api healthcheck >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the debug image did not become healthy"
    sleep 0.2
  done
  podman exec task-api-debug id | sed 's/^/  id: /'
  podman exec task-api-debug df -h /tmp | sed 's/^/  /'
  podman exec task-api-debug id -u | grep -qx 1001 || die "the debug image does not run as 1001"
  podman exec task-api-debug sh -c 'grep " /tmp " /proc/mounts' | sed 's/^/  /'
  podman exec task-api-debug sh -c 'grep " /tmp " /proc/mounts' | grep -q 'noexec' ||
    die "the debug container does not see /tmp as noexec tmpfs"
  if podman exec task-api-debug touch /probe 2>/dev/null; then
    die "the debug container's root is writable"
  fi
  podman exec task-api-debug touch /tmp/probe || die "the debug container cannot write /tmp"
  note "debug target: id, /proc/mounts and touch answer from inside"
  podman rm -f -t 10 task-api-debug >/dev/null
}

check_sqlite_volume() {
  step "SQLite mode: read-only root with a volume on /data"
  podman run -d --name task-api --read-only --tmpfs /tmp:rw,noexec,nosuid,size=100m \
    -v task-api-data:/data -p "$HOST_PORT:3000" task-api:1.0 >/dev/null
  wait_http_healthy 60
  expect 201 POST /tasks '{"title": "Kept in SQLite"}'
  podman restart -t 10 task-api >/dev/null
  wait_http_healthy 60
  expect 200 GET /tasks
  [ "$(field .pagination.total)" = 1 ] || die "the SQLite task did not survive a restart"
  podman rm -f -t 10 task-api >/dev/null
  podman volume rm task-api-data >/dev/null
  note "a fresh named volume on /data is writable by 1001 (it takes the image's ownership)"
}

# The API's Kubernetes Deployment (deploy/k8s) as podman runs it: the pod starts as its
# securityContext says, reads its configuration from the ConfigMap and the password from the
# mounted file, serves, and drains on SIGTERM within its grace period. podman 4.3 needs three
# changes, made in a copy and each checked: one replica (it would bind every replica to the
# same host port), the Secret volume as a host directory holding the password file (its
# kube play crashes on Secret volumes), and hostPort (it publishes container ports on the
# host: this one is free).
kube_edit() {
  local file=$1 expression=$2 before
  before=$(cat "$file")
  perl -0pi -e "$expression" "$file"
  [ "$(cat "$file")" != "$before" ] || die "deploy/k8s/api-deployment.yaml changed: '$expression' no longer applies"
}
# The password file a Secret volume would hold, in a host directory.
kube_secret_dir() {
  mkdir -p "$1/secret"
  printf '%s' "$DB_PASSWORD" >"$1/secret/password"
  chmod 0444 "$1/secret/password"
}
k8s_value() { awk -v key="$1:" '$1 == key { gsub(/"/, "", $2); print $2; exit }' "$2"; }

check_kube_play() {
  step "Kubernetes Deployment with podman kube play (deploy/k8s)"
  local dir=$WORK/kube kube_manifest out ctr pid status grace drain start elapsed
  kube_secret_dir "$dir"
  kube_manifest=$dir/api-deployment.yaml
  cp deploy/k8s/api-deployment.yaml "$kube_manifest"
  kube_edit "$kube_manifest" 's/^  replicas: \d+$/  replicas: 1/m'
  kube_edit "$kube_manifest" "s{          secret:\n            secretName: task-api-db\n.*?path: password\n}{          hostPath:\n            path: $dir/secret\n            type: Directory\n}s"
  kube_edit "$kube_manifest" "s/(              containerPort: 3000\n)/\$1              hostPort: $HOST_PORT\n/"
  grace=$(k8s_value terminationGracePeriodSeconds "$kube_manifest")
  drain=$(k8s_value SHUTDOWN_DRAIN_DELAY deploy/k8s/configmap.yaml)
  [[ "$drain" =~ ^[0-9]+s$ ]] || die "SHUTDOWN_DRAIN_DELAY in deploy/k8s/configmap.yaml is not whole seconds: $drain"
  drain=${drain%s}
  [ -z "$(podman pod ps -q --filter name=task-api-pod)" ] || die "a pod named task-api-pod… already exists; remove it first"

  kube_manifests+=("$kube_manifest")
  out=$(podman kube play --network task-network --configmap deploy/k8s/configmap.yaml "$kube_manifest" 2>&1 |
    grep -v 'systemd') || die "podman kube play failed: $out"
  ctr=$(awk 'found { print; exit } /^Container:/ { found = 1 }' <<<"$out")
  [ -n "$ctr" ] || die "podman kube play started no container: $out"
  wait_http_healthy 60
  expect 200 GET /readyz
  expect 201 POST /tasks '{"title": "Through the Kubernetes manifest"}'
  note "the pod reached task-db with the ConfigMap's settings and the mounted password file: ready, task created"

  pid=$(pid_of "$ctr")
  status=$(cat "/proc/$pid/status")
  grep -qE '^Uid:\s+1001\s+1001\s+1001\s+1001$' <<<"$status" || die "the pod's process does not run as uid 1001: $(grep '^Uid' <<<"$status")"
  grep -qE '^Gid:\s+1001\s+1001\s+1001\s+1001$' <<<"$status" || die "the pod's process does not run as gid 1001"
  grep -qE '^CapEff:\s+0+$' <<<"$status" || die "the pod's process keeps capabilities: $(grep '^CapEff' <<<"$status")"
  grep -qE '^NoNewPrivs:\s+1$' <<<"$status" || die "allowPrivilegeEscalation: false was not applied"
  grep -qE '^Seccomp:\s+2$' <<<"$status" || die "the pod's process runs without a seccomp filter"
  [ "$(podman inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$ctr")" = true ] || die "the pod's root filesystem is writable"
  if (echo probe >"/proc/$pid/root/kube-play-probe") 2>/dev/null; then
    die "/ is writable in the pod"
  fi
  echo probe >"/proc/$pid/root/tmp/kube-play-probe" || die "the pod cannot write /tmp"
  ! podman inspect -f '{{range .Config.Env}}{{println .}}{{end}}' "$ctr" | grep -q '^DB_PASSWORD=' ||
    die "the pod has the password in its environment"
  note "uid/gid 1001, no capabilities, no-new-privileges, seccomp, read-only root, /tmp writable, password only as a file"

  # SIGTERM as Kubernetes sends it: /readyz turns 503 at once while /livez still answers,
  # then the process exits 0 after the drain delay and inside the grace period.
  start=$(now_ms)
  podman stop -t "$grace" "$ctr" >/dev/null 2>"$WORK/kube-stop.log" &
  local stopper=$!
  sleep 1
  expect 503 GET /readyz
  [ "$(field .reason)" = draining ] || die "/readyz during the drain: $(cat "$WORK/body")"
  expect 200 GET /livez
  wait "$stopper" || die "podman stop failed: $(cat "$WORK/kube-stop.log")"
  elapsed=$(($(now_ms) - start))
  [ "$(podman inspect -f '{{.State.ExitCode}}' "$ctr")" = 0 ] || die "the pod's container did not exit 0 after SIGTERM"
  [ "$elapsed" -ge $((drain * 1000)) ] || die "stopped after $elapsed ms, before the ${drain} s drain delay"
  [ "$elapsed" -lt $((grace * 1000)) ] || die "stopped after $elapsed ms: not inside terminationGracePeriodSeconds ($grace s)"
  podman kube down "$kube_manifest" >/dev/null 2>&1 || die "podman kube down failed"
  REPORT[kube]="pod up and ready on task-db; SIGTERM: readyz 503 draining, livez 200, exit 0 after $elapsed ms (drain ${drain} s, grace ${grace} s)"
  note "${REPORT[kube]}"
}

# One run of the backup CronJob (deploy/k8s/backup-cronjob.yaml): its job's pod, played by
# podman (which ignores CronJobs), writes a backup with its init container and prunes with its
# container, onto the claim task-api-backups (a podman volume here, which takes the image's
# /backups ownership, 1001). The Secret volume becomes a host directory, as above.
check_kube_backup_job() {
  step "the backup CronJob's pod with podman kube play (deploy/k8s)"
  local dir=$WORK/kube-backup manifest out state files
  kube_secret_dir "$dir"
  manifest=$dir/backup-pod.yaml
  "$CACHE/venv/bin/python" - deploy/k8s/backup-cronjob.yaml "$manifest" "$dir/secret" <<'PY' ||
import sys
import yaml

source, target, secret_dir = sys.argv[1:]
with open(source, encoding="utf-8") as stream:
    cron = yaml.safe_load(stream)
template = cron["spec"]["jobTemplate"]["spec"]["template"]
volumes = template["spec"]["volumes"]
secrets = [v for v in volumes if "secret" in v]
if len(secrets) != 1:
    sys.exit(f"expected one Secret volume in {source}, found {len(secrets)}")
secrets[0].pop("secret")
secrets[0]["hostPath"] = {"path": secret_dir, "type": "Directory"}
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": cron["metadata"]["name"], "labels": template["metadata"]["labels"]},
       "spec": template["spec"]}
with open(target, "w", encoding="utf-8") as stream:
    yaml.safe_dump(pod, stream, sort_keys=False)
PY
    die "could not turn the CronJob's job template into a pod"
  [ -z "$(podman pod ps -q --filter name=task-api-backup)" ] || die "a pod named task-api-backup already exists; remove it first"
  kube_manifests+=("$manifest")
  out=$(podman kube play --network task-network --configmap deploy/k8s/configmap.yaml "$manifest" 2>&1 |
    grep -v 'systemd') || die "podman kube play failed: $out"
  local deadline=$(($(date +%s) + 120))
  until [ "$(podman inspect -f '{{.State.Status}}' task-api-backup-prune 2>/dev/null)" = exited ]; do
    [ "$(date +%s)" -lt "$deadline" ] || die "the backup pod did not finish: $(podman pod ps --filter name=task-api-backup)"
    sleep 0.5
  done
  # podman removes init containers once they have run: the backup's file in the volume and
  # the prune container, which starts only after the init container succeeded, show it ran.
  state=$(podman inspect -f '{{.State.ExitCode}}' task-api-backup-prune)
  podman logs task-api-backup-prune 2>&1 | grep -v '^{' | sed 's/^/  prune: /'
  [ "$state" = 0 ] || die "the CronJob's prune container exited $state: $(podman logs task-api-backup-prune 2>&1 | tail -n 5)"
  files=$(find "$(podman volume inspect -f '{{.Mountpoint}}' task-api-backups)" -name 'taskmanager_backup_*.jsonl.zst' -printf '%f %u:%g\n')
  [ -n "$files" ] || die "the backup job wrote no backup into the volume task-api-backups"
  ! grep -qv ' 1001:1001$' <<<"$files" || die "backup files not owned by 1001: $files"
  podman kube down "$manifest" >/dev/null 2>&1 || die "podman kube down of the backup pod failed"
  podman volume rm task-api-backups >/dev/null
  REPORT[kube_backup]="init container backup, then prune (exit 0); volume task-api-backups holds $(tr '\n' ' ' <<<"$files")"
  note "${REPORT[kube_backup]}"
}

stop_database() {
  podman rm -f -t 10 task-db >/dev/null
  podman volume rm task-db-data >/dev/null
  podman network rm task-network >/dev/null
}

# Sets up a copy of compose.yaml the way the README tells users to: .env, secret, ./backups.
prepare_compose_dir() {
  compose_dir=$WORK/task-api
  mkdir -p "$compose_dir"
  cp compose.yaml .env.example "$compose_dir/"
  scripts_dir=$compose_dir/scripts
  mkdir -p "$scripts_dir"
  cp scripts/backup.sh scripts/restore.sh scripts/container-engine.sh "$scripts_dir/"
  (
    cd "$compose_dir"
    # The README's first-time setup, verbatim.
    cp .env.example .env
    install -d -m 700 secrets
    (umask 022 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >secrets/db_password.txt)
    mkdir -p backups && chown 1001:1001 backups
    printf 'TASK_API_PORT=%s\n' "$HOST_PORT" >>.env
  )
}

compose_up_and_wait() {
  (cd "$compose_dir" && compose up -d) >"$WORK/compose-up.log" 2>&1 ||
    die "podman-compose up failed: $(tail -n 20 "$WORK/compose-up.log")"
  # podman-compose starts everything at once (no health-gated depends_on): wait here.
  wait_db_ready
  wait_http_healthy 90
}

check_compose() {
  step "compose.yaml with podman-compose"
  prepare_compose_dir
  compose_up_and_wait
  podman healthcheck run task-api >/dev/null || die "compose task-api health check failed"
  podman healthcheck run task-db >/dev/null || die "compose task-db health check failed"
  (cd "$compose_dir" && compose ps) | sed 's/^/  /'
  expect 201 POST /tasks '{"title": "Through compose"}'
  local id
  id=$(field .data.id)
  expect 200 GET "/tasks/$id"

  local api
  api=$(podman inspect task-api)
  [ "$(jq -r '.[0].HostConfig.ReadonlyRootfs' <<<"$api")" = true ] || die "compose: API root is not read-only"
  jq -e '.[0].HostConfig.CapDrop | length > 0' <<<"$api" >/dev/null || die "compose: capabilities not dropped"
  [ "$(jq -r '.[0].EffectiveCaps | length' <<<"$api")" = 0 ] || die "compose: the API keeps capabilities"
  jq -e '.[0].HostConfig.SecurityOpt | index("no-new-privileges")' <<<"$api" >/dev/null ||
    die "compose: no-new-privileges not set"
  [ "$(jq -r '.[0].HostConfig.Memory' <<<"$api")" = "$MEMORY_LIMIT_BYTES" ] || die "compose: memory limit is not 512m"
  [ "$(jq -r '.[0].HostConfig.NanoCpus' <<<"$api")" = 500000000 ] || die "compose: CPU limit is not 0.5"
  jq -e '.[0].HostConfig.Tmpfs["/tmp"] | test("noexec") and test("size=100m")' <<<"$api" >/dev/null ||
    die "compose: /tmp tmpfs options missing"
  [ "$(jq -r '.[0].HostConfig.RestartPolicy.Name' <<<"$api")" = unless-stopped ] || die "compose: restart policy"
  [ "$(jq -r '.[0].Config.Env[] | select(startswith("DB_PASSWORD="))' <<<"$api")" = "" ] ||
    die "compose: the password is in the API's environment"
  if podman inspect task-api task-db task-api-backup | grep -qF "$(cat "$compose_dir/secrets/db_password.txt")"; then
    die "compose: the secret's value shows in a container's configuration"
  fi
  # The database sits on the internal network only and publishes nothing.
  [ "$(podman inspect -f '{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}' task-db)" = "task-db-internal " ] ||
    die "compose: task-db is on other networks than task-db-internal"
  [ -z "$(podman port task-db)" ] || die "compose: task-db publishes ports"
  [ "$(podman network inspect -f '{{.Internal}}' task-db-internal 2>/dev/null ||
    podman network inspect task-db-internal | jq -r '.[0].internal')" = true ] ||
    die "compose: task-db-internal is not an internal network"
  podman volume exists task-db-data || die "compose: volume task-db-data missing"
  note "compose: read-only, cap_drop ALL, no-new-privileges, 512m/0.5 CPU, tmpfs, restart, password only as a file"
  note "compose: task-db only on internal network task-db-internal, no published port"

  [ "$(podman inspect -f '{{.State.Running}}' task-api-backup)" = true ] ||
    die "compose: the backup service is not running"
  note "compose: backup service running"

  # down keeps the database volume; down -v deletes it.
  (cd "$compose_dir" && compose down) >/dev/null 2>&1 || die "podman-compose down failed"
  podman volume exists task-db-data || die "compose down removed the database volume"
  compose_up_and_wait
  expect 200 GET "/tasks/$id"
  note "compose: down and up again: task $id is still there"
  (cd "$compose_dir" && compose down -v) >/dev/null 2>&1 || die "podman-compose down -v failed"
  ! podman volume exists task-db-data || die "compose down -v left the volume"
  ! podman container exists task-api || die "compose down -v left task-api"
  note "compose: down -v removed containers, network and volume"
}

# The disaster-recovery exercise of the README: backup, containers and volume removed, restore.
check_backup_restore() {
  step "backup and restore through the compose stack (fault-harness disaster)"
  [ -n "$compose_dir" ] || prepare_compose_dir
  run_check backup disaster --api-url "$API" --compose-dir "$compose_dir" \
    --compose "$CACHE/venv/bin/podman-compose"
}

# --- doctor ----------------------------------------------------------------------------------

# `task-api doctor --json` inside container $1: the report goes to $WORK/doctor.json, the exit
# code to stdout. Fails the step if the output is not JSON or shows the database password.
doctor_json() {
  local rc=0
  podman exec "$1" /task-api doctor --json >"$WORK/doctor.json" 2>"$WORK/doctor.err" || rc=$?
  jq -e .summary "$WORK/doctor.json" >/dev/null ||
    die "doctor --json in $1 printed no report: $(head -c 400 "$WORK/doctor.json") $(cat "$WORK/doctor.err")"
  if grep -qF "$DB_PASSWORD" "$WORK/doctor.json" "$WORK/doctor.err"; then
    die "doctor in $1 printed the database password"
  fi
  echo "$rc"
}

# expect_doctor_row ID STATUS [REASON-REGEX]: a row of the last doctor_json report.
expect_doctor_row() {
  local id=$1 expected_status=$2 pattern=${3:-} got reason
  got=$(jq -r --arg id "$id" '.rows[] | select(.id == $id) | .status' "$WORK/doctor.json")
  reason=$(jq -r --arg id "$id" '.rows[] | select(.id == $id) | "\(.observed): \(.reason)"' "$WORK/doctor.json")
  [ "$got" = "$expected_status" ] || die "doctor row $id is '$got', expected $expected_status ($reason)"
  [ -z "$pattern" ] || grep -Eq -e "$pattern" <<<"$reason" ||
    die "doctor row $id: '$reason' does not match /$pattern/"
}

# The hardened container (DESIGN §5 flags plus --user, --cap-drop ALL, no-new-privileges, a
# password file and a fresh backup) passes every required row; the same image started as root,
# writable, without limits or /tmp tmpfs fails exactly those rows, each saying what to set.
check_doctor() {
  step "doctor: hardened container passes, the same image unhardened fails"
  local secret=$WORK/doctor-secret backups=$WORK/doctor-backups rc id
  local db_env=(-e DB_HOST=task-db -e DB_PORT=5432 -e DB_NAME=taskmanager -e DB_USER=taskuser)
  printf '%s\n' "$DB_PASSWORD" >"$secret"
  chmod 644 "$secret"
  install -d -o 1001 -g 1001 "$backups"
  podman run --rm --network task-network "${db_env[@]}" \
    -e DB_PASSWORD_FILE=/run/secrets/db_password -v "$secret:/run/secrets/db_password:ro" \
    -v "$backups:/backups" "$IMAGE" backup | sed 's/^/  /'

  podman run -d --name task-api --network task-network "${db_env[@]}" \
    -e DB_PASSWORD_FILE=/run/secrets/db_password -v "$secret:/run/secrets/db_password:ro" \
    -e BACKUP_EXPECTED_INTERVAL=1h -v "$backups:/backups:ro" \
    --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,noexec,nosuid,size=100m \
    --memory 512m --cpus 0.5 --user 1001:1001 --cap-drop ALL \
    --security-opt no-new-privileges -p "$HOST_PORT:3000" "$IMAGE" >/dev/null
  wait_http_healthy 60
  podman exec task-api /task-api doctor | sed 's/^/  /' || true
  rc=$(doctor_json task-api)
  [ "$rc" = 0 ] || die "doctor in the hardened container exited $rc: $(jq -c .summary "$WORK/doctor.json")"
  for id in user root_filesystem tmp memory_limit cpu_limit capabilities no_new_privileges \
    database migrations password_source backup_age backup_space; do
    expect_doctor_row "$id" pass
  done
  jq -e '[.rows[] | select(.required)] | length == 12' "$WORK/doctor.json" >/dev/null ||
    die "doctor's default requirement is not the 12 non-advisory rows"
  note "hardened: exit 0, all 12 required rows pass ($(jq -r '.rows[] | select(.status == "warn") | .id' "$WORK/doctor.json" | tr '\n' ' ')warn)"
  podman rm -f -t 10 task-api >/dev/null

  podman run -d --name task-api --network task-network "${db_env[@]}" \
    -e DB_PASSWORD="$DB_PASSWORD" -e BACKUP_EXPECTED_INTERVAL=1h -v "$backups:/backups:ro" \
    --user 0 -p "$HOST_PORT:3000" "$IMAGE" >/dev/null
  wait_http_healthy 60
  rc=$(doctor_json task-api)
  [ "$rc" = 1 ] || die "doctor in the unhardened container exited $rc, expected 1"
  expect_doctor_row user fail 'uid 0.*runs as root'
  expect_doctor_row root_filesystem fail ' rw: .*--read-only'
  expect_doctor_row tmp fail '^part of /: .*--tmpfs /tmp'
  expect_doctor_row memory_limit fail '^none .*--memory'
  expect_doctor_row cpu_limit fail '^none .*--cpus'
  expect_doctor_row capabilities fail '^effective [^n].*--cap-drop ALL'
  expect_doctor_row no_new_privileges fail 'NoNewPrivs 0.*no-new-privileges'
  expect_doctor_row password_source fail '^environment .*DB_PASSWORD_FILE'
  for id in database migrations backup_age backup_space; do
    expect_doctor_row "$id" pass
  done
  [ "$(jq -r '.summary.required_failed | join(",")' "$WORK/doctor.json")" = \
    "user,root_filesystem,tmp,memory_limit,cpu_limit,capabilities,no_new_privileges,password_source" ] ||
    die "unexpected failed rows: $(jq -c .summary "$WORK/doctor.json")"
  note "unhardened (root, writable, no limits, no tmpfs, DB_PASSWORD): exit 1, the 8 matching rows fail with their fix"
  podman rm -f -t 10 task-api >/dev/null
}

# The README's `docker compose exec task-api /task-api doctor`, after one backup.
check_doctor_compose() {
  step "doctor in the compose stack"
  [ -n "$compose_dir" ] || prepare_compose_dir
  compose_up_and_wait
  wait_running task-api-backup
  (cd "$compose_dir" && CONTAINER_ENGINE=podman ./scripts/backup.sh) >/dev/null
  local rc=0
  (cd "$compose_dir" && compose exec task-api /task-api doctor) >"$WORK/doctor-compose" 2>&1 || rc=$?
  sed 's/^/  /' "$WORK/doctor-compose"
  [ "$rc" = 0 ] || die "docker compose exec task-api /task-api doctor exited $rc"
  if grep -qF "$(cat "$compose_dir/secrets/db_password.txt")" "$WORK/doctor-compose"; then
    die "doctor printed the compose stack's password"
  fi
  note "compose: doctor exits 0 in task-api"
  (cd "$compose_dir" && compose down -v) >/dev/null 2>&1
}

# RUNBOOK.md and DEPLOYMENT_CHECKLIST.md: every runnable block, in order, against this run's image.
check_runbook() {
  step "runbook and deployment checklist, run as written"
  HOST_PORT=$HOST_PORT CONTAINER_STAGE_CACHE=$CACHE bash ci/runbook-check.sh ||
    die "a block of RUNBOOK.md or DEPLOYMENT_CHECKLIST.md failed (file, line and block above)"
}

summary() {
  step "summary"
  local k
  for k in size build debug_build cold_start idle_memory burst sigterm faults kube kube_backup backup; do
    printf '  %-12s %s\n' "$k" "${REPORT[$k]:-}"
  done
}

main() {
  local start
  start=$(date +%s)
  prerequisites
  preflight
  harness
  lint
  standins
  build_image
  image_contract
  supply_chain
  start_database
  check_users_command
  check_read_only
  check_burst
  check_sigterm
  check_faults
  check_debug_target
  check_doctor
  check_kube_play
  check_kube_backup_job
  stop_database
  check_sqlite_volume
  check_compose
  check_backup_restore
  check_doctor_compose
  check_runbook
  REPORT[total]="$(($(date +%s) - start)) s"
  summary
  printf '  %-12s %s\n' total "${REPORT[total]}"
  current="done"
  printf '\n=== container stage: all checks passed ===\n'
}

main "$@"
