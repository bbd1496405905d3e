"""Gateway API route admission in agent namespaces: backends only where egress may go.

Owns ``validate_route`` for HTTPRoute, GRPCRoute, TCPRoute and TLSRoute
(gateway.networking.k8s.io, every served version: the shapes agree where it matters). Istio
programs a route attached to a Gateway or, in the mesh (GAMMA), to a Service, into the proxies:
its backends are where the traffic goes. So every backend, in ``rules[].backendRefs[]`` and
in every ``requestMirror`` filter (rule-level and backend-level), must be:

- a Service (group ``""``, kind ``Service``, the defaults) of the route's own namespace:
  in-cluster, reachable under REGISTRY_ONLY anyway; a ``namespace`` naming another one is
  refused (a ReferenceGrant there would let this namespace's routes use that namespace's
  Services, which are not this namespace's to approve); or
- an Istio ``Hostname`` backend (group ``networking.istio.io``) whose name is an exact host the
  registry approves for the namespace (through the one normaliser: no IP literal, metadata or
  cluster name).

Every other kind (ServiceImport, a custom backend) is refused: nothing in it can be compared
with the registry. Ports are not compared, as for VirtualServices: the ServiceEntry that makes
an external host routable is checked for those.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.core.review import Request
from webhook.egress.hosts import HostError, parse_host
from webhook.egress.registry import Approval
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check, refusal_text, require_registry
from webhook.policies.result import Verdict, VerdictBuilder

BACKEND_NOT_APPROVED = "route.backend-not-approved"
ISTIO_GROUP = "networking.istio.io"


def validate_route(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj) or not active(context.policy, BACKEND_NOT_APPROVED):
        return Verdict()
    spec = obj.get("spec")
    namespace = request.object_namespace
    b = VerdictBuilder()
    registry = None
    for path, ref in _backend_refs(spec if isinstance(spec, dict) else {}):
        group = str(ref.get("group") or "")
        kind = str(ref.get("kind") or "Service")
        name = ref.get("name")
        if (group, kind) == ("", "Service"):
            other = ref.get("namespace")
            if other not in (None, "", namespace):
                b.violate(BACKEND_NOT_APPROVED, f"{path}.namespace", f"the backend is a "
                          f"Service of namespace {other}; a route in an agent namespace may "
                          "send traffic only to its own namespace's Services or to hosts the "
                          "egress registry approves")
            continue
        if (group, kind) != (ISTIO_GROUP, "Hostname"):
            b.violate(BACKEND_NOT_APPROVED, path, f"backend kind {group or 'core'}/{kind} "
                      "cannot be compared with the egress registry; use a Service of this "
                      f"namespace or a {ISTIO_GROUP} Hostname the registry approves")
            continue
        try:
            host = parse_host(name, cluster_domains=(context.policy.dns.cluster_domain,)).name
        except HostError as exc:
            b.violate(BACKEND_NOT_APPROVED, f"{path}.name", f"{exc}; a Hostname backend must "
                      "be an exact external host the egress registry approves")
            continue
        if registry is None:
            what = f"{request.kind} {namespace}/{request.name}"
            registry = require_registry(context, what=what)
        result = registry.approve(host=host, namespace=namespace)
        if not isinstance(result, Approval):
            port = ref.get("port")
            wanted = (port if isinstance(port, int) else 443, "HTTPS")
            b.violate(BACKEND_NOT_APPROVED, f"{path}.name",
                      refusal_text(result, namespace=namespace, wanted=[wanted]))
    return b.build()


def _backend_refs(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    rules = spec.get("rules")
    for i, rule in enumerate(rules if isinstance(rules, list) else ()):
        if not isinstance(rule, dict):
            continue
        yield from _mirrors(f"spec.rules[{i}]", rule.get("filters"))
        refs = rule.get("backendRefs")
        for j, ref in enumerate(refs if isinstance(refs, list) else ()):
            if isinstance(ref, dict):
                path = f"spec.rules[{i}].backendRefs[{j}]"
                yield path, ref
                yield from _mirrors(path, ref.get("filters"))


def _mirrors(base: str, filters: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    for k, item in enumerate(filters if isinstance(filters, list) else ()):
        mirror = item.get("requestMirror") if isinstance(item, dict) else None
        ref = mirror.get("backendRef") if isinstance(mirror, dict) else None
        if isinstance(ref, dict):
            yield f"{base}.filters[{k}].requestMirror.backendRef", ref
