"""A test double of Istio's sidecar injector, modelled on its chart's injection template.

Renders what ``istio-sidecar-injector`` adds to a pod labelled ``sidecar.istio.io/inject:
"true"`` (flavour ``istio``: upstream Istio, Sail, OpenShift Service Mesh 3), or annotated so
(flavour ``ossm2``: OpenShift Service Mesh 2, which always uses the CNI and writes its control
plane's name as the revision). The proxy's IDs default to 1337; ``openshift_proxy_ids`` gives
them as Istio's ``GetProxyIDs`` does on OpenShift (the top of the namespace's ranges). Modes:
``classic`` (``istio-init`` running istio-iptables as root with NET_ADMIN/NET_RAW,
``istio-proxy`` as a container), ``native`` (the same, with ``istio-proxy`` as an init
container with ``restartPolicy: Always``) and ``cni`` (``istio-validation`` running
``--run-validation --skip-rule-apply`` as the proxy UID, and the annotations the CNI plugin
reads). The pod's ``sidecar.istio.io/nativeSidecar`` annotation picks native or not, as in
Istio >= 1.24 (``honours_native_annotation=False`` is an older Istio that ignores it).
Init containers are ordered the way Istio's ``reorderPod`` orders them: with a native proxy,
``istio-init``/``istio-validation`` then ``istio-proxy`` come first; otherwise
``istio-validation`` first and ``istio-init`` LAST, after the pod's own init containers.
Volumes and the proxy's mounts follow Istio's golden files. The
``traffic.sidecar.istio.io/*`` annotations render into the iptables arguments the way the
template renders them (``-i``, ``-x``, ``-q``, ``-o``, ``-k``, ``-c``), so tests can show what a
capture-narrowing annotation would do. It returns a new pod; the input is not touched. It is a
simulator for tests, not Istio.
"""

from __future__ import annotations

import copy
import json
from typing import Any

PROXY_IMAGE = "docker.io/istio/proxyv2:1.28.0"
MODES = ("classic", "native", "cni")
NATIVE_ANNOTATION = "sidecar.istio.io/nativeSidecar"
VOLUMES = ("workload-socket", "credential-socket", "workload-certs", "istio-envoy",
           "istio-data", "istio-podinfo", "istio-token", "istiod-ca-cert", "istio-ca-crl")
# Where istio-proxy mounts each volume, in the order of Istio's golden files.
PROXY_MOUNTS = (("workload-socket", "/var/run/secrets/workload-spiffe-uds"),
                ("credential-socket", "/var/run/secrets/credential-uds"),
                ("workload-certs", "/var/run/secrets/workload-spiffe-credentials"),
                ("istiod-ca-cert", "/var/run/secrets/istio"),
                ("istio-ca-crl", "/var/run/secrets/istio/crl"),
                ("istio-data", "/var/lib/istio/data"),
                ("istio-envoy", "/etc/istio/proxy"),
                ("istio-token", "/var/run/secrets/tokens"),
                ("istio-podinfo", "/etc/istio/pod"))


def _volumes() -> list[dict[str, Any]]:
    """Istio's volumes with their sources (a volume without one defaults to emptyDir)."""
    sources: dict[str, dict[str, Any]] = {
        "istio-envoy": {"emptyDir": {"medium": "Memory"}},
        "istio-data": {"emptyDir": {}},
        "istio-podinfo": {"downwardAPI": {"items": [
            {"fieldRef": {"fieldPath": "metadata.labels"}, "path": "labels"},
            {"fieldRef": {"fieldPath": "metadata.annotations"}, "path": "annotations"}]}},
        "istio-token": {"projected": {"sources": [{"serviceAccountToken": {
            "audience": "istio-ca", "expirationSeconds": 43200, "path": "istio-token"}}]}},
        "istiod-ca-cert": {"configMap": {"name": "istio-ca-root-cert"}},
        "istio-ca-crl": {"configMap": {"name": "istio-ca-crl", "optional": True}},
    }
    return [{"name": name, **sources.get(name, {"emptyDir": {}})} for name in VOLUMES]


def _annotation(annotations: dict[str, Any], key: str, default: str) -> str:
    value = annotations.get(key)
    return value if isinstance(value, str) else default


FLAVOURS = ("istio", "ossm2")
OSSM2_CONTROL_PLANE = "basic"


def openshift_proxy_ids(annotations: dict[str, str]) -> tuple[int, int]:
    """(UID, GID) of the proxy in a namespace with these annotations, like Istio on OpenShift:
    the top of ``openshift.io/sa.scc.uid-range`` and of the first supplemental-groups range
    (``start/size``; groups may also be ``start-end`` and comma-separated)."""
    def top(block: str) -> int:
        if "/" in block:
            start, size = block.split("/")
            return int(start) + int(size) - 1
        return int(block.split("-")[1])
    uid = top(annotations["openshift.io/sa.scc.uid-range"])
    gid = top(annotations["openshift.io/sa.scc.supplemental-groups"].split(",")[0])
    return uid, gid


