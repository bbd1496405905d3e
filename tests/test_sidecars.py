"""Sidecar admission: nothing that undoes REGISTRY_ONLY for the pods a Sidecar selects."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from conftest import load_review

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy, parse_policy
from webhook.core.review import Request, review_from_document
from webhook.policies.context import Context
from webhook.policies.sidecars import validate_sidecar

POLICY = load_policy(None)


def review(spec: dict[str, Any]) -> Request:
    document = copy.deepcopy(load_review("sidecar-create.json"))
    document["request"]["object"]["spec"] = spec
    return review_from_document(document)


def rules(spec: dict[str, Any], policy: Any = POLICY) -> list[str]:
    verdict = validate_sidecar(review(spec), Context(policy=policy))
    return [violation.rule for violation in verdict.violations]


def egress(*hosts: str) -> dict[str, Any]:
    return {"egress": [{"hosts": list(hosts)}], "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}


CASES: list[tuple[str, dict[str, Any], list[str]]] = [
    ("own namespace and istio-system", egress("./*", "istio-system/*"), []),
    ("import nothing", egress("~/*"), []),
    ("the own namespace by name", egress("agents/*", "agents/api.frankfurter.app"), []),
    ("exact host from any namespace", egress("*/api.frankfurter.app"),
     ["sidecar.namespace-import"]),
    ("a Service of another namespace from any namespace",
     egress("*/evil.attacker.svc.cluster.local"), ["sidecar.namespace-import"]),
    ("everything from one named namespace", egress("shared/*"), ["sidecar.namespace-import"]),
    ("one Service from another namespace", egress("attacker/evil.attacker.svc.cluster.local"),
     ["sidecar.namespace-import"]),
    ("everything from everywhere", egress("*/*"), ["sidecar.wildcard-egress"]),
    ("a wildcard domain from everywhere", egress("*/*.example.com"),
     ["sidecar.wildcard-egress"]),
    ("a bare star without a namespace", egress("*"), ["sidecar.wildcard-egress"]),
    ("ALLOW_ANY", {"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}, ["sidecar.allow-any"]),
    ("ALLOW_ANY in lower case", {"outboundTrafficPolicy": {"mode": "allow_any"}},
     ["sidecar.allow-any"]),
    ("egressProxy", {"outboundTrafficPolicy": {"mode": "REGISTRY_ONLY", "egressProxy": {
        "host": "proxy.example.com", "port": {"number": 3128}}}}, ["sidecar.allow-any"]),
    ("no outbound policy (inherits the mesh's)", {"egress": [{"hosts": ["./*"]}]}, []),
    ("a bare exact host (any namespace)", egress("api.frankfurter.app"),
     ["sidecar.namespace-import"]),
    ("both problems", {"egress": [{"hosts": ["./*"]}, {"hosts": ["*/*"]}],
                       "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}},
     ["sidecar.allow-any", "sidecar.wildcard-egress"]),
]


@pytest.mark.parametrize(("spec", "expected"), [(s, e) for _, s, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_each_rule(spec: dict[str, Any], expected: list[str]) -> None:
    assert rules(spec) == expected


def test_the_path_names_the_offending_host() -> None:
    verdict = validate_sidecar(review({"egress": [{"hosts": ["./*"]}, {"hosts": ["./x", "*/*"]}]}),
                               Context(policy=POLICY))
    assert verdict.violations[0].path == "spec.egress[1].hosts[1]"


def test_the_mesh_namespaces_the_rendered_sidecar_imports_may_be_imported() -> None:
    mesh = parse_policy("mesh: {controlPlaneNamespace: istio-system-3, "
                        "inClusterNamespaces: [models, gateways]}", source="t")
    assert rules(egress("./*", "istio-system-3/*", "models/*", "gateways/llm.gateways.svc"),
                 mesh) == []
    assert rules(egress("istio-system/*"), mesh) == ["sidecar.namespace-import"]
    (violation,) = validate_sidecar(review(egress("attacker/*")), Context(policy=mesh)).violations
    assert "[sidecar.namespace-import] spec.egress[0].hosts[0]: 'attacker/*'" in (
        violation.render())
    assert '"gateways/*", "istio-system-3/*", "models/*"' in violation.message
    off = parse_policy("rules: {sidecar.namespace-import: 'off'}", source="t")
    assert rules(egress("attacker/*"), off) == []


def test_golden_sidecar_is_allowed() -> None:
    outcome = admit(review_from_document(load_review("sidecar-create.json")), stage=Stage.VALIDATE,
                    context=Context(policy=POLICY))
    assert outcome.allowed
    assert outcome.warnings == ()


def test_warn_and_off_modes() -> None:
    warn = parse_policy("rules: {sidecar.allow-any: warn}", source="t")
    outcome = admit(review({"outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}),
                    stage=Stage.VALIDATE, context=Context(policy=warn))
    assert outcome.allowed
    assert any("[sidecar.allow-any]" in w for w in outcome.warnings)
    off = parse_policy("rules: {sidecar.wildcard-egress: 'off'}", source="t")
    assert rules(egress("*/*"), off) == []
