"""The labels that give an agent pod an identity the mesh can select on.

Istio's ``Sidecar.workloadSelector`` selects labels only, so the per-agent Sidecars rendered
from the registry can be trusted only if the labels they select are. Owns:

- ``agentsandbox.io/service-account``: stamped with the pod's ``spec.serviceAccountName``
  ("default" when absent, as the API server defaults it); a pod that sets it to anything else
  is refused (CREATE, and any UPDATE, since ``check_pod_update`` re-judges the final pod).
- ``agentsandbox.io/skill``: the Skill a pod runs (checked against the Skill cache by
  ``webhook.policies.skill_pods``). A pod without one is stamped with an empty value, so that
  per-agent Sidecars can select "this service account, no Skill" and never overlap with a
  Skill's Sidecar (Istio picks arbitrarily between two Sidecars selecting one pod).
"""

from __future__ import annotations

from typing import Any

from webhook.core.labels import SERVICE_ACCOUNT_LABEL, SKILL_LABEL
from webhook.policies.result import VerdictBuilder

RULE = "pod.agent-identity"


def service_account(spec: dict[str, Any]) -> str:
    name = spec.get("serviceAccountName") or spec.get("serviceAccount")
    return name if isinstance(name, str) and name else "default"


def wanted_labels(spec: dict[str, Any], labels: dict[str, Any]) -> list[tuple[str, str]]:
    """The identity labels to add (never to change: a wrong value is refused instead)."""
    wanted = []
    if labels.get(SERVICE_ACCOUNT_LABEL) is None:
        wanted.append((SERVICE_ACCOUNT_LABEL, service_account(spec)))
    if SKILL_LABEL not in labels:
        wanted.append((SKILL_LABEL, ""))
    return wanted


def check_labels(spec: dict[str, Any], labels: dict[str, Any], *, builder: VerdictBuilder,
                 path: str) -> None:
    value = labels.get(SERVICE_ACCOUNT_LABEL)
    expected = service_account(spec)
    where = f"{path + '.' if path else ''}metadata.labels[{SERVICE_ACCOUNT_LABEL}]"
    if value is not None and value != expected:
        builder.violate(RULE, where, f"says {value!r}, but the pod runs as service account "
                        f"{expected!r}; per-agent egress (Sidecar workloadSelector) trusts this "
                        "label, so it must name the pod's own service account: remove it (the "
                        f"webhook sets it) or set serviceAccountName: {value}")
    skill = labels.get(SKILL_LABEL)
    if skill is not None and not isinstance(skill, str):
        builder.violate(RULE, f"{path + '.' if path else ''}metadata.labels[{SKILL_LABEL}]",
                        "must be a Skill name")
