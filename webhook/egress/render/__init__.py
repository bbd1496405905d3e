"""Every egress layer of the agent namespaces, rendered from one registry and one policy.

Owns ``render_layers``: the pure function behind ``agent-sandbox-webhook render`` and the
controller (one code path, so what the controller applies is exactly what ``render`` prints).
Per namespace: one ServiceEntry per approved exact host, a default Sidecar, a Sidecar per
service account the registry names and per Skill (``skills``), a NetworkPolicy; cluster-wide:
the AdminNetworkPolicy floor and the resolver's allowlist ConfigMap. Modules: ``objects``
(names, labels, envelopes), ``approved`` (what the registry grants a namespace), ``mesh``
(ServiceEntries, Sidecars), ``skills`` (per-Skill Sidecars), ``network`` (NetworkPolicy,
AdminNetworkPolicy) and ``resolver`` (RPZ zone, Corefile). No I/O, no clock: the same inputs
give the same objects, in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from webhook.config.policy import Policy
from webhook.egress.registry import Registry
from webhook.egress.render.approved import ExactHost, approved_for
from webhook.egress.render.mesh import agent_sidecars, default_sidecar, service_entries
from webhook.egress.render.network import admin_network_policy, network_policy
from webhook.egress.render.objects import DEFAULT_WEBHOOK_NAMESPACE
from webhook.egress.render.resolver import allowlist_configmap
from webhook.egress.render.skills import skill_sidecar, skills_in

__all__ = ["DEFAULT_WEBHOOK_NAMESPACE", "render_layers"]


def render_layers(registry: Registry, policy: Policy, namespaces: Iterable[str], *,
                  webhook_namespace: str = DEFAULT_WEBHOOK_NAMESPACE,
                  skills: Iterable[dict[str, Any]] = ()) -> list[dict[str, Any]]:
    """The objects that make ``namespaces`` egress exactly what ``registry`` approves.

    ``skills``: Skill objects (any namespace; those of the rendered namespaces get Sidecars).
    """
    names = sorted(set(namespaces))
    skill_objects = list(skills)
    objects: list[dict[str, Any]] = []
    grants = {namespace: approved_for(registry, namespace) for namespace in names}
    for namespace in names:
        approved = grants[namespace]
        declared = skills_in(skill_objects, namespace, registry, policy)
        needed = [ExactHost(host, pairs, ()) for skill in declared for host, pairs in skill.hosts]
        objects.extend(service_entries(approved, namespace, needed))
        objects.append(default_sidecar(approved, namespace, policy))
        objects.extend(agent_sidecars(approved, namespace, policy))
        objects.extend(skill_sidecar(skill, policy) for skill in declared)
        objects.append(network_policy(approved, namespace, policy))
    if names:
        objects.append(admin_network_policy(names, policy))
    objects.append(allowlist_configmap(registry, grants.values(), policy,
                                       namespace=webhook_namespace))
    return objects
