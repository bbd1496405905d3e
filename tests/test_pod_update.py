"""Plain pod UPDATEs through ``admit``: built from captured reviews, with ``oldObject``.

The captured ``pod-update-labels.json`` is a real UPDATE (``kubectl label``). The other
UPDATE reviews take a captured CREATE, run it through our mutating webhook and the Istio test
double, and use that final pod as ``oldObject``, changing only what the API server lets a
plain pod UPDATE change (images, labels, annotations, owner references, finalizers).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from tests.istio_injection import inject
from tests.podkit import review
from tests.test_golden_pods import patched, run
from webhook.admission.seam import Outcome, Stage, admit
from webhook.config.policy import Policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context, SkillCatalog

Edit = Callable[[dict[str, Any]], Any]


def final_pod(mode: str = "classic") -> dict[str, Any]:
    document = review("pod-create.json")
    return inject(patched(document, run(document, Stage.MUTATE)), mode=mode)


def update_review(old: dict[str, Any], edit: Edit) -> dict[str, Any]:
    """The captured UPDATE envelope around ``old`` and an edited copy of it."""
    document = copy.deepcopy(review("pod-update-labels.json"))
    new = copy.deepcopy(old)
    edit(new)
    document["request"]["oldObject"] = old
    document["request"]["object"] = new
    return document


# The captured label update names Skill currency-rates (no egress); the Skill cache has it.
SKILLS = SkillCatalog([{"apiVersion": "agentsandbox.io/v1alpha1", "kind": "Skill",
                        "metadata": {"name": "currency-rates", "namespace": "agents"},
                        "spec": {"egressRequirements": []}}])


def validate(document: dict[str, Any], policy: Policy | None = None) -> Outcome:
    return admit(review_from_document(document), stage=Stage.VALIDATE,
                 context=Context(policy=policy or Policy(), skills=SKILLS))


def refused_rules(outcome: Outcome) -> set[str]:
    assert not outcome.allowed, "expected a refusal"
    assert outcome.code == 403
    return set(outcome.rules)


def container(pod: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod["spec"]
    found: dict[str, Any] = next(c for c in [*spec.get("initContainers", []),
                                             *spec["containers"]] if c["name"] == name)
    return found


def annotations(pod: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = pod["metadata"].setdefault("annotations", {})
    return result


def test_the_captured_label_update_is_admitted_though_the_pod_predates_the_webhook() -> None:
    # The recorded pod was never patched (no Kata, no DNS, no sidecar): its old problems are
    # not the update's doing, so kubectl label must still work.
    document = review("pod-update-labels.json")
    assert document["request"]["operation"] == "UPDATE"
    assert "subResource" not in document["request"]
    outcome = validate(document)
    assert outcome.allowed, outcome.review["response"].get("status")


ORDINARY: dict[str, Edit] = {
    "a new label": lambda p: p["metadata"]["labels"].update(
        {"agentsandbox.io/skill": "currency-rates"}),
    "an owner reference (a controller adopts the pod)": lambda p: p["metadata"].update(
        ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs",
                          "uid": "8a1f6c9e-0000-4000-8000-000000000001", "controller": True}]),
    "a finalizer removed": lambda p: p["metadata"].pop("finalizers", None),
    "a finalizer added": lambda p: p["metadata"].update(finalizers=["example.com/cleanup"]),
    "the app's image (kubectl set image)": lambda p: container(p, "agent").update(
        image="registry.example.com/agents/currency:1.1"),
    "an ordinary annotation": lambda p: annotations(p).update(
        {"example.com/owner": "team-a"}),
    "Istio's CNI repair label": lambda p: p["metadata"]["labels"].update(
        {"cni.istio.io/uninitialized": "true"}),
    "activeDeadlineSeconds": lambda p: p["spec"].update(activeDeadlineSeconds=3600),
}


@pytest.mark.parametrize("name", sorted(ORDINARY))
@pytest.mark.parametrize("mode", ["classic", "native", "cni"])
def test_ordinary_updates_of_a_sealed_pod_are_admitted(name: str, mode: str) -> None:
    outcome = validate(update_review(final_pod(mode), ORDINARY[name]))
    assert outcome.allowed, outcome.review["response"].get("status")
    assert outcome.patch == ()


def _set_image(name: str) -> Edit:
    return lambda p: container(p, name).update(image="registry.example.com/tools/socat:1")


# name -> (edit, mode, rule refused)
ESCAPES: dict[str, tuple[Edit, str, str]] = {
    "a new istio-proxy image": (_set_image("istio-proxy"), "classic", "pod.istio-image-update"),
    "a new image for the native istio-proxy": (_set_image("istio-proxy"), "native",
                                               "pod.istio-image-update"),
    "a no-op istio-init image": (_set_image("istio-init"), "classic", "pod.istio-image-update"),
    "a new istio-validation image": (_set_image("istio-validation"), "cni",
                                     "pod.istio-image-update"),
    "proxy.istio.io/config added": (lambda p: annotations(p).update(
        {"proxy.istio.io/config": "{}"}), "classic", "pod.istio-proxy-override"),
    "an excluded outbound range added": (lambda p: annotations(p).update(
        {"traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0"}), "classic",
        "pod.istio-capture-annotations"),
    "an empty excluded range added (harmless only where Istio wrote it)": (
        lambda p: annotations(p).update(
            {"traffic.sidecar.istio.io/excludeOutboundPorts": ""}), "classic",
        "pod.istio-capture-annotations"),
    "the injection status rewritten": (lambda p: annotations(p).update(
        {"sidecar.istio.io/status": "{}"}), "classic", "pod.istio-proxy-override"),
    "a Kata annotation added": (lambda p: annotations(p).update(
        {"io.katacontainers.config.hypervisor.kernel_params": "x"}), "classic",
        "pod.kata-annotations"),
    "another revision label": (lambda p: p["metadata"]["labels"].update(
        {"istio.io/rev": "canary"}), "classic", "pod.istio-inject"),
    "the inject label switched off": (lambda p: p["metadata"]["labels"].update(
        {"sidecar.istio.io/inject": "false"}), "classic", "pod.istio-inject"),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_updates_that_unseal_a_pod_are_refused(name: str) -> None:
    edit, mode, rule = ESCAPES[name]
    outcome = validate(update_review(final_pod(mode), edit))
    assert rule in refused_rules(outcome)


def test_the_image_refusal_names_the_container_and_both_images() -> None:
    outcome = validate(update_review(final_pod(), _set_image("istio-proxy")))
    message = outcome.review["response"]["status"]["message"]
    assert "[pod.istio-image-update] spec.containers[istio-proxy].image" in message
    assert "docker.io/istio/proxyv2:1.28.0" in message
    assert "registry.example.com/tools/socat:1" in message


def test_the_final_pod_rules_judge_what_an_update_removes() -> None:
    # A removed key is no "added or changed" annotation; the final-pod rules over the new
    # object still see that the pod lost its inject label.
    outcome = validate(update_review(final_pod(), lambda p: p["metadata"]["labels"].pop(
        "sidecar.istio.io/inject")))
    assert refused_rules(outcome) == {"pod.istio-inject"}


def test_a_pod_that_already_broke_a_rule_can_be_updated_but_not_made_worse() -> None:
    old = final_pod()
    old["spec"]["dnsPolicy"] = "ClusterFirst"  # admitted under an older policy, say
    assert validate(update_review(old, ORDINARY["a new label"])).allowed
    worse = validate(update_review(old, _set_image("istio-proxy")))
    assert refused_rules(worse) == {"pod.istio-image-update"}


def test_the_update_rules_follow_their_modes() -> None:
    document = update_review(final_pod(), _set_image("istio-proxy"))
    warn = Policy.model_validate({"rules": {"pod.istio-image-update": "warn"}})
    warned = validate(document, warn)
    assert warned.allowed
    assert any("[pod.istio-image-update]" in w for w in warned.warnings)
    off = Policy.model_validate({"rules": {"pod.istio-image-update": "off"}})
    assert validate(document, off).allowed
    assert validate(document, off).warnings == ()


def test_an_update_without_old_object_is_judged_whole() -> None:
    document = update_review(final_pod(), ORDINARY["a new label"])
    document["request"]["oldObject"] = None
    assert validate(document).allowed
    document["request"]["object"]["spec"]["dnsPolicy"] = "ClusterFirst"
    assert refused_rules(validate(document)) == {"pod.dns"}


def test_a_dry_run_update_gets_the_same_verdict() -> None:
    document = update_review(final_pod(), _set_image("istio-init"))
    document["request"]["dryRun"] = True
    assert refused_rules(validate(document)) == {"pod.istio-image-update"}


def test_an_app_image_from_an_unapproved_registry_is_refused_on_update() -> None:
    registries = Policy.model_validate({"images": {"allowedRegistries": ["registry.example.com"]}})
    old = final_pod()
    assert validate(update_review(old, ORDINARY["the app's image (kubectl set image)"]),
                    registries).allowed
    outcome = validate(update_review(old, lambda p: container(p, "agent").update(
        image="docker.io/attacker/relay:1")), registries)
    assert refused_rules(outcome) == {"pod.image-registry"}


def status_review(old: dict[str, Any], edit: Edit, *, username: str = "lab-admin"
                  ) -> dict[str, Any]:
    """An UPDATE of ``pods/status``, as the API server sends it after the status strategy
    (the spec is the old one; labels and annotations are whatever the writer sent)."""
    document = update_review(old, edit)
    request = document["request"]
    request["subResource"] = request["requestSubResource"] = "status"
    request["object"]["spec"] = copy.deepcopy(old["spec"])
    request["userInfo"] = {"username": username, "groups": ["system:authenticated"]}
    return document


def _kubelet_running(pod: dict[str, Any]) -> None:
    """What a kubelet's status update changes: the status, nothing else."""
    ready = {"type": "Ready", "status": "True", "lastProbeTime": None,
             "lastTransitionTime": "2026-11-22T10:00:05Z"}
    pod["status"] = {
        "phase": "Running", "qosClass": "Burstable", "hostIP": "10.0.0.7",
        "hostIPs": [{"ip": "10.0.0.7"}], "podIP": "10.244.3.7", "podIPs": [{"ip": "10.244.3.7"}],
        "startTime": "2026-11-22T10:00:00Z",
        "conditions": [{"type": "PodReadyToStartContainers", "status": "True"},
                       {"type": "Initialized", "status": "True"}, ready,
                       {"type": "ContainersReady", "status": "True"},
                       {"type": "PodScheduled", "status": "True"}],
        "initContainerStatuses": [{"name": c["name"], "ready": True, "restartCount": 0,
                                   "image": c["image"], "imageID": "sha256:1",
                                   "state": {"terminated": {"exitCode": 0,
                                                            "reason": "Completed"}}}
                                  for c in pod["spec"].get("initContainers", [])],
        "containerStatuses": [{"name": c["name"], "ready": True, "restartCount": 0,
                               "started": True, "image": c["image"], "imageID": "sha256:2",
                               "containerID": f"containerd://{c['name']}",
                               "state": {"running": {"startedAt": "2026-11-22T10:00:03Z"}}}
                              for c in pod["spec"]["containers"]],
    }


