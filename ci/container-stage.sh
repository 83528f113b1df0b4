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
# This script runs what users run (the README's commands, compose, kube play) and sets up what
# the checks need; the checks themselves, with load or verdicts (burst, SIGTERM under load,
# faults, the disaster exercise, the image contract, hardening, doctor's rows, the answers of
# the API), are subcommands of tools/fault-harness.
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
# The same password as a file: the harness's secret checks read it there, and the doctor
# step mounts it into containers (so readable by their user, 1001).
SECRET_FILE=$WORK/db_password
printf '%s\n' "$DB_PASSWORD" >"$SECRET_FILE"
chmod 644 "$SECRET_FILE"
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

# expect STATUS METHOD PATH [BODY] [--field P=V | --metric N=V | --print P]...: one request to
# the API, judged by fault-harness request; prints what --print asks for.
expect() {
  local out
  out=$("$HARNESS" request --api-url "$API" "$@" 2>&1) || die "${out#fault-harness: error: }"
  [ -z "$out" ] || printf '%s\n' "$out"
}
# verdict SUBCOMMAND [ARGS...]: a fault-harness check, its findings shown indented.
verdict() {
  "$HARNESS" "$@" | sed 's/^/  /' || die "fault-harness $1 found the problems listed above"
}

healthy() { curl -fsS --max-time 2 -o /dev/null "$API/health" 2>/dev/null; }
running() { [ "$(podman inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }
db_ready() { podman exec task-db pg_isready -q -U taskuser -d taskmanager 2>/dev/null; }
# restarted NAME PID: NAME runs again, under another process than PID.
restarted() { local now; now=$(pid_of "$1") && [ "$now" != "$2" ] && [ "$now" != 0 ]; }
quiet() { "$@" >/dev/null 2>&1; }
exited() { [ "$(podman inspect -f '{{.State.Status}}' "$1" 2>/dev/null)" = exited ]; }
wait_http_healthy() { wait_until "${1:-60}" 0.05 "the API did not become healthy at $API/health" healthy; }
wait_db_ready() { wait_until 90 0.5 "task-db did not become ready" db_ready; }
wait_running() { wait_until 60 0.5 "container $1 is not running" running "$1"; }
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
  "$CACHE/venv/bin/hadolint" --failure-threshold info Dockerfile deploy/postgres/Containerfile
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
  # The stack's database image (postgres:16-alpine plus Barman's cloud tools), built here so
  # that compose finds it instead of building it without the host's certificate authority.
  bash ci/task-db-image.sh
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
  [ "$size" -lt $((14 * 1000 * 1000)) ] || die "$IMAGE is ${REPORT[size]}, the goal is under 14 MB"
}

supply_chain() {
  step "supply chain of the image (cargo auditable data, cargo audit bin, CycloneDX SBOM)"
  bash ci/image-supply-chain.sh "$IMAGE" "${SBOM_DIR:-target/sbom}"
}

image_contract() {
  step "image contract (user, port, entrypoint, health check, labels, no secret)"
  verdict image-contract --image "$IMAGE" --secret-file "$SECRET_FILE"
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
  podman exec task-api /task-api healthcheck | sed 's/^/  /'
  REPORT[cold_start]="$elapsed ms from podman run to /health 200, healthcheck: healthy"
  note "cold start: ${REPORT[cold_start]}"

  expect 200 GET /health --field /status=healthy --field /database=connected
  expect 200 GET /livez
  expect 200 GET /readyz
  # The service reads the limits of `--memory 512m --cpus 0.5` from its own cgroup.
  expect 200 GET /metrics --metric "container_memory_limit_bytes=$MEMORY_LIMIT_BYTES" \
    --metric container_cpu_limit_cores=0.5
  note "/metrics: the 512m memory and 0.5 CPU limits"
  expect 200 GET /openapi.json

  local id
  id=$(expect 201 POST /tasks '{"title": "Container check", "description": "written through task-api:1.0"}' \
    --print /data/id)
  expect 200 GET "/tasks/$id" --field "/data/title=Container check"
  expect 200 GET '/tasks?status=pending&q=container' --field '/pagination/total>=1'
  expect 200 PUT "/tasks/$id" '{"title": "Container check", "status": "in-progress"}'
  expect 200 PATCH "/tasks/$id" '{"status": "completed"}' --field /data/status=completed
  expect 200 DELETE "/tasks/$id"
  expect 404 GET "/tasks/$id"
  note "CRUD: create, read, list, replace, patch, delete, 404 after delete"

  # The limits and health the engine recorded; 1001 by the engine's, the kernel's and `docker
  # top`'s account; the container's layer as built (reads and writes go to PostgreSQL).
  podman top task-api | sed 's/^/  /'
  verdict hardening task-api --profile users

  sleep 2
  REPORT[idle_memory]="$(podman stats --no-stream --format '{{.MemUsage}}' task-api) (cgroup); process $(sed -n 's/^VmRSS:\s*//p' "/proc/$(pid_of task-api)/status") RSS"
  note "idle memory: ${REPORT[idle_memory]}"
  podman stats --no-stream task-api | sed 's/^/  /'
  podman rm -f -t 10 task-api >/dev/null
}

check_read_only() {
  step "read-only root, tmpfs /tmp, restarts"
  run_api --read-only --read-only-tmpfs=false
  wait_http_healthy 60
  # The engine's record, /proc/PID/mounts, writes into /tmp and elsewhere, a binary in /tmp.
  verdict hardening task-api --profile read-only

  local pid
  pid=$(pid_of task-api)
  echo probe >"/proc/$pid/root/tmp/written-before-restart" || die "cannot write to /tmp"
  podman restart -t 10 task-api >/dev/null
  wait_http_healthy 60
  pid=$(pid_of task-api)
  [ ! -e "/proc/$pid/root/tmp/written-before-restart" ] || die "/tmp kept a file across podman restart"
  note "podman restart: /tmp came back empty"

  # --restart unless-stopped: kill the process from the host (podman stop would disable it).
  kill -KILL "$pid"
  wait_until 30 0.2 "the container was not restarted after its process was killed" \
    restarted task-api "$pid"
  wait_http_healthy 60
  note "restart policy: killed process restarted ($(podman inspect -f '{{.RestartCount}}' task-api) restart)"
  # Nothing written outside /tmp across both restarts.
  verdict hardening task-api --check layer
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
  wait_until 30 0.2 "the debug image did not become healthy" quiet podman exec task-api-debug /task-api healthcheck
  podman exec task-api-debug id | sed 's/^/  id: /'
  podman exec task-api-debug df -h /tmp | sed 's/^/  /'
  [ "$(podman exec task-api-debug id -u)" = 1001 ] || die "the debug image does not run as 1001"
  local tmp
  tmp=$(podman exec task-api-debug sh -c 'grep " /tmp " /proc/mounts')
  note "$tmp"
  [[ $tmp == *noexec* ]] || die "the debug container does not see /tmp as noexec tmpfs"
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
  expect 200 GET /tasks --field /pagination/total=1
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

check_kube_play() {
  step "Kubernetes Deployment with podman kube play (deploy/k8s)"
  local dir=$WORK/kube kube_manifest out ctr
  kube_secret_dir "$dir"
  kube_manifest=$dir/api-deployment.yaml
  cp deploy/k8s/api-deployment.yaml "$kube_manifest"
  kube_edit "$kube_manifest" 's/^  replicas: \d+$/  replicas: 1/m'
  kube_edit "$kube_manifest" "s{          secret:\n            secretName: task-api-db\n.*?path: password\n}{          hostPath:\n            path: $dir/secret\n            type: Directory\n}s"
  kube_edit "$kube_manifest" "s/(              containerPort: 3000\n)/\$1              hostPort: $HOST_PORT\n/"
  [ -z "$(podman pod ps -q --filter name=task-api-pod)" ] || die "a pod named task-api-pod… already exists; remove it first"

  kube_manifests+=("$kube_manifest")
  out=$(podman kube play --network task-network --configmap deploy/k8s/configmap.yaml "$kube_manifest" 2>&1 |
    grep -v 'systemd') || die "podman kube play failed: $out"
  ctr=$(sed -n '/^Container:/{n;p;q}' <<<"$out")
  [ -n "$ctr" ] || die "podman kube play started no container: $out"
  wait_http_healthy 60
  expect 200 GET /readyz
  expect 201 POST /tasks '{"title": "Through the Kubernetes manifest"}'
  note "the pod reached task-db with the ConfigMap's settings and the mounted password file: ready, task created"

  # uid/gid 1001, no capabilities, no-new-privileges, seccomp, read-only root, /tmp writable,
  # the password only as a file.
  verdict hardening "$ctr" --profile kube
  # SIGTERM as Kubernetes sends it, timed against the manifests' drain delay and grace period.
  run_check kube kube-drain --api-url "$API" --container "$ctr" --manifest "$kube_manifest" \
    --configmap deploy/k8s/configmap.yaml
  podman kube down "$kube_manifest" >/dev/null 2>&1 || die "podman kube down failed"
}

# One run of the backup CronJob (deploy/k8s/backup-cronjob.yaml): its job's pod, played by
# podman (which ignores CronJobs), writes a backup with its init container and prunes with its
# container, onto the claim task-api-backups (a podman volume here, which takes the image's
# /backups ownership, 1001). The Secret volume becomes a host directory, as above.
check_kube_backup_job() {
  step "the backup CronJob's pod with podman kube play (deploy/k8s)"
  local dir=$WORK/kube-backup manifest out state
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
  wait_until 120 0.5 "the backup pod did not finish (podman pod ps --filter name=task-api-backup)" \
    exited task-api-backup-prune
  # podman removes init containers once they have run: the backup's file in the volume and
  # the prune container, which starts only after the init container succeeded, show it ran.
  state=$(podman inspect -f '{{.State.ExitCode}}' task-api-backup-prune)
  podman logs task-api-backup-prune 2>&1 | grep -v '^{' | sed 's/^/  prune: /'
  [ "$state" = 0 ] || die "the CronJob's prune container exited $state: $(podman logs task-api-backup-prune 2>&1 | tail -n 5)"
  run_check kube_backup backup-files --owner 1001:1001 \
    --dir "$(podman volume inspect -f '{{.Mountpoint}}' task-api-backups)"
  podman kube down "$manifest" >/dev/null 2>&1 || die "podman kube down of the backup pod failed"
  podman volume rm task-api-backups >/dev/null
  REPORT[kube_backup]="init container backup, then prune (exit 0); volume task-api-backups holds ${REPORT[kube_backup]}"
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
  mkdir -p "$compose_dir/deploy"
  cp -r deploy/postgres "$compose_dir/deploy/"
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
  local id
  id=$(expect 201 POST /tasks '{"title": "Through compose"}' --print /data/id)
  expect 200 GET "/tasks/$id"
  verdict hardening task-api --profile compose
  # The database isolated, the password in no configuration, the volume, the backup service.
  verdict compose-stack --secret-file "$compose_dir/secrets/db_password.txt"

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

# The hardened container (DESIGN §5 flags plus --user, --cap-drop ALL, no-new-privileges, a
# password file and a fresh backup) passes every required row; the same image started as root,
# writable, without limits or /tmp tmpfs fails exactly those rows, each saying what to set.
check_doctor() {
  step "doctor: hardened container passes, the same image unhardened fails"
  local backups=$WORK/doctor-backups
  local db_env=(-e DB_HOST=task-db -e DB_PORT=5432 -e DB_NAME=taskmanager -e DB_USER=taskuser)
  install -d -o 1001 -g 1001 "$backups"
  podman run --rm --network task-network "${db_env[@]}" \
    -e DB_PASSWORD_FILE=/run/secrets/db_password -v "$SECRET_FILE:/run/secrets/db_password:ro" \
    -v "$backups:/backups" "$IMAGE" backup | sed 's/^/  /'

  podman run -d --name task-api --network task-network "${db_env[@]}" \
    -e DB_PASSWORD_FILE=/run/secrets/db_password -v "$SECRET_FILE:/run/secrets/db_password:ro" \
    -e BACKUP_EXPECTED_INTERVAL=1h -v "$backups:/backups:ro" \
    --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,noexec,nosuid,size=100m \
    --memory 512m --cpus 0.5 --user 1001:1001 --cap-drop ALL \
    --security-opt no-new-privileges -p "$HOST_PORT:3000" "$IMAGE" >/dev/null
  wait_http_healthy 60
  podman exec task-api /task-api doctor | sed 's/^/  /' || true
  verdict doctor-report --container task-api --expect hardened --secret-file "$SECRET_FILE"
  podman rm -f -t 10 task-api >/dev/null

  podman run -d --name task-api --network task-network "${db_env[@]}" \
    -e DB_PASSWORD="$DB_PASSWORD" -e BACKUP_EXPECTED_INTERVAL=1h -v "$backups:/backups:ro" \
    --user 0 -p "$HOST_PORT:3000" "$IMAGE" >/dev/null
  wait_http_healthy 60
  verdict doctor-report --container task-api --expect unhardened --secret-file "$SECRET_FILE"
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
check_pitr() {
  step "point-in-time recovery through compose (ci/pitr-stage.sh)"
  HOST_PORT=$HOST_PORT CONTAINER_STAGE_CACHE=$CACHE bash ci/pitr-stage.sh ||
    die "ci/pitr-stage.sh failed (its step is named above)"
}

# The same through the Kubernetes manifests' off-site component (kubectl from ci/k8s-check.sh).
check_kube_pitr() {
  step "point-in-time recovery through the Kubernetes manifests (ci/k8s-pitr-stage.sh)"
  HOST_PORT=$HOST_PORT bash ci/k8s-pitr-stage.sh || die "ci/k8s-pitr-stage.sh failed (its step is named above)"
}

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
  local start step
  start=$(date +%s)
  for step in prerequisites preflight harness lint standins build_image image_contract \
    supply_chain start_database check_users_command check_read_only check_burst check_sigterm \
    check_faults check_debug_target check_doctor check_kube_play check_kube_backup_job \
    stop_database check_sqlite_volume check_compose check_backup_restore check_doctor_compose \
    check_pitr check_kube_pitr check_runbook; do
    "$step"
  done
  REPORT[total]="$(($(date +%s) - start)) s"
  summary
  printf '  %-12s %s\n' total "${REPORT[total]}"
  current="done"
  printf '\n=== container stage: all checks passed ===\n'
}

main "$@"
