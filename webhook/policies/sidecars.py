"""Istio Sidecar admission: a Sidecar must not quietly undo REGISTRY_ONLY egress.

Owns ``validate_sidecar``. Two things widen what a pod's proxy lets out: an outbound traffic
policy of ALLOW_ANY (or an ``egressProxy``, which forwards unknown traffic somewhere), and
egress hosts that import wildcard hosts from every namespace (``*/*``, ``*/*.example.com``),
which pulls in ServiceEntries from namespaces this webhook never checked. ``./*``,
``istio-system/*`` and the restrictive ``~/*`` (import nothing) are fine. Imports from one
other named namespace are allowed: which namespaces are enforced is not visible to a pure
policy, and that namespace's entries are what its operator exported.

In Istio's root namespace a Sidecar without a workloadSelector is the mesh-wide default for
every namespace without its own: the same two checks run there under one rule,
``rootnamespace.sidecar`` (``webhook.policies.rootnamespace``).
"""

from __future__ import annotations

from typing import Any

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.result import Verdict, VerdictBuilder

ALLOW_ANY = "sidecar.allow-any"
WILDCARD_EGRESS = "sidecar.wildcard-egress"


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


def egress_hosts(b: VerdictBuilder, egress: Any, rule: str) -> None:
    for i, listener in enumerate(egress if isinstance(egress, list) else ()):
        hosts = listener.get("hosts") if isinstance(listener, dict) else None
        for j, host in enumerate(hosts if isinstance(hosts, list) else ()):
            if not isinstance(host, str):
                continue
            namespace, slash, name = host.partition("/")
            if not slash:  # Istio requires namespace/host; a bare host reads as any namespace
                namespace, name = "*", host
            if namespace.strip() == "*" and "*" in name:
                b.violate(rule, f"spec.egress[{i}].hosts[{j}]",
                          f"{host!r} imports every matching host from every namespace, "
                          "including ServiceEntries this webhook never checked; import "
                          "\"./*\" and \"istio-system/*\", or name exact hosts")
