"""The mutating pod policy: what it patches, what it refuses, and that its output validates."""

from __future__ import annotations

from typing import Any

import pytest

from tests.istio_injection import MODES, inject
from tests.podkit import apply, container, mutated, patch_of, pod, policy, rules_of
from webhook.config.policy import Policy
from webhook.policies.pods import mutate_pod_object, validate_pod_object
from webhook.policies.result import Verdict

DEFAULT = Policy()


def mutate(obj: dict[str, Any], policy_: Policy = DEFAULT, namespace: str = "agents") -> Verdict:
    return mutate_pod_object(obj, namespace=namespace, policy=policy_)


def memory_of(obj: dict[str, Any], index: int = 0) -> tuple[str | None, str | None]:
    resources = obj["spec"]["containers"][index].get("resources", {})
    return (resources.get("requests", {}).get("memory"),
            resources.get("limits", {}).get("memory"))


# Pods that comply after mutation; each must come out of injection (every mode) valid.
ROUNDTRIP_PODS = {
    "a plain pod": pod(),
    "a pod without resources": pod(container()),
    "a pod without labels or annotations maps": pod(container(request="1Gi")),
    "a pod with two containers and a default-container annotation": pod(
        container("sidecar", request="64Mi", limit="128Mi"), container("main", limit="3Gi"),
        annotations={"kubectl.kubernetes.io/default-container": "main"}),
    "a pod already in kata with its overhead": pod(runtimeClassName="kata",
                                                   overhead={"memory": "160Mi"}),
    "a pod with a user dnsConfig": pod(dnsPolicy="None", dnsConfig={"nameservers": ["8.8.8.8"]}),
    "a pod with the inject label and an unrelated annotation": pod(
        labels={"sidecar.istio.io/inject": "true"}, annotations={"team": "x"}),
    "a pod with a user init container": pod(initContainers=[container("setup")]),
    "a pod whose memory is written in decimal and exponent forms": pod(
        container("a", request="1e9", limit="1.5G"), container("b", request="500000k")),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(ROUNDTRIP_PODS))
def test_a_mutated_and_injected_pod_passes_validation(name: str, mode: str) -> None:
    final = inject(mutated(ROUNDTRIP_PODS[name]), mode=mode)
    assert rules_of(validate_pod_object(final, policy=DEFAULT, final=True)) == []


@pytest.mark.parametrize("name", sorted(ROUNDTRIP_PODS))
def test_mutating_the_webhooks_own_output_gives_an_empty_patch(name: str) -> None:
    once = mutated(ROUNDTRIP_PODS[name])
    again = mutate(once)
    assert patch_of(again) == []
    assert again.warnings == ()
    assert again.violations == ()


@pytest.mark.parametrize("name", sorted(ROUNDTRIP_PODS))
def test_the_same_pod_gives_the_same_patch(name: str) -> None:
    assert patch_of(mutate(ROUNDTRIP_PODS[name])) == patch_of(mutate(ROUNDTRIP_PODS[name]))


def test_an_absent_runtime_class_is_set_with_a_warning() -> None:
    verdict = mutate(pod())
    assert apply(verdict, pod())["spec"]["runtimeClassName"] == "kata"
    assert "set runtimeClassName=kata" in [m.note for m in verdict.mutations]


def test_the_approved_runtime_class_is_left_alone() -> None:
    obj = pod(runtimeClassName="kata")
    assert not [op for op in patch_of(mutate(obj)) if "runtimeClassName" in op["path"]]


def test_a_foreign_runtime_class_is_refused_with_the_overhead_explanation() -> None:
    verdict = mutate(pod(runtimeClassName="gvisor"))
    [violation] = [v for v in verdict.violations if v.rule == "pod.runtime-class"]
    assert violation.path == "spec.runtimeClassName"
    assert violation.message == ('"gvisor" is not an approved class ("kata" or "kata-remote"); '
                                 "the API server has already applied gvisor's overhead, so the "
                                 "webhook cannot switch it: remove runtimeClassName or set it "
                                 "to kata")
    assert not [op for op in patch_of(verdict) if "runtimeClassName" in op["path"]]


