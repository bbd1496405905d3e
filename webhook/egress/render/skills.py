"""Per-Skill egress: the Sidecar of each Skill in an agent namespace, and the ServiceEntries
its declared hosts need.

A Skill's egress is exactly what its ``egressRequirements`` declare and the registry approves
for its namespace on the declared port and protocol; a requirement the registry does not
approve (or denies) is left out, so the Skill's pods cannot reach it even though the Skill
exists (admission refuses such Skills, and pods naming them, in any case). Owns reading a
Skill object's requirements with the one host normaliser, and the Sidecar
``agent-sandbox-skill-<name>`` selecting ``agentsandbox.io/skill: <name>``. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.config.policy import Policy
from webhook.core.labels import SKILL_LABEL, SKILL_SIDECAR_PREFIX
from webhook.egress.hosts import HostError, parse_host
from webhook.egress.registry import Approval, PortProtocol, Registry
from webhook.egress.render.mesh import ISTIO_API, sidecar_hosts
from webhook.egress.render.objects import envelope, prefixed_name


@dataclass(frozen=True, slots=True)
class SkillEgress:
    namespace: str
    name: str
    hosts: tuple[tuple[str, frozenset[PortProtocol]], ...]  # approved host -> its pairs


def skills_in(skills: Iterable[dict[str, Any]], namespace: str, registry: Registry,
              policy: Policy) -> list[SkillEgress]:
    found = []
    for skill in skills:
        meta = skill.get("metadata") or {}
        if meta.get("namespace") != namespace or not isinstance(meta.get("name"), str):
            continue
        found.append(SkillEgress(namespace, meta["name"],
                                 _approved(skill, namespace, registry, policy)))
    return sorted(found, key=lambda s: s.name)


def _approved(skill: dict[str, Any], namespace: str, registry: Registry,
              policy: Policy) -> tuple[tuple[str, frozenset[PortProtocol]], ...]:
    spec = skill.get("spec")
    raw = spec.get("egressRequirements") if isinstance(spec, dict) else None
    hosts: dict[str, set[PortProtocol]] = {}
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        port, protocol = item.get("port", 443), item.get("protocol", "HTTPS")
        if not isinstance(port, int) or isinstance(port, bool) or not isinstance(protocol, str):
            continue
        try:
            host = parse_host(item.get("host"),
                              cluster_domains=(policy.dns.cluster_domain,)).name
        except HostError:
            continue
        if isinstance(registry.approve(host=host, namespace=namespace, port=port,
                                       protocol=protocol), Approval):
            hosts.setdefault(host, set()).add((port, protocol.upper()))
    return tuple((host, frozenset(pairs)) for host, pairs in sorted(hosts.items()))


def skill_sidecar(skill: SkillEgress, policy: Policy) -> dict[str, Any]:
    return envelope(ISTIO_API, "Sidecar", prefixed_name(SKILL_SIDECAR_PREFIX, skill.name),
                    skill.namespace, spec={
        "workloadSelector": {"labels": {SKILL_LABEL: skill.name}},
        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
        "egress": [{"hosts": sidecar_hosts([host for host, _ in skill.hosts], policy,
                                           in_cluster=False)}],
    })
