"""Istio Sidecar admission: a Sidecar must not quietly undo REGISTRY_ONLY egress.

Owns ``validate_sidecar``. Two things widen what a pod's proxy lets out: an outbound traffic
policy of ALLOW_ANY (or an ``egressProxy``, which forwards unknown traffic somewhere), and
egress hosts that import wildcard hosts from every namespace (``*/*``, ``*/*.example.com``),
which pulls in ServiceEntries from namespaces this webhook never checked. ``./*``,
``istio-system/*`` and the restrictive ``~/*`` (import nothing) are fine.

In an agent namespace, ``sidecar.namespace-import`` also refuses imports from any other
namespace (``otherns/*``, ``otherns/host``, ``*/<exact host>``) except the mesh's control-plane
namespace and the policy's ``mesh.inClusterNamespaces`` (the ones the rendered Sidecar
imports): which namespaces are enforced is not visible to a pure policy, and an imported
namespace's Services (a selector-less Service with hand-made endpoints, a forward proxy's
ClusterIP) become routes for the agent's proxy.

In Istio's root namespace a Sidecar without a workloadSelector is the mesh-wide default for
every namespace without its own: the same two checks run there under one rule,
``rootnamespace.sidecar`` (``webhook.policies.rootnamespace``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.result import Verdict, VerdictBuilder

ALLOW_ANY = "sidecar.allow-any"
WILDCARD_EGRESS = "sidecar.wildcard-egress"
NAMESPACE_IMPORT = "sidecar.namespace-import"


def validate_sidecar(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj):
        return Verdict()
    b = VerdictBuilder()
    raw_spec = obj.get("spec")
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    if active(context.policy, ALLOW_ANY):
        outbound_policy(b, spec.get("outboundTrafficPolicy"), ALLOW_ANY)
    if active(context.policy, WILDCARD_EGRESS):
        egress_hosts(b, spec.get("egress"), WILDCARD_EGRESS)
    if active(context.policy, NAMESPACE_IMPORT):
        mesh = context.policy.mesh
        foreign_imports(b, spec.get("egress"), {mesh.control_plane_namespace,
                                                *mesh.in_cluster_namespaces},
                        own=request.object_namespace)
    return b.build()


def outbound_policy(b: VerdictBuilder, policy: Any, rule: str) -> None:
    if not isinstance(policy, dict):
        return
    if str(policy.get("mode", "")).upper() == "ALLOW_ANY":
        b.violate(rule, "spec.outboundTrafficPolicy.mode", "ALLOW_ANY lets the selected "
                  "pods reach any host, undoing REGISTRY_ONLY; remove it or set REGISTRY_ONLY")
    if policy.get("egressProxy") is not None:
        b.violate(rule, "spec.outboundTrafficPolicy.egressProxy", "an egressProxy "
                  "forwards traffic for unknown hosts; remove it")


def _imports(egress: Any) -> Iterator[tuple[str, str, str, str]]:
    """(path, host as written, namespace, name) of every egress host."""
    for i, listener in enumerate(egress if isinstance(egress, list) else ()):
        hosts = listener.get("hosts") if isinstance(listener, dict) else None
        for j, host in enumerate(hosts if isinstance(hosts, list) else ()):
            if not isinstance(host, str):
                continue
            namespace, slash, name = host.partition("/")
            if not slash:  # Istio requires namespace/host; a bare host reads as any namespace
                namespace, name = "*", host
            yield f"spec.egress[{i}].hosts[{j}]", host, namespace.strip(), name


def foreign_imports(b: VerdictBuilder, egress: Any, mesh: set[str], *, own: str) -> None:
    """Imports from a namespace that is neither ``own`` (``.``, ``~``) nor one of ``mesh``."""
    suggested = ", ".join(f'"{n}/*"' for n in sorted(mesh))
    for path, host, namespace, name in _imports(egress):
        if namespace in {".", "~", own, *mesh} or (namespace == "*" and "*" in name):
            continue  # */<wildcard> is sidecar.wildcard-egress's
        where = "every namespace" if namespace == "*" else f"namespace {namespace}"
        b.violate(NAMESPACE_IMPORT, path, f"{host!r} imports hosts from {where}, whose "
                  "Services (hand-made endpoints, a forward proxy's ClusterIP) would become "
                  f"routes for the agent's proxy; import \"./*\" and {suggested} only, or "
                  "add the namespace to the policy's mesh.inClusterNamespaces")


def egress_hosts(b: VerdictBuilder, egress: Any, rule: str) -> None:
    for path, host, namespace, name in _imports(egress):
        if namespace == "*" and "*" in name:
            b.violate(rule, path, f"{host!r} imports every matching host from every namespace, "
                      "including ServiceEntries this webhook never checked; import "
                      "\"./*\" and \"istio-system/*\", or name exact hosts")