# (containers, default-container, expected [(request, limit), ...])
MEMORY_CASES = {
    "one small container takes the whole floor": (
        [container(request="512Mi", limit="1Gi")], None, [("2Gi", "2Gi")]),
    "a container with nothing gets defaults then the floor": (
        [container()], None, [("2Gi", "2Gi")]),
    "a big container is never lowered": (
        [container(request="3Gi", limit="4Gi")], None, [("3Gi", "4Gi")]),
    "two containers that reach the floor together are left alone": (
        [container("a", request="1Gi", limit="1Gi"), container("b", request="1Gi", limit="1Gi")],
        None, [("1Gi", "1Gi"), ("1Gi", "1Gi")]),
    "the shortfall goes to the first container by default": (
        [container("a", request="512Mi", limit="1Gi"), container("b", request="1Gi",
                                                                 limit="1Gi")],
        None, [("1Gi", "1Gi"), ("1Gi", "1Gi")]),
    "the shortfall goes to the default container": (
        [container("a", request="512Mi", limit="512Mi"), container("b")], "b",
        [("512Mi", "512Mi"), ("1536Mi", "1536Mi")]),
    "a missing limit gets the default, not below the request": (
        [container("a", request="3Gi")], None, [("3Gi", "3Gi")]),
    "a missing request gets the default, not above the limit": (
        [container("a", limit="128Mi"), container("b", request="2Gi", limit="2Gi")], "b",
        [("128Mi", "128Mi"), ("2Gi", "2Gi")]),
    "a request above its limit raises the limit": (
        [container("a", request="3Gi", limit="1Gi")], None, [("3Gi", "3Gi")]),
}


@pytest.mark.parametrize("name", sorted(MEMORY_CASES))
def test_memory_floors(name: str) -> None:
    containers, main, expected = MEMORY_CASES[name]
    annotations = {"kubectl.kubernetes.io/default-container": main} if main else None
    result = mutated(pod(*containers, annotations=annotations))
    assert [memory_of(result, i) for i in range(len(containers))] == expected


def test_the_remembered_raise_plan_is_per_policy_and_per_main_container() -> None:
    # The raise plan is worked out once per shape of quantities and reused: the same pod
    # under another floor, or with another main container, must not get the first answer.
    # One policy object throughout, so that later calls find the plans earlier ones made.
    obj = pod(container("a", request="512Mi", limit="512Mi"), container("b"))
    # b gets the container defaults (256Mi/512Mi), a the shortfall to the 2Gi floor.
    first = [("1792Mi", "1792Mi"), ("256Mi", "512Mi")]
    assert [memory_of(mutated(obj, policy_=DEFAULT), i) for i in (0, 1)] == first
    bigger = policy(memory={"podFloor": "3Gi"})
    assert [memory_of(apply(mutate(obj, bigger), obj), i) for i in (0, 1)] == [
        ("2816Mi", "2816Mi"), ("256Mi", "512Mi")]
    other_main = pod(container("a", request="512Mi", limit="512Mi"), container("b"),
                     annotations={"kubectl.kubernetes.io/default-container": "b"})
    assert [memory_of(mutated(other_main, policy_=DEFAULT), i) for i in (0, 1)] == [
        ("512Mi", "512Mi"), ("1536Mi", "1536Mi")]
    assert [memory_of(mutated(obj, policy_=DEFAULT), i) for i in (0, 1)] == first


