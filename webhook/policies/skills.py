"""Skill admission: a Skill declares its egress, and every declared host is approved.

Owns ``validate_skill`` for ``agentsandbox.io`` Skills (THREATS.md, "Skill egressRequirements").
The CRD schema checks shape in a cluster; this policy re-checks it so that the offline
``check`` command, which has no CRD, gives the same answer, and then checks what the schema
cannot see: registry membership for the Skill's namespace, port and protocol, and the deny
list. Unknown keys in a requirement are ignored, as the API server prunes them.
"""

from __future__ import annotations

from typing import Any

from webhook.core.review import Request
from webhook.egress.hosts import HostError, parse_host
from webhook.egress.registry import Approval, Refused
from webhook.policies.context import Context
from webhook.policies.egress import (
    active,
    needs_no_check,
    refusal_text,
    require_registry,
)
from webhook.policies.result import Verdict, VerdictBuilder

EGRESS_MISSING = "skill.egress-missing"
EGRESS_INVALID = "skill.egress-invalid"
HOST_NOT_APPROVED = "skill.host-not-approved"
HOST_DENIED = "skill.host-denied"
DUPLICATE = "skill.duplicate"

PROTOCOLS = frozenset({"HTTPS", "TLS", "HTTP"})  # the CRD's enum, case-sensitive like it
Requirement = tuple[str, int, str]


def validate_skill(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj):
        return Verdict()
    b = VerdictBuilder()
    policy = context.policy
    spec = obj.get("spec")
    raw = spec.get("egressRequirements") if isinstance(spec, dict) else None
    if raw is None:
        if active(policy, EGRESS_MISSING):
            b.violate(EGRESS_MISSING, "spec.egressRequirements", "is required: list every "
                      "host the skill reaches as {host, port, protocol}, or [] for no egress")
        return b.build()
    if not isinstance(raw, list):
        if active(policy, EGRESS_INVALID):
            b.violate(EGRESS_INVALID, "spec.egressRequirements", "must be a list of "
                      "{host, port, protocol}")
        return b.build()
    wanted: list[tuple[str, Requirement]] = []
    seen: set[Requirement] = set()
    for i, item in enumerate(raw):
        path = f"spec.egressRequirements[{i}]"
        requirement = _requirement(b, context, item, path)
        if requirement is None:
            continue
        if requirement in seen:
            if active(policy, DUPLICATE):
                host, port, protocol = requirement
                b.violate(DUPLICATE, path, f"{host} port {port}/{protocol} is declared twice; "
                          "remove the repeat")
            continue
        seen.add(requirement)
        wanted.append((path, requirement))
    if wanted and (active(policy, HOST_NOT_APPROVED) or active(policy, HOST_DENIED)):
        _approvals(b, context, request, obj, wanted)
    return b.build()


def _requirement(b: VerdictBuilder, context: Context, item: Any,
                 path: str) -> Requirement | None:
    on = active(context.policy, EGRESS_INVALID)
    if not isinstance(item, dict):
        if on:
            b.violate(EGRESS_INVALID, path, "must be an object {host, port, protocol}")
        return None
    port = item.get("port", 443)
    protocol = item.get("protocol", "HTTPS")
    problems = []
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        problems.append(f"port {port!r} is not a number from 1 to 65535")
    if not isinstance(protocol, str) or protocol not in PROTOCOLS:  # a list is unhashable
        problems.append(f"protocol {protocol!r} is not one of HTTPS, TLS, HTTP")
    try:
        host = parse_host(item.get("host"),
                          cluster_domains=(context.policy.dns.cluster_domain,)).name
    except HostError as exc:
        problems.append(f"host {exc}; declare one exact external DNS name")
        host = ""
    if problems:
        if on:
            b.violate(EGRESS_INVALID, path, "; ".join(problems))
        return None
    return (host, port, protocol)


def _approvals(b: VerdictBuilder, context: Context, request: Request, obj: dict[str, Any],
               wanted: list[tuple[str, Requirement]]) -> None:
    namespace = request.object_namespace
    name = request.name or str((obj.get("metadata") or {}).get("name", ""))
    registry = require_registry(context, what=f"Skill {namespace}/{name}")
    for path, (host, port, protocol) in wanted:
        result = registry.approve(host=host, namespace=namespace, port=port, protocol=protocol)
        if isinstance(result, Approval):
            continue
        rule = HOST_DENIED if result.reason is Refused.DENIED else HOST_NOT_APPROVED
        if active(context.policy, rule):
            b.violate(rule, f"{path}.host", refusal_text(result, namespace=namespace,
                                                         wanted=[(port, protocol)]))
