"""``render``: golden files over examples/registry.yaml, every object admitted by the project's
own policies, NetworkPolicies schema-validated (kubernetes-validate) and the AdminNetworkPolicy
validated against a faithful model of its published CRD schema (tests/anp_model.py).

Regenerate the golden files after an intended change with ``UPDATE_GOLDEN=1 pytest
tests/test_render.py`` and review the diff.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from anp_model import AdminNetworkPolicy
from objectreview import request_for
from pydantic import ValidationError

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy, parse_policy
from webhook.egress.registry import load_registry, parse_registry
from webhook.egress.render import render_layers
from webhook.policies.context import Context
from webhook.tools.render import write_objects

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).parent / "golden"
REGISTRY = load_registry(ROOT / "examples" / "registry.yaml")
POLICY = load_policy(None)
NAMESPACES = ["agents", "data-pipeline"]
K8S_VERSION = "1.34.0"


def rendered(policy: Any = POLICY, registry: Any = REGISTRY,
             namespaces: list[str] = NAMESPACES) -> list[dict[str, Any]]:
    return render_layers(registry, policy, namespaces)


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; see the module docstring"


def test_the_example_registry_renders_its_golden_yaml() -> None:
    out = io.StringIO()
    write_objects(rendered(), "yaml", out)
    _golden("render-examples.yaml", out.getvalue())


def test_the_command_prints_the_same_objects_as_yaml_and_as_a_json_list() -> None:
    args = [sys.executable, "-m", "webhook", "render", "--registry",
            str(ROOT / "examples" / "registry.yaml"), "-n", "agents", "-n", "data-pipeline"]
    as_yaml = subprocess.run(args, capture_output=True, text=True, check=True, timeout=60)
    as_json = subprocess.run([*args, "-o", "json"], capture_output=True, text=True,
                             check=True, timeout=60)
    assert as_yaml.stdout == (GOLDEN / "render-examples.yaml").read_text()
    document = json.loads(as_json.stdout)
    assert (document["apiVersion"], document["kind"]) == ("v1", "List")
    assert document["items"] == list(yaml.safe_load_all(as_yaml.stdout))


def test_a_registry_that_does_not_load_stops_the_command_with_status_2(tmp_path: Path) -> None:
    bad = tmp_path / "registry.yaml"
    bad.write_text("entries: [{host: '*'}]\n")
    result = subprocess.run([sys.executable, "-m", "webhook", "render", "--registry", str(bad),
                             "-n", "agents"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert str(bad) in result.stderr


def test_every_object_is_labelled_as_managed_by_the_project() -> None:
    for obj in rendered():
        assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == (
            "agent-sandbox-webhook"), obj["metadata"]["name"]


def test_each_namespace_gets_an_entry_per_host_approved_for_it_and_nothing_else() -> None:
    hosts = {(o["metadata"]["namespace"], o["spec"]["hosts"][0])
             for o in of_kind(rendered(), "ServiceEntry")}
    assert hosts == {
        ("agents", "api.frankfurter.app"), ("agents", "partner-api.example.net"),
        ("agents", "telemetry.example.org"),
        # storage.googleapis.com is narrowed to data-pipeline by its exact entry.
        ("data-pipeline", "storage.googleapis.com"), ("data-pipeline", "telemetry.example.org"),
    }


def test_pinned_addresses_become_static_endpoints_and_other_hosts_resolve_by_dns() -> None:
    entries = {o["spec"]["hosts"][0]: o["spec"] for o in of_kind(rendered(), "ServiceEntry")}
    partner = entries["partner-api.example.net"]
    assert partner["resolution"] == "STATIC"
    assert partner["endpoints"] == [{"address": "203.0.113.10"}, {"address": "203.0.113.11"}]
    assert partner["ports"] == [{"number": 8443, "name": "tls-8443", "protocol": "TLS"}]
    frankfurter = entries["api.frankfurter.app"]
    assert (frankfurter["resolution"], frankfurter["exportTo"], frankfurter["location"]) == (
        "DNS", ["."], "MESH_EXTERNAL")
    assert "endpoints" not in frankfurter


def test_a_denied_host_is_never_rendered_even_when_an_entry_approves_it() -> None:
    registry = parse_registry("""
