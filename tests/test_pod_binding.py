"""``pods/binding``: the annotations a Binding would copy onto a live pod are judged like a pod
UPDATE adding them; the scheduler's plain Bindings are admitted."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context

CONTEXT = Context(policy=load_policy(None), registry=None)


def binding_review(annotations: dict[str, str] | None, *,
                   operation: str = "CREATE") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "agent", "namespace": "agents"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "b1", "kind": {"group": "", "version": "v1", "kind": "Binding"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "subResource": "binding", "name": "agent", "namespace": "agents",
        "operation": operation, "userInfo": {"username": "system:kube-scheduler"},
        "object": {"apiVersion": "v1", "kind": "Binding", "metadata": metadata,
                   "target": {"apiVersion": "v1", "kind": "Node", "name": "node-1"}},
        "oldObject": None, "dryRun": False, "options": None}}


def decide(review: dict[str, Any]) -> Any:
    return admit(review_from_document(review), stage=Stage.VALIDATE, context=CONTEXT).review


@pytest.mark.parametrize("annotations", [None, {}, {"example.com/owner": "team-a"}])
def test_a_schedulers_binding_without_capture_annotations_is_admitted(
        annotations: dict[str, str] | None) -> None:
    assert decide(binding_review(annotations))["response"]["allowed"] is True


@pytest.mark.parametrize(("annotation", "value", "rule"), [
    ("traffic.sidecar.istio.io/excludeOutboundIPRanges", "0.0.0.0/0",
     "pod.istio-capture-annotations"),
    ("proxy.istio.io/config", "{}", "pod.istio-proxy-override"),
    ("io.katacontainers.config.hypervisor.kernel_params", "x", "pod.kata-annotations"),
])
def test_a_binding_that_would_add_an_unsafe_annotation_is_refused(
        annotation: str, value: str, rule: str) -> None:
    response = decide(binding_review({annotation: value}))["response"]
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert rule in response["status"]["message"]
