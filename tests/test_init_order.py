"""Init containers and capture: the injection double orders them as Istio does, the mutating
webhook asks for native sidecars, the validating webhook refuses what would run uncaptured."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.istio_injection import VOLUMES, inject
from tests.podkit import apply, container, mutated, patch_of, pod, policy, rules_of
from webhook.config.policy import Policy
from webhook.policies.pods import mutate_pod_object, validate_pod_object

NATIVE = "sidecar.istio.io/nativeSidecar"
LEGACY = policy(istio={"nativeSidecars": False})


def names(items: list[dict[str, Any]]) -> list[str]:
    return [item["name"] for item in items]


def init_pod(*inits: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return pod(initContainers=list(inits) or [container("fetch-model", command=["fetch"])],
               **metadata)


def labelled(obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].setdefault("labels", {})["sidecar.istio.io/inject"] = "true"
    return obj


# Istio's own golden file pkg/kube/inject/testdata/inject/native-sidecar.yaml(.injected):
# a pod with a user native sidecar "other-sidecar" and a container "hello", injected with
# native sidecars on. Only the facts the double models are compared.
def test_the_double_orders_a_native_injection_like_istios_golden_file() -> None:
    source = labelled(pod(container("hello"), initContainers=[
        container("other-sidecar", restartPolicy="Always",
                  readinessProbe={"httpGet": {"port": 3333}})]))
    injected = inject(source, mode="native")
    spec = injected["spec"]
    assert names(spec["initContainers"]) == ["istio-init", "istio-proxy", "other-sidecar"]
    assert names(spec["containers"]) == ["hello"]
    assert names(spec["volumes"])[:9] == ["workload-socket", "credential-socket",
                                          "workload-certs", "istio-envoy", "istio-data",
                                          "istio-podinfo", "istio-token", "istiod-ca-cert",
                                          "istio-ca-crl"]
    proxy = spec["initContainers"][1]
    assert proxy["restartPolicy"] == "Always"
    assert {m["name"]: m["mountPath"] for m in proxy["volumeMounts"]}["istio-envoy"] == (
        "/etc/istio/proxy")
    assert spec["initContainers"][2]["readinessProbe"]["httpGet"]["path"] == (
        "/app-health/other-sidecar/readyz")
    status = json.loads(injected["metadata"]["annotations"]["sidecar.istio.io/status"])
    assert (status["initContainers"], status["containers"]) == (["istio-init", "istio-proxy"],
                                                                None)
    assert status["volumes"] == list(VOLUMES)


# Istio's CNI golden files record status {"initContainers":["istio-validation"],
# "containers":["istio-proxy"],...} and the annotations the CNI plugin reads.
@pytest.mark.parametrize(("mode", "inits", "containers"), [
    ("classic", ["istio-init"], ["istio-proxy"]),
    ("cni", ["istio-validation"], ["istio-proxy"]),
])
def test_the_double_records_its_injection_like_istios_golden_files(
        mode: str, inits: list[str], containers: list[str]) -> None:
    annotations = inject(labelled(pod()), mode=mode)["metadata"]["annotations"]
    status = json.loads(annotations["sidecar.istio.io/status"])
    assert (status["initContainers"], status["containers"]) == (inits, containers)
    if mode == "cni":
        assert annotations["sidecar.istio.io/interceptionMode"] == "REDIRECT"
        assert annotations["traffic.sidecar.istio.io/excludeInboundPorts"] == "15020"
        assert annotations["traffic.sidecar.istio.io/includeInboundPorts"] == "*"


@pytest.mark.parametrize(("mode", "annotation", "order"), [
    # reorderPod: classic puts istio-init last "so we do not blackhole init containers".
    ("classic", None, ["fetch-model", "istio-init"]),
    ("classic", "true", ["istio-init", "istio-proxy", "fetch-model"]),
    ("native", None, ["istio-init", "istio-proxy", "fetch-model"]),
    ("native", "false", ["fetch-model", "istio-init"]),
    # With the CNI, istio-validation moves first; the rules exist before any container.
    ("cni", None, ["istio-validation", "fetch-model"]),
    ("cni", "true", ["istio-validation", "istio-proxy", "fetch-model"]),
])
def test_the_double_orders_init_containers_as_istio_reorders_them(
        mode: str, annotation: str | None, order: list[str]) -> None:
    source = labelled(init_pod(annotations={NATIVE: annotation} if annotation else None))
    assert names(inject(source, mode=mode)["spec"]["initContainers"]) == order


def test_an_istio_older_than_the_annotation_ignores_it() -> None:
    source = labelled(init_pod(annotations={NATIVE: "true"}))
    order = names(inject(source, honours_native_annotation=False)["spec"]["initContainers"])
    assert order == ["fetch-model", "istio-init"]


def test_a_pod_with_init_containers_is_asked_to_get_a_native_sidecar() -> None:
    source = init_pod()
    verdict = mutate_pod_object(source, namespace="agents", policy=Policy())
    result = apply(verdict, source)
    assert result["metadata"]["annotations"][NATIVE] == "true"
    assert any(op["path"] == "/metadata/annotations/sidecar.istio.io~1nativeSidecar"
               for op in patch_of(verdict))
    assert "set annotation sidecar.istio.io/nativeSidecar=true" in " ".join(
        m.note for m in verdict.mutations)
    again = mutate_pod_object(result, namespace="agents", policy=Policy())
    assert patch_of(again) == []


def test_a_pod_without_init_containers_is_left_as_istio_injects_it() -> None:
    result = mutated(pod())
    assert NATIVE not in result["metadata"].get("annotations", {})


def test_native_false_is_refused_only_where_init_containers_need_it() -> None:
    refused = mutate_pod_object(init_pod(annotations={NATIVE: "false"}), namespace="agents",
                                policy=Policy())
    assert rules_of(refused) == [("pod.native-sidecar",
                                  "metadata.annotations[sidecar.istio.io/nativeSidecar]")]
    plain = mutate_pod_object(pod(annotations={NATIVE: "false"}), namespace="agents",
                              policy=Policy())
    assert plain.violations == ()


@pytest.mark.parametrize("mode", ["classic", "native", "cni"])
def test_a_mutated_pod_with_init_containers_passes_every_injection_mode(mode: str) -> None:
    final = inject(mutated(init_pod()), mode=mode)
    assert validate_pod_object(final, policy=Policy(), final=True).violations == ()


def test_init_containers_ahead_of_istio_init_are_refused_in_the_final_pod() -> None:
    final = inject(mutated(init_pod()), honours_native_annotation=False)
    assert rules_of(validate_pod_object(final, policy=Policy(), final=True)) == [
        ("pod.init-before-capture", "spec.initContainers[fetch-model]")]


def test_a_user_native_sidecar_ahead_of_capture_is_refused_too() -> None:
    sidecar = container("log-shipper", restartPolicy="Always")
    final = inject(mutated(init_pod(sidecar), policy_=LEGACY))
    assert ("pod.init-before-capture", "spec.initContainers[log-shipper]") in rules_of(
        validate_pod_object(final, policy=LEGACY, final=True))


def test_without_native_sidecars_the_cni_still_admits_init_containers() -> None:
    source = init_pod(annotations={NATIVE: "false"})
    verdict = mutate_pod_object(source, namespace="agents", policy=LEGACY)
    assert verdict.violations == ()
    result = apply(verdict, source)
    assert result["metadata"]["annotations"][NATIVE] == "false"  # left alone
    cni = inject(result, mode="cni")
    assert validate_pod_object(cni, policy=LEGACY, final=True).violations == ()
    classic = inject(result)
    assert [rule for rule, _ in rules_of(validate_pod_object(classic, policy=LEGACY,
                                                             final=True))] == [
        "pod.init-before-capture"]


def test_the_init_order_rules_follow_their_modes() -> None:
    warn = policy(rules={"pod.native-sidecar": "warn", "pod.init-before-capture": "off"})
    verdict = mutate_pod_object(init_pod(), namespace="agents", policy=warn)
    assert patch_of(verdict)
    assert not any(NATIVE.replace("/", "~1") in op["path"] for op in patch_of(verdict))
    assert any("[pod.native-sidecar] would set annotation" in w for w in verdict.warnings)
    final = inject(apply(verdict, init_pod()))
    assert validate_pod_object(final, policy=warn, final=True).violations == ()
    off = policy(rules={"pod.native-sidecar": "off"})
    assert mutate_pod_object(init_pod(annotations={NATIVE: "false"}), namespace="agents",
                             policy=off).violations == ()
