"""Istio ServiceEntry admission: nothing reaches the mesh that the egress registry does not
approve (THREATS.md, "ServiceEntry").

Owns ``validate_serviceentry`` for networking.istio.io v1alpha3, v1beta1 and v1 alike (the
object shape is the same; dispatch ignores the version, so an older version is no way around).
Every host goes through ``webhook.egress.hosts``; every approval through
``webhook.egress.registry``. It does not mutate: a ServiceEntry is either acceptable as written
or refused with what to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from webhook.core.review import Request
from webhook.egress.hosts import HostError, HostProblem, parse_host, parse_ip
from webhook.egress.registry import HOST_MATCHED_PROTOCOLS, Approval, Refused, Registry
from webhook.policies.context import Context
from webhook.policies.egress import (
    active,
    needs_no_check,
    refusal_text,
    require_registry,
)
from webhook.policies.result import Verdict, VerdictBuilder

HOST_NOT_APPROVED = "serviceentry.host-not-approved"
HOST_DENIED = "serviceentry.host-denied"
HOST_INVALID = "serviceentry.host-invalid"
WILDCARD_HOST = "serviceentry.wildcard-host"
RESOLUTION = "serviceentry.resolution"
OPAQUE_PROTOCOL = "serviceentry.opaque-protocol"
ADDRESSES = "serviceentry.addresses"
ENDPOINTS = "serviceentry.endpoints"
EXPORT_TO = "serviceentry.export-to"
MESH_INTERNAL = "serviceentry.mesh-internal"
WORKLOAD_SELECTOR = "serviceentry.workload-selector"
PORT_NOT_APPROVED = "serviceentry.port-not-approved"

# Rules that consult the registry: with all of them off, no registry is needed.
REGISTRY_RULES = (HOST_NOT_APPROVED, HOST_DENIED, PORT_NOT_APPROVED, ADDRESSES, ENDPOINTS,
                  EXPORT_TO)
SAFE_RESOLUTIONS = frozenset({"DNS", "DNS_ROUND_ROBIN", "STATIC"})


@dataclass(frozen=True, slots=True)
class _Port:
    index: int
    number: int
    protocol: str
    name: str
    target: Any


@dataclass(slots=True)
class _Check:
    """One ServiceEntry being checked: the facts every rule below reads."""

    b: VerdictBuilder
    ctx: Context
    spec: dict[str, Any]
    namespace: str
    hosts: dict[str, int]  # normalised exact host -> its index in spec.hosts
    ports: list[_Port]  # ports with a host-matched protocol
    registry: Registry | None

    def on(self, rule: str) -> bool:
        return active(self.ctx.policy, rule)

    def wanted(self) -> list[tuple[int, str]]:
        return [(p.number, p.protocol) for p in self.ports] or [(443, "TLS")]


def validate_serviceentry(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj):
        return Verdict()
    raw_spec = obj.get("spec")
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    namespace = request.object_namespace
    check = _Check(VerdictBuilder(), context, spec, namespace, {}, [], None)
    _shape(check)
    _hosts(check)
    _ports(check)
    if check.hosts and any(check.on(rule) for rule in REGISTRY_RULES):
        name = request.name or str((obj.get("metadata") or {}).get("name", ""))
        check.registry = require_registry(context, what=f"ServiceEntry {namespace}/{name}")
        _approvals(check, check.registry)
        _addresses(check, check.registry)
        _endpoints(check, check.registry)
        _export_to(check, check.registry)
    return check.b.build()


def _shape(c: _Check) -> None:
    spec = c.spec
    if c.on(MESH_INTERNAL) and str(spec.get("location", "")).upper() == "MESH_INTERNAL":
        c.b.violate(MESH_INTERNAL, "spec.location", "MESH_INTERNAL makes the entry part of the "
                    "mesh (mTLS, service identity); egress entries must be MESH_EXTERNAL")
    if c.on(WORKLOAD_SELECTOR) and spec.get("workloadSelector") is not None:
        c.b.violate(WORKLOAD_SELECTOR, "spec.workloadSelector", "a workloadSelector turns "
                    "pods into this entry's endpoints; remove it and name external hosts")
    if c.on(RESOLUTION):
        resolution = str(spec.get("resolution") or "NONE").upper()
        if resolution == "NONE" and not spec.get("addresses"):
            c.b.violate(RESOLUTION, "spec.resolution", "resolution NONE (the default when "
                        "unset) lets traffic to any IP on these ports through; use resolution "
                        "DNS, or pin addresses the registry lists for the host")
        elif resolution == "DYNAMIC_DNS":
            c.b.violate(RESOLUTION, "spec.resolution", "DYNAMIC_DNS resolves whatever SNI or "
                        "Host the client sends; use resolution DNS")
        elif resolution not in SAFE_RESOLUTIONS and resolution != "NONE":
            c.b.violate(RESOLUTION, "spec.resolution", f"unknown resolution {resolution!r}; "
                        "use DNS")


def _hosts(c: _Check) -> None:
    raw_hosts = c.spec.get("hosts")
    if not isinstance(raw_hosts, list) or not raw_hosts:
        if c.on(HOST_INVALID):
            c.b.violate(HOST_INVALID, "spec.hosts", "list at least one exact external host")
        return
    domains = (c.ctx.policy.dns.cluster_domain,)
    for i, raw in enumerate(raw_hosts):
        try:
            host = parse_host(raw, cluster_domains=domains)
        except HostError as exc:
            rule = WILDCARD_HOST if exc.reason is HostProblem.WILDCARD else HOST_INVALID
            if c.on(rule):
                hint = ("; a ServiceEntry must name one exact host per entry in hosts"
                        if rule == WILDCARD_HOST else "; name the external DNS host instead")
                c.b.violate(rule, f"spec.hosts[{i}]", f"{exc}{hint}")
            continue
        c.hosts.setdefault(host.name, i)


def _ports(c: _Check) -> None:
    raw_ports = c.spec.get("ports")
    if not isinstance(raw_ports, list) or not raw_ports:
        if c.on(PORT_NOT_APPROVED):
            c.b.violate(PORT_NOT_APPROVED, "spec.ports", "list the ports; the registry "
                        "approves hosts on given ports, not every port")
        return
    for j, port in enumerate(raw_ports):
        port = port if isinstance(port, dict) else {}
        number = port.get("number")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
            if c.on(PORT_NOT_APPROVED):
                c.b.violate(PORT_NOT_APPROVED, f"spec.ports[{j}].number",
                            f"{number!r} is not a port number")
            continue
        protocol = str(port.get("protocol") or "").upper()
        if protocol not in HOST_MATCHED_PROTOCOLS:
            if c.on(OPAQUE_PROTOCOL):
                shown = protocol or "unset (Istio then treats the port as opaque TCP)"
                c.b.violate(OPAQUE_PROTOCOL, f"spec.ports[{j}].protocol",
                            f"protocol {shown} carries no host name Istio can match, so only "
                            "ports and IPs would count; use TLS or HTTPS for TLS traffic, "
                            "HTTP for plain HTTP")
            continue
        c.ports.append(_Port(j, number, protocol, str(port.get("name", "")),
                             port.get("targetPort")))


def _approvals(c: _Check, registry: Registry) -> None:
    for host, index in c.hosts.items():
        result = registry.approve(host=host, namespace=c.namespace)
        if not isinstance(result, Approval):
            rule = HOST_DENIED if result.reason is Refused.DENIED else HOST_NOT_APPROVED
            if c.on(rule):
                c.b.violate(rule, f"spec.hosts[{index}]",
                            refusal_text(result, namespace=c.namespace, wanted=c.wanted()))
            continue
        if not c.on(PORT_NOT_APPROVED):
            continue
        for port in c.ports:
            _port_approved(c, registry, host, port, port.number, f"spec.ports[{port.index}]")
            target = port.target
            if isinstance(target, int) and not isinstance(target, bool) and target != port.number:
                _port_approved(c, registry, host, port, target,
                               f"spec.ports[{port.index}].targetPort")


def _port_approved(c: _Check, registry: Registry, host: str, port: _Port, number: int,
                   path: str) -> None:
    result = registry.approve(host=host, namespace=c.namespace, port=number,
                              protocol=port.protocol)
    if not isinstance(result, Approval):
        c.b.violate(PORT_NOT_APPROVED, path, refusal_text(
            result, namespace=c.namespace, wanted=[(number, port.protocol)]))


def _addresses(c: _Check, registry: Registry) -> None:
    raw = c.spec.get("addresses")
    if not c.on(ADDRESSES) or raw is None:
        return
    if not isinstance(raw, list):
        c.b.violate(ADDRESSES, "spec.addresses", "must be a list of exact IP addresses")
        return
    for k, value in enumerate(raw):
        path = f"spec.addresses[{k}]"
        ip = parse_ip(value)
        if ip is None:
            c.b.violate(ADDRESSES, path, f"{value!r} is not an exact IP address; CIDRs and "
                        "names map the hosts to addresses nobody approved")
            continue
        for host in c.hosts:
            if ip not in registry.addresses(host=host, namespace=c.namespace):
                c.b.violate(ADDRESSES, path, _address_text(ip, host, c.namespace))


def _endpoints(c: _Check, registry: Registry) -> None:
    raw = c.spec.get("endpoints")
    if not c.on(ENDPOINTS) or raw is None:
        return
    if not isinstance(raw, list):
        c.b.violate(ENDPOINTS, "spec.endpoints", "must be a list of endpoints")
        return
    static = str(c.spec.get("resolution") or "").upper() == "STATIC"
    by_name = {p.name: p for p in c.ports if p.name}
    for k, endpoint in enumerate(raw):
        endpoint = endpoint if isinstance(endpoint, dict) else {}
        path = f"spec.endpoints[{k}]"
        _endpoint_address(c, registry, endpoint.get("address"), f"{path}.address", static)
        ports = endpoint.get("ports")
        for name, number in (ports.items() if isinstance(ports, dict) else ()):
            port = by_name.get(name)
            if port is None or not isinstance(number, int) or number == port.number:
                continue
            for host in c.hosts:
                _port_approved(c, registry, host, port, number, f"{path}.ports.{name}")


def _endpoint_address(c: _Check, registry: Registry, address: Any, path: str,
                      static: bool) -> None:
    if not isinstance(address, str) or not address or address.startswith("unix://"):
        c.b.violate(ENDPOINTS, path, f"{address!r} is not an external address; endpoints must "
                    "be IPs or names the registry lists")
        return
    ip = parse_ip(address)
    if ip is not None:
        for host in c.hosts:
            if ip not in registry.addresses(host=host, namespace=c.namespace):
                c.b.violate(ENDPOINTS, path, _address_text(ip, host, c.namespace))
        return
    if static:
        c.b.violate(ENDPOINTS, path, f"{address} is a name, but resolution STATIC needs IP "
                    "addresses; use resolution DNS")
        return
    try:
        name = parse_host(address, cluster_domains=(c.ctx.policy.dns.cluster_domain,)).name
    except HostError as exc:
        c.b.violate(ENDPOINTS, path, f"{exc}; endpoints must be names the registry lists")
        return
    result = registry.approve(host=name, namespace=c.namespace)
    if not isinstance(result, Approval):
        c.b.violate(ENDPOINTS, path, "the endpoint points the entry's hosts at another name: "
                    + refusal_text(result, namespace=c.namespace, wanted=c.wanted()))


def _export_to(c: _Check, registry: Registry) -> None:
    if not c.on(EXPORT_TO):
        return
    raw = c.spec.get("exportTo")
    if not isinstance(raw, list) or not raw:
        c.b.violate(EXPORT_TO, "spec.exportTo", "exportTo is unset, and Istio's default "
                    "exports the entry to every namespace: one namespace would open egress for "
                    "all; set exportTo: [\".\"]")
        return
    for k, value in enumerate(raw):
        path = f"spec.exportTo[{k}]"
        if value in (".", "~", c.namespace):
            continue
        for host in c.hosts:
            if value == "*":
                if not registry.mesh_wide_export(host=host, namespace=c.namespace):
                    c.b.violate(EXPORT_TO, path, f"exportTo '*' opens {host} to every "
                                "namespace; set exportTo: [\".\"], or set allowMeshWideExport: "
                                f"true on the registry entry for {host}")
            elif not isinstance(registry.approve(host=host, namespace=str(value)), Approval):
                c.b.violate(EXPORT_TO, path, f"exports {host} to namespace {value}, which the "
                            f"registry does not approve {host} for; add {value} to the entry's "
                            "namespaces, or set exportTo: [\".\"]")


def _address_text(ip: object, host: str, namespace: str) -> str:
    return (f"{ip} is not among the addresses the egress registry lists for {host} in "
            f"namespace {namespace}; to allow it, add addresses: [{ip}] to that registry entry")
