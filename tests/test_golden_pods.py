"""Golden tests: AdmissionReviews captured from a real kube-apiserver, through ``admit``."""

from __future__ import annotations

import base64
import copy
from typing import Any

import jsonpatch
import orjson
import pytest

from tests.istio_injection import inject
from tests.podkit import review
from webhook.admission.seam import Outcome, Stage, admit
from webhook.config.policy import Policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context, SkillCatalog

# The captured label update names Skill currency-rates (no egress); the Skill cache has it.
CURRENCY_RATES = {"apiVersion": "agentsandbox.io/v1alpha1", "kind": "Skill",
                  "metadata": {"name": "currency-rates", "namespace": "agents"},
                  "spec": {"egressRequirements": []}}
CONTEXT = Context(policy=Policy(), skills=SkillCatalog([CURRENCY_RATES]))


def run(document: dict[str, Any], stage: Stage) -> Outcome:
    return admit(review_from_document(document), stage=stage, context=CONTEXT)


def patched(document: dict[str, Any], outcome: Outcome) -> dict[str, Any]:
    response = outcome.review["response"]
    assert response["patchType"] == "JSONPatch"
    ops = orjson.loads(base64.b64decode(response["patch"]))
    result: dict[str, Any] = jsonpatch.apply_patch(document["request"]["object"], ops)
    return result


def as_validating(document: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    result["request"]["object"] = obj
    return result


def test_pod_create_is_patched_into_an_agent_pod() -> None:
    document = review("pod-create.json")
    outcome = run(document, Stage.MUTATE)
    assert outcome.allowed
    pod = patched(document, outcome)
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "kata"
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["searches"][0] == "agents.svc.cluster.local"
    assert spec["containers"][0]["resources"]["requests"] == {"cpu": "250m", "memory": "2Gi"}
    assert spec["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    assert pod["metadata"]["annotations"]["agentsandbox.io/enforced"] == CONTEXT.policy.digest
    assert "set runtimeClassName=kata" in outcome.review["response"]["warnings"]
    assert "set dnsPolicy=None (was ClusterFirst)" in outcome.review["response"]["warnings"]


def test_pod_create_after_our_patch_and_istio_passes_validation() -> None:
    document = review("pod-create.json")
    final = inject(patched(document, run(document, Stage.MUTATE)))
    outcome = run(as_validating(document, final), Stage.VALIDATE)
    assert outcome.allowed, outcome.review["response"].get("status")


def test_a_pod_already_in_kata_keeps_its_runtime_class() -> None:
    document = review("pod-create-runtimeclass.json")
    assert document["request"]["object"]["spec"]["overhead"] == {"cpu": "250m",
                                                                  "memory": "160Mi"}
    outcome = run(document, Stage.MUTATE)
    assert outcome.allowed
    assert not [op for op in outcome.patch if "runtimeClassName" in op["path"]]
    assert patched(document, outcome)["spec"]["runtimeClassName"] == "kata"


def test_a_generate_name_pod_without_a_name_is_patched() -> None:
    document = review("pod-create-generatename.json")
    assert "name" not in document["request"]["object"]["metadata"]
    outcome = run(document, Stage.MUTATE)
    assert outcome.allowed
    assert patched(document, outcome)["spec"]["runtimeClassName"] == "kata"


def test_a_dry_run_gets_exactly_the_patch_of_a_real_create() -> None:
    dry = review("pod-create-dryrun.json")
    assert dry["request"]["dryRun"] is True
    real = copy.deepcopy(dry)
    real["request"]["dryRun"] = False
    real["request"]["options"].pop("dryRun", None)
    dry_outcome, real_outcome = run(dry, Stage.MUTATE), run(real, Stage.MUTATE)
    assert dry_outcome.patch == real_outcome.patch != ()
    assert dry_outcome.warnings == real_outcome.warnings


def _debug_container(document: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = document["request"]["object"]["spec"]["ephemeralContainers"][0]
    return result


def test_a_restricted_debug_container_is_allowed() -> None:
    document = review("pod-ephemeralcontainers.json")
    assert document["request"]["subResource"] == "ephemeralcontainers"
    assert run(document, Stage.VALIDATE).allowed
    assert run(document, Stage.MUTATE).patch == ()


@pytest.mark.parametrize(("change", "rule"), [
    ({"runAsUser": 1337}, "pod.proxy-identity"),
    ({"capabilities": {"add": ["NET_ADMIN"], "drop": ["ALL"]}}, "pod.capabilities"),
    ({"privileged": True}, "pod.privileged"),
])
def test_a_debug_container_that_escapes_capture_is_refused(change: dict[str, Any],
                                                            rule: str) -> None:
    document = review("pod-ephemeralcontainers.json")
    _debug_container(document)["securityContext"].update(change)
    outcome = run(document, Stage.VALIDATE)
    assert not outcome.allowed
    assert outcome.code == 403
    assert rule in outcome.rules
    assert "spec.ephemeralContainers[debugger].securityContext" in \
        outcome.review["response"]["status"]["message"]


@pytest.mark.parametrize("name", ["pod-delete.json", "pod-update-labels.json"])
@pytest.mark.parametrize("stage", list(Stage))
def test_delete_and_label_updates_pass_untouched(name: str, stage: Stage) -> None:
    outcome = run(review(name), stage)
    assert outcome.allowed
    assert outcome.patch == ()


def test_the_recorded_final_pod_has_its_sidecar_but_not_our_patch() -> None:
    outcome = run(review("final-pod-after-injection.json"), Stage.VALIDATE)
    assert not outcome.allowed
    assert "pod.istio-sidecar" not in outcome.rules
    assert {"pod.runtime-class", "pod.dns", "pod.memory-floor"} <= set(outcome.rules)


def test_the_final_pod_of_the_wrong_webhook_order_has_no_sidecar() -> None:
    outcome = run(review("final-pod-wrong-order.json"), Stage.VALIDATE)
    assert not outcome.allowed
    assert "pod.istio-sidecar" in outcome.rules
    assert "sorts before Istio's injector" in outcome.review["response"]["status"]["message"]
