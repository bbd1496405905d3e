"""``pod.explicit-identity``: no container may leave its UID or GID to its image's USER."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.istio_injection import MODES, inject
from tests.podkit import container, identity, mutated, pod, policy, review, rules_of
from webhook.admission.seam import Stage, admit
from webhook.config.policy import Policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context
from webhook.policies.pods import check_pod_template, mutate_pod_object, validate_pod_object
from webhook.policies.pods.validate import check_new_ephemeral

RULE = "pod.explicit-identity"
DEFAULT = Policy()
AGENT = "spec.containers[agent].securityContext"


def explicit(obj: dict[str, Any], policy_: Policy = DEFAULT, *,
             final: bool = False) -> list[str]:
    """The paths ``pod.explicit-identity`` refuses in ``obj``."""
    verdict = validate_pod_object(obj, policy=policy_, final=final)
    return [path for rule, path in rules_of(verdict) if rule == RULE]


# name -> (pod, the paths refused)
CASES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "no identity at either level": (pod(securityContext=None), [AGENT]),
    "an empty pod securityContext": (pod(securityContext={}), [AGENT]),
    "no runAsUser": (pod(securityContext={"runAsGroup": 10001}), [AGENT]),
    "no runAsGroup": (pod(securityContext={"runAsUser": 10001}), [AGENT]),
    "a null runAsUser": (pod(securityContext={"runAsUser": None, "runAsGroup": 1}), [AGENT]),
    "set at pod level only": (pod(), []),
    "set on the container only": (pod(container(request="1Gi", limit="1Gi", securityContext=
                                                identity()), securityContext=None), []),
    "split between the levels": (pod(container(request="1Gi", limit="1Gi", securityContext={
        "runAsGroup": 20002}), securityContext={"runAsUser": 10001}), []),
    "the container overrides the pod": (pod(container(request="1Gi", limit="1Gi",
                                                      securityContext=identity(20002, 20002))),
                                        []),
    "root, explicitly": (pod(securityContext=identity(0, 0)), []),
    "an init container without identity": (
        pod(initContainers=[container("setup")], securityContext=None),
        [AGENT, "spec.initContainers[setup].securityContext"]),
    "an init container under the pod's identity": (pod(initContainers=[container("setup")]),
                                                   []),
    "only the second container lacks it": (
        pod(container(securityContext=identity()), container("tool"), securityContext=None),
        ["spec.containers[tool].securityContext"]),
    "a Windows pod is out of scope": (pod(securityContext=None, os={"name": "windows"}), []),
    "a Linux pod is not": (pod(securityContext=None, os={"name": "linux"}), [AGENT]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_effective_identity_must_be_explicit(name: str) -> None:
    obj, paths = CASES[name]
    assert explicit(obj) == paths


def test_the_message_says_why_and_how_to_fix_it() -> None:
    verdict = validate_pod_object(pod(securityContext={"runAsGroup": 10001}), policy=DEFAULT,
                                  final=False)
    (violation,) = [v for v in verdict.violations if v.rule == RULE]
    assert violation.render() == (
        f"[{RULE}] {AGENT}: no runAsUser at container or pod level, so the image's USER "
        "decides the UID and could be the Istio proxy's (1337), whose traffic skips capture; "
        "set spec.securityContext.runAsUser and runAsGroup (e.g. 10001)")


def test_the_mutating_stage_refuses_it_and_patches_no_identity_in() -> None:
    verdict = mutate_pod_object(pod(securityContext=None), namespace="agents", policy=DEFAULT)
    assert (RULE, AGENT) in rules_of(verdict)
    ops = [op for mutation in verdict.mutations for op in mutation.ops]
    assert not [op for op in ops if "securityContext" in op["path"]]


@pytest.mark.parametrize("mode", MODES)
def test_istios_injected_containers_are_exempt(mode: str) -> None:
    final = inject(mutated(pod()), mode=mode)
    assert explicit(final, final=True) == []
    for body in final["spec"]["containers"] + final["spec"]["initContainers"]:
        if body["name"].startswith("istio-"):
            del body["securityContext"]["runAsUser"], body["securityContext"]["runAsGroup"]
    final["spec"]["securityContext"] = {}
    assert explicit(final, final=True) == [AGENT]


def test_a_user_container_named_like_istios_is_not_exempt_before_injection() -> None:
    obj = pod(securityContext=None, initContainers=[container("istio-init")])
    assert "spec.initContainers[istio-init].securityContext" in explicit(obj)


def test_a_rule_that_is_off_is_not_evaluated() -> None:
    off = policy(rules={RULE: "off"})
    assert explicit(pod(securityContext=None), off) == []
    assert explicit(inject(mutated(pod(securityContext=None), policy_=off)), off,
                    final=True) == []


def test_warn_mode_admits_with_a_warning() -> None:
    document = review("pod-create.json")
    del document["request"]["object"]["spec"]["securityContext"]["runAsUser"]
    request = review_from_document(document)
    assert RULE in admit(request, stage=Stage.MUTATE, context=Context(policy=DEFAULT)).rules
    outcome = admit(request, stage=Stage.MUTATE,
                    context=Context(policy=policy(rules={RULE: "warn"})))
    assert outcome.allowed
    assert any(w.startswith(f"[{RULE}] {AGENT}") for w in outcome.warnings)


def _with_debugger(pod_level: dict[str, Any] | None, **security: Any) -> dict[str, Any]:
    obj = inject(mutated(pod()))
    obj["spec"]["securityContext"] = pod_level
    obj["spec"]["ephemeralContainers"] = [container("debugger", securityContext=security)]
    return obj


@pytest.mark.parametrize(("pod_level", "security", "refused"), [
    (identity(), {}, False),
    (None, identity(), False),
    (None, {}, True),
    ({"runAsUser": 10001}, {}, True),
])
def test_a_debug_container_needs_an_effective_identity(
        pod_level: dict[str, Any] | None, security: dict[str, Any], refused: bool) -> None:
    obj = _with_debugger(pod_level, **security)
    old = copy.deepcopy(obj)
    del old["spec"]["ephemeralContainers"]
    rules = rules_of(check_new_ephemeral(obj, old, policy=DEFAULT))
    assert ((RULE, "spec.ephemeralContainers[debugger].securityContext") in rules) is refused


def test_debug_containers_already_admitted_are_not_checked_again() -> None:
    obj = _with_debugger(None)
    assert rules_of(check_new_ephemeral(obj, copy.deepcopy(obj), policy=DEFAULT)) == []


def test_the_recorded_debug_container_relies_on_the_pod_level_identity() -> None:
    document = review("pod-ephemeralcontainers.json")
    context = Context(policy=DEFAULT)
    assert admit(review_from_document(document), stage=Stage.VALIDATE, context=context).allowed
    del document["request"]["object"]["spec"]["securityContext"]["runAsGroup"]
    outcome = admit(review_from_document(document), stage=Stage.VALIDATE, context=context)
    assert not outcome.allowed
    assert RULE in outcome.rules


def test_the_recorded_final_pod_is_not_refused_for_it() -> None:
    final = review("final-pod-after-injection.json")["request"]["object"]
    assert explicit(final, final=True) == []


def test_a_template_is_refused_at_its_path() -> None:
    template = review("deployment-create.json")["request"]["object"]["spec"]["template"]
    assert check_pod_template(template, namespace="agents", policy=DEFAULT,
                              path="spec.template").violations == ()
    del template["spec"]["securityContext"]["runAsUser"]
    verdict = check_pod_template(template, namespace="agents", policy=DEFAULT,
                                 path="spec.template")
    (violation,) = verdict.violations
    assert (violation.rule, violation.path) == (
        RULE, "spec.template.spec.containers[agent].securityContext")
    assert "set spec.template.spec.securityContext.runAsUser" in violation.message
