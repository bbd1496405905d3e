"""Where a Kubernetes address may point from an agent namespace; the Istio protocol of a port.

Owns ``AddressJudge``, shared by the Service, Endpoints and EndpointSlice policies: an IP
address is acceptable when it lies in the cluster's own pod or Service ranges (policy
``network.podCIDRs``/``serviceCIDRs``) or when the egress registry pins it (``addresses``) for
a host approved for the namespace on every port in question. Loopback, link-local, metadata,
unspecified, multicast and reserved addresses are never acceptable, whatever the ranges say.
Also owns ``port_protocol``: the protocol Istio reads from a Service or endpoint port
(``appProtocol``, else the port name's prefix), which is what the registry approves.

It does not decide which objects are checked or which rule a problem breaks: the policies do.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from webhook.egress.hosts import is_forbidden_address, parse_ip
from webhook.egress.registry import IPAddress, Registry
from webhook.policies.context import Context
from webhook.policies.egress import require_registry

# appProtocol values (and port-name prefixes) Istio reads, mapped to the registry's protocols.
_PROTOCOLS = {"https": "HTTPS", "tls": "TLS", "http": "HTTP", "http2": "HTTP2",
              "grpc": "GRPC", "grpc-web": "GRPC", "kubernetes.io/h2c": "HTTP2"}


def port_protocol(port: dict[str, Any]) -> str:
    """The protocol Istio gives a Kubernetes port: ``TCP`` (opaque) when nothing says more."""
    transport = str(port.get("protocol") or "TCP").upper()
    if transport != "TCP":
        return transport  # UDP, SCTP: never host-matched
    app = port.get("appProtocol")
    if isinstance(app, str) and app.lower() in _PROTOCOLS:
        return _PROTOCOLS[app.lower()]
    name = port.get("name")
    if isinstance(name, str):
        prefix = name.lower().split("-", 1)[0]
        if prefix in _PROTOCOLS:
            return _PROTOCOLS[prefix]
    return "TCP"


@lru_cache(maxsize=4096)
def _address(raw: str) -> tuple[IPAddress | None, bool]:
    """(the exact address, whether it is never acceptable); parsing costs ~5 µs uncached."""
    address = parse_ip(raw) if "/" not in raw else None
    return address, address is not None and is_forbidden_address(address)


@dataclass(slots=True)
class AddressJudge:
    """Judges addresses for one object; fetches the registry only when an address needs it."""

    context: Context
    namespace: str
    what: str  # "Endpoints agents/x", for a fail-closed message
    # False for endpoints no endpoint controller wrote: an in-cluster address then needs a
    # registry pin or the policy's network.handMadeEndpointCIDRs, like an external one.
    cluster_ranges: bool = True
    _registry: Registry | None = field(default=None, init=False)

    def problem(self, raw: Any, ports: Iterable[int]) -> str | None:
        """None if ``raw`` may be reached on ``ports`` from this namespace; else why not."""
        address, forbidden = _address(raw) if isinstance(raw, str) else (None, False)
        if address is None:
            return f"{raw!r} is not an IP address"
        if forbidden:
            return (f"{address} is a loopback, link-local, metadata or reserved address, which "
                    "is never an acceptable endpoint")
        network = self.context.policy.network
        inside = network.in_cluster(address)
        if inside and (self.cluster_ranges or network.hand_made_allowed(address)):
            return None
        if self._registry is None:
            self._registry = require_registry(self.context, what=self.what)
        pins = self._registry.pins(address=address, namespace=self.namespace)
        ranges = ", ".join(str(n) for n in (*network.pod_cidrs, *network.service_cidrs))
        if not pins and inside:
            return (f"{address} is inside the cluster's pod and Service ranges ({ranges}), but "
                    "no endpoint controller wrote this object: a Service without a selector "
                    "would reach whatever runs at that pod or ClusterIP in any namespace (a "
                    "forward proxy) past every egress check. Give the Service a selector, "
                    "pin the address under addresses: of an approved host's registry entry, "
                    "or add its range to the policy's network.handMadeEndpointCIDRs")
        if not pins:
            return (f"{address} is outside the cluster's pod and Service ranges ({ranges}) and "
                    f"the egress registry pins it for no host approved for namespace "
                    f"{self.namespace}: traffic to this Service would leave the cluster past "
                    "every egress check. Point it at pods (give the Service a selector), or "
                    "list the address under addresses: of the approved host's registry entry "
                    "(if it is in the cluster, add its range to the policy's network.podCIDRs "
                    "or network.serviceCIDRs)")
        approved = {number for pin in pins for number, _ in pin.pairs}
        missing = sorted(set(ports) - approved)
        if missing:
            hosts = ", ".join(sorted(str(pin.key) for pin in pins))
            return (f"{address} is pinned for {hosts}, but not on port(s) "
                    f"{', '.join(map(str, missing))}; add the port to that registry entry")
        return None