entries:
- {host: ok.example.com, namespaces: [agents]}
- {host: bad.example.com, namespaces: [agents]}
deny: [bad.example.com]
""", source="test")
    hosts = [o["spec"]["hosts"] for o in of_kind(rendered(registry=registry), "ServiceEntry")]
    assert hosts == [["ok.example.com"]]


def _validate(obj: dict[str, Any], registry: Any = REGISTRY, policy: Any = POLICY) -> Any:
    context = Context(policy=policy, registry=registry)
    return admit(request_for(obj), stage=Stage.VALIDATE, context=context)


def test_every_rendered_object_with_a_policy_is_admitted_by_the_projects_own_policy() -> None:
    policy = parse_policy("mesh: {inClusterNamespaces: [model-serving]}\n", source="test")
    checked = set()
    for obj in rendered(policy=policy):
        if obj["kind"] in ("AdminNetworkPolicy",):
            continue  # cluster-scoped: no webhook entry selects it
        outcome = _validate(obj, policy=policy)
        assert outcome.allowed, (obj["kind"], obj["metadata"]["name"], outcome.review)
        assert not outcome.warnings, outcome.warnings
        checked.add(obj["kind"])
    assert checked == {"ServiceEntry", "Sidecar", "NetworkPolicy", "ConfigMap"}


def test_the_default_sidecar_imports_only_approved_hosts_the_mesh_and_named_namespaces() -> None:
    policy = parse_policy("mesh: {inClusterNamespaces: [model-serving, gateways]}\n",
                          source="test")
    sidecars = {o["metadata"]["namespace"]: o for o in of_kind(rendered(policy=policy),
                                                               "Sidecar")}
    agents = sidecars["agents"]
    assert agents["metadata"]["name"] == "agent-sandbox-default"
    assert "workloadSelector" not in agents["spec"]
    assert agents["spec"]["outboundTrafficPolicy"] == {"mode": "REGISTRY_ONLY"}
    assert agents["spec"]["egress"] == [{"hosts": [
        "./api.frankfurter.app", "./partner-api.example.net", "./telemetry.example.org",
        "./*.googleapis.com", "istio-system/*", "gateways/*", "model-serving/*"]}]


def test_network_policies_are_schema_valid_and_validation_would_catch_a_broken_one() -> None:
    policies = of_kind(rendered(), "NetworkPolicy")
    assert len(policies) == 2
    for obj in policies:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    broken = json.loads(json.dumps(policies[0]))
    broken["spec"]["egress"][0]["ports"][0]["protocol"] = 17
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_the_network_policy_allows_dns_only_to_the_resolver_and_otherwise_only_tcp() -> None:
    policy = parse_policy("dns: {nameservers: [10.0.0.10, 'fd00::53']}\n", source="test")
    (agents, _) = of_kind(rendered(policy=policy), "NetworkPolicy")
    spec = agents["spec"]
    assert (spec["podSelector"], spec["policyTypes"]) == ({}, ["Egress"])
    dns, control_plane, external = spec["egress"]
    assert dns["to"] == [{"ipBlock": {"cidr": "10.0.0.10/32"}},
                         {"ipBlock": {"cidr": "fd00::53/128"}}]
    assert dns["ports"] == [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]
    assert control_plane["ports"] == [{"protocol": "TCP", "port": 15012},
                                      {"protocol": "TCP", "port": 15017}]
    assert external["ports"] == [{"protocol": "TCP", "port": 443},
                                 {"protocol": "TCP", "port": 8443}]
    assert all(block["ipBlock"]["except"] for block in external["to"])
    protocols = {p["protocol"] for rule in spec["egress"][1:] for p in rule["ports"]}
    assert protocols == {"TCP"}


def test_the_admin_network_policy_matches_its_crd_schema_and_denies_everything_but_tcp() -> None:
    (anp,) = of_kind(rendered(), "AdminNetworkPolicy")
    model = AdminNetworkPolicy.model_validate(anp)
    assert anp["metadata"]["name"] == "agent-sandbox-egress-floor"
    assert "namespace" not in anp["metadata"]
    assert model.spec.subject.namespaces is not None
    (selector,) = model.spec.subject.namespaces.matchExpressions or []
    assert selector.values == NAMESPACES
    actions = [(rule.action, rule.name) for rule in model.spec.egress or []]
    assert actions == [("Allow", "dns-to-the-filtering-resolver"), ("Deny", "no-dns-elsewhere"),
                       ("Pass", "tcp-is-left-to-namespace-policies"), ("Deny", "nothing-else")]
    last = (model.spec.egress or [])[-1]
    assert last.ports is None, "the last rule denies every protocol, ICMP included"


def test_the_admin_network_policy_model_refuses_what_its_schema_refuses() -> None:
    (anp,) = of_kind(rendered(), "AdminNetworkPolicy")
    for breakage in ({"priority": 1001}, {"egress": [{"action": "Reject", "to": [{}]}]},
                     {"egress": [{"action": "Deny", "to": [{"networks": ["10.0.0.0/33"]}]}]},
                     {"subject": {}}):
        broken = {**anp, "spec": {**anp["spec"], **breakage}}
        with pytest.raises(ValidationError):
            AdminNetworkPolicy.model_validate(broken)


def test_no_namespace_renders_no_floor_and_a_resolver_list_that_passes_only_the_cluster() -> None:
    objects = rendered(namespaces=[])
    assert [o["kind"] for o in objects] == ["ConfigMap"]
    zone = objects[0]["data"]["allowlist.rpz"]
    assert "cluster.local CNAME rpz-passthru." in zone
    assert "api.frankfurter.app" not in zone
