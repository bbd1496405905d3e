"""Fuzz the admission seam with mutated captured reviews: never a crash, every refusal names
a rule, and what the mutating webhook lets through passes the validating webhook."""

from __future__ import annotations

import re
from typing import Any

import jsonpatch
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzkit import mutated_reviews, operations
from tests.istio_injection import inject
from webhook.admission.engine import Engine
from webhook.admission.seam import Outcome, Stage, admit
from webhook.config.policy import load_policy
from webhook.core.errors import BadReview
from webhook.core.review import Request, review_from_document
from webhook.core.rules import Mode
from webhook.egress.registry import load_registry
from webhook.policies.pods import validate_pod_object

ENGINE = Engine(policy=load_policy(None), registry=load_registry(None))
NO_REGISTRY = Engine(policy=load_policy(None), registry=None)
RULE = re.compile(r"\[[a-z0-9][a-z0-9.-]*\]")
POD_FIXTURES = ["pod-create.json", "pod-create-dryrun.json", "pod-create-generatename.json",
                "pod-create-runtimeclass.json", "final-pod-after-injection.json"]
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def parsed(document: dict[str, Any]) -> Request | None:
    try:
        return review_from_document(document)
    except BadReview:
        return None


def check_answer(outcome: Outcome, request: Request) -> None:
    response = outcome.review["response"]
    assert response["uid"] == request.uid
    assert outcome.review["apiVersion"] == request.api_version
    assert response["allowed"] is outcome.allowed
    if outcome.allowed:
        return
    message = response["status"]["message"]
    assert response["status"]["code"] in (403, 500)
    if response["status"]["code"] == 403:
        assert RULE.search(message), message
    else:
        assert message
        # A policy that crashes on malformed input is a bug even though it fails closed.
        assert "internal error" not in message, message


@FUZZ
@given(mutated_reviews(), st.sampled_from(list(Stage)), st.booleans())
def test_any_mutated_review_gets_a_well_formed_answer(
        document: dict[str, Any], stage: Stage, registry: bool) -> None:
    request = parsed(document)
    if request is None:
        return
    engine = ENGINE if registry else NO_REGISTRY
    for context in (engine.contexts.enforce, engine.contexts.warn):
        check_answer(admit(request, stage=stage, context=context), request)


@FUZZ
@given(mutated_reviews(POD_FIXTURES), operations)
def test_mutate_then_validate_agree_on_mutated_pods(document: dict[str, Any],
                                                    operation: str) -> None:
    if isinstance(document.get("request"), dict):
        document["request"]["operation"] = operation
    request = parsed(document)
    if request is None or request.kind != "Pod" or request.group:
        return
    context = ENGINE.contexts.enforce
    mutated = admit(request, stage=Stage.MUTATE, context=context)
    check_answer(mutated, request)
    if not mutated.allowed or request.object is None or request.operation != "CREATE" \
            or request.sub_resource:
        return
    # The patch applies to the raw object, and the patched pod, once Istio has injected its
    # sidecar, has no enforced violation left: what mutate admits, validate admits.
    pod = jsonpatch.apply_patch(request.object, list(mutated.patch))
    try:
        final = inject(pod)
    except (TypeError, KeyError, AttributeError, ValueError):
        return  # the injector double models valid pods only; Istio would refuse these itself
    verdict = validate_pod_object(final, policy=context.policy, final=True,
                                  namespace=request.namespace or None)
    enforced = [v for v in verdict.violations
                if context.policy.mode(v.rule) is Mode.ENFORCE]
    assert not enforced, [v.render() for v in enforced]
    validated = admit(request.__class__(**{**_fields(request), "object": final}),
                      stage=Stage.VALIDATE, context=context)
    assert validated.allowed, validated.review


def _fields(request: Request) -> dict[str, Any]:
    return request._asdict()


@pytest.mark.parametrize("depth", [100, 500, 1000])
def test_deeply_nested_objects_never_crash_a_policy(depth: int) -> None:
    from tests.conftest import load_review
    from tests.fuzzkit import nested
    for name in [*POD_FIXTURES, "serviceentry-v1.json", "skill-create.json"]:
        document = load_review(name)
        document["request"]["object"]["spec"] = nested(depth, leaf={"a": 1})
        request = review_from_document(document)
        for stage in Stage:
            check_answer(admit(request, stage=stage, context=ENGINE.contexts.enforce), request)
