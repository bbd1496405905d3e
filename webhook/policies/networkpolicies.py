"""NetworkPolicy admission in agent namespaces: no tenant policy widens egress past the floor.

NetworkPolicies add up: a pod selected by several may send whatever any of them allows. The
rendered ``agent-sandbox-egress`` policy lets agent pods send DNS to the filtering resolver
and TCP (which the sidecar captures and filters by host); a tenant policy allowing UDP, SCTP
or every protocol (a rule without ``ports``, which includes ICMP) would reopen exactly what
the sidecar cannot see. On a CNI without AdminNetworkPolicy, refusing that policy is the
only thing holding the floor.

Owns ``validate_networkpolicy``: every egress rule must name its ports, and every port must
be TCP, except UDP or TCP 53 to nothing but the policy's resolver addresses. TCP is left
alone on purpose: it cannot leave the pod uncaptured. Ingress is not this project's concern.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.result import Verdict, VerdictBuilder

WIDENS_EGRESS = "networkpolicy.widens-egress"
DNS_PORT = 53


def validate_networkpolicy(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj) or not active(context.policy, WIDENS_EGRESS):
        return Verdict()
    raw_spec = obj.get("spec")
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    egress = spec.get("egress")
    if not isinstance(egress, list) or not _applies_to_egress(spec):
        return Verdict()  # no egress rules: the policy only narrows egress
    resolvers = {ipaddress.ip_network(address) for address in context.policy.dns.nameservers}
    shown = ", ".join(context.policy.dns.nameservers)
    b = VerdictBuilder()
    for i, rule in enumerate(egress):
        rule = rule if isinstance(rule, dict) else {}
        ports = rule.get("ports")
        if not isinstance(ports, list) or not ports:
            b.violate(WIDENS_EGRESS, f"spec.egress[{i}]", "a rule without ports allows every "
                      "protocol (UDP, SCTP and ICMP too), which leaves agent pods uncaptured by "
                      "the sidecar; add ports: [{protocol: TCP}] (TCP on any port), or name "
                      "the TCP ports")
            continue
        to_resolver = _only_resolvers(rule.get("to"), resolvers)
        for j, port in enumerate(ports):
            port = port if isinstance(port, dict) else {}
            protocol = str(port.get("protocol") or "TCP").upper()
            if protocol == "TCP" or (_is_dns(port) and to_resolver):
                continue
            b.violate(WIDENS_EGRESS, f"spec.egress[{i}].ports[{j}]", f"{protocol} egress "
                      "leaves agent pods uncaptured by the sidecar (only a NetworkPolicy "
                      f"stops it); the only non-TCP egress allowed is DNS on port 53 to the "
                      f"filtering resolver ({shown}) as ipBlock /32 peers; use TCP, or remove "
                      "this port")
    return b.build()


def _applies_to_egress(spec: dict[str, Any]) -> bool:
    types = spec.get("policyTypes")
    if isinstance(types, list):
        return "Egress" in types
    return True  # unset: Egress when egress rules exist (the API server's default)


def _is_dns(port: dict[str, Any]) -> bool:
    end = port.get("endPort")
    return port.get("port") == DNS_PORT and end in (None, DNS_PORT)


def _only_resolvers(peers: Any, resolvers: set[Any]) -> bool:
    """Whether ``to`` names nothing but resolver addresses (absent or empty means anywhere)."""
    if not isinstance(peers, list) or not peers:
        return False
    for peer in peers:
        block = peer.get("ipBlock") if isinstance(peer, dict) else None
        if not isinstance(block, dict) or set(peer) != {"ipBlock"}:
            return False
        try:
            network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
        except ValueError:
            return False
        if network not in resolvers:
            return False
    return True
