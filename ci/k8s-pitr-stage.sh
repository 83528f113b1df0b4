#!/usr/bin/env bash
# Point-in-time recovery through the Kubernetes manifests, with podman: the README's off-site
# overlay (deploy/k8s/offsite) is rendered with kubectl, and the pods it defines are played by
# `podman kube play` against an S3-compatible store (s3s-fs) on a network of their own:
#   - task-db as its StatefulSet runs it (UID 70, read-only root, no capabilities), archiving
#     WAL, with the base-backups container taking the first base backup;
#   - the backup CronJob's pod, which uploads a logical backup and prunes both places;
#   - a mistake at a known time, then deploy/k8s/README.md's recovery: task-db stopped, the
#     restore Job rendered with the README's `kubectl set env` and played, task-db started
#     again; the deleted tasks are back, checked by id through the API.
# Podman is not Kubernetes: a StatefulSet, CronJob or Job becomes the Pod it would create, the
# claim data-task-db-0 a podman volume, a Secret volume a host directory (podman 4.3 cannot
# mount Secret volumes), an emptyDir a world-writable host directory as Kubernetes makes it
# (podman's is root's alone), the Service task-db the pod's name on the network, and no pod is
# restarted (the stage runs the preStop hook itself, which podman does not). NetworkPolicies
# are not enforced (ci/k8s-check.sh checks them). The API runs as a plain container.
#
# Standalone, from the repository root, as root, after ci/provision-podman.sh, ci/k8s-check.sh
# (its virtualenv has kubectl) and with the task-api:1.0 image built:   bash ci/k8s-pitr-stage.sh
#
# Settings (environment): HOST_PORT (default 3000), K8S_CHECK_CACHE (default
# /var/cache/task-api-k8s-check), TASK_API_TEST_S3S_FS (default /var/cache/task-api/s3s-fs/bin/s3s-fs).
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="kubernetes pitr stage"
# shellcheck source=ci/lib.sh
. ci/lib.sh

HOST_PORT=${HOST_PORT:-3000}
API=http://127.0.0.1:$HOST_PORT
VENV=${K8S_CHECK_CACHE:-/var/cache/task-api-k8s-check}/venv
S3S_FS=${TASK_API_TEST_S3S_FS:-/var/cache/task-api/s3s-fs/bin/s3s-fs}
readonly NETWORK=task-k8s-pitr S3_KEY_ID=k8s-stage-key S3_KEY=k8s-stage-secret-key
WORK=$(mktemp -d /tmp/k8s-pitr-stage.XXXXXX)
played=()