def test_raise_plans_are_remembered_only_for_pods_of_a_few_containers() -> None:
    from webhook.policies.pods.compiled import compile_policy

    compiled = compile_policy(DEFAULT)
    compiled.raise_plans.clear()
    mutated(pod(container("a", request="100Mi", limit="100Mi")), policy_=DEFAULT)
    assert len(compiled.raise_plans) == 1
    many = pod(*[container(f"c{i}", request="100Mi", limit="100Mi") for i in range(9)])
    result = mutated(many, policy_=DEFAULT)
    assert len(compiled.raise_plans) == 1  # nine containers: planned, not kept
    assert memory_of(result, 0) == ("1248Mi", "1248Mi")  # 2Gi less the other eight's 800Mi
    long_text = "0" * 600 + "100Mi"  # a valid quantity only a direct POST could carry
    result = mutated(pod(container("a", request=long_text, limit=long_text)), policy_=DEFAULT)
    assert len(compiled.raise_plans) == 1  # planned, not kept
    assert memory_of(result, 0) == ("2Gi", "2Gi")


def test_the_floor_raise_is_told_in_kubectls_voice() -> None:
    obj = pod(container("a", request="512Mi", limit="512Mi"), container("agent"),
              annotations={"kubectl.kubernetes.io/default-container": "agent"})
    notes = [m.note for m in mutate(obj).mutations]
    assert "set containers[agent].resources.limits.memory=1536Mi (pod floor 2Gi)" in notes


def test_istio_proxy_is_not_counted_as_an_app_container() -> None:
    obj = pod(container("agent", request="1Gi", limit="1Gi"),
              container("istio-proxy", request="1Gi", limit="1Gi"))
    verdict = mutate(obj, policy(rules={"pod.istio-reserved-names": "off"}))
    assert memory_of(apply(verdict, obj)) == ("2Gi", "2Gi")


@pytest.mark.parametrize("bad", ["lots", "1.5.5Gi", "", "1 Gi", "-1Gi", True, ["1Gi"]])
def test_an_unusable_memory_quantity_is_refused_by_the_memory_rule(bad: Any) -> None:
    verdict = mutate(pod(container(request=bad, limit="2Gi")))
    assert ("pod.memory-floor", "spec.containers[agent].resources.requests.memory") in \
        rules_of(verdict)
    assert not [op for op in patch_of(verdict) if "resources" in op["path"]]


