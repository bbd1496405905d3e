"""Istio VirtualService admission: routes from agent namespaces lead only where egress may go.

Owns ``validate_virtualservice`` for networking.istio.io v1alpha3, v1beta1 and v1 (one shape;
dispatch ignores the version). A VirtualService cannot open a port by itself, but it decides
where the proxy (or an egress gateway it is bound to) sends a request: a route or mirror to a
host nobody approved turns an approved request into traffic to that host. So:

- every destination (``http``/``tls``/``tcp`` ``route[].destination.host``, ``http[].mirror.host``
  and ``http[].mirrors[].destination.host``) is a cluster-local name or an exact host the
  registry approves for the namespace. This covers ``gateways`` too: a route bound to an egress
  gateway to an external host still needs the approval;
- every external name in ``spec.hosts`` is approved as well, so the object documents only
  traffic the registry allows;
- ``exportTo`` must not be ``*`` (nor unset, which Istio reads as ``*``): a route exported
  mesh-wide applies to other namespaces' proxies, whose approvals differ.

Cluster-local means a single label (a Service in the object's namespace), a name under
``.svc`` or under ``.svc.<cluster domain>``, or a ``*.`` wildcard under one of those. A
destination must be a Service of the object's own namespace (as for Gateway API routes) or of
the mesh's control-plane namespace (``mesh.controlPlaneNamespace``, where Istio's egress
gateway runs; only the mesh's operator writes there): a route to another namespace's Service
(a selector-less one with hand-made endpoints, a forward proxy) would send approved traffic
wherever that namespace's operator points it. Cluster-local names in ``spec.hosts`` only say
which requests the routes apply to, and stay allowed. Every other name goes through
``webhook.egress.hosts.parse_host`` (IP literals, metadata, private-use names are refused with its
reasons) and ``Registry.approve``. It does not check ports: the ServiceEntry that makes an
external host routable is checked for those (``webhook.policies.serviceentries``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from webhook.core.review import Request
from webhook.egress.hosts import HostError, HostProblem, parse_host
from webhook.egress.registry import Approval, PortProtocol
from webhook.policies.context import Context
from webhook.policies.egress import (
    active,
    needs_no_check,
    refusal_text,
    require_registry,
)
from webhook.policies.result import Verdict, VerdictBuilder

HOST_NOT_APPROVED = "virtualservice.host-not-approved"
DESTINATION_NOT_APPROVED = "virtualservice.destination-not-approved"
EXPORT_TO = "virtualservice.export-to"

ROUTE_SECTIONS = ("http", "tls", "tcp")


@dataclass(frozen=True, slots=True)
class _Name:
    """One host the object names: ``problem`` if unusable, else ``host`` if external."""

    rule: str
    path: str
    wanted: PortProtocol  # only for the advice in a refusal
    host: str | None = None  # an exact external host the registry must approve
    problem: str | None = None


def validate_virtualservice(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj):
        return Verdict()
    raw_spec = obj.get("spec")
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    domains = (context.policy.dns.cluster_domain,)
    names: list[_Name] = []
    if active(context.policy, HOST_NOT_APPROVED):
        hosts = spec.get("hosts")
        for i, raw in enumerate(hosts if isinstance(hosts, list) else ()):
            names.append(_classify(HOST_NOT_APPROVED, f"spec.hosts[{i}]", raw, domains,
                                   (443, "HTTPS")))
    namespace = request.object_namespace
    if active(context.policy, DESTINATION_NOT_APPROVED):
        mesh = context.policy.mesh.control_plane_namespace
        names.extend(_own_namespace(_classify(DESTINATION_NOT_APPROVED, path, raw, domains,
                                              wanted), raw, domains, (namespace, mesh))
                     for path, raw, wanted in _destinations(spec))
    registry = None
    if any(n.host is not None for n in names):
        # Only now: a VirtualService that routes inside the cluster needs no registry.
        name = request.name or str((obj.get("metadata") or {}).get("name", ""))
        registry = require_registry(context, what=f"VirtualService {namespace}/{name}")
    b = VerdictBuilder()
    for item in names:  # in the object's order, so refusals read top to bottom
        if item.problem is not None:
            b.violate(item.rule, item.path, item.problem)
        elif item.host is not None and registry is not None:
            result = registry.approve(host=item.host, namespace=namespace)
            if not isinstance(result, Approval):
                b.violate(item.rule, item.path, refusal_text(result, namespace=namespace,
                                                             wanted=[item.wanted]))
    if active(context.policy, EXPORT_TO):
        _export_to(b, spec.get("exportTo"))
    return b.build()


def _destinations(spec: dict[str, Any]) -> Iterator[tuple[str, Any, PortProtocol]]:
    """(path, host, what a registry entry would need) for every place traffic is sent."""
    for section in ROUTE_SECTIONS:
        routes = spec.get(section)
        for i, route in enumerate(routes if isinstance(routes, list) else ()):
            if not isinstance(route, dict):
                continue
            base = f"spec.{section}[{i}]"
            targets = route.get("route")
            for j, target in enumerate(targets if isinstance(targets, list) else ()):
                destination = target.get("destination") if isinstance(target, dict) else None
                if isinstance(destination, dict):
                    yield (f"{base}.route[{j}].destination.host", destination.get("host"),
                           _wanted(section, destination))
            if section != "http":
                continue
            mirror = route.get("mirror")
            if isinstance(mirror, dict):
                yield f"{base}.mirror.host", mirror.get("host"), _wanted(section, mirror)
            mirrors = route.get("mirrors")
            for k, item in enumerate(mirrors if isinstance(mirrors, list) else ()):
                destination = item.get("destination") if isinstance(item, dict) else None
                if isinstance(destination, dict):
                    yield (f"{base}.mirrors[{k}].destination.host", destination.get("host"),
                           _wanted(section, destination))


def _wanted(section: str, destination: dict[str, Any]) -> PortProtocol:
    port = destination.get("port")
    number = port.get("number") if isinstance(port, dict) else None
    if not isinstance(number, int) or isinstance(number, bool):
        number = 443
    if section != "http":
        return number, "TLS"
    return number, "HTTP" if number == 80 else "HTTPS"


def _classify(rule: str, path: str, raw: Any, domains: tuple[str, ...],
              wanted: PortProtocol) -> _Name:
    """Cluster-local: nothing to do. Unusable: a problem. External: for the registry."""
    try:
        host = parse_host(raw, cluster_domains=domains)
    except HostError as exc:
        if exc.reason in (HostProblem.CLUSTER, HostProblem.WILDCARD) and \
                is_cluster_local(str(raw), domains):
            return _Name(rule, path, wanted)
        if exc.reason is HostProblem.WILDCARD:
            hint = ("; a wildcard covers names the registry never approved one by one, so "
                    "name each exact host")
        elif exc.reason is HostProblem.CLUSTER:
            hint = ("; in-cluster destinations are Services: <name>, or "
                    "<name>.<namespace>.svc[.<cluster domain>]")
        else:
            hint = "; name an external DNS host the egress registry approves, or a Service"
        return _Name(rule, path, wanted, problem=f"{exc}{hint}")
    return _Name(rule, path, wanted, host=host.name)


def _own_namespace(item: _Name, raw: Any, domains: tuple[str, ...],
                   allowed: tuple[str, ...]) -> _Name:
    """A cluster-local destination becomes a problem unless it is in an ``allowed`` one."""
    if item.host is not None or item.problem is not None:
        return item
    other = service_namespace(str(raw), domains)
    if other == "" or other in allowed:
        return item
    where = "every namespace" if other == "*" else f"namespace {other}"
    return _Name(item.rule, item.path, item.wanted, problem=(
        f"{raw!r} is a Service of {where}; routes in an agent namespace lead only to its own "
        f"Services (<name> or <name>.{allowed[0]}.svc), the mesh's ({allowed[1]}), or hosts "
        "the egress registry approves, since another namespace's Service can point anywhere"))


def service_namespace(raw: str, domains: tuple[str, ...]) -> str:
    """The namespace of a cluster-local name: ``""`` for a short name (the object's own),
    ``"*"`` for a wildcard over namespaces (``*.svc.cluster.local``)."""
    text = raw.lower().removeprefix("*.").removesuffix(".")
    if "." not in text:
        return ""
    for suffix in sorted({"svc", "svc.cluster.local",
                          *(f"svc.{d.lower().strip('.')}" for d in domains)}, key=len,
                         reverse=True):
        if text == suffix:
            return "*"
        if text.endswith("." + suffix):
            return text[: -len(suffix) - 1].rpartition(".")[2]
    return "*"


def is_cluster_local(raw: str, domains: tuple[str, ...]) -> bool:
    """A Service name: one label, or under .svc[.<cluster domain>] (``*.`` allowed).

    Meant for names parse_host refused as cluster names or wildcards, so what is left to
    decide is their form; a bad label inside still fails in _valid.
    """
    wildcard = raw.startswith("*.")
    text = raw.lower().removeprefix("*.").removesuffix(".")
    if not text.isascii():
        return False  # Service names are ASCII; anything else is not cluster-local
    if "." not in text:
        # A short name: Istio reads it as a Service in the VirtualService's own namespace.
        return not wildcard and _valid(text)
    suffixes = {"svc", "svc.cluster.local", *(f"svc.{d.lower().strip('.')}" for d in domains)}
    return any(text == s or text.endswith("." + s) for s in suffixes) and _valid(text)


def _valid(text: str) -> bool:
    try:
        parse_host(text, cluster_domains=())
    except HostError as exc:
        return exc.reason is HostProblem.CLUSTER
    return True


def _export_to(b: VerdictBuilder, raw: Any) -> None:
    if not isinstance(raw, list) or not raw:
        b.violate(EXPORT_TO, "spec.exportTo", "exportTo is unset, and Istio's default exports "
                  "the routes to every namespace, whose proxies then use them with other "
                  "egress approvals; set exportTo: [\".\"]")
        return
    for i, value in enumerate(raw):
        if isinstance(value, str) and value.strip() == "*":
            b.violate(EXPORT_TO, f"spec.exportTo[{i}]", "'*' exports the routes to every "
                      "namespace, whose proxies then use them with other egress approvals; "
                      "use \".\" (this namespace) or name namespaces")
