"""The mesh side of egress: one ServiceEntry per approved host, and the namespace's Sidecar.

Owns the shape of both. A ServiceEntry is exported to its own namespace only, MESH_EXTERNAL,
resolved by DNS (or, when the registry pins addresses, STATIC endpoints at exactly those
addresses), with one port per approved port number. Where the registry approves several
protocols on one port, the entry uses the first of TLS, HTTPS, HTTP2, GRPC, HTTP: TLS passes
the client's own TLS through with the host matched on SNI. The default Sidecar (no
workloadSelector) keeps REGISTRY_ONLY and imports only the namespace's approved hosts, the
control plane's namespace and the in-cluster namespaces the policy names.
"""

from __future__ import annotations

from typing import Any

from webhook.config.policy import Policy
from webhook.core.labels import DEFAULT_SIDECAR_NAME
from webhook.egress.render.approved import Approved, ExactHost
from webhook.egress.render.objects import envelope, service_entry_name

ISTIO_API = "networking.istio.io/v1"
PROTOCOL_PREFERENCE = ("TLS", "HTTPS", "HTTP2", "GRPC", "HTTP")


def service_entries(approved: Approved, namespace: str) -> list[dict[str, Any]]:
    plain = [service_entry_name(host.name) for host in approved.exact]
    clashes = {name for name in plain if plain.count(name) > 1}
    return [_service_entry(host, namespace, service_entry_name(
        host.name, disambiguate=name in clashes)) for host, name in zip(approved.exact, plain,
                                                                        strict=True)]


def _service_entry(host: ExactHost, namespace: str, name: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "hosts": [host.name],
        "exportTo": ["."],
        "location": "MESH_EXTERNAL",
        "ports": _ports(host),
    }
    if host.addresses:
        spec["resolution"] = "STATIC"
        spec["endpoints"] = [{"address": str(address)} for address in host.addresses]
    else:
        spec["resolution"] = "DNS"
    return envelope(ISTIO_API, "ServiceEntry", name, namespace, spec=spec)


def _ports(host: ExactHost) -> list[dict[str, Any]]:
    by_number: dict[int, set[str]] = {}
    for number, protocol in host.pairs:
        by_number.setdefault(number, set()).add(protocol)
    ports = []
    for number in sorted(by_number):
        protocol = next(p for p in PROTOCOL_PREFERENCE if p in by_number[number])
        ports.append({"number": number, "name": f"{protocol.lower()}-{number}",
                      "protocol": protocol})
    return ports


def sidecar_hosts(hosts: list[str], policy: Policy) -> list[str]:
    """Egress hosts: ``./<host>`` per approved host, plus what the mesh and the policy need."""
    imported = [f"./{host}" for host in hosts]
    imported.append(f"{policy.mesh.control_plane_namespace}/*")
    imported.extend(f"{namespace}/*" for namespace in sorted(policy.mesh.in_cluster_namespaces))
    return list(dict.fromkeys(imported))


def default_sidecar(approved: Approved, namespace: str, policy: Policy) -> dict[str, Any]:
    hosts = [host.name for host in approved.exact]
    hosts.extend(f"*.{suffix}" for suffix in approved.suffixes)
    return envelope(ISTIO_API, "Sidecar", DEFAULT_SIDECAR_NAME, namespace, spec={
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "egress": [{"hosts": sidecar_hosts(hosts, policy)}],
    })
