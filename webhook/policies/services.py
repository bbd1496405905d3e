"""Service admission in agent namespaces: no Service may route agent traffic out of the cluster.

Owns ``validate_service``. Istio's documentation ("Kubernetes Services for Egress Traffic")
shows ExternalName Services as a working way to reach external hosts: they are in the mesh's
registry, so REGISTRY_ONLY lets them through, and no ServiceEntry check sees them. So:

- a ``type: ExternalName`` Service is a ServiceEntry by another name: its ``externalName``
  goes through the one host normaliser (no IP literal, although the API server accepts
  ``93.184.216.34`` as a DNS name; no localhost, metadata, private-use, cluster or wildcard
  name) and must be approved for the namespace on every declared port, with the protocol
  Istio reads from the port (``appProtocol`` or the name prefix). An opaque port (plain TCP,
  UDP) carries no host name Istio could match and is refused;
- ``externalIPs`` (any type) and ``loadBalancerIP`` (type LoadBalancer) are judged like
  endpoint addresses (``webhook.policies.addressing``): the cluster's own ranges, or addresses
  the registry pins for an approved host. kube-proxy captures cluster traffic to an
  externalIP (CVE-2020-8554), so an agent namespace could take over an approved host's address.

Selector-less Services themselves are fine; their hand-made Endpoints and EndpointSlices are
judged by ``webhook.policies.endpoints``. Ordinary ClusterIP Services are admitted untouched.
"""

from __future__ import annotations

from typing import Any

from webhook.core.review import Request
from webhook.egress.hosts import HostError, parse_host
from webhook.egress.registry import HOST_MATCHED_PROTOCOLS, Approval
from webhook.policies.addressing import AddressJudge, port_protocol
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check, refusal_text, require_registry
from webhook.policies.result import Verdict, VerdictBuilder

EXTERNAL_NAME = "service.external-name"
EXTERNAL_IPS = "service.external-ips"


def validate_service(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj):
        return Verdict()
    raw_spec = obj.get("spec")
    spec: dict[str, Any] = raw_spec if isinstance(raw_spec, dict) else {}
    raw_ports = spec.get("ports")
    ports = [p for p in raw_ports if isinstance(p, dict)] if isinstance(raw_ports, list) else []
    namespace = request.object_namespace
    what = f"Service {namespace}/{request.name or (obj.get('metadata') or {}).get('name', '')}"
    b = VerdictBuilder()
    if active(context.policy, EXTERNAL_NAME) and spec.get("type") == "ExternalName":
        _external_name(b, context, spec.get("externalName"), ports, namespace, what)
    if active(context.policy, EXTERNAL_IPS):
        judge = AddressJudge(context, namespace, what)
        numbers = [p["port"] for p in ports if isinstance(p.get("port"), int)]
        external = spec.get("externalIPs")
        for i, raw in enumerate(external if isinstance(external, list) else ()):
            problem = judge.problem(raw, numbers)
            if problem is not None:
                b.violate(EXTERNAL_IPS, f"spec.externalIPs[{i}]", problem + _IPS_HINT)
        balancer = spec.get("loadBalancerIP")
        if spec.get("type") == "LoadBalancer" and balancer:
            problem = judge.problem(balancer, numbers)
            if problem is not None:
                b.violate(EXTERNAL_IPS, "spec.loadBalancerIP", problem + _IPS_HINT)
    return b.build()


_IPS_HINT = ("; kube-proxy sends cluster traffic for this address to the Service, so remove "
             "it or use an address of the cluster's own ranges")


def _external_name(b: VerdictBuilder, context: Context, raw: Any, ports: list[dict[str, Any]],
                   namespace: str, what: str) -> None:
    path = "spec.externalName"
    try:
        host = parse_host(raw, cluster_domains=(context.policy.dns.cluster_domain,)).name
    except HostError as exc:
        b.violate(EXTERNAL_NAME, path, f"{exc}; an ExternalName Service is an egress route "
                  "like a ServiceEntry, so it must name one exact external DNS host the "
                  "egress registry approves (for an in-cluster target, use a Service with a "
                  "selector)")
        return
    wanted = [(p["port"], port_protocol(p)) for p in ports if isinstance(p.get("port"), int)]
    registry = require_registry(context, what=what)
    result = registry.approve(host=host, namespace=namespace)
    if not isinstance(result, Approval):
        b.violate(EXTERNAL_NAME, path, refusal_text(result, namespace=namespace,
                                                    wanted=wanted or [(443, "TLS")]))
        return
    for i, port in enumerate(ports):
        number, protocol = port.get("port"), port_protocol(port)
        where = f"spec.ports[{i}]"
        if not isinstance(number, int):
            continue  # the API server refuses such a port; nothing to approve
        if protocol not in HOST_MATCHED_PROTOCOLS:
            b.violate(EXTERNAL_NAME, where, f"port {number} is {protocol} to Istio (no "
                      "host-matched appProtocol or name prefix), so the proxy would send "
                      "every connection on that port to the external name; name the port "
                      "tls-*, https-* or http-* (or set appProtocol)")
            continue
        approved = registry.approve(host=host, namespace=namespace, port=number,
                                    protocol=protocol)
        if not isinstance(approved, Approval):
            b.violate(EXTERNAL_NAME, where, refusal_text(approved, namespace=namespace,
                                                         wanted=[(number, protocol)]))