def test_dns_is_forced_to_the_filtering_resolver_with_the_request_namespace() -> None:
    obj = pod()
    del obj["metadata"]["namespace"]
    verdict = mutate(obj, namespace="team-a")
    spec = apply(verdict, obj)["spec"]
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"] == {
        "nameservers": ["10.96.0.53"],
        "searches": ["team-a.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        "options": [{"name": "ndots", "value": "5"}]}
    assert "set dnsPolicy=None (was ClusterFirst)" in [m.note for m in verdict.mutations]


def test_a_replaced_user_dns_config_is_told() -> None:
    verdict = mutate(pod(dnsPolicy="None", dnsConfig={"nameservers": ["8.8.8.8"]}))
    assert any(m.note.startswith("replace dnsConfig (nameservers=8.8.8.8)")
               for m in verdict.mutations)


def test_labels_and_annotations_maps_are_added_before_their_keys() -> None:
    obj = pod()
    assert "labels" not in obj["metadata"]
    ops = patch_of(mutate(obj, policy(istio={"revision": "stable"})))
    assert ops[:3] == [
        {"op": "add", "path": "/metadata/labels", "value": {}},
        {"op": "add", "path": "/metadata/labels/sidecar.istio.io~1inject", "value": "true"},
        {"op": "add", "path": "/metadata/labels/istio.io~1rev", "value": "stable"}]
    result = apply(mutate(obj), obj)
    assert result["metadata"]["annotations"] == {"agentsandbox.io/enforced": DEFAULT.digest}


def test_every_op_is_prefixed_with_the_pointer() -> None:
    ops = patch_of(mutate_pod_object(pod(), namespace="agents", policy=DEFAULT,
                                     pointer="/spec/template"))
    assert ops
    assert all(op["path"].startswith("/spec/template/") for op in ops)


# (pod, rule, path) refused before injection
REFUSED = {
    "a user container named istio-proxy": (
        pod(container("istio-proxy")), "pod.istio-reserved-names",
        "spec.containers[istio-proxy].name"),
    "a user init container named istio-init": (
        pod(initContainers=[container("istio-init")]), "pod.istio-reserved-names",
        "spec.initContainers[istio-init].name"),
    "an ephemeral container named istio-validation": (
        pod(ephemeralContainers=[container("istio-validation")]), "pod.istio-reserved-names",
        "spec.ephemeralContainers[istio-validation].name"),
    "the inject label set to false": (
        pod(labels={"sidecar.istio.io/inject": "false"}), "pod.istio-inject",
        "metadata.labels[sidecar.istio.io/inject]"),
    "the inject annotation set to false": (
        pod(annotations={"sidecar.istio.io/inject": "false"}), "pod.istio-inject",
        "metadata.annotations[sidecar.istio.io/inject]"),
    "a foreign istio.io/rev label": (
        pod(labels={"istio.io/rev": "canary"}), "pod.istio-inject",
        "metadata.labels[istio.io/rev]"),
    "the ambient opt-out": (
        pod(labels={"istio.io/dataplane-mode": "none"}), "pod.istio-inject",
        "metadata.labels[istio.io/dataplane-mode]"),
    "a pre-set sidecar status": (
        pod(annotations={"sidecar.istio.io/status": "{}"}), "pod.istio-proxy-override",
        "metadata.annotations[sidecar.istio.io/status]"),
    "pre-set proxy overrides": (
        pod(annotations={"proxy.istio.io/overrides": "{}"}), "pod.istio-proxy-override",
        "metadata.annotations[proxy.istio.io/overrides]"),
    "a REDIRECT interception mode annotation (any value is the user's)": (
        pod(annotations={"sidecar.istio.io/interceptionMode": "REDIRECT"}),
        "pod.istio-capture-annotations", "metadata.annotations[sidecar.istio.io/interceptionMode]"),
    "hostNetwork (isolation rules run here too)": (
        pod(hostNetwork=True), "pod.host-namespaces", "spec.hostNetwork"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_before_injection(name: str) -> None:
    obj, rule, path = REFUSED[name]
    assert (rule, path) in rules_of(mutate(obj))


def test_every_refusal_is_reported_at_once() -> None:
    obj = pod(container("istio-proxy", securityContext={"privileged": True}), hostPID=True,
              runtimeClassName="runc", annotations={"io.katacontainers.config.hypervisor.x": "1"})
    assert {rule for rule, _ in rules_of(mutate(obj))} >= {
        "pod.istio-reserved-names", "pod.privileged", "pod.host-namespaces",
        "pod.runtime-class", "pod.kata-annotations"}


def test_include_outbound_ranges_of_star_is_allowed() -> None:
    obj = pod(annotations={"traffic.sidecar.istio.io/includeOutboundIPRanges": "*"})
    assert rules_of(mutate(obj)) == []


def test_warn_mode_does_not_patch_but_says_what_it_would_do() -> None:
    verdict = mutate(pod(), policy(rules={"pod.runtime-class": "warn"}))
    assert not [op for op in patch_of(verdict) if "runtimeClassName" in op["path"]]
    assert "[pod.runtime-class] would set runtimeClassName=kata" in verdict.warnings


def test_off_mode_neither_patches_nor_checks() -> None:
    verdict = mutate(pod(runtimeClassName="gvisor", dnsPolicy="Default"),
                     policy(rules={"pod.runtime-class": "off", "pod.dns": "off"}))
    assert not [v for v in verdict.violations if v.rule in ("pod.runtime-class", "pod.dns")]
    assert not [op for op in patch_of(verdict) if op["path"].startswith("/spec/dns")]
    assert not [w for w in verdict.warnings if "dns" in w]


def test_the_enforced_annotation_is_refreshed_when_the_policy_changes() -> None:
    obj = mutated(pod())
    other = policy(memory={"podFloor": "3Gi"})
    result = apply(mutate(obj, other), obj)
    assert result["metadata"]["annotations"]["agentsandbox.io/enforced"] == other.digest
    assert memory_of(result) == ("3Gi", "3Gi")
