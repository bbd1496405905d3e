"""``doctor``'s look at the filtering resolver the policy points agent pods at.

Owns one judgement: every address in the policy's ``dns.nameservers`` is a Service's
ClusterIP with ready endpoints, or the address of an endpoint, so that agent pods, whose
resolv.conf is exactly that list, can resolve names at all. Pure, over the snapshot.

It does not send DNS queries (that would need a pod in the cluster) and cannot tell a
filtering resolver from an ordinary one: README's Prerequisites say what it must filter.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from webhook.tools.doctor.findings import (
    Finding,
    failed,
    name_of,
    namespace_of,
    passed,
    ready_endpoints,
    service_of,
    unreadable,
)
from webhook.tools.doctor.snapshot import POLICY_CONFIGMAP, Snapshot, Unreadable


def resolver(snapshot: Snapshot) -> list[Finding]:
    check = "filtering resolver"
    if isinstance(snapshot.services, Unreadable):
        return [unreadable(check, snapshot.services)]
    if isinstance(snapshot.endpoint_slices, Unreadable):
        return [unreadable(check, snapshot.endpoint_slices)]
    findings = []
    for address in snapshot.policy.dns.nameservers:
        service = next((s for s in snapshot.services if address in _cluster_ips(s)), None)
        if service is not None:
            ns, name = namespace_of(service), name_of(service)
            ready = ready_endpoints(snapshot.endpoint_slices, namespace=ns, service=name)
            if ready:
                findings.append(passed(check, f"{address} is Service {ns}/{name}, {ready} "
                                       "ready endpoint(s)"))
            else:
                findings.append(failed(check, f"{address} is Service {ns}/{name}, which has "
                                       "no ready endpoints", f"start the resolver behind "
                                       f"{ns}/{name}"))
            continue
        owner = next((s for s in snapshot.endpoint_slices
                      if address in _slice_addresses(s)), None)
        if owner is not None:
            findings.append(passed(check, f"{address} is an endpoint of "
                                   f"{namespace_of(owner)}/{service_of(owner)}"))
            continue
        findings.append(failed(check, f"{address} is no Service's ClusterIP and no endpoint's "
                               "address, so agent pods cannot resolve names",
                               f"set dns.nameservers in ConfigMap {POLICY_CONFIGMAP} to your "
                               "filtering resolver's ClusterIP"))
    return findings


def _cluster_ips(service: dict[str, Any]) -> set[str]:
    spec = service.get("spec") or {}
    return {str(ip) for ip in [spec.get("clusterIP"), *(spec.get("clusterIPs") or [])] if ip}


def _slice_addresses(endpoint_slice: dict[str, Any]) -> set[str]:
    found = set()
    for endpoint in endpoint_slice.get("endpoints") or []:
        for address in endpoint.get("addresses") or []:
            try:
                found.add(str(ipaddress.ip_address(address)))
            except ValueError:
                continue
    return found
