"""The pod policy, precomputed once per loaded ``Policy``.

Owns turning the operator's ``Policy`` into the values the hot path needs: parsed memory
quantities, the expected ``dnsConfig`` pieces, the Istio identity, each pod rule's mode as
plain booleans (``checked``/``patching`` sets, looked up with ``in``: a method call per check
cost ~22 calls per pod), and the strings that depend only on the policy (notes, the
enforced-annotation value, the DNS config and its description per namespace).
A ``Policy`` is immutable and replaced wholesale on reload, so the compiled form is cached by
object identity in a small bounded table. It decides nothing about a pod.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from types import MappingProxyType
from typing import Any

from webhook.config.policy import MeshFlavour, Policy
from webhook.config.quantity import exact_quantity
from webhook.core.rules import POD_RULES, Mode

# A handful is plenty: a process holds one policy (plus its downgraded twin) at a time, and
# reloads replace it. The table only saves recompiling; the policy itself is the key.
_CACHE_SIZE = 8
# Agent namespaces are few; the bound only stops a stream of odd names from growing the memo.
_DNS_MEMO_SIZE = 256


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    policy: Policy
    modes: Mapping[str, Mode]
    digest: str
    runtime_class: str  # set on pods without one: the first approved class
    runtime_classes: frozenset[str]  # every approved class
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
    ossm2: bool  # OpenShift Service Mesh 2.x: inject annotation, no istio.io/rev label
    require_sidecar: bool
    proxy_uid: int
    proxy_gid: int
    fill_identity: bool  # identity.fillUnset: set unset identity fields instead of refusing
    default_uid: int
    default_gid: int
    native_sidecars: bool
    csi_drivers: frozenset[str]  # volumes.allowedCSIDrivers
    registries: tuple[str, ...]  # images.allowedRegistries (empty: any registry)
    checked: frozenset[str]  # rules whose mode is not off
    patching: frozenset[str]  # rules in enforce mode (only those change the object)
    accepted: frozenset[str]  # istio.io/rev values that select our control plane
    runtime_note: str
    floor_note: str
    # Per-namespace (dnsConfig, its description): a bounded memo, filled on first use.
    _dns: dict[str, tuple[dict[str, Any], str]]
    # Memory raise plans by shape of a pod's quantities (``memory.plan_raises`` owns it):
    # (main container, (request text, limit text) per container) -> (container index,
    # section, value, reason) per raise.
    raise_plans: dict[tuple[Any, ...], tuple[tuple[int, str, str, str], ...]]

    def dns_config(self, namespace: str) -> dict[str, Any]:
        """The exact ``dnsConfig`` an agent pod in ``namespace`` must carry (a fresh dict)."""
        return _fresh(self.expected_dns(namespace)[0])

    def expected_dns(self, namespace: str) -> tuple[dict[str, Any], str]:
        """The shared ``dnsConfig`` for ``namespace`` and its one-line description.

        Read-only for callers: it is the memo itself (``dns_config`` gives a copy to keep).
        """
        memo = self._dns.get(namespace)
        if memo is None:
            domain = self.cluster_domain
            config = {
                "nameservers": list(self.nameservers),
                "searches": [f"{namespace}.svc.{domain}", f"svc.{domain}", domain],
                "options": [dict(option) for option in self.dns_options],
            }
            memo = (config, describe_dns(config))
            if len(self._dns) >= _DNS_MEMO_SIZE:
                self._dns.clear()  # namespaces come from requests: never grow unbounded
            self._dns[namespace] = memo
        return memo


def describe_dns(config: Any) -> str:
    """A short, one-line rendering of a dnsConfig for warnings (``dns.describe``)."""
    if not isinstance(config, dict):
        return repr(config)
    parts = []
    for key in ("nameservers", "searches"):
        values = config.get(key)
        if isinstance(values, list) and values:
            parts.append(f"{key}={','.join(str(v) for v in values)}")
    options = config.get("options")
    if isinstance(options, list) and options:
        rendered = [f"{o.get('name')}:{o.get('value')}" if isinstance(o, dict) and
                    o.get("value") is not None else str(o.get("name") if isinstance(o, dict)
                                                        else o) for o in options]
        parts.append(f"options={','.join(rendered)}")
    return " ".join(parts) or "empty"


def _fresh(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a dnsConfig deep enough that a caller (or a patch) may change it."""
    return {"nameservers": list(config["nameservers"]), "searches": list(config["searches"]),
            "options": [dict(option) for option in config["options"]]}


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
    modes = MappingProxyType({rule.id: policy.mode(rule.id) for rule in POD_RULES})
    revision = policy.istio.revision
    return CompiledPolicy(
        policy=policy,
        modes=modes,
        digest=policy.digest,
        runtime_class=policy.runtime_class.name,
        runtime_classes=frozenset(policy.runtime_class.names),
        pod_floor=exact_quantity(memory.pod_floor),
        pod_floor_text=memory.pod_floor,
        default_request=exact_quantity(memory.container_default_request),
        default_request_text=memory.container_default_request,
        default_limit=exact_quantity(memory.container_default_limit),
        default_limit_text=memory.container_default_limit,
        nameservers=tuple(policy.dns.nameservers),
        cluster_domain=policy.dns.cluster_domain,
        dns_options=options,
        revision=revision,
        ossm2=policy.istio.flavour is MeshFlavour.OSSM2,
        require_sidecar=policy.istio.require_sidecar,
        proxy_uid=policy.istio.proxy_uid,
        proxy_gid=policy.istio.proxy_gid,
        fill_identity=policy.identity.fill_unset,
        default_uid=policy.identity.run_as_user,
        default_gid=policy.identity.run_as_group,
        native_sidecars=policy.istio.native_sidecars,
        csi_drivers=frozenset(policy.volumes.allowed_csi_drivers),
        registries=policy.images.allowed_registries,
        checked=frozenset(rule for rule, mode in modes.items() if mode is not Mode.OFF),
        patching=frozenset(rule for rule, mode in modes.items() if mode is Mode.ENFORCE),
        # Without a configured revision the default control plane injects, and Istio itself
        # writes istio.io/rev=default while injecting.
        accepted=frozenset({revision}) if revision else frozenset({"default"}),
        runtime_note=f"set runtimeClassName={policy.runtime_class.name}",
        floor_note=f"pod floor {memory.pod_floor}",
        _dns={},
        raise_plans={},
    )

