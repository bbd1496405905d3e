"""The one seam between transport and logic: an admission request in, a response out.

Owns dispatch on kind and operation, rule modes (enforce / warn / off), the turning of a
``Verdict`` into an AdmissionResponse, and failing closed. The HTTP server and the offline
``check`` command both call ``admit`` and nothing else. It does no I/O besides logging a
failure; it never reads files or talks to the API server.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import StrEnum
from typing import Any, NamedTuple

from webhook.core import responses
from webhook.core.errors import Undecidable
from webhook.core.review import Request
from webhook.core.rules import Mode
from webhook.policies import MUTATING, VALIDATING
from webhook.policies.context import Context, Handler, exports_beyond
from webhook.policies.result import PatchOp, Verdict

log = logging.getLogger(__name__)

CHECKED_OPERATIONS = frozenset({"CREATE", "UPDATE", "CONNECT"})
# One kubectl warning (at most 256 characters, webhook.core.responses).
EXPORTED_NOTE = ("warn-mode namespace, but this object is exported beyond it (exportTo or a "
                 "Service's networking.istio.io/exportTo unset, '*' or another namespace; "
                 "endpoints go with their Service): it is judged in enforce mode")


class Stage(StrEnum):
    MUTATE = "mutate"
    VALIDATE = "validate"


class Outcome(NamedTuple):
    """The response plus what the transport needs for its log line and metrics.

    A NamedTuple for the same reason as ``Request``: one is made per review.
    """

    review: dict[str, Any]
    allowed: bool
    code: int
    rules: tuple[str, ...] = ()
    mutated: tuple[str, ...] = ()
    patch: tuple[PatchOp, ...] = ()
    warnings: tuple[str, ...] = ()
    failure: str | None = None


def handler_for(request: Request, stage: Stage) -> Handler | None:
    table = MUTATING if stage is Stage.MUTATE else VALIDATING
    return table.get((request.group, request.kind))


def admit(request: Request, *, stage: Stage, context: Context) -> Outcome:
    """Decide one request. Never raises: an internal error is a fail-closed Outcome."""
    if request.operation not in CHECKED_OPERATIONS:
        # DELETE carries nothing that could weaken isolation or egress. CONNECT (exec,
        # attach) goes to its handler: the configuration selects it for agent pods only.
        return _allow(request, Verdict(), context)
    handler = handler_for(request, stage)
    if handler is None:
        return _fail(request, f"agent-sandbox-webhook has no {stage} policy for "
                     f"{request.group or 'core'}/{request.kind}; the webhook configuration "
                     "sends it objects it does not handle")
    switched = context.exported is not None and exports_beyond(request)
    if context.exported is not None and switched:
        context = context.exported
    try:
        verdict = handler(request, context)
        if switched:
            verdict = replace(verdict, warnings=(EXPORTED_NOTE, *verdict.warnings))
    except Undecidable as exc:
        return _fail(request, str(exc))
    except Exception:
        log.exception("policy failed; refusing (fail closed)",
                      extra={"uid": request.uid, "kind": request.kind})
        return _fail(request, "internal error while evaluating the policy; the request was "
                     "refused (fail closed). The webhook logs carry the details under this "
                     "request's uid.")
    return _render(request, verdict, context)


def _render(request: Request, verdict: Verdict, context: Context) -> Outcome:
    policy = context.policy
    refusals: list[str] = []
    warnings: list[str] = []
    rules: list[str] = []
    for violation in verdict.violations:
        mode = policy.mode(violation.rule)
        if mode is Mode.OFF:
            continue
        rules.append(violation.rule)
        (refusals if mode is Mode.ENFORCE else warnings).append(violation.render())
    if refusals:
        message = (f"refused by agent-sandbox-webhook ({len(refusals)} rule"
                   f"{'s' if len(refusals) != 1 else ''}):\n" + "\n".join(refusals))
        review = responses.denied(uid=request.uid, api_version=request.api_version,
                                  message=message, warnings=[*warnings, *verdict.warnings],
                                  audit=_audit(rules, context))
        return Outcome(review=review, allowed=False, code=403, rules=tuple(dict.fromkeys(rules)),
                       warnings=tuple(warnings))
    return _allow(request, verdict, context, rules=rules, warnings=warnings)


def _allow(request: Request, verdict: Verdict, context: Context, *,
           rules: list[str] | None = None, warnings: list[str] | None = None) -> Outcome:
    mutations = verdict.mutations
    patch = [op for mutation in mutations for op in mutation.ops]
    all_warnings = [mutation.note for mutation in mutations]
    if warnings:
        all_warnings += warnings
    if verdict.warnings:
        all_warnings += verdict.warnings
    hit = tuple(dict.fromkeys(rules)) if rules else ()
    review = responses.allowed(uid=request.uid, api_version=request.api_version, patch=patch,
                               warnings=all_warnings, audit=_audit(hit, context) if
                               (hit or patch) else None)
    return Outcome(review=review, allowed=True, code=200, rules=hit,
                   mutated=tuple(dict.fromkeys([m.field for m in mutations])) if mutations
                   else (), patch=tuple(patch), warnings=tuple(all_warnings))


def _fail(request: Request, reason: str) -> Outcome:
    review = responses.errored(uid=request.uid, api_version=request.api_version, message=reason)
    return Outcome(review=review, allowed=False, code=500, failure=reason)


def _audit(rules: tuple[str, ...] | list[str], context: Context) -> dict[str, str]:
    audit = {"policy": context.policy.digest}
    if rules:
        audit["rules"] = ",".join(dict.fromkeys(rules))
    return audit
