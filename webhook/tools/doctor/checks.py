"""The checks ``doctor`` runs: pure functions from a ``Snapshot`` to ``Finding``s.

Owns what "ready" means for each prerequisite (README, "Prerequisites"): Kubernetes 1.27 or
later; Istio's sidecar injector installed and called after our mutating configuration;
REGISTRY_ONLY mesh-wide or in every enforced namespace; the approved RuntimeClass with a Kata
handler, overhead and nodes; policy and registry ConfigMaps that load; namespaces labelled
for enforcement (and none only looking labelled); the rendered egress layers when the
controller runs. Our webhook configurations (``webhooks``) and the resolver (``resolver``)
have modules of their own; ``CHECKS`` lists them all in report order.

Deliberately no I/O, no clock (the snapshot carries ``now``) and no kubernetes client: each
check reads the plain dicts the API server sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import yaml

from webhook.config.policy import parse_policy
from webhook.core.errors import ConfigError
from webhook.egress.registry import Registry, parse_registry
from webhook.tools.doctor.findings import (
    Finding,
    failed,
    name_of,
    not_applicable,
    passed,
    unreadable,
)
from webhook.tools.doctor.resolver import resolver
from webhook.tools.doctor.snapshot import (
    CONTROLLER_DEPLOYMENT,
    POLICY_CONFIGMAP,
    POLICY_KEY,
    REGISTRY_CONFIGMAP,
    REGISTRY_KEY,
    RENDERED_NETWORK_POLICY,
    RENDERED_SIDECAR,
    Snapshot,
    Unreadable,
)
from webhook.tools.doctor.webhooks import check_webhook_configurations
from webhook.tools.lookalike import lookalike_labels
from webhook.tools.offline import NamespaceMode, namespace_mode

T = TypeVar("T")

MINIMUM_KUBERNETES = (1, 27)
NATIVE_SIDECARS_KUBERNETES = (1, 29)
INJECTOR_SUFFIX = "sidecar-injector.istio.io"
KATA_HANDLER_PREFIX = "kata"


def _server_version(version: dict[str, Any]) -> tuple[int, int] | None:
    major = "".join(c for c in str(version.get("major", "")) if c.isdigit())
    minor = "".join(c for c in str(version.get("minor", "")) if c.isdigit())
    return (int(major), int(minor)) if major and minor else None


def kubernetes_version(snapshot: Snapshot) -> list[Finding]:
    check = "Kubernetes version"
    if isinstance(snapshot.version, Unreadable):
        return [unreadable(check, snapshot.version)]
    found = _server_version(snapshot.version)
    if found is None:
        return [failed(check, f"unknown version {snapshot.version!r}", "check the API server")]
    wanted = ".".join(map(str, MINIMUM_KUBERNETES))
    if found < MINIMUM_KUBERNETES:
        return [failed(check, f"{found[0]}.{found[1]} is older than {wanted}",
                       f"upgrade the cluster to Kubernetes {wanted} or later")]
    return [passed(check, f"{found[0]}.{found[1]} ({wanted} or later is supported)")]


def native_sidecars(snapshot: Snapshot) -> list[Finding]:
    """``istio.nativeSidecars: true`` (the default) needs native sidecars: Kubernetes 1.29+.

    On older servers Istio's injected init container with ``restartPolicy: Always`` loses the
    field, never exits, and the pod never starts: doctor says so before the first agent pod does.
    """
    check = "native sidecars"
    if not snapshot.policy.istio.native_sidecars:
        return [not_applicable(check, "istio.nativeSidecars is false: pods with init "
                               "containers need the Istio CNI (pod.init-before-capture)")]
    if isinstance(snapshot.version, Unreadable):
        return [unreadable(check, snapshot.version)]
    found = _server_version(snapshot.version)
    wanted = ".".join(map(str, NATIVE_SIDECARS_KUBERNETES))
    if found is None or found < NATIVE_SIDECARS_KUBERNETES:
        shown = "an unknown version" if found is None else f"{found[0]}.{found[1]}"
        return [failed(check, f"istio.nativeSidecars is true, but Kubernetes {shown} has no "
                       f"native sidecars (needs {wanted}): pods with init containers would "
                       "never start",
                       "set istio.nativeSidecars: false in the policy and install the Istio "
                       f"CNI, or upgrade to Kubernetes {wanted}")]
    return [passed(check, f"Kubernetes {found[0]}.{found[1]} runs Istio's proxy as a native "
                   "sidecar, ahead of user init containers")]


def istio_injector(snapshot: Snapshot) -> list[Finding]:
    check = "Istio sidecar injector"
    if isinstance(snapshot.mutating_webhooks, Unreadable):
        return [unreadable(check, snapshot.mutating_webhooks)]
    ours = snapshot.settings.configuration
    injectors = sorted(name_of(c) for c in snapshot.mutating_webhooks
                       if any(str(w.get("name", "")).endswith(INJECTOR_SUFFIX)
                              for w in c.get("webhooks") or []))
    if not injectors:
        return [failed(check, "no mutating webhook configuration has Istio's "
                       f"*.{INJECTOR_SUFFIX} webhooks",
                       "install Istio in sidecar mode (istioctl install, or the istiod Helm "
                       "chart); ambient mode is not supported")]
    early = [name for name in injectors if name <= ours]
    if early:
        return [failed(check, f"{', '.join(early)} sorts before {ours}, so the injector runs "
                       "before the inject label is added and pods get no sidecar",
                       f"keep our configuration named {ours}; rename or re-tag the Istio "
                       "configuration so that it sorts after it")]
    return [passed(check, f"{', '.join(injectors)} (after {ours}, so it sees the inject label)")]


def mesh_egress(snapshot: Snapshot) -> list[Finding]:
    check = "REGISTRY_ONLY egress"
    mode = _mesh_mode(snapshot.mesh_configmap)
    where = f"ConfigMap {snapshot.istio_namespace}/{snapshot.mesh_configmap_name}"
    if mode == "REGISTRY_ONLY":
        return [passed(check, f"mesh-wide (outboundTrafficPolicy in {where})")]
    if _registry_only(snapshot.root_sidecars):
        return [passed(check, "mesh-wide (a Sidecar without workloadSelector in the root "
                       f"namespace {snapshot.istio_namespace})")]
    enforced = snapshot.enforced_namespaces()
    missing = [ns for ns in enforced if not _registry_only(snapshot.sidecars.get(ns))]
    if enforced and not missing:
        return [passed(check, f"per namespace: a REGISTRY_ONLY Sidecar in each of "
                       f"{', '.join(enforced)}")]
    mesh = "mesh config not found" if mode is None else f"mesh mode is {mode}"
    return [failed(check, f"{mesh} ({where}) and no REGISTRY_ONLY Sidecar in "
                   f"{', '.join(missing) or 'any enforced namespace'}: unapproved hosts stay "
                   "reachable",
                   "set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY (istioctl install "
                   "--set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY), or run the "
                   f"controller, whose Sidecar {RENDERED_SIDECAR} sets it per namespace")]


def runtime_class(snapshot: Snapshot) -> list[Finding]:
    name = snapshot.policy.runtime_class.name
    check = f"RuntimeClass {name}"
    found = snapshot.runtime_class
    if isinstance(found, Unreadable):
        return [unreadable(check, found)]
    if found is None:
        return [failed(check, "not found", f"create RuntimeClass {name} for your Kata "
                       "handler (manifests/base/runtimeclass-kata.yaml is an example), or set "
                       "runtimeClass.name in the policy")]
    handler = str(found.get("handler", ""))
    memory = ((found.get("overhead") or {}).get("podFixed") or {}).get("memory")
    problems = []
    if not handler.startswith(KATA_HANDLER_PREFIX):
        problems.append(f"handler {handler!r} is not a Kata Containers handler")
    if not memory:
        problems.append("no overhead.podFixed.memory, so the VM's own memory is not charged")
    nodes = snapshot.runtime_nodes
    if isinstance(nodes, list) and not nodes:
        problems.append("no node matches its scheduling.nodeSelector")
    if problems:
        return [failed(check, "; ".join(problems), "set handler to the Kata handler in your "
                       "containerd/CRI-O config (kata, kata-qemu, kata-clh, ...), "
                       "overhead.podFixed to what the VM costs, and label the Kata nodes")]
    on = (f"on {len(nodes)} node(s)" if isinstance(nodes, list)
          else "nodes not verified: no scheduling.nodeSelector")
    return [passed(check, f"handler {handler}, overhead {memory} memory, {on}")]


def policy_loads(snapshot: Snapshot) -> list[Finding]:
    return _config_map_loads(
        f"policy ConfigMap {POLICY_CONFIGMAP}", snapshot.policy_configmap, key=POLICY_KEY,
        parse=lambda text: parse_policy(text, source=f"ConfigMap {POLICY_CONFIGMAP}"),
        describe=lambda policy: f"loads ({policy.digest[:19]})",
        fix=f"fix {POLICY_KEY} in the ConfigMap (README, \"Policy file\")")


def registry_loads(snapshot: Snapshot) -> list[Finding]:
    def describe(registry: Registry) -> str:
        entries = len(registry.entries)
        note = " (approves nothing)" if not entries else ""
        return (f"loads: {_count(entries, 'entry', 'entries')}, {len(registry.deny)} "
                f"denied{note}")

    return _config_map_loads(
        f"registry ConfigMap {REGISTRY_CONFIGMAP}", snapshot.registry_configmap,
        key=REGISTRY_KEY, describe=describe, fix=f"fix {REGISTRY_KEY} (docs/egress.md)",
        parse=lambda text: parse_registry(text, source=f"ConfigMap {REGISTRY_CONFIGMAP}"))


def _config_map_loads(check: str, found: dict[str, Any] | Unreadable | None, *, key: str,
                      parse: Callable[[str], T], describe: Callable[[T], str],
                      fix: str) -> list[Finding]:
    if isinstance(found, Unreadable):
        return [unreadable(check, found)]
    if found is None:
        return [failed(check, "not found", "kubectl apply -k manifests/")]
    try:
        loaded = parse(str((found.get("data") or {}).get(key) or ""))
    except ConfigError as exc:
        return [failed(check, str(exc), fix)]
    return [passed(check, describe(loaded))]


def agent_namespaces(snapshot: Snapshot) -> list[Finding]:
    check = "agent namespaces"
    if isinstance(snapshot.namespaces, Unreadable):
        return [unreadable(check, snapshot.namespaces)]
    findings = [failed(check, f"namespace {name_of(ns)}: {problem}",
                       f"kubectl label namespace {name_of(ns)} agentsandbox.io/enforce=true")
                for ns in snapshot.namespaces
                for problem in lookalike_labels((ns.get("metadata") or {}).get("labels"))]
    enforced = snapshot.enforced_namespaces()
    if not enforced:
        findings.append(failed(check, "no namespace is labelled agentsandbox.io/enforce=true",
                               "kubectl label namespace NS agentsandbox.io/enforce=true"))
    else:
        warned = sorted(name_of(ns) for ns in snapshot.namespaces
                        if namespace_mode((ns.get("metadata") or {}).get("labels"))
                        is NamespaceMode.WARN)
        also = f"; warn only: {', '.join(warned)}" if warned else ""
        findings.insert(0, passed(check, f"enforced: {', '.join(enforced)}{also}"))
    return findings


def rendered_layers(snapshot: Snapshot) -> list[Finding]:
    check = "rendered egress layers"
    controller = snapshot.controller
    if isinstance(controller, Unreadable):
        return [unreadable(check, controller)]
    ns = snapshot.settings.namespace
    if controller is None:
        return [not_applicable(check, f"no Deployment {ns}/{CONTROLLER_DEPLOYMENT}, so "
                               "nothing renders them; not checked")]
    findings = []
    if not (controller.get("status") or {}).get("availableReplicas"):
        findings.append(failed(check, f"Deployment {ns}/{CONTROLLER_DEPLOYMENT} has no "
                               "available replica", f"kubectl -n {ns} describe deployment/"
                               f"{CONTROLLER_DEPLOYMENT}"))
    for name in snapshot.enforced_namespaces():
        missing = []
        policy = snapshot.network_policies.get(name)
        if not isinstance(policy, dict):
            missing.append(f"NetworkPolicy {RENDERED_NETWORK_POLICY}")
        sidecars = snapshot.sidecars.get(name)
        if not isinstance(sidecars, list) or RENDERED_SIDECAR not in map(name_of, sidecars):
            missing.append(f"Sidecar {RENDERED_SIDECAR}")
        if missing:
            findings.append(failed(check, f"{name}: no {' and no '.join(missing)}",
                                   f"kubectl -n {ns} logs deploy/{CONTROLLER_DEPLOYMENT}"))
        else:
            findings.append(passed(check, f"{name}: NetworkPolicy {RENDERED_NETWORK_POLICY}, "
                                   f"Sidecar {RENDERED_SIDECAR}"))
    return findings


CHECKS: tuple[Callable[[Snapshot], list[Finding]], ...] = (
    kubernetes_version, native_sidecars, istio_injector, mesh_egress, runtime_class,
    check_webhook_configurations, policy_loads, registry_loads, agent_namespaces, resolver,
    rendered_layers,
)


def run_checks(snapshot: Snapshot) -> list[Finding]:
    return [finding for check in CHECKS for finding in check(snapshot)]


def _count(number: int, one: str, many: str) -> str:
    return f"{number} {one if number == 1 else many}"


def _registry_only(sidecars: list[dict[str, Any]] | Unreadable | None) -> bool:
    if not isinstance(sidecars, list):
        return False
    return any(not (s.get("spec") or {}).get("workloadSelector")
               and ((s.get("spec") or {}).get("outboundTrafficPolicy") or {}).get("mode")
               == "REGISTRY_ONLY" for s in sidecars)


def _mesh_mode(configmap: dict[str, Any] | Unreadable | None) -> str | None:
    if not isinstance(configmap, dict):
        return None
    try:
        mesh = yaml.safe_load(str((configmap.get("data") or {}).get("mesh") or "")) or {}
    except yaml.YAMLError:
        return "unreadable"
    mode = ((mesh.get("outboundTrafficPolicy") or {}).get("mode")
            if isinstance(mesh, dict) else None)
    return str(mode or "ALLOW_ANY")  # Istio's default when the field is absent
