"""The network side of egress: the per-namespace NetworkPolicy and the AdminNetworkPolicy floor.

Istio captures TCP only; UDP (DNS to any resolver, QUIC, tunnels), SCTP and ICMP leave a pod
uncaptured, and only the network layer stops them. Owns both objects:

- ``NetworkPolicy`` ``agent-sandbox-egress`` selects every pod of the namespace: DNS (UDP and
  TCP 53) to the policy's resolver addresses only; TCP to the control plane's namespace on its
  ports; any TCP port to the in-cluster namespaces the policy names; TCP on the ports the
  registry approves for the namespace to any address but link-local (metadata endpoints). The
  sidecar filters that TCP by host. Nothing else: no UDP, SCTP or ICMP.
- NetworkPolicies add up, so a tenant's own allow-all policy would undo that floor.
  ``AdminNetworkPolicy`` ``agent-sandbox-egress-floor`` (policy.networking.k8s.io v1alpha1)
  holds it where the CNI implements the API: DNS to the resolver allowed, DNS elsewhere
  denied, TCP passed on to the namespace's NetworkPolicies, everything else denied; no
  namespace policy can override an AdminNetworkPolicy's Deny.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from webhook.config.policy import Policy
from webhook.core.labels import ADMIN_NETWORK_POLICY_NAME, NETWORK_POLICY_NAME
from webhook.egress.render.approved import Approved
from webhook.egress.render.objects import envelope

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
# Never approved destinations: link-local holds the cloud metadata endpoints (169.254.169.254,
# 169.254.170.2); EC2's IPv6 metadata address fd00:ec2::254 is unique-local, so it is named.
EVERYWHERE = (("0.0.0.0/0", ("169.254.0.0/16",)),
              ("::/0", ("fe80::/10", "fd00:ec2::254/128")))
ALL_NETWORKS = ["0.0.0.0/0", "::/0"]
DNS_PORT = 53
# Lower numbers take precedence; leaves room for an administrator's own policies both sides.
FLOOR_PRIORITY = 50


def resolver_cidrs(policy: Policy) -> list[str]:
    """Each resolver address as a one-address CIDR."""
    return [str(ipaddress.ip_network(address)) for address in policy.dns.nameservers]


def network_policy(approved: Approved, namespace: str, policy: Policy) -> dict[str, Any]:
    mesh = policy.mesh
    egress: list[dict[str, Any]] = [
        {"to": [{"ipBlock": {"cidr": cidr}} for cidr in resolver_cidrs(policy)],
         "ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]},
        {"to": [_namespace_peer([mesh.control_plane_namespace])],
         "ports": [{"protocol": "TCP", "port": port} for port in mesh.control_plane_ports]},
    ]
    if mesh.in_cluster_namespaces:
        egress.append({"to": [_namespace_peer(sorted(mesh.in_cluster_namespaces))],
                       "ports": [{"protocol": "TCP"}]})
    ports = approved.ports()
    if ports:
        egress.append({
            "to": [{"ipBlock": {"cidr": cidr, "except": list(excluded)}}
                   for cidr, excluded in EVERYWHERE],
            "ports": [{"protocol": "TCP", "port": port} for port in ports],
        })
    return envelope("networking.k8s.io/v1", "NetworkPolicy", NETWORK_POLICY_NAME, namespace,
                    spec={"podSelector": {}, "policyTypes": ["Egress"], "egress": egress})


def _namespace_peer(names: Sequence[str]) -> dict[str, Any]:
    return {"namespaceSelector": {"matchExpressions": [
        {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(names)}]}}


def admin_network_policy(namespaces: Sequence[str], policy: Policy) -> dict[str, Any]:
    dns = [{"portNumber": {"protocol": protocol, "port": DNS_PORT}}
           for protocol in ("UDP", "TCP")]
    everywhere = [{"networks": list(ALL_NETWORKS)}]
    return envelope("policy.networking.k8s.io/v1alpha1", "AdminNetworkPolicy",
                    ADMIN_NETWORK_POLICY_NAME, None, spec={
        "priority": FLOOR_PRIORITY,
        "subject": {"namespaces": {"matchExpressions": [
            {"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(namespaces)}]}},
        "egress": [
            {"name": "dns-to-the-filtering-resolver", "action": "Allow",
             "to": [{"networks": resolver_cidrs(policy)}], "ports": dns},
            {"name": "no-dns-elsewhere", "action": "Deny", "to": everywhere, "ports": dns},
            {"name": "tcp-is-left-to-namespace-policies", "action": "Pass", "to": everywhere,
             "ports": [{"portRange": {"protocol": "TCP", "start": 1, "end": 65535}}]},
            {"name": "nothing-else", "action": "Deny", "to": everywhere},
        ],
    })
