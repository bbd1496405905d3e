"""The controller's reconcile pass against the kubernetes client's real models and HTTP code,
faked only at the HTTP boundary: tests/fakeapi.py serves an in-memory API on loopback (there
is no cluster here). What it applies must be exactly what ``render`` renders."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fakeapi import FakeApi
from kubernetes import client

from webhook.cluster.owned import ClusterObjects
from webhook.config.policy import load_policy
from webhook.controller.metrics import ControllerMetrics
from webhook.controller.reconcile import Reconciler, Settings
from webhook.egress.registry import load_registry
from webhook.egress.render import render_layers

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "examples" / "registry.yaml").read_text()
SYSTEM = "agent-sandbox-system"
MANAGER = "agent-sandbox-controller"
SERVED = {"networking.istio.io/v1/serviceentries", "networking.istio.io/v1/sidecars",
          "networking.k8s.io/v1/networkpolicies",
          "policy.networking.k8s.io/v1alpha1/adminnetworkpolicies"}
PLURALS = {"ServiceEntry": "serviceentries", "Sidecar": "sidecars",
           "NetworkPolicy": "networkpolicies", "AdminNetworkPolicy": "adminnetworkpolicies",
           "ConfigMap": "configmaps"}
FRANKFURTER = ("agents", "agent-sandbox-api-frankfurter-app")


def namespace(name: str, enforce: str | None) -> dict[str, Any]:
    labels = {"kubernetes.io/metadata.name": name}
    if enforce:
        labels["agentsandbox.io/enforce"] = enforce
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name,
                                                                   "labels": labels}}


def set_registry(api: FakeApi, text: str) -> None:
    api.put("v1", "configmaps", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "egress-registry", "namespace": SYSTEM}, "data": {"registry.yaml": text}})


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi(SERVED) as fake:
        fake.put("v1", "namespaces", namespace("agents", "true"))
        fake.put("v1", "namespaces", namespace("rollout", "warn"))
        fake.put("v1", "namespaces", namespace("default", None))
        set_registry(fake, EXAMPLE)
        yield fake


class Harness:
    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.metrics = ControllerMetrics()
        self.client = client.ApiClient(client.Configuration(host=api.url))
        cluster = ClusterObjects(self.client, field_manager=MANAGER, config_namespace=SYSTEM)
        self.reconciler = Reconciler(cluster, settings=Settings(SYSTEM),
                                     load_policy=lambda: load_policy(None),
                                     metrics=self.metrics)

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return value or 0.0

    def events(self, reason: str) -> list[dict[str, Any]]:
        return [o for k, o in self.api.objects.items() if k[1] == "events"
                and o.get("reason") == reason]

    def writes(self) -> list[tuple[str, str]]:
        return [(m, p) for m, p, _, _ in self.api.requests if m in ("PATCH", "DELETE", "PUT")]


@pytest.fixture
def harness(api: FakeApi) -> Iterator[Harness]:
    h = Harness(api)
    yield h
    h.client.close()


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    for key in ("resourceVersion", "managedFields"):
        obj["metadata"].pop(key, None)
    return obj


def test_a_labelled_namespace_gets_exactly_what_render_renders(harness: Harness) -> None:
    result = harness.reconciler.reconcile()
    assert result.ok, result.problems
    expected = render_layers(load_registry(ROOT / "examples" / "registry.yaml"),
                             load_policy(None), ["agents"])
    for obj in expected:
        meta = obj["metadata"]
        stored = harness.api.stored(obj["apiVersion"], PLURALS[obj["kind"]],
                                    meta.get("namespace", ""), meta["name"])
        assert stored is not None, meta["name"]
        assert _bare(stored) == obj
        assert stored["metadata"]["managedFields"] == [{"manager": MANAGER,
                                                        "operation": "Apply"}]
    patches = [(p, q, c) for m, p, q, c in harness.api.requests if m == "PATCH"]
    assert len(patches) == len(expected)
    for _, query, content_type in patches:
        assert content_type == "application/apply-patch+yaml"
        assert query["fieldManager"] == [MANAGER]
        assert query["force"] == ["true"]
    # warn namespaces are rolling out: nothing is rendered for them.
    assert not {ns for ns, _ in harness.api.names("networking.istio.io/v1", "sidecars")} - {
        "agents"}
    assert harness.metric("agent_sandbox_controller_reconciles_total", result="ok") == 1
    assert harness.metric("agent_sandbox_controller_rendered_objects") == len(expected)


def test_a_second_pass_without_changes_writes_nothing(harness: Harness) -> None:
    harness.reconciler.reconcile()
    before = len(harness.writes())
    assert harness.reconciler.reconcile().ok
    assert len(harness.writes()) == before


def test_a_registry_edit_deletes_hosts_no_longer_approved_and_never_foreign_objects(
        harness: Harness) -> None:
    foreign = {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {
        "name": "agent-sandbox-hand-made", "namespace": "agents"}, "spec": {"hosts": ["x.io"]}}
    harness.api.put("networking.istio.io/v1", "serviceentries", foreign)
    harness.reconciler.reconcile()
    assert FRANKFURTER in harness.api.names("networking.istio.io/v1", "serviceentries")
    set_registry(harness.api, EXAMPLE.replace("host: api.frankfurter.app",
                                              "host: api.other.example"))
    assert harness.reconciler.reconcile().ok
    names = harness.api.names("networking.istio.io/v1", "serviceentries")
    assert FRANKFURTER not in names
    assert ("agents", "agent-sandbox-api-other-example") in names
    assert ("agents", "agent-sandbox-hand-made") in names
    assert harness.metric("agent_sandbox_controller_deleted_total", kind="ServiceEntry") == 1
    (deleted,) = harness.events("Deleted")
    assert deleted["involvedObject"]["name"] == FRANKFURTER[1]
    sidecar = harness.api.stored("networking.istio.io/v1", "sidecars", "agents",
                                 "agent-sandbox-default")
    assert sidecar is not None
    assert "./api.other.example" in sidecar["spec"]["egress"][0]["hosts"]


def test_removing_the_enforce_label_removes_the_namespaces_layers(harness: Harness) -> None:
    harness.reconciler.reconcile()
    harness.api.put("v1", "namespaces", namespace("agents", None))
    assert harness.reconciler.reconcile().ok
    for plural in ("serviceentries", "sidecars"):
        assert not harness.api.names("networking.istio.io/v1", plural)
    assert not harness.api.names("networking.k8s.io/v1", "networkpolicies")
    assert not harness.api.names("policy.networking.k8s.io/v1alpha1", "adminnetworkpolicies")
    # The resolver allowlist is always rendered (it then passes only the cluster domain).
    assert harness.api.stored("v1", "configmaps", SYSTEM, "agent-sandbox-dns-allowlist")


def test_a_hand_edited_layer_is_counted_as_drift_reported_and_repaired(
        harness: Harness) -> None:
    harness.reconciler.reconcile()
    sidecar = harness.api.stored("networking.istio.io/v1", "sidecars", "agents",
                                 "agent-sandbox-default")
    assert sidecar is not None
    rendered_spec = copy.deepcopy(sidecar["spec"])
    sidecar["spec"]["outboundTrafficPolicy"]["mode"] = "ALLOW_ANY"
    harness.api.put("networking.istio.io/v1", "sidecars", sidecar)
    assert harness.reconciler.reconcile().ok
    repaired = harness.api.stored("networking.istio.io/v1", "sidecars", "agents",
                                  "agent-sandbox-default")
    assert repaired is not None
    assert repaired["spec"] == rendered_spec
    assert harness.metric("agent_sandbox_controller_drift_total", kind="Sidecar") == 1
    (event,) = harness.events("DriftRepaired")
    assert (event["type"], event["involvedObject"]["kind"]) == ("Warning", "Sidecar")


def test_an_object_named_like_ours_but_not_ours_is_left_alone_and_reported(
        harness: Harness) -> None:
    theirs = {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar", "metadata": {
        "name": "agent-sandbox-default", "namespace": "agents"},
        "spec": {"egress": [{"hosts": ["./*"]}]}}
    harness.api.put("networking.istio.io/v1", "sidecars", theirs)
    result = harness.reconciler.reconcile()
    assert not result.ok
    assert "belongs to someone else" in result.problems[0]
    assert harness.api.stored("networking.istio.io/v1", "sidecars", "agents",
                              "agent-sandbox-default") == theirs
    assert ("PATCH", "/apis/networking.istio.io/v1/namespaces/agents/sidecars/"
            "agent-sandbox-default") not in harness.writes()
    assert harness.metric("agent_sandbox_controller_errors_total", reason="not-owned") == 1
    assert harness.events("NotOwned")


@pytest.mark.parametrize("registry", [None, "entries: [{host: '*'}]\n"])
def test_a_missing_or_invalid_registry_changes_nothing(harness: Harness,
                                                       registry: str | None) -> None:
    harness.reconciler.reconcile()
    before = len(harness.writes())
    if registry is None:
        del harness.api.objects[("v1", "configmaps", SYSTEM, "egress-registry")]
    else:
        set_registry(harness.api, registry)
    result = harness.reconciler.reconcile()
    assert not result.ok
    assert "nothing was changed" in result.problems[0]
    assert len(harness.writes()) == before
    assert harness.metric("agent_sandbox_controller_errors_total", reason="registry") == 1
    assert harness.metric("agent_sandbox_controller_reconciles_total", result="error") == 1
    if registry is not None:
        (event,) = harness.events("InvalidInput")
        assert event["involvedObject"]["name"] == "egress-registry"


def test_an_api_error_on_one_object_is_counted_and_the_others_are_still_applied(
        harness: Harness) -> None:
    harness.api.fail_next[("PATCH", FRANKFURTER[1])] = 500
    result = harness.reconciler.reconcile()
    assert not result.ok
    assert "HTTP 500" in result.problems[0]
    assert harness.api.stored("networking.istio.io/v1", "sidecars", "agents",
                              "agent-sandbox-default")
    assert harness.metric("agent_sandbox_controller_errors_total", reason="api") == 1
    assert harness.reconciler.reconcile().ok  # the next pass catches up
    assert FRANKFURTER in harness.api.names("networking.istio.io/v1", "serviceentries")


def test_a_cluster_without_istio_or_admin_network_policy_apis_reports_errors_not_crashes(
        api: FakeApi) -> None:
    api.served -= {"policy.networking.k8s.io/v1alpha1/adminnetworkpolicies"}
    harness = Harness(api)
    try:
        result = harness.reconciler.reconcile()
    finally:
        harness.client.close()
    assert not result.ok
    assert any("AdminNetworkPolicy" in problem for problem in result.problems)
    assert harness.api.stored("networking.istio.io/v1", "sidecars", "agents",
                              "agent-sandbox-default")


def test_a_skill_in_an_enforced_namespace_gets_its_sidecar_and_loses_it_when_deleted(
        api: FakeApi) -> None:
    api.served |= {"agentsandbox.io/v1alpha1/skills"}
    skill = {"apiVersion": "agentsandbox.io/v1alpha1", "kind": "Skill",
             "metadata": {"name": "fx-rates", "namespace": "agents"},
             "spec": {"egressRequirements": [{"host": "api.frankfurter.app", "port": 443,
                                              "protocol": "HTTPS"}]}}
    api.put("agentsandbox.io/v1alpha1", "skills", skill)
    harness = Harness(api)
    try:
        assert harness.reconciler.reconcile().ok
        sidecar = api.stored("networking.istio.io/v1", "sidecars", "agents",
                             "agent-sandbox-skill-fx-rates")
        assert sidecar is not None
        assert sidecar["spec"]["workloadSelector"] == {
            "labels": {"agentsandbox.io/skill": "fx-rates"}}
        assert sidecar["spec"]["egress"][0]["hosts"] == ["./api.frankfurter.app",
                                                         "istio-system/*"]
        del api.objects[("agentsandbox.io/v1alpha1", "skills", "agents", "fx-rates")]
        assert harness.reconciler.reconcile().ok
        assert api.stored("networking.istio.io/v1", "sidecars", "agents",
                          "agent-sandbox-skill-fx-rates") is None
    finally:
        harness.client.close()