cleanup() {
  local rc=$?
  set +e
  trap - EXIT ERR
  if [ "$rc" != 0 ]; then
    for ctr in task-db-postgres task-db-base-backups task-db-pitr-restore-restore; do
      podman container exists "$ctr" && printf '\n--- logs of %s\n%s\n' "$ctr" "$(podman logs --tail 20 "$ctr" 2>&1)"
    done
  fi
  for manifest in "${played[@]}"; do podman kube down "$manifest" >/dev/null 2>&1; done
  podman rm -f -t 0 task-api-k8s task-s3-k8s >/dev/null 2>&1
  podman volume rm -f data-task-db-0 task-api-backups >/dev/null 2>&1
  podman network rm -f "$NETWORK" >/dev/null 2>&1
  rm -rf "$WORK"
  failure_banner "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

kubectl() { KUBECONFIG=/dev/null "$VENV/bin/kubectl" "$@"; }
sql() { podman exec task-db-postgres psql -U taskuser -d taskmanager -Atc "$1"; }
db_ready() { podman exec task-db-postgres pg_isready -q -h 127.0.0.1 2>/dev/null; }
db_promoted() { [ "$(sql 'SELECT pg_is_in_recovery()' 2>/dev/null)" = f ]; }
ready() { [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$API/readyz")" = 200 ]; }
status_of() { curl -s -o /dev/null -w '%{http_code}' "$API/tasks/$1"; }
exited() { [ "$(podman inspect -f '{{.State.Status}}' "$1" 2>/dev/null)" = exited ]; }
base_backups_done() { podman logs task-db-base-backups 2>&1 | grep -q 'pitr schedule: base backup done'; }
# WAL segment NAME (or a later one) is in the store.
archived_through() { [[ "$(sql 'SELECT last_archived_wal FROM pg_stat_archiver')" > "$1" ]] ||
  [ "$(sql 'SELECT last_archived_wal FROM pg_stat_archiver')" = "$1" ]; }

# play FILE: podman kube play on the stage's network with the rendered ConfigMaps.
play() {
  local out
  out=$(podman kube play --network "$NETWORK" --configmap "$WORK/configmaps/task-api-config.yaml" \
    --configmap "$WORK/configmaps/task-api-offsite.yaml" "$1" 2>&1 | grep -v -e systemd -e syslog) ||
    die "podman kube play $1 failed: $out"
  played+=("$1")
}
down() {
  local out
  out=$(podman kube down "$1" 2>&1) || die "podman kube down $1 failed: $out"
}
# As a pod of the cluster would see it: Kubernetes kind NAME of RENDERED as the Pod it creates.
as_pod() {
  "$VENV/bin/python" - "$@" <<'PY' || die "could not turn $2/$3 into a pod"
import os
import sys
import yaml

rendered, kind, name, pod_name, out, secrets = sys.argv[1:]
with open(rendered, encoding="utf-8") as stream:
    docs = [doc for doc in yaml.safe_load_all(stream) if doc]
obj = next(d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name)
spec = obj["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else obj["spec"]
template = spec["template"]
pod_spec = template["spec"]
volumes = pod_spec.setdefault("volumes", [])
for claim in spec.get("volumeClaimTemplates", []):
    claim_name = claim["metadata"]["name"]
    volumes.append({"name": claim_name, "persistentVolumeClaim": {"claimName": f"{claim_name}-{name}-0"}})
for volume in volumes:
    if "secret" in volume:
        secret = volume.pop("secret")
        volume["hostPath"] = {"path": f"{secrets}/{secret['secretName']}", "type": "Directory"}
    if "emptyDir" in volume:
        # Kubernetes creates an emptyDir world-writable (0777); podman's is root's alone.
        volume.pop("emptyDir")
        path = os.path.join(os.path.dirname(out), "emptydir", pod_name, volume["name"])
        os.makedirs(path, exist_ok=True)
        os.chmod(path, 0o777)
        volume["hostPath"] = {"path": path, "type": "Directory"}
# The stage stops servers as a pod's preStop hook does, and podman would restart them at once.
pod_spec["restartPolicy"] = "Never"
pod = {"apiVersion": "v1", "kind": "Pod",
       "metadata": {"name": pod_name, "labels": template["metadata"]["labels"]}, "spec": pod_spec}
with open(out, "w", encoding="utf-8") as stream:
    yaml.safe_dump(pod, stream, sort_keys=False)
PY
}

step "prerequisites"
for tool in podman curl jq; do command -v "$tool" >/dev/null || die "$tool is missing"; done
[ -x "$VENV/bin/kubectl" ] || die "no kubectl in $VENV: bash ci/k8s-check.sh installs it"
[ -x "$S3S_FS" ] || die "no s3s-fs at $S3S_FS: cargo install --locked --features binary --root /var/cache/task-api/s3s-fs s3s-fs@0.14.1"
podman image exists task-api:1.0 || die "no task-api:1.0 image: bash ci/container-stage.sh builds it"
for name in task-api-k8s task-s3-k8s; do ! podman container exists "$name" || die "a container named $name exists already"; done
for name in task-db task-api-backup task-db-pitr-restore; do
  [ -z "$(podman pod ps -q --filter "name=^$name\$")" ] || die "a pod named $name exists already"
done
for name in data-task-db-0 task-api-backups; do ! podman volume exists "$name" || die "a volume named $name exists already"; done
bash ci/standins/build.sh
bash ci/task-db-image.sh

step "the README's off-site overlay, rendered with the store on this network"
root=$WORK/repo
mkdir -p "$root/deploy/overlays/offsite" "$WORK/configmaps"
cp -r deploy/k8s "$root/deploy/k8s"
markdown_block offsite-overlay deploy/k8s/README.md >"$root/deploy/overlays/offsite/kustomization.yaml"
# The store's address, and a short archive_timeout the stage can wait for (60s in the file).
config=$root/deploy/k8s/offsite/configmap.yaml
for edit in 's{BACKUP_REMOTE: .*}{BACKUP_REMOTE: s3://task-backups/k8s}' \
  's{AWS_ENDPOINT_URL: ""}{AWS_ENDPOINT_URL: http://task-s3-k8s:9000}' 's{ARCHIVE_TIMEOUT: 60s}{ARCHIVE_TIMEOUT: 5s}'; do
  before=$(cat "$config")
  perl -pi -e "$edit" "$config"
  [ "$(cat "$config")" != "$before" ] || die "deploy/k8s/offsite/configmap.yaml changed: '$edit' no longer applies"
done
kubectl kustomize "$root/deploy/overlays/offsite" >"$WORK/rendered.yaml" || die "the README's off-site overlay does not render"
"$VENV/bin/python" - "$WORK/rendered.yaml" "$WORK/configmaps" <<'PY' || die "could not extract the ConfigMaps"
import sys
import yaml

rendered, out = sys.argv[1:]
with open(rendered, encoding="utf-8") as stream:
    for doc in yaml.safe_load_all(stream):
        if doc and doc["kind"] == "ConfigMap":
            with open(f"{out}/{doc['metadata']['name']}.yaml", "w", encoding="utf-8") as target:
                yaml.safe_dump(doc, target)
PY
# The Secrets' files, as the README's commands create them.
mkdir -p "$WORK/secrets/task-api-db" "$WORK/secrets/task-api-offsite"
od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$WORK/secrets/task-api-db/password"
printf '%s' "$S3_KEY_ID" >"$WORK/secrets/task-api-offsite/access-key-id"
printf '%s' "$S3_KEY" >"$WORK/secrets/task-api-offsite/secret-access-key"
chmod 0444 "$WORK"/secrets/*/*
as_pod "$WORK/rendered.yaml" StatefulSet task-db task-db "$WORK/task-db.yaml" "$WORK/secrets"
as_pod "$WORK/rendered.yaml" CronJob task-api-backup task-api-backup "$WORK/backup.yaml" "$WORK/secrets"
note "pods: task-db (postgres, base-backups), task-api-backup (backup, prune, prune-remote); store s3://task-backups/k8s"

step "task-db archives WAL and takes its first base backup"
podman network create "$NETWORK" >/dev/null
mkdir -p "$WORK/s3/task-backups"
podman run -d --name task-s3-k8s --network "$NETWORK" -v "$S3S_FS:/usr/local/bin/s3s-fs:ro" \
  -v "$WORK/s3:/data" docker.io/library/debian:bookworm-slim \
  s3s-fs --host 0.0.0.0 --port 9000 --access-key "$S3_KEY_ID" --secret-key "$S3_KEY" /data >/dev/null
play "$WORK/task-db.yaml"
wait_until 120 1 "task-db did not become ready: $(podman logs --tail 20 task-db-postgres 2>&1)" db_ready
[ "$(podman exec task-db-postgres id -u)" = 70 ] || die "task-db does not run as UID 70"
[ "$(sql 'SHOW archive_mode')" = on ] || die "archive_mode is not on: the offsite ConfigMap did not reach the server"
[ "$(sql 'SHOW archive_timeout')" = 5s ] || die "archive_timeout is $(sql 'SHOW archive_timeout'), not the ConfigMap's 5s"
wait_until 180 2 "the base-backups container took no base backup: $(podman logs --tail 20 task-db-base-backups 2>&1)" \
  base_backups_done
note "task-db runs as UID 70 with archive_mode on and archive_timeout 5s; base-backups took the first base backup"

step "the API on it, and the backup CronJob's pod"
podman run -d --name task-api-k8s --network "$NETWORK" -p "127.0.0.1:$HOST_PORT:3000" \
  -e DB_HOST=task-db -e DB_NAME=taskmanager -e DB_USER=taskuser -e DB_PASSWORD_FILE=/run/secrets/db/password \
  -v "$WORK/secrets/task-api-db:/run/secrets/db:ro" task-api:1.0 >/dev/null 2>"$WORK/api-run.log" ||
  die "podman run of the API failed: $(cat "$WORK/api-run.log")"
wait_until 90 0.5 "the API did not turn ready on task-db: $(podman logs --tail 10 task-api-k8s 2>&1)" ready
ids=()
for n in 1 2 3; do
  ids+=("$(curl -fsS -X POST "$API/tasks" -H 'content-type: application/json' \
    -d "{\"title\": \"Kept through the Kubernetes recovery $n\"}" | jq -r .data.id)")
done
play "$WORK/backup.yaml"
wait_until 120 1 "the backup pod did not finish" exited task-api-backup-prune-remote
wait_until 30 1 "the backup pod's prune did not finish" exited task-api-backup-prune
for ctr in task-api-backup-prune task-api-backup-prune-remote; do
  state=$(podman inspect -f '{{.State.ExitCode}}' "$ctr")
  [ "$state" = 0 ] || die "$ctr exited $state: $(podman logs "$ctr" 2>&1 | tail -n 5)"
done
uploaded=$(find "$WORK/s3/task-backups/k8s" -maxdepth 1 -type f -name '*.jsonl.zst' | wc -l)
[ "$uploaded" = 1 ] || die "the CronJob's pod uploaded $uploaded logical backups, not 1"
note "tasks ${ids[*]} created; the CronJob's pod uploaded 1 logical backup and pruned the volume and the store (exit 0)"

step "a mistake at a known time, then deploy/k8s/README.md's recovery"
target=$(sql "SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '+00'")
sleep 1
for id in "${ids[@]}"; do
  curl -fsS -o /dev/null -X DELETE "$API/tasks/$id" || die "could not delete task $id"
done
segment=$(sql 'SELECT pg_walfile_name(pg_current_wal_lsn())')
wait_until 60 1 "WAL segment $segment was not archived (pg_stat_archiver: $(sql 'SELECT * FROM pg_stat_archiver'))" \
  archived_through "$segment"
note "tasks deleted after $target; WAL through $segment archived"
# kubectl scale statefulset task-db --replicas=0. Kubernetes runs the container's preStop hook
# (a fast shutdown) before it stops the pod; podman runs no hooks, so the stage runs it.
mapfile -d '' pre_stop < <("$VENV/bin/python" -c '
import sys, yaml
pod = yaml.safe_load(open(sys.argv[1], encoding="utf-8"))
postgres = next(c for c in pod["spec"]["containers"] if c["name"] == "postgres")
sys.stdout.write("\0".join(postgres["lifecycle"]["preStop"]["exec"]["command"]) + "\0")
' "$WORK/task-db.yaml")
[ "${#pre_stop[@]}" -gt 0 ] || die "the task-db StatefulSet has no preStop command"
# Its own exit status is lost when the server, the container's first process, exits under it
# (Kubernetes only logs a failed hook); the server's exit status tells.
podman exec task-db-postgres "${pre_stop[@]}" >/dev/null 2>&1 || true
wait_until 60 0.5 "task-db did not stop after its preStop command (${pre_stop[*]})" exited task-db-postgres
state=$(podman inspect -f '{{.State.ExitCode}}' task-db-postgres)
[ "$state" = 0 ] || die "task-db exited $state after its preStop command, not 0 (a clean fast shutdown)"
down "$WORK/task-db.yaml"
# The restore Job exactly as the README renders it, with the target set by kubectl set env.
kubectl kustomize "$root/deploy/k8s/offsite/restore" |
  kubectl set env --local -f - PITR_TARGET_TIME="$target" -o yaml >"$WORK/restore-job.yaml" ||
  die "the README's restore rendering failed"
as_pod "$WORK/restore-job.yaml" Job task-db-pitr-restore task-db-pitr-restore "$WORK/restore.yaml" "$WORK/secrets"
play "$WORK/restore.yaml"
wait_until 300 1 "the restore Job's pod did not finish" exited task-db-pitr-restore-restore
state=$(podman inspect -f '{{.State.ExitCode}}' task-db-pitr-restore-restore)
podman logs task-db-pitr-restore-restore 2>&1 | tail -n 3 | sed 's/^/  restore: /'
[ "$state" = 0 ] || die "the restore Job exited $state"
down "$WORK/restore.yaml"
# kubectl scale statefulset task-db --replicas=1
play "$WORK/task-db.yaml"
wait_until 180 1 "task-db did not replay the WAL and promote: $(podman logs --tail 20 task-db-postgres 2>&1)" db_promoted
wait_until 90 0.5 "the API did not turn ready again" ready
for id in "${ids[@]}"; do
  [ "$(status_of "$id")" = 200 ] || die "task $id is missing after the recovery to $target"
done
note "recovered to $target: tasks ${ids[*]} are back"

trap - ERR
step "point-in-time recovery through the Kubernetes manifests: all checks passed"
