"""Connections the node makes for a pod: probe and lifecycle hosts, image registries, and
the annotations that re-point the proxy or turn off Istio's probe rewriting."""

from __future__ import annotations

from typing import Any

import pytest

from tests.istio_injection import inject
from tests.podkit import container, mutated, pod, policy, rules_of
from webhook.config.policy import Policy
from webhook.policies.pods import mutate_pod_object, validate_pod_object
from webhook.policies.pods.node import image_location


def before(obj: dict[str, Any], policy_: Policy | None = None) -> list[tuple[str, str]]:
    return rules_of(mutate_pod_object(obj, namespace="agents", policy=policy_ or Policy()))


def after(obj: dict[str, Any], policy_: Policy | None = None) -> list[tuple[str, str]]:
    return rules_of(validate_pod_object(obj, policy=policy_ or Policy(), final=True))


def agent(**extra: Any) -> dict[str, Any]:
    return pod(container(request="512Mi", limit="1Gi", **extra))


PLAIN_PROBES = {
    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
    "livenessProbe": {"tcpSocket": {"port": 8080}},
    "startupProbe": {"exec": {"command": ["true"]}},
    "lifecycle": {"preStop": {"httpGet": {"path": "/stop", "port": 8080, "host": ""}}},
}


@pytest.mark.parametrize("mode", ["classic", "native", "cni"])
def test_plain_probes_and_hooks_are_admitted(mode: str) -> None:
    obj = agent(**PLAIN_PROBES)
    assert before(obj) == []
    assert after(inject(mutated(obj), mode=mode)) == []


@pytest.mark.parametrize(("field", "value", "where"), [
    ("readinessProbe", {"httpGet": {"path": "/", "port": 80, "host": "169.254.169.254"}},
     "readinessProbe.httpGet.host"),
    ("livenessProbe", {"tcpSocket": {"port": 443, "host": "evil.example.com"}},
     "livenessProbe.tcpSocket.host"),
    ("startupProbe", {"httpGet": {"path": "/", "port": 80, "host": "10.0.0.1"}},
     "startupProbe.httpGet.host"),
    ("lifecycle", {"postStart": {"httpGet": {"path": "/", "port": 80, "host": "x.example"}}},
     "lifecycle.postStart.httpGet.host"),
    ("lifecycle", {"preStop": {"tcpSocket": {"port": 25, "host": "mail.example.com"}}},
     "lifecycle.preStop.tcpSocket.host"),
])
def test_a_host_in_a_probe_or_hook_is_refused(field: str, value: dict[str, Any],
                                              where: str) -> None:
    path = f"spec.containers[agent].{where}"
    assert before(agent(**{field: value})) == [("pod.probe-host", path)]
    # The hook (not rewritten by Istio) is judged again in the final pod.
    if field == "lifecycle":
        final = inject(mutated(agent()))
        final["spec"]["containers"][0][field] = value
        assert after(final) == [("pod.probe-host", path)]


def test_init_containers_hooks_are_judged_too() -> None:
    sidecar = container("shipper", restartPolicy="Always",
                        startupProbe={"tcpSocket": {"port": 1, "host": "a.example"}})
    assert ("pod.probe-host", "spec.initContainers[shipper].startupProbe.tcpSocket.host") in (
        before(pod(initContainers=[sidecar])))


@pytest.mark.parametrize(("image", "location"), [
    ("nginx", "docker.io/library/nginx"),
    ("nginx:1.27", "docker.io/library/nginx:1.27"),
    ("example/agent:1", "docker.io/example/agent:1"),
    ("registry.example.com/agents/a:1", "registry.example.com/agents/a:1"),
    ("localhost:5000/a", "localhost:5000/a"),
    ("localhost/a", "localhost/a"),
])
def test_image_locations_make_docker_hub_explicit(image: str, location: str) -> None:
    assert image_location(image) == location


REGISTRIES = policy(images={"allowedRegistries": ["registry.example.com/agents/",
                                                   "ghcr.io"]})


def test_no_registry_list_means_any_registry() -> None:
    assert before(pod(container(image="nginx", request="512Mi", limit="1Gi"))) == []


@pytest.mark.parametrize(("image", "ok"), [
    ("registry.example.com/agents/currency:1.0", True),
    ("ghcr.io/example/tool@sha256:" + "0" * 64, True),
    ("registry.example.com/other/x:1", False),
    ("registry.example.com.evil.example/agents/x:1", False),
    ("ghcr.io.evil.example/x", False),
    ("nginx", False),
])
def test_the_registry_allowlist_matches_on_path_boundaries(image: str, ok: bool) -> None:
    rules = before(pod(container(image=image, request="512Mi", limit="1Gi")), REGISTRIES)
    assert rules == ([] if ok else [("pod.image-registry", "spec.containers[agent].image")])


def test_istios_injected_images_are_exempt_from_the_allowlist() -> None:
    allowed = pod(container(image="ghcr.io/example/agent:1", request="512Mi", limit="1Gi"))
    final = inject(mutated(allowed, policy_=REGISTRIES))
    assert final["spec"]["containers"][1]["image"].startswith("docker.io/istio/")
    assert after(final, REGISTRIES) == []


def test_a_registry_entry_must_be_a_plain_prefix() -> None:
    with pytest.raises(ValueError, match="registry host or host/path prefix"):
        policy(images={"allowedRegistries": ["https://registry.example.com"]})


@pytest.mark.parametrize(("key", "value"), [
    ("sidecar.istio.io/discoveryAddress", "istiod.elsewhere.example:15012"),
    ("sidecar.istio.io/rewriteAppHTTPProbers", "false"),
    ("sidecar.istio.io/rewriteAppHTTPProbers", "0"),
])
def test_annotations_that_repoint_the_proxy_or_its_probes_are_refused(key: str,
                                                                      value: str) -> None:
    path = f"metadata.annotations[{key}]"
    assert before(pod(annotations={key: value})) == [("pod.istio-proxy-override", path)]
    final = inject(mutated(pod()))
    final["metadata"]["annotations"][key] = value
    assert after(final) == [("pod.istio-proxy-override", path)]


def test_probe_rewriting_left_on_is_admitted() -> None:
    assert before(pod(annotations={"sidecar.istio.io/rewriteAppHTTPProbers": "true"})) == []


def test_the_node_rules_follow_their_modes() -> None:
    hosted = agent(readinessProbe={"tcpSocket": {"port": 1, "host": "a.example"}})
    assert before(hosted, policy(rules={"pod.probe-host": "off"})) == []
    foreign = pod(container(image="nginx", request="512Mi", limit="1Gi"))
    off = policy(images={"allowedRegistries": ["ghcr.io"]},
                 rules={"pod.image-registry": "off"})
    assert before(foreign, off) == []


def test_an_image_volume_is_held_to_the_registry_allowlist() -> None:
    def with_model(reference: str) -> dict[str, Any]:
        return pod(container(image="ghcr.io/example/agent:1", request="512Mi", limit="1Gi"),
                   volumes=[{"name": "model", "image": {"reference": reference}}])
    assert before(with_model("ghcr.io/example/model:1"), REGISTRIES) == []
    assert before(with_model("docker.io/attacker/model:1"), REGISTRIES) == [
        ("pod.image-registry", "spec.volumes[model].image.reference")]
    assert before(with_model("docker.io/attacker/model:1")) == []  # no list: any registry