@pytest.mark.parametrize("mode", ["classic", "native", "cni"])
def test_a_kubelet_status_update_of_an_injected_pod_is_admitted(mode: str) -> None:
    document = status_review(final_pod(mode), _kubelet_running, username="system:node:node-7")
    outcome = validate(document)
    assert outcome.allowed, outcome.review["response"].get("status")
    assert outcome.patch == ()
    assert outcome.warnings == ()


# name -> (edit, rule refused): what pods/status could otherwise add to a live pod.
STATUS_ESCAPES: dict[str, tuple[Edit, str]] = {
    "proxy.istio.io/config added": (lambda p: annotations(p).update(
        {"proxy.istio.io/config": '{"proxyMetadata": {"ISTIO_META_DNS_CAPTURE": "false"}}'}),
        "pod.istio-proxy-override"),
    "an excluded outbound range added": (lambda p: annotations(p).update(
        {"traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0"}),
        "pod.istio-capture-annotations"),
    "a Kata annotation added": (lambda p: annotations(p).update(
        {"io.katacontainers.config.hypervisor.kernel_params": "x"}), "pod.kata-annotations"),
    "the inject label switched off": (lambda p: p["metadata"]["labels"].update(
        {"sidecar.istio.io/inject": "false"}), "pod.istio-inject"),
}


@pytest.mark.parametrize("name", sorted(STATUS_ESCAPES))
def test_a_status_update_that_unseals_a_pod_is_refused_like_a_plain_update(name: str) -> None:
    edit, rule = STATUS_ESCAPES[name]
    outcome = validate(status_review(final_pod(), edit))
    assert rule in refused_rules(outcome)


@pytest.mark.parametrize("sub_resource", ["ephemeralcontainers", "resize"])
def test_other_subresource_updates_are_judged_on_the_metadata_they_change(
        sub_resource: str) -> None:
    old = final_pod()
    document = update_review(old, STATUS_ESCAPES["proxy.istio.io/config added"][0])
    request = document["request"]
    request["subResource"] = request["requestSubResource"] = sub_resource
    assert "pod.istio-proxy-override" in refused_rules(validate(document))
    document = update_review(old, lambda p: None)
    request = document["request"]
    request["subResource"] = request["requestSubResource"] = sub_resource
    assert validate(document).allowed
