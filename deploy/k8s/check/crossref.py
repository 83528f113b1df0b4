"""Consistency of the task-api kustomization: what schema validation cannot see.

Usage: crossref.py KUSTOMIZATION_DIR RENDERED.yaml [OUT_OF_BAND.yaml ...]

RENDERED.yaml is `kubectl kustomize KUSTOMIZATION_DIR`; each OUT_OF_BAND file holds objects
created outside the kustomization (the Secret that deploy/k8s/README.md tells operators to
create, rendered with --dry-run=client). Prints every problem on its own line and exits 1 if
there is any, 0 with a summary otherwise. What is checked is listed in deploy/k8s/README.md.
"""

import sys
from pathlib import Path

import yaml

WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}
CLUSTER_SCOPED_KINDS = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume",
                        "StorageClass", "PriorityClass", "CustomResourceDefinition"}


class Checker:
    def __init__(self):
        self.problems = []
        self.checked = 0

    def expect(self, condition, message):
        self.checked += 1
        if not condition:
            self.problems.append(message)


def load_documents(path):
    with open(path, encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def check_files(check, directory):
    """Every listed resource exists, and every manifest in the directory is listed."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = set()
    entries = list(kustomization.get("resources", []))
    entries += [patch["path"] for patch in kustomization.get("patches", []) if "path" in patch]
    for entry in entries:
        path = (directory / entry).resolve()
        listed.add(path)
        check.expect(path.exists(), f"kustomization.yaml lists {entry}, which does not exist")
    for path in sorted(directory.rglob("*")):
        if path.suffix not in {".yaml", ".yml"} or path.name == "kustomization.yaml":
            continue
        # A subdirectory with a kustomization of its own (a component, a restore job) is
        # rendered and checked on its own.
        if any((parent / "kustomization.yaml").exists() for parent in path.parents
               if parent != directory and directory in parent.parents):
            continue
        relative = path.relative_to(directory)
        check.expect(path.resolve() in listed,
                     f"{relative} is not listed in kustomization.yaml resources or patches: it would never be applied")


def object_id(obj):
    meta = obj.get("metadata", {})
    return f"{obj.get('kind')}/{meta.get('name')}"


def pod_templates(obj):
    """(labels, pod spec, extra volume names) of the pods a workload creates."""
    spec = obj.get("spec", {})
    if obj["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    template = spec.get("template", {})
    claim_templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates", [])}
    return template.get("metadata", {}).get("labels", {}) or {}, template.get("spec", {}), claim_templates


def selector_matches(selector, labels):
    """A LabelSelector (matchLabels and matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and labels.get(key) in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


class Cluster:
    """The rendered objects plus those created out of band, indexed by namespace, kind, name."""

    def __init__(self, rendered, out_of_band):
        self.objects = {}
        self.pods = []  # (namespace, owner id, labels, pod spec, claim template names)
        for obj in rendered + out_of_band:
            meta = obj.get("metadata", {})
            namespace = None if obj.get("kind") in CLUSTER_SCOPED_KINDS else meta.get("namespace")
            self.objects[(namespace, obj.get("kind"), meta.get("name"))] = obj
        for obj in rendered:
            # A StatefulSet's claims, named <template>-<statefulset>-<ordinal>, exist once it runs.
            if obj.get("kind") == "StatefulSet":
                spec = obj.get("spec", {})
                for template in spec.get("volumeClaimTemplates", []):
                    for ordinal in range(spec.get("replicas", 1)):
                        name = f"{template['metadata']['name']}-{obj['metadata']['name']}-{ordinal}"
                        self.objects[(obj["metadata"].get("namespace"), "PersistentVolumeClaim", name)] = template
            if obj.get("kind") in WORKLOAD_KINDS:
                labels, spec, claims = pod_templates(obj)
                self.pods.append((obj["metadata"].get("namespace"), object_id(obj), labels, spec, claims))

    def get(self, namespace, kind, name):
        return self.objects.get((namespace, kind, name))

    def pods_selected(self, namespace, selector):
        return [pod for pod in self.pods if pod[0] == namespace and selector_matches(selector, pod[2])]


def check_namespaces(check, cluster, rendered):
    for obj in rendered:
        if obj.get("kind") in CLUSTER_SCOPED_KINDS:
            continue
        namespace = obj["metadata"].get("namespace")
        check.expect(namespace is not None, f"{object_id(obj)} has no namespace: it would land in the default one")
        if namespace is not None:
            check.expect(cluster.get(None, "Namespace", namespace) is not None,
                         f"{object_id(obj)} is in namespace {namespace}, which the kustomization does not create")


def check_pod(check, cluster, namespace, owner, spec, claim_templates):
    account = spec.get("serviceAccountName")
    if account:
        check.expect(cluster.get(namespace, "ServiceAccount", account) is not None,
                     f"{owner}: service account {account} does not exist")

    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for name in claim_templates:
        volumes.setdefault(name, {"name": name, "claimTemplate": True})
    for volume in volumes.values():
        if "configMap" in volume:
            check_config_map_keys(check, cluster, namespace, owner, volume["configMap"]["name"],
                                  [item["key"] for item in volume["configMap"].get("items", [])])
        if "secret" in volume:
            check_secret_keys(check, cluster, namespace, owner, volume["secret"]["secretName"],
                              [item["key"] for item in volume["secret"].get("items", [])])
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            check.expect(cluster.get(namespace, "PersistentVolumeClaim", claim) is not None,
                         f"{owner}: volume {volume['name']} claims {claim}, which does not exist")

    for container in spec.get("initContainers", []) + spec.get("containers", []):
        check_container(check, cluster, namespace, f"{owner} container {container['name']}", container, volumes)


def check_config_map_keys(check, cluster, namespace, owner, name, keys):
    config_map = cluster.get(namespace, "ConfigMap", name)
    check.expect(config_map is not None, f"{owner}: ConfigMap {name} does not exist")
    for key in keys if config_map else []:
        check.expect(key in (config_map.get("data") or {}), f"{owner}: ConfigMap {name} has no key {key}")


def check_secret_keys(check, cluster, namespace, owner, name, keys):
    secret = cluster.get(namespace, "Secret", name)
    check.expect(secret is not None,
                 f"{owner}: Secret {name} is neither in the kustomization nor created by deploy/k8s/README.md")
    present = set((secret or {}).get("data") or {}) | set((secret or {}).get("stringData") or {})
    for key in keys if secret else []:
        check.expect(key in present, f"{owner}: Secret {name} (as deploy/k8s/README.md creates it) has no key {key}")


def effective_env(cluster, namespace, container):
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            config_map = cluster.get(namespace, "ConfigMap", source["configMapRef"]["name"]) or {}
            env.update(config_map.get("data") or {})
    for variable in container.get("env", []):
        reference = (variable.get("valueFrom") or {}).get("configMapKeyRef")
        if reference:
            config_map = cluster.get(namespace, "ConfigMap", reference["name"]) or {}
            env[variable["name"]] = (config_map.get("data") or {}).get(reference["key"])
        else:
            env[variable["name"]] = variable.get("value")
    return env


def check_container(check, cluster, namespace, owner, container, volumes):
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            check_config_map_keys(check, cluster, namespace, owner, source["configMapRef"]["name"], [])
        if "secretRef" in source:
            check_secret_keys(check, cluster, namespace, owner, source["secretRef"]["name"], [])
    for variable in container.get("env", []):
        reference = variable.get("valueFrom") or {}
        if "configMapKeyRef" in reference:
            check_config_map_keys(check, cluster, namespace, owner, reference["configMapKeyRef"]["name"],
                                  [reference["configMapKeyRef"]["key"]])
        if "secretKeyRef" in reference:
            check_secret_keys(check, cluster, namespace, owner, reference["secretKeyRef"]["name"],
                              [reference["secretKeyRef"]["key"]])

    mounts = {}
    for mount in container.get("volumeMounts", []):
        check.expect(mount["name"] in volumes, f"{owner}: mounts volume {mount['name']}, which the pod does not define")
        mounts[mount["mountPath"].rstrip("/")] = volumes.get(mount["name"], {})

    env = effective_env(cluster, namespace, container)
    for name, value in env.items():
        # Passwords reach processes as mounted files only, never as environment variables.
        if "PASSWORD" in name and not name.endswith("_FILE"):
            check.problems.append(f"{owner}: {name} is an environment variable; mount the secret and use {name}_FILE")
        if name.endswith("_FILE") and value:
            check_file_is_mounted(check, owner, name, value, mounts)
        # A bare host name (no dots) is a Service of the same namespace.
        if name.endswith("_HOST") and value and "." not in value:
            check.expect(cluster.get(namespace, "Service", value) is not None,
                         f"{owner}: {name}={value} names no Service in namespace {namespace}")

    port_names = {port.get("name") for port in container.get("ports", [])}
    for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = container.get(probe_name) or {}
        for handler in ("httpGet", "tcpSocket", "grpc"):
            port = (probe.get(handler) or {}).get("port")
            if isinstance(port, str):
                check.expect(port in port_names, f"{owner}: {probe_name} uses port {port}, which the container does not name")


def check_file_is_mounted(check, owner, name, path, mounts):
    """NAME_FILE points at a file a mounted Secret or ConfigMap volume provides."""
    for mount_path, volume in mounts.items():
        if not path.startswith(mount_path + "/"):
            continue
        relative = path[len(mount_path) + 1:]
        source = volume.get("secret") or volume.get("configMap")
        if source is None:
            check.problems.append(f"{owner}: {name}={path} lies on volume {volume.get('name')}, not a Secret or ConfigMap")
            return
        items = source.get("items")
        check.expect(items is None or relative in {item["path"] for item in items},
                     f"{owner}: {name}={path}, but volume {volume['name']} provides no file {relative}")
        check.checked += 1
        return
    check.problems.append(f"{owner}: {name}={path} is not under any mounted volume")


def check_selectors(check, cluster, rendered):
    for obj in rendered:
        kind, namespace, spec = obj.get("kind"), obj["metadata"].get("namespace"), obj.get("spec", {})
        owner = object_id(obj)
        if kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"}:
            labels = pod_templates(obj)[0]
            check.expect(selector_matches(spec.get("selector", {}), labels),
                         f"{owner}: its selector does not match its own pod template")
        if kind == "StatefulSet":
            check.expect(cluster.get(namespace, "Service", spec.get("serviceName")) is not None,
                         f"{owner}: serviceName {spec.get('serviceName')} is not a Service")
        if kind == "Service" and spec.get("selector"):
            pods = cluster.pods_selected(namespace, {"matchLabels": spec["selector"]})
            check.expect(pods, f"{owner}: its selector matches no pod")
            for port in spec.get("ports", []):
                target = port.get("targetPort", port.get("port"))
                for _, pod_owner, _, pod_spec, _ in pods:
                    container_ports = [p for c in pod_spec.get("containers", []) for p in c.get("ports", [])]
                    check.expect(any(p.get("name") == target or p.get("containerPort") == target for p in container_ports),
                                 f"{owner}: targetPort {target} is not a port of {pod_owner}")
        if kind == "PodDisruptionBudget":
            check.expect(cluster.pods_selected(namespace, spec.get("selector", {})),
                         f"{owner}: its selector matches no pod")
        if kind == "HorizontalPodAutoscaler":
            target = spec.get("scaleTargetRef", {})
            check.expect(cluster.get(namespace, target.get("kind"), target.get("name")) is not None,
                         f"{owner}: scales {target.get('kind')}/{target.get('name')}, which does not exist")
        if kind == "NetworkPolicy":
            check_network_policy(check, cluster, namespace, owner, spec)


def check_network_policy(check, cluster, namespace, owner, spec):
    selector = spec.get("podSelector", {})
    if selector:
        check.expect(cluster.pods_selected(namespace, selector), f"{owner}: podSelector matches no pod")
    peers = [peer for rule in spec.get("ingress", []) for peer in rule.get("from", [])]
    peers += [peer for rule in spec.get("egress", []) for peer in rule.get("to", [])]
    for peer in peers:
        # Peers in other namespaces (namespaceSelector) cannot be resolved from here.
        if "podSelector" in peer and "namespaceSelector" not in peer and peer["podSelector"]:
            check.expect(cluster.pods_selected(namespace, peer["podSelector"]),
                         f"{owner}: peer podSelector {peer['podSelector']} matches no pod")


def main(argv):
    if len(argv) < 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    directory, rendered = Path(argv[1]), load_documents(argv[2])
    out_of_band = [doc for path in argv[3:] for doc in load_documents(path)]
    check = Checker()
    check_files(check, directory)
    cluster = Cluster(rendered, out_of_band)
    check_namespaces(check, cluster, rendered)
    for namespace, owner, _, spec, claims in cluster.pods:
        check_pod(check, cluster, namespace, owner, spec, claims)
    check_selectors(check, cluster, rendered)
    for problem in check.problems:
        print(f"  {problem}")
    if check.problems:
        print(f"{len(check.problems)} problem(s) in {directory}")
        return 1
    print(f"  {len(rendered)} objects, {len(cluster.pods)} pod templates, {check.checked} references: all resolve")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
