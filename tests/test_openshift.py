"""OpenShift: pods as restricted-v2 leaves them, the proxy's identity from the injected pod,
Service Mesh 2 and 3 injection, Sandboxed Containers' runtime classes.

The pods start from ``tests/fixtures/openshift`` (constructed from OpenShift's documented
admission, see its README), go through the mutating stage with the OpenShift overlay's policy,
are injected by the Istio double with the proxy IDs Istio derives from the namespace's SCC
ranges, and are judged by the validating stage.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.guarantee import escapes
from tests.istio_injection import inject, openshift_proxy_ids
from tests.podkit import container, mutated, pod, policy, rules_of
from webhook.admission.seam import Outcome, Stage, admit
from webhook.config.policy import Policy, parse_policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context
from webhook.policies.pods import mutate_pod_object, validate_pod_object
from webhook.policies.pods.validate import check_new_ephemeral

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "openshift"
NAMESPACE = json.loads((FIXTURES / "namespace-agents.json").read_text())
PROXY_UID, PROXY_GID = openshift_proxy_ids(NAMESPACE["metadata"]["annotations"])
OVERLAY_POLICY_FILE = ROOT / "manifests" / "overlays" / "openshift" / "policy.yaml"
OVERLAY_POLICY = yaml.safe_load(OVERLAY_POLICY_FILE.read_text())["data"]["policy.yaml"]
OPENSHIFT = parse_policy(OVERLAY_POLICY, source=str(OVERLAY_POLICY_FILE))
# OpenShift Service Mesh 3 (Sail): upstream Istio's injection, on OpenShift's IDs.
OSSM3 = parse_policy(OVERLAY_POLICY.replace("flavour: ossm2", "flavour: istio"), source="ossm3")
MESHES = {"ossm2": (OPENSHIFT, "ossm2"), "ossm3": (OSSM3, "istio")}


def restricted_v2_review() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / "pod-create-restricted-v2.json")
                                          .read_text())
    return document


def run(document: dict[str, Any], stage: Stage, policy_: Policy) -> Outcome:
    return admit(review_from_document(document), stage=stage, context=Context(policy=policy_))


def final_pod(document: dict[str, Any], mesh: str) -> dict[str, Any]:
    """Mutate (must admit), apply the patch, inject as the mesh does on OpenShift (CNI)."""
    policy_, flavour = MESHES[mesh]
    outcome = run(document, Stage.MUTATE, policy_)
    assert outcome.allowed, outcome.review["response"].get("status")
    patched = jsonpatch.apply_patch(document["request"]["object"], list(outcome.patch))
    return inject(patched, mode="cni", flavour=flavour, proxy_uid=PROXY_UID, proxy_gid=PROXY_GID)


def validating(document: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(document)
    result["request"]["object"] = obj
    return result


def test_the_proxy_ids_are_the_top_of_the_namespace_ranges() -> None:
    assert (PROXY_UID, PROXY_GID) == (1000659999, 1000659999)
    assert openshift_proxy_ids({"openshift.io/sa.scc.uid-range": "1000650000/10000",
                                "openshift.io/sa.scc.supplemental-groups":
                                    "1000700000/10000,5000/10"}) == (1000659999, 1000709999)


@pytest.mark.parametrize("mesh", sorted(MESHES))
def test_a_restricted_v2_pod_injected_with_openshift_ids_is_admitted(mesh: str) -> None:
    document = restricted_v2_review()
    final = final_pod(document, mesh)
    proxy = next(c for c in final["spec"]["containers"] if c["name"] == "istio-proxy")
    assert proxy["securityContext"]["runAsUser"] == PROXY_UID
    assert "istio-validation" in [c["name"] for c in final["spec"]["initContainers"]]
    outcome = run(validating(document, final), Stage.VALIDATE, MESHES[mesh][0])
    assert outcome.allowed, outcome.review["response"].get("status")
    assert escapes(final, proxy_uid=PROXY_UID, proxy_gid=PROXY_GID) == {}


def test_the_mutation_keeps_every_id_the_scc_assigned() -> None:
    document = restricted_v2_review()
    outcome = run(document, Stage.MUTATE, OPENSHIFT)
    paths = [op["path"] for op in outcome.patch]
    assert "/spec/securityContext/runAsUser" not in paths  # every container has the SCC's UID
    assert not [p for p in paths if p.startswith("/spec/containers/0/securityContext")]
    assert not [p for p in paths if "runtimeClassName" in p]
    patched = jsonpatch.apply_patch(document["request"]["object"], list(outcome.patch))
    assert patched["spec"]["securityContext"] == {
        "seLinuxOptions": {"level": "s0:c26,c5"}, "fsGroup": 1000650000,
        "seccompProfile": {"type": "RuntimeDefault"}, "runAsGroup": 0, "runAsNonRoot": True}
    assert patched["spec"]["containers"][0]["securityContext"]["runAsUser"] == 1000650000


def test_with_the_default_policy_openshift_ids_are_no_longer_refused() -> None:
    # The proxy's identity comes from the pod: a correctly injected OpenShift pod passes even
    # where the policy still says 1337 (it used to fail "-u is not the proxy UID 1337").
    document = restricted_v2_review()
    default = Policy()
    outcome = run(document, Stage.MUTATE, default)
    patched = jsonpatch.apply_patch(document["request"]["object"], list(outcome.patch))
    final = inject(patched, mode="cni", proxy_uid=PROXY_UID, proxy_gid=PROXY_GID)
    assert rules_of(validate_pod_object(final, policy=default, final=True,
                                        namespace="agents")) == []


def _app_at(where: str, value: int) -> dict[str, Any]:
    document = restricted_v2_review()
    spec = document["request"]["object"]["spec"]
    if where == "runAsUser":
        spec["containers"][0]["securityContext"]["runAsUser"] = value
    elif where == "runAsGroup":
        spec["containers"][0]["securityContext"]["runAsGroup"] = value
    elif where == "fsGroup":
        spec["securityContext"]["fsGroup"] = value
    elif where == "supplementalGroups":
        spec["securityContext"]["supplementalGroups"] = [value]
    elif where == "native sidecar":
        spec["initContainers"] = [container("relay", restartPolicy="Always", securityContext={
            "runAsUser": value, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}})]
    return document


PROXY_ID_ESCAPES = {
    "runAsUser": "spec.containers[agent].securityContext.runAsUser",
    "runAsGroup": "spec.containers[agent].securityContext.runAsGroup",
    "fsGroup": "spec.securityContext.fsGroup",
    "supplementalGroups": "spec.securityContext.supplementalGroups",
    "native sidecar": "spec.initContainers[relay].securityContext.runAsUser",
}


@pytest.mark.parametrize("mesh", sorted(MESHES))
@pytest.mark.parametrize("where", sorted(PROXY_ID_ESCAPES))
def test_an_app_at_the_openshift_proxy_id_is_refused_in_the_validating_stage(
        where: str, mesh: str) -> None:
    document = _app_at(where, PROXY_UID)
    # Before injection the proxy's ID is unknown (the pod does not carry the namespace's
    # range), so the mutating stage admits it: the validating stage is where it is caught.
    final = final_pod(document, mesh)
    outcome = run(validating(document, final), Stage.VALIDATE, MESHES[mesh][0])
    assert not outcome.allowed
    assert "pod.proxy-identity" in outcome.rules
    assert f"{PROXY_ID_ESCAPES[where]}: is {PROXY_UID}, the Istio proxy's identity" in \
        outcome.review["response"]["status"]["message"]


def test_iptables_arguments_must_agree_with_the_proxys_identity() -> None:
    document = restricted_v2_review()
    final = final_pod(document, "ossm2")
    validation = final["spec"]["initContainers"][0]
    args = validation["args"]
    args[args.index("-u") + 1] = "1337"  # exempts another UID than the proxy runs as
    verdict = validate_pod_object(final, policy=OPENSHIFT, final=True, namespace="agents")
    (violation,) = [v for v in verdict.violations if v.rule == "pod.istio-sidecar"]
    assert f"-u is '1337', not the proxy UID {PROXY_UID}" in violation.message


def test_without_g_iptables_exempts_the_uid_as_a_group_too() -> None:
    final = final_pod(restricted_v2_review(), "ossm3")
    args = final["spec"]["initContainers"][0]["args"]
    del args[args.index("-g"):args.index("-g") + 2]
    final["spec"]["containers"][0]["securityContext"]["runAsGroup"] = PROXY_UID
    assert ("pod.proxy-identity", "spec.containers[agent].securityContext.runAsGroup") in \
        rules_of(validate_pod_object(final, policy=OSSM3, final=True, namespace="agents"))


def test_a_debug_container_at_the_openshift_proxy_uid_is_refused() -> None:
    old = final_pod(restricted_v2_review(), "ossm2")
    new = copy.deepcopy(old)
    new["spec"]["ephemeralContainers"] = [container("debugger", securityContext={
        "runAsUser": PROXY_UID, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}})]
    assert "pod.proxy-identity" in {v.rule for v in check_new_ephemeral(new, old,
                                                                         policy=OPENSHIFT)
                                    .violations}


# --- mesh flavours --------------------------------------------------------------------------

def test_service_mesh_2_gets_the_inject_annotation_and_label_but_no_revision_label() -> None:
    ossm2 = policy(istio={"flavour": "ossm2", "revision": "basic"})
    verdict = mutate_pod_object(pod(), namespace="agents", policy=ossm2)
    (marks,) = [m for m in verdict.mutations if m.rule == "pod.istio-inject"]
    assert marks.note == ("add label sidecar.istio.io/inject=true; "
                          "add annotation sidecar.istio.io/inject=true")
    result = mutated(pod(), policy_=ossm2)
    assert "istio.io/rev" not in result["metadata"]["labels"]
    final = inject(result, flavour="ossm2", revision="basic")
    assert rules_of(validate_pod_object(final, policy=ossm2, final=True)) == []


def test_service_mesh_2_injects_only_on_the_annotation() -> None:
    ossm2 = policy(istio={"flavour": "ossm2"})
    result = mutated(pod(), policy_=ossm2)
    del result["metadata"]["annotations"]["sidecar.istio.io/inject"]
    final = inject(result, flavour="ossm2")
    assert "istio-proxy" not in [c["name"] for c in final["spec"]["containers"]]
    rules = rules_of(validate_pod_object(final, policy=ossm2, final=True))
    assert ("pod.istio-inject", "metadata.annotations[sidecar.istio.io/inject]") in rules
    assert ("pod.istio-sidecar", "spec.containers") in rules


def test_service_mesh_2_writes_its_control_plane_as_the_revision() -> None:
    ossm2 = policy(istio={"flavour": "ossm2"})
    final = inject(mutated(pod(), policy_=ossm2), flavour="ossm2")
    assert final["metadata"]["annotations"]["istio.io/rev"] == "basic"
    assert rules_of(validate_pod_object(final, policy=ossm2, final=True)) == []
    # ...but a user-set revision before injection is still refused.
    chosen = pod(annotations={"istio.io/rev": "other"})
    assert ("pod.istio-inject", "metadata.annotations[istio.io/rev]") in rules_of(
        mutate_pod_object(chosen, namespace="agents", policy=ossm2))


def test_service_mesh_3_uses_labels_and_revisions() -> None:
    sail = policy(istio={"revision": "default-v1-24-3"})
    result = mutated(pod(), policy_=sail)
    assert result["metadata"]["labels"]["istio.io/rev"] == "default-v1-24-3"
    assert "sidecar.istio.io/inject" not in (result["metadata"].get("annotations") or {})
    final = inject(result, mode="cni", revision="default-v1-24-3")
    assert rules_of(validate_pod_object(final, policy=sail, final=True)) == []


# --- Sandboxed Containers' runtime classes --------------------------------------------------

@pytest.mark.parametrize(("given", "refused"), [("kata", False), ("kata-remote", False),
                                               ("runc", True)])
def test_every_approved_class_is_kept_and_others_refused(given: str, refused: bool) -> None:
    verdict = mutate_pod_object(pod(runtimeClassName=given), namespace="agents",
                                policy=OPENSHIFT)
    assert ("pod.runtime-class" in {v.rule for v in verdict.violations}) is refused
    assert not [m for m in verdict.mutations if m.field == "runtimeClassName"]


def test_the_first_approved_class_is_set_on_pods_without_one() -> None:
    remote_first = policy(runtimeClass={"names": ["kata-remote", "kata"]})
    assert mutated(pod(), policy_=remote_first)["spec"]["runtimeClassName"] == "kata-remote"
    assert mutated(pod(), policy_=OPENSHIFT)["spec"]["runtimeClassName"] == "kata"


def test_the_one_class_form_of_the_policy_still_loads() -> None:
    assert policy(runtimeClass={"name": "kata"}).runtime_class.names == ("kata",)
