"""The pod policy, precomputed once per loaded ``Policy``.

Owns turning the operator's ``Policy`` into the values the hot path needs: parsed memory
quantities, the expected ``dnsConfig`` pieces, the Istio identity and each pod rule's mode.
A ``Policy`` is immutable and replaced wholesale on reload, so the compiled form is cached by
object identity in a small bounded table. It decides nothing about a pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from webhook.config import Policy
from webhook.quantity import parse_quantity
from webhook.rules import POD_RULES, Mode

# A handful is plenty: a process holds one policy (plus its downgraded twin) at a time, and
# reloads replace it. The table only saves recompiling; the policy itself is the key.
_CACHE_SIZE = 8


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    policy: Policy
    modes: Mapping[str, Mode]
    digest: str
    runtime_class: str
    pod_floor: int | Fraction
    pod_floor_text: str
    default_request: int | Fraction
    default_request_text: str
    default_limit: int | Fraction
    default_limit_text: str
    nameservers: tuple[str, ...]
    cluster_domain: str
    dns_options: tuple[Mapping[str, str], ...]
    revision: str | None
    require_sidecar: bool
    proxy_uid: int
    proxy_gid: int

    def active(self, rule: str) -> bool:
        """Whether a rule is checked at all (enforce or warn)."""
        return self.modes[rule] is not Mode.OFF

    def mutates(self, rule: str) -> bool:
        """Only an enforced rule changes the object; warn mode only says what it would do."""
        return self.modes[rule] is Mode.ENFORCE

    def dns_config(self, namespace: str) -> dict[str, Any]:
        """The exact ``dnsConfig`` an agent pod in ``namespace`` must carry (a fresh dict)."""
        domain = self.cluster_domain
        return {
            "nameservers": list(self.nameservers),
            "searches": [f"{namespace}.svc.{domain}", f"svc.{domain}", domain],
            "options": [dict(option) for option in self.dns_options],
        }

    def accepted_revisions(self) -> frozenset[str]:
        """``istio.io/rev`` values that select our control plane."""
        # Without a configured revision the default control plane injects, and Istio itself
        # writes istio.io/rev=default while injecting.
        return frozenset({self.revision}) if self.revision else frozenset({"default"})


_compiled: dict[int, CompiledPolicy] = {}


def compile_policy(policy: Policy) -> CompiledPolicy:
    """The compiled form of ``policy``, built once per policy object."""
    cached = _compiled.get(id(policy))
    if cached is not None and cached.policy is policy:
        return cached
    compiled = _build(policy)
    if len(_compiled) >= _CACHE_SIZE:
        _compiled.pop(next(iter(_compiled)))
    _compiled[id(policy)] = compiled
    return compiled


def _build(policy: Policy) -> CompiledPolicy:
    memory = policy.memory
    options = tuple(MappingProxyType({"name": option.name} if option.value is None else
                                     {"name": option.name, "value": option.value})
                    for option in policy.dns.options)
    return CompiledPolicy(
        policy=policy,
        modes=MappingProxyType({rule.id: policy.mode(rule.id) for rule in POD_RULES}),
        digest=policy.digest,
        runtime_class=policy.runtime_class.name,
        pod_floor=_exact(memory.pod_floor),
        pod_floor_text=memory.pod_floor,
        default_request=_exact(memory.container_default_request),
        default_request_text=memory.container_default_request,
        default_limit=_exact(memory.container_default_limit),
        default_limit_text=memory.container_default_limit,
        nameservers=tuple(policy.dns.nameservers),
        cluster_domain=policy.dns.cluster_domain,
        dns_options=options,
        revision=policy.istio.revision,
        require_sidecar=policy.istio.require_sidecar,
        proxy_uid=policy.istio.proxy_uid,
        proxy_gid=policy.istio.proxy_gid,
    )


def _exact(text: str) -> int | Fraction:
    value = parse_quantity(text)
    # Whole byte counts as int keep the memory arithmetic in cheap int operations.
    return int(value) if value.denominator == 1 else value
