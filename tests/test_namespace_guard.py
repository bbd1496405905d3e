"""Namespace integrity: the agentsandbox.io/enforce label cannot be removed or weakened except
by the policy's break-glass groups; adding or tightening it is always fine."""

from __future__ import annotations

from typing import Any

import pytest
from objectreview import request_for

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy, parse_policy
from webhook.policies.context import Context

RULE = "namespace.enforce-label"
LABEL = "agentsandbox.io/enforce"
BREAK_GLASS = parse_policy("enforceLabel: {breakGlassGroups: [platform-oncall]}\n",
                           source="test")


def namespace(value: str | None, **labels: str) -> dict[str, Any]:
    if value is not None:
        labels[LABEL] = value
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "agents", "labels": labels}}


def decide(old: str | None, new: str | None, *, policy: Any = None,
           groups: tuple[str, ...] = ("system:authenticated",), operation: str = "UPDATE",
           keep_other: bool = True) -> Any:
    before = namespace(old, team="a")
    after = namespace(new, team="a") if keep_other else namespace(new)
    request = request_for(after, old=before if operation == "UPDATE" else None,
                          operation=operation, username="dev", groups=groups)
    return admit(request, stage=Stage.VALIDATE,
                 context=Context(policy=policy or load_policy(None)))


@pytest.mark.parametrize(("old", "new"), [("true", None), ("true", "warn"), ("true", "false"),
                                          ("warn", None), ("warn", "off"), ("true", "True")])
def test_removing_or_weakening_the_label_is_refused(old: str, new: str | None) -> None:
    outcome = decide(old, new)
    assert not outcome.allowed
    assert outcome.rules == (RULE,)
    message = outcome.review["response"]["status"]["message"]
    assert f"[{RULE}] metadata.labels[{LABEL}]" in message
    assert "enforceLabel.breakGlassGroups" in message


@pytest.mark.parametrize(("old", "new"), [(None, "true"), (None, "warn"), ("warn", "true"),
                                          ("true", "true"), ("false", None), (None, None)])
def test_adding_tightening_keeping_or_unrelated_values_are_admitted(
        old: str | None, new: str | None) -> None:
    assert decide(old, new).allowed


def test_other_label_changes_on_an_enforced_namespace_are_admitted() -> None:
    assert decide("true", "true", keep_other=False).allowed


def test_a_break_glass_group_may_remove_it_with_a_warning_that_names_the_user() -> None:
    outcome = decide("true", None, policy=BREAK_GLASS,
                     groups=("system:authenticated", "platform-oncall"))
    assert outcome.allowed
    (warning,) = outcome.warnings
    assert "break glass" in warning
    assert "dev" in warning
    assert "platform-oncall" in warning


def test_other_groups_are_still_refused_when_break_glass_groups_exist() -> None:
    outcome = decide("true", None, policy=BREAK_GLASS, groups=("system:masters",))
    assert not outcome.allowed
    assert "platform-oncall" in outcome.review["response"]["status"]["message"]


def test_warn_and_off_modes_of_the_rule() -> None:
    warn = decide("true", None, policy=parse_policy(f"rules: {{{RULE}: warn}}\n", source="t"))
    assert warn.allowed
    assert any(RULE in w for w in warn.warnings)
    off = decide("true", None, policy=parse_policy(f"rules: {{{RULE}: 'off'}}\n", source="t"))
    assert off.allowed
    assert not off.warnings


def test_user_groups_are_read_from_the_captured_review_format() -> None:
    request = request_for(namespace(None), old=namespace("true"),
                          groups=("system:masters", "system:authenticated"))
    assert request.groups == ("system:masters", "system:authenticated")


@pytest.mark.parametrize("sub_resource", ["status", "finalize"])
@pytest.mark.parametrize(("old", "new", "allowed"), [
    ("true", None, False), ("true", "warn", False), ("warn", "true", True), ("true", "true", True)])
def test_a_status_or_finalize_update_is_judged_like_a_plain_update(
        sub_resource: str, old: str, new: str | None, allowed: bool) -> None:
    # Kubernetes' namespace status strategy resets only the spec, the finalize strategy only
    # the status: both keep whatever labels the writer sent.
    request = request_for(namespace(new, team="a"), old=namespace(old, team="a"),
                          operation="UPDATE", username="dev", sub_resource=sub_resource)
    outcome = admit(request, stage=Stage.VALIDATE, context=Context(policy=load_policy(None)))
    assert outcome.allowed is allowed
    if not allowed:
        assert outcome.rules == (RULE,)