def iptables_args(annotations: dict[str, Any], *, cni: bool, proxy_uid: int = 1337,
                  proxy_gid: int | None = None) -> list[str]:
    """istio-init's arguments, rendered from the pod's annotations like the chart does."""
    gid = proxy_uid if proxy_gid is None else proxy_gid
    args = ["istio-iptables", "-p", "15001", "-z", "15006", "-u", str(proxy_uid), "-g", str(gid),
            "-m", _annotation(annotations, "sidecar.istio.io/interceptionMode", "REDIRECT"),
            "-i", _annotation(annotations, "traffic.sidecar.istio.io/includeOutboundIPRanges", "*"),
            "-x", _annotation(annotations, "traffic.sidecar.istio.io/excludeOutboundIPRanges", ""),
            "-b", _annotation(annotations, "traffic.sidecar.istio.io/includeInboundPorts", "*"),
            "-d", "15090,15021,15020"]
    optional = (("-q", "traffic.sidecar.istio.io/includeOutboundPorts"),
                ("-o", "traffic.sidecar.istio.io/excludeOutboundPorts"),
                ("-k", "istio.io/reroute-virtual-interfaces"),
                ("-k", "traffic.sidecar.istio.io/kubevirtInterfaces"),
                ("-c", "traffic.sidecar.istio.io/excludeInterfaces"))
    seen_k = False
    for flag, key in optional:
        if key in annotations and not (flag == "-k" and seen_k):
            args += [flag, str(annotations[key])]
            seen_k = seen_k or flag == "-k"
    args.append("--log_output_level=default:info")
    if cni:
        args += ["--run-validation", "--skip-rule-apply"]
    return args


def _init_container(annotations: dict[str, Any], *, cni: bool, proxy_uid: int,
                    proxy_gid: int) -> dict[str, Any]:
    image = _annotation(annotations, "sidecar.istio.io/proxyImage", PROXY_IMAGE)
    security: dict[str, Any] = {"allowPrivilegeEscalation": False, "privileged": False,
                                "capabilities": {"drop": ["ALL"]}}
    if cni:
        security |= {"readOnlyRootFilesystem": True, "runAsGroup": proxy_gid,
                     "runAsUser": proxy_uid, "runAsNonRoot": True}
    else:
        security["capabilities"] = {"add": ["NET_ADMIN", "NET_RAW"], "drop": ["ALL"]}
        security |= {"readOnlyRootFilesystem": False, "runAsGroup": 0, "runAsNonRoot": False,
                     "runAsUser": 0}
    return {"name": "istio-validation" if cni else "istio-init",
            "image": image if "/" in image else PROXY_IMAGE,
            "args": iptables_args(annotations, cni=cni, proxy_uid=proxy_uid,
                                  proxy_gid=proxy_gid),
            "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                          "requests": {"cpu": "100m", "memory": "128Mi"}},
            "securityContext": security}


def _proxy_container(pod: dict[str, Any], *, proxy_uid: int, proxy_gid: int) -> dict[str, Any]:
    app = [c["name"] for c in pod["spec"].get("containers", []) if c.get("name") != "istio-proxy"]
    probe = {"httpGet": {"path": "/healthz/ready", "port": 15021}, "periodSeconds": 15,
             "timeoutSeconds": 3, "failureThreshold": 4}
    return {
        "name": "istio-proxy", "image": PROXY_IMAGE,
        "args": ["proxy", "sidecar", "--domain", "$(POD_NAMESPACE).svc.cluster.local",
                 "--proxyLogLevel=warning", "--log_output_level=default:info"],
        "ports": [{"containerPort": 15090, "protocol": "TCP", "name": "http-envoy-prom"}],
        "env": [{"name": "ISTIO_META_APP_CONTAINERS", "value": ",".join(app)},
                {"name": "ISTIO_META_INTERCEPTION_MODE", "value": "REDIRECT"}],
        "readinessProbe": probe,
        "resources": {"limits": {"cpu": "2", "memory": "1Gi"},
                      "requests": {"cpu": "100m", "memory": "128Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"]}, "privileged": False,
                            "readOnlyRootFilesystem": True, "runAsGroup": proxy_gid,
                            "runAsNonRoot": True, "runAsUser": proxy_uid},
        "volumeMounts": [{"name": name, "mountPath": path} for name, path in PROXY_MOUNTS],
    }


