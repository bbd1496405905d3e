"""The mesh side of egress: one ServiceEntry per approved host, and the namespace's Sidecar.

Owns the shape of both. A ServiceEntry is exported to its own namespace only, MESH_EXTERNAL,
resolved by DNS (or, when the registry pins addresses, STATIC endpoints at exactly those
addresses), with one port per approved port number. Where the registry approves several
protocols on one port, the entry uses the first of TLS, HTTPS, HTTP2, GRPC, HTTP: TLS passes
the client's own TLS through with the host matched on SNI. The default Sidecar (no
workloadSelector) keeps REGISTRY_ONLY and imports only the namespace's approved hosts, the
control plane's namespace and the in-cluster namespaces the policy names; hosts the registry
limits to service accounts go only into those accounts' Sidecars
(``agent-sandbox-sa-<account>``, selecting the ``agentsandbox.io/service-account`` label the
webhook stamps and trusts).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhook.config.policy import Policy
from webhook.core.labels import (
    DEFAULT_SIDECAR_NAME,
    SERVICE_ACCOUNT_LABEL,
    SERVICE_ACCOUNT_SIDECAR_PREFIX,
    SKILL_LABEL,
)
from webhook.egress.render.approved import Approved, ExactHost
from webhook.egress.render.objects import envelope, prefixed_name, service_entry_name

ISTIO_API = "networking.istio.io/v1"
PROTOCOL_PREFERENCE = ("TLS", "HTTPS", "HTTP2", "GRPC", "HTTP")


def service_entries(approved: Approved, namespace: str,
                    extra: Iterable[ExactHost] = ()) -> list[dict[str, Any]]:
    """One per approved exact host, and per ``extra`` host (a Skill's host approved through a
    ``*.suffix`` entry) not already among them."""
    known = {host.name for host in approved.exact}
    hosts = [*approved.exact, *sorted((h for h in extra if h.name not in known),
                                      key=lambda h: h.name)]
    plain = [service_entry_name(host.name) for host in hosts]
    clashes = {name for name in plain if plain.count(name) > 1}
    return [_service_entry(host, namespace, service_entry_name(
        host.name, disambiguate=name in clashes)) for host, name in zip(hosts, plain,
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


def sidecar_hosts(hosts: list[str], policy: Policy, *, in_cluster: bool = True) -> list[str]:
    """Egress hosts: ``./<host>`` per approved host, plus what the mesh (and, unless
    ``in_cluster`` is off, the policy's in-cluster namespaces) need."""
    imported = [f"./{host}" for host in hosts]
    imported.append(f"{policy.mesh.control_plane_namespace}/*")
    if in_cluster:
        imported.extend(f"{namespace}/*"
                        for namespace in sorted(policy.mesh.in_cluster_namespaces))
    return list(dict.fromkeys(imported))


def default_sidecar(approved: Approved, namespace: str, policy: Policy) -> dict[str, Any]:
    """For pods no other Sidecar selects: the hosts open to every pod of the namespace."""
    return envelope(ISTIO_API, "Sidecar", DEFAULT_SIDECAR_NAME, namespace, spec={
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "egress": [{"hosts": sidecar_hosts(list(approved.open_hosts), policy)}],
    })


def agent_sidecars(approved: Approved, namespace: str, policy: Policy) -> list[dict[str, Any]]:
    """Per service account the registry names: the open hosts plus its own.

    The selector requires an empty Skill label (the webhook stamps one on pods without a
    Skill), so a Skill's pod is never selected by two Sidecars.
    """
    return [envelope(ISTIO_API, "Sidecar", prefixed_name(SERVICE_ACCOUNT_SIDECAR_PREFIX, account),
                     namespace, spec={
        "workloadSelector": {"labels": {SERVICE_ACCOUNT_LABEL: account, SKILL_LABEL: ""}},
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "egress": [{"hosts": sidecar_hosts(
            _exact_first([*approved.open_hosts, *hosts]), policy)}],
    }) for account, hosts in approved.by_service_account.items()]


def _exact_first(hosts: list[str]) -> list[str]:
    return sorted(dict.fromkeys(hosts), key=lambda h: (h.startswith("*."), h))
