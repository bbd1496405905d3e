"""``audit`` over objects listed through the kubernetes client's real API classes and models.

The only fake is at the HTTP boundary: ``FakeApiClient.call_api`` answers each GET with the
JSON a kube-apiserver would send, built from the client's own model classes (``V1PodList``,
``V1DeploymentList``, ...). Everything above it is real: ``CoreV1Api``/``AppsV1Api``/
``CustomObjectsApi`` build the URLs, the client deserialises into models,
``KubernetesSource`` converts them back to raw dicts, and ``admit`` decides.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from kubernetes import client
from kubernetes.client import rest

from tests.conftest import load_review
from webhook.cluster.listing import KubernetesSource
from webhook.config.policy import load_policy
from webhook.egress.registry import load_registry
from webhook.tools.audit import (
    audit_cluster,
    audit_loop,
    register_audit_command,
    violations_by_rule,
)
from webhook.tools.offline import Contexts, Decision

ENFORCE = "agentsandbox.io/enforce"
BUILT_IN = ("/api/v1/", "/apis/apps/v1/", "/apis/batch/v1/")


class _Raw:
    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.reason = "OK" if status == 200 else "Not Found"
        self.data = body
        self.headers = {"content-type": "application/json"}


class FakeApiClient(client.ApiClient):  # type: ignore[misc]
    """Answers GETs by path from canned model objects; records every call made."""

    def __init__(self, routes: Mapping[str, Any]) -> None:
        super().__init__()
        self.routes = dict(routes)
        self.calls: list[tuple[str, str, dict[str, list[str]]]] = []

    def call_api(self, method: str, url: str, header_params: Any = None, body: Any = None,
                 post_params: Any = None, _request_timeout: Any = None) -> rest.RESTResponse:
        parsed = urlparse(url)
        self.calls.append((method, parsed.path, parse_qs(parsed.query)))
        if parsed.path in self.routes:
            status, payload = 200, self.sanitize_for_serialization(self.routes[parsed.path])
        elif parsed.path.startswith(BUILT_IN):
            status, payload = 200, {"items": []}  # a kind that exists, with no objects
        else:
            status, payload = 404, {"kind": "Status", "code": 404, "reason": "NotFound"}
        return rest.RESTResponse(_Raw(status, json.dumps(payload).encode()))


def _meta(name: str, namespace: str | None = None, **extra: Any) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=namespace, **extra)


def _namespace(name: str, value: str) -> client.V1Namespace:
    return client.V1Namespace(metadata=_meta(name, labels={ENFORCE: value}))


def _compliant_pod(namespace: str = "agents") -> client.V1Pod:
    """The captured pod after Istio's injector, with what our mutating webhook sets.

    (The capture ran behind a recording webhook, so the pod lacks our own mutations.)
    """
    pod = client.V1Pod.from_dict(load_review("final-pod-after-injection.json")
                                 ["request"]["object"])
    pod.spec.runtime_class_name = "kata"
    pod.spec.dns_policy = "None"
    pod.spec.dns_config = client.V1PodDNSConfig(
        nameservers=["10.96.0.53"],
        searches=[f"{namespace}.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        options=[client.V1PodDNSConfigOption(name="ndots", value="5")])
    agent = pod.spec.containers[0]
    agent.resources = client.V1ResourceRequirements(requests={"memory": "2Gi"},
                                                    limits={"memory": "2Gi"})
    return pod


def _escaping_pod(name: str, namespace: str) -> client.V1Pod:
    pod = _compliant_pod(namespace)
    pod.metadata.name, pod.metadata.namespace = name, namespace
    pod.spec.host_network = True
    return pod


def _template(**spec: Any) -> client.V1PodTemplateSpec:
    container = client.V1Container(
        name="agent", image="registry.example.com/agent:1",
        resources=client.V1ResourceRequirements(requests={"memory": "512Mi"},
                                                limits={"memory": "1Gi"}))
    return client.V1PodTemplateSpec(metadata=_meta("", labels={"app": "agent"}),
                                    spec=client.V1PodSpec(containers=[container], **spec))


def cluster() -> FakeApiClient:
    clean = _compliant_pod()
    deployment = client.V1Deployment(
        metadata=_meta("bad-deploy", "agents"),
        spec=client.V1DeploymentSpec(selector=client.V1LabelSelector(), template=_template(
            host_pid=True)))
    owned = client.V1ReplicaSet(
        metadata=_meta("bad-deploy-1", "agents", owner_references=[client.V1OwnerReference(
            api_version="apps/v1", kind="Deployment", name="bad-deploy", uid="u",
            controller=True)]),
        spec=client.V1ReplicaSetSpec(selector=client.V1LabelSelector(),
                                     template=_template(host_pid=True)))
    return FakeApiClient({
        "/api/v1/namespaces": client.V1NamespaceList(
            items=[_namespace("agents", "true"), _namespace("rollout", "warn")]),
        "/api/v1/namespaces/agents/pods": client.V1PodList(
            items=[clean, _escaping_pod("escaper", "agents")]),
        "/api/v1/namespaces/rollout/pods": client.V1PodList(
            items=[_escaping_pod("trial", "rollout")]),
        "/apis/apps/v1/namespaces/agents/deployments": client.V1DeploymentList(
            items=[deployment]),
        "/apis/apps/v1/namespaces/agents/replicasets": client.V1ReplicaSetList(items=[owned]),
        "/apis/apps/v1/namespaces/rollout/deployments": client.V1DeploymentList(items=[]),
    })


def contexts() -> Contexts:
    return Contexts.build(policy=load_policy(None), registry=load_registry(None),
                          registry_problem="none")


def test_listed_models_become_raw_objects_with_kind_and_api_version() -> None:
    source = KubernetesSource(cluster())
    (pod, _) = source.list_pods("agents")
    assert pod["apiVersion"] == "v1"
    assert pod["kind"] == "Pod"
    assert pod["metadata"]["name"] == "currency-agent-mesh"
    assert [c["name"] for c in pod["spec"]["containers"]] == ["agent", "istio-proxy"]
    assert "hostNetwork" not in pod["spec"]  # unset model fields are left out, not null


def test_audit_reports_each_object_the_webhook_would_refuse() -> None:
    results = audit_cluster(KubernetesSource(cluster()), contexts=contexts())
    by_name = {r.name: r for r in results}
    assert by_name["currency-agent-mesh"].decision is Decision.ADMITTED
    assert by_name["escaper"].decision is Decision.REFUSED
    assert "pod.host-namespaces" in by_name["escaper"].rules
    assert by_name["bad-deploy"].decision is Decision.REFUSED
    assert "pod.host-namespaces" in by_name["bad-deploy"].rules
    # The ReplicaSet repeats its Deployment's template: reported once, through its owner.
    assert "bad-deploy-1" not in by_name
    # A warn-mode namespace: admitted, the rule still counted.
    assert by_name["trial"].decision is Decision.ADMITTED
    assert "pod.host-namespaces" in by_name["trial"].rules


def test_audit_only_reads_and_asks_for_labelled_namespaces_only() -> None:
    api = cluster()
    audit_cluster(KubernetesSource(api), contexts=contexts())
    assert {method for method, _, _ in api.calls} == {"GET"}
    namespace_calls = [q for _, path, q in api.calls if path == "/api/v1/namespaces"]
    assert namespace_calls == [{"labelSelector": [ENFORCE]}]


def test_custom_resources_fall_back_to_the_next_served_version() -> None:
    api = cluster()
    api.routes["/apis/networking.istio.io/v1beta1/serviceentries"] = {
        "apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntryList",
        "items": [load_review("serviceentry-v1beta1.json")["request"]["object"]]}
    source = KubernetesSource(api)
    listed = source.list_custom("networking.istio.io", "v1", "serviceentries")
    assert listed is None  # v1 is not served by this fake cluster
    results = audit_cluster(source, contexts=contexts())
    paths = [path for _, path, _ in api.calls if "serviceentries" in path]
    assert paths[-2:] == ["/apis/networking.istio.io/v1/serviceentries",
                          "/apis/networking.istio.io/v1beta1/serviceentries"]
    assert any(r.kind == "ServiceEntry" for r in results)


def test_violations_are_counted_by_rule() -> None:
    counts = violations_by_rule(audit_cluster(KubernetesSource(cluster()),
                                              contexts=contexts()))
    assert counts["pod.host-namespaces"] == 3  # escaper, bad-deploy, trial (warn)


def test_the_command_prints_only_refused_objects_and_exits_1() -> None:
    parser = argparse.ArgumentParser()
    register_audit_command(parser.add_subparsers())
    args = parser.parse_args(["audit"])
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, source=KubernetesSource(cluster()), out=out, err=err)
    assert code == 1
    text = out.getvalue()
    assert "escaper" in text
    assert "bad-deploy" in text
    assert "trial" in text  # admitted in warn mode, but breaking a rule
    assert "currency-agent-mesh" not in text
    assert "4 objects: 2 admitted, 2 refused, 0 skipped" in text


async def test_the_loop_publishes_counts_each_round() -> None:
    published: list[Mapping[str, int]] = []
    two_rounds = asyncio.Event()

    def publish(counts: Mapping[str, int]) -> None:
        published.append(counts)
        if len(published) == 2:
            two_rounds.set()

    task = asyncio.create_task(audit_loop(source=KubernetesSource(cluster()),
                                          contexts=contexts, interval=0.01, publish=publish))
    await asyncio.wait_for(two_rounds.wait(), timeout=30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert published[0]["pod.host-namespaces"] == 3