def _rewrite_probes(container: dict[str, Any]) -> None:
    """Istio routes app HTTP probes through the agent on 15020."""
    for key, suffix in (("readinessProbe", "readyz"), ("livenessProbe", "livez"),
                        ("startupProbe", "startupz")):
        probe = container.get(key)
        if isinstance(probe, dict) and isinstance(probe.get("httpGet"), dict):
            probe["httpGet"] = {"path": f"/app-health/{container['name']}/{suffix}",
                                "port": 15020, "scheme": "HTTP"}


def inject(pod: dict[str, Any], *, mode: str = "classic", revision: str | None = None,
           proxy_uid: int = 1337, proxy_gid: int | None = None, flavour: str = "istio",
           honours_native_annotation: bool = True) -> dict[str, Any]:
    """The pod as the mesh's injector leaves it (unchanged when its selector does not match)."""
    if mode not in MODES or flavour not in FLAVOURS:
        raise ValueError(f"mode must be one of {MODES}, flavour one of {FLAVOURS}")
    gid = proxy_uid if proxy_gid is None else proxy_gid
    result = copy.deepcopy(pod)
    metadata = result.setdefault("metadata", {})
    labels = metadata.get("labels") or {}
    selected = (metadata.get("annotations") or {}) if flavour == "ossm2" else labels
    if selected.get("sidecar.istio.io/inject") != "true":
        return result  # the injector's selector does not match
    if flavour == "ossm2":  # Istio 1.20 underneath: no per-pod native-sidecar annotation
        mode, revision = "cni", revision or OSSM2_CONTROL_PLANE
        honours_native_annotation = False
    metadata["labels"] = labels
    if metadata.get("annotations") is None:
        metadata["annotations"] = {}
    annotations = metadata["annotations"]
    spec = result["spec"]
    cni = mode == "cni"
    native = mode == "native"
    if honours_native_annotation and annotations.get(NATIVE_ANNOTATION) in ("true", "false"):
        native = annotations[NATIVE_ANNOTATION] == "true"
    containers = [c for c in spec.get("containers", []) if c.get("name") != "istio-proxy"]
    init_containers = list(spec.get("initContainers") or [])
    ours_init = ([] if annotations.get("sidecar.istio.io/interceptionMode") == "NONE" else
                 [_init_container(annotations, cni=cni, proxy_uid=proxy_uid, proxy_gid=gid)])
    proxy = _proxy_container(result, proxy_uid=proxy_uid, proxy_gid=gid)
    for container in [*containers, *init_containers]:
        _rewrite_probes(container)
    if native:
        proxy["restartPolicy"] = "Always"
        proxy["startupProbe"] = dict(proxy["readinessProbe"], periodSeconds=1,
                                     failureThreshold=600)
        spec["initContainers"] = [*ours_init, proxy, *init_containers]
        spec["containers"] = containers
    elif cni:
        spec["initContainers"] = [*ours_init, *init_containers]  # validation first
        spec["containers"] = [*containers, proxy]
    else:
        spec["initContainers"] = [*init_containers, *ours_init]  # istio-init LAST
        spec["containers"] = [*containers, proxy]
    spec["volumes"] = _volumes() + list(spec.get("volumes") or [])
    labels.setdefault("security.istio.io/tlsMode", "istio")
    labels.setdefault("service.istio.io/canonical-name", labels.get(
        "app.kubernetes.io/name", labels.get("app", metadata.get("name", "unknown"))))
    labels.setdefault("service.istio.io/canonical-revision", labels.get(
        "app.kubernetes.io/version", labels.get("version", "latest")))
    if containers:
        annotations.setdefault("kubectl.kubernetes.io/default-logs-container",
                               containers[0]["name"])
        annotations.setdefault("kubectl.kubernetes.io/default-container", containers[0]["name"])
    annotations["istio.io/rev"] = revision or "default"
    annotations |= {"prometheus.io/path": "/stats/prometheus", "prometheus.io/port": "15020",
                    "prometheus.io/scrape": "true"}
    if cni:
        annotations |= {"sidecar.istio.io/interceptionMode": _annotation(
            annotations, "sidecar.istio.io/interceptionMode", "REDIRECT"),
            "traffic.sidecar.istio.io/includeOutboundIPRanges": _annotation(
                annotations, "traffic.sidecar.istio.io/includeOutboundIPRanges", "*"),
            "traffic.sidecar.istio.io/includeInboundPorts": "*",
            "traffic.sidecar.istio.io/excludeInboundPorts": "15020"}
    annotations["sidecar.istio.io/status"] = json.dumps({
        "initContainers": [c["name"] for c in ours_init] + (["istio-proxy"] if native else []),
        "containers": None if native else ["istio-proxy"],
        "volumes": list(VOLUMES), "imagePullSecrets": None,
        "revision": revision or "default"}, separators=(",", ":"))
    return result
