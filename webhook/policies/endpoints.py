"""Endpoints and EndpointSlice admission in agent namespaces: no hand-made way out of the cluster.

Owns ``validate_endpoints`` and ``validate_endpointslice``. A Service without a selector takes
whatever addresses its Endpoints or EndpointSlices list, and Istio puts them in the mesh's
registry: a Service with a hand-made endpoint at any IP is an egress route REGISTRY_ONLY lets
through. So every address must pass ``webhook.policies.addressing.AddressJudge`` (the cluster's
pod or Service ranges, or an address the registry pins for an approved host on those ports);
an FQDN EndpointSlice's names must be hosts the registry approves on its ports.

Who wrote the object proves little: the EndpointSlice mirroring controller copies a
hand-made Endpoints object into an EndpointSlice (with its own ``managed-by`` label and an
owner reference to the Endpoints), and anyone may write a ``managed-by`` label. The one thing
taken on trust is the *user* the API server authenticated: objects written by the endpoint
controllers named in the policy (``network.endpointControllers``, which only ever list the pod
addresses of a Service's selector) are admitted, unless the slice is a mirror. Everything
else (hand-made objects, mirrors) is judged with ``cluster_ranges=False`` (``audit``, which
sees no user, keeps the ranges): an address inside
the pod or Service ranges is accepted only when the registry pins it or it is in the policy's
``network.handMadeEndpointCIDRs``, because a selector-less Service pointing at another
namespace's pod or ClusterIP reaches whatever runs there (a forward proxy).
"""

from __future__ import annotations

from typing import Any

from webhook.core.labels import ENDPOINTSLICE_MANAGED_BY_LABEL
from webhook.core.review import Request
from webhook.egress.hosts import HostError, parse_host
from webhook.egress.registry import Approval
from webhook.policies.addressing import AddressJudge, port_protocol
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check, refusal_text, require_registry
from webhook.policies.result import Verdict, VerdictBuilder

ADDRESS_NOT_APPROVED = "endpoints.address-not-approved"
SLICE_CONTROLLER = "endpointslice-controller.k8s.io"


def validate_endpoints(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if _skip(request, context, obj) or _from_controller(request, context):
        return Verdict()
    b = VerdictBuilder()
    judge = AddressJudge(context, request.object_namespace, _what(request, obj, "Endpoints"),
                         cluster_ranges=_no_writer(request))
    subsets = obj.get("subsets")
    for i, subset in enumerate(subsets if isinstance(subsets, list) else ()):
        if not isinstance(subset, dict):
            continue
        numbers = _numbers(subset.get("ports"))
        for key in ("addresses", "notReadyAddresses"):
            items = subset.get(key)
            for j, item in enumerate(items if isinstance(items, list) else ()):
                raw = item.get("ip") if isinstance(item, dict) else item
                problem = judge.problem(raw, numbers)
                if problem is not None:
                    b.violate(ADDRESS_NOT_APPROVED, f"subsets[{i}].{key}[{j}].ip", problem)
    return b.build()


def validate_endpointslice(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if _skip(request, context, obj) or (_from_controller(request, context)
                                        and not _mirrored(obj)):
        return Verdict()
    b = VerdictBuilder()
    namespace = request.object_namespace
    what = _what(request, obj, "EndpointSlice")
    raw_ports = obj.get("ports")
    ports = [p for p in raw_ports if isinstance(p, dict)] if isinstance(raw_ports, list) else []
    fqdn = obj.get("addressType") == "FQDN"
    judge = AddressJudge(context, namespace, what, cluster_ranges=_no_writer(request))
    endpoints = obj.get("endpoints")
    for i, endpoint in enumerate(endpoints if isinstance(endpoints, list) else ()):
        addresses = endpoint.get("addresses") if isinstance(endpoint, dict) else None
        for j, raw in enumerate(addresses if isinstance(addresses, list) else ()):
            path = f"endpoints[{i}].addresses[{j}]"
            problem = (_name_problem(context, raw, ports, namespace, what) if fqdn
                       else judge.problem(raw, _numbers(ports)))
            if problem is not None:
                b.violate(ADDRESS_NOT_APPROVED, path, problem)
    return b.build()


def _skip(request: Request, context: Context, obj: dict[str, Any]) -> bool:
    return needs_no_check(request, obj) or not active(context.policy, ADDRESS_NOT_APPROVED)


def _no_writer(request: Request) -> bool:
    """``audit`` judges stored objects without a user: the cluster ranges then pass, since
    controller-made objects cannot be told apart there."""
    return not request.username


def _from_controller(request: Request, context: Context) -> bool:
    return request.username in context.policy.network.endpoint_controllers


def _mirrored(obj: dict[str, Any]) -> bool:
    """Not the endpointslice controller's own slice: a mirror of user-written addresses.

    Only asked for slices an endpoint controller's user wrote, so the label is that
    controller's own word; a mirror carries the mirroring controller's label and an owner
    reference to the Endpoints it copies.
    """
    metadata = obj.get("metadata")
    metadata = metadata if isinstance(metadata, dict) else {}
    labels = metadata.get("labels")
    managed_by = labels.get(ENDPOINTSLICE_MANAGED_BY_LABEL) if isinstance(labels, dict) else None
    owners = metadata.get("ownerReferences")
    owned_by_endpoints = any(isinstance(o, dict) and o.get("kind") == "Endpoints"
                             for o in (owners if isinstance(owners, list) else ()))
    return managed_by != SLICE_CONTROLLER or owned_by_endpoints


def _numbers(raw_ports: Any) -> list[int]:
    return [p["port"] for p in (raw_ports if isinstance(raw_ports, list) else ())
            if isinstance(p, dict) and isinstance(p.get("port"), int)]


def _what(request: Request, obj: dict[str, Any], kind: str) -> str:
    metadata = obj.get("metadata")
    name = request.name or (metadata.get("name", "") if isinstance(metadata, dict) else "")
    return f"{kind} {request.object_namespace}/{name}"


def _name_problem(context: Context, raw: Any, ports: list[dict[str, Any]], namespace: str,
                  what: str) -> str | None:
    try:
        host = parse_host(raw, cluster_domains=(context.policy.dns.cluster_domain,)).name
    except HostError as exc:
        return f"{exc}; an FQDN endpoint must name an external host the registry approves"
    registry = require_registry(context, what=what)
    wanted = [(p["port"], port_protocol(p)) for p in ports if isinstance(p.get("port"), int)]
    result = registry.approve(host=host, namespace=namespace)
    for number, protocol in wanted:
        if not isinstance(result, Approval):
            break
        result = registry.approve(host=host, namespace=namespace, port=number,
                                  protocol=protocol)
    if isinstance(result, Approval):
        return None
    return refusal_text(result, namespace=namespace, wanted=wanted or [(443, "TLS")])
