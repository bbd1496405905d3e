"""Pods that declare a Skill: the Skill must exist in the pod's namespace, and its egress must
be approved.

A pod labelled ``agentsandbox.io/skill: NAME`` gets that Skill's Sidecar, whose egress is the
Skill's declared hosts. Owns ``check_skill_label``: it looks the Skill up in the webhook's
in-memory Skill cache (``Context.skills``, filled in the background from a watch, never read
from the API on the admission path) and re-judges the cached Skill with the Skill policy
against the registry in force. While the cache has not synced, a pod naming a Skill cannot be
decided and fails closed (code 500) with the reason; pods without a Skill are unaffected.
Checked on CREATE and when an UPDATE sets or changes the label; an unchanged label is not
re-judged (a Skill deleted later stops new pods, not running ones).
"""

from __future__ import annotations

from typing import Any

from webhook.core.errors import Undecidable
from webhook.core.labels import SKILL_LABEL
from webhook.core.review import Request
from webhook.egress.hosts import HostError, parse_host
from webhook.egress.index import Approval
from webhook.policies.context import Context
from webhook.policies.egress import active
from webhook.policies.pods.agentlabels import service_account
from webhook.policies.result import Verdict, VerdictBuilder
from webhook.policies.skills import validate_skill

RULE = "pod.skill"
PATH = f"metadata.labels[{SKILL_LABEL}]"


def skill_label(pod: dict[str, Any] | None) -> str:
    metadata = pod.get("metadata") if isinstance(pod, dict) else None
    labels = metadata.get("labels") if isinstance(metadata, dict) else None
    value = labels.get(SKILL_LABEL) if isinstance(labels, dict) else None
    return value if isinstance(value, str) else ""


def check_skill_label(request: Request, context: Context) -> Verdict:
    pod = request.object
    name = skill_label(pod)
    if not name or not active(context.policy, RULE):
        return Verdict()
    if request.operation == "UPDATE" and name == skill_label(request.old_object):
        return Verdict()
    namespace = request.object_namespace
    if context.skills is None:
        raise Undecidable(
            f"the pod names Skill {name!r}, but the webhook's Skill cache has not synced yet "
            f"({context.skills_problem}); pods that name a Skill are refused until it has "
            "(fail closed). Retry in a few seconds; if it persists, check the webhook's logs "
            "and its permission to list and watch skills.agentsandbox.io")
    skill = context.skills.get(namespace, name)
    b = VerdictBuilder()
    if skill is None:
        b.violate(RULE, PATH, f"Skill {name!r} does not exist in namespace {namespace}; create "
                  "the Skill first (its egressRequirements must be approved), or remove the "
                  "label")
        return b.build()
    judged = validate_skill(request._replace(group="agentsandbox.io", version="v1alpha1",
                                             kind="Skill", resource="skills", sub_resource="",
                                             operation="CREATE", name=name, object=skill,
                                             old_object=None), context)
    broken = [v for v in judged.violations if active(context.policy, v.rule)]
    if broken:
        b.violate(RULE, PATH, f"Skill {name!r}'s egress is not approved for namespace "
                  f"{namespace} ({broken[0].render()}); fix the Skill or the registry")
        return b.build()
    _check_account_limits(b, pod, skill, name=name, namespace=namespace, context=context)
    return b.build()


def _check_account_limits(b: VerdictBuilder, pod: Any, skill: dict[str, Any], *, name: str,
                          namespace: str, context: Context) -> None:
    """A Skill lends its hosts to every pod naming it: a host the registry limits to some
    service accounts is only for pods running as one of them (else the label would borrow a
    neighbour's egress through the Skill's Sidecar)."""
    registry = context.registry
    spec = pod.get("spec") if isinstance(pod, dict) else None
    account = service_account(spec if isinstance(spec, dict) else {})
    requirements = (skill.get("spec") or {}).get("egressRequirements") or []
    for item in requirements if isinstance(requirements, list) else []:
        if registry is None or not isinstance(item, dict):
            return
        try:
            host = parse_host(item.get("host"),
                              cluster_domains=(context.policy.dns.cluster_domain,)).name
        except HostError:
            continue  # validate_skill already judged the Skill's own syntax
        approval = registry.approve(host=host, namespace=namespace)
        if not isinstance(approval, Approval):
            continue
        accounts = registry.service_accounts_for(approval.key, namespace)
        if accounts is not None and account not in accounts:
            b.violate(RULE, PATH, f"Skill {name!r} reaches {host}, which the registry "
                      f"approves in {namespace} only for service accounts "
                      f"{', '.join(sorted(accounts))}, and this pod runs as {account!r}; run "
                      "the pod as one of them, or approve the host for it in the registry")
            return
