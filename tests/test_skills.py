"""Skill admission: declared egress, each host approved for the namespace, port and protocol."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from conftest import load_review

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy, parse_policy
from webhook.core.errors import Undecidable
from webhook.core.review import Request, review_from_document
from webhook.egress.registry import Registry, load_registry, parse_registry
from webhook.policies.context import Context
from webhook.policies.skills import validate_skill

POLICY = load_policy(None)
REGISTRY = parse_registry("""
entries:
- host: api.frankfurter.app
  ports: [443]
  protocol: HTTPS
  namespaces: [agents]
- host: api.exchangerate.host
  ports: [{number: 8443, protocol: TLS}]
- host: "*.googleapis.com"
deny: [evil.googleapis.com]
""", source="test registry")
FRANKFURTER = {"host": "api.frankfurter.app", "port": 443, "protocol": "HTTPS"}


def review(requirements: Any = None, *, spec: Any = None, namespace: str = "agents") -> Request:
    document = copy.deepcopy(load_review("skill-create.json"))
    request = document["request"]
    request["namespace"] = namespace
    if spec is not None:
        request["object"]["spec"] = spec
    elif requirements is not None:
        request["object"]["spec"]["egressRequirements"] = requirements
    return review_from_document(document)


def rules(request: Request, registry: Registry | None = REGISTRY) -> list[str]:
    verdict = validate_skill(request, Context(policy=POLICY, registry=registry))
    return [violation.rule for violation in verdict.violations]


CASES: list[tuple[str, Any, list[str]]] = [
    ("approved requirements", [FRANKFURTER], []),
    ("empty list means no egress", [], []),
    ("defaults port 443 and HTTPS", [{"host": "pubsub.googleapis.com"}], []),
    ("host in upper case with a trailing dot",
     [{"host": "API.FRANKFURTER.APP.", "port": 443, "protocol": "HTTPS"}], []),
    ("unknown host", [{"host": "api.evil.example"}], ["skill.host-not-approved"]),
    ("approved host on another port", [{**FRANKFURTER, "port": 8443}],
     ["skill.host-not-approved"]),
    ("approved host with another protocol", [{**FRANKFURTER, "protocol": "HTTP"}],
     ["skill.host-not-approved"]),
    ("denied host", [{"host": "evil.googleapis.com"}], ["skill.host-denied"]),
    ("wildcard", [{"host": "*.googleapis.com"}], ["skill.egress-invalid"]),
    ("IP literal", [{"host": "169.254.169.254"}], ["skill.egress-invalid"]),
    ("integer IP", [{"host": "2130706433"}], ["skill.egress-invalid"]),
    ("localhost", [{"host": "localhost"}], ["skill.egress-invalid"]),
    ("metadata name", [{"host": "metadata.google.internal"}], ["skill.egress-invalid"]),
    ("cluster name", [{"host": "vault.security.svc.cluster.local"}], ["skill.egress-invalid"]),
    ("missing host", [{"port": 443}], ["skill.egress-invalid"]),
    ("port out of range", [{**FRANKFURTER, "port": 0}], ["skill.egress-invalid"]),
    ("port as a string", [{**FRANKFURTER, "port": "443"}], ["skill.egress-invalid"]),
    ("protocol outside the enum", [{**FRANKFURTER, "protocol": "TCP"}],
     ["skill.egress-invalid"]),
    ("item not an object", ["api.frankfurter.app"], ["skill.egress-invalid"]),
    ("not a list", {"host": "api.frankfurter.app"}, ["skill.egress-invalid"]),
    ("duplicate after normalisation",
     [FRANKFURTER, {"host": "Api.Frankfurter.App", "port": 443, "protocol": "HTTPS"}],
     ["skill.duplicate"]),
    ("same host on two ports is no duplicate",
     [{"host": "api.exchangerate.host", "port": 8443, "protocol": "TLS"},
      {"host": "api.exchangerate.host", "port": 443}], ["skill.host-not-approved"]),
]


@pytest.mark.parametrize(("requirements", "expected"), [(r, e) for _, r, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_each_rule(requirements: Any, expected: list[str]) -> None:
    assert rules(review(requirements)) == expected


@pytest.mark.parametrize("spec", [{"description": "no egress declared"}, {}, "not-a-map"])
def test_absent_egress_requirements_are_refused(spec: Any) -> None:
    assert rules(review(spec=spec)) == ["skill.egress-missing"]


def test_a_host_approved_for_other_namespaces_only_is_refused() -> None:
    verdict = validate_skill(review([FRANKFURTER], namespace="tools"),
                             Context(policy=POLICY, registry=REGISTRY))
    assert [v.rule for v in verdict.violations] == ["skill.host-not-approved"]
    assert verdict.violations[0].path == "spec.egressRequirements[0].host"
    assert "not for namespace tools" in verdict.violations[0].message


def test_the_message_says_what_the_registry_needs() -> None:
    verdict = validate_skill(review([{"host": "api.evil.example", "port": 8443,
                                      "protocol": "TLS"}]),
                             Context(policy=POLICY, registry=REGISTRY))
    assert verdict.violations[0].message == (
        "api.evil.example is not in the egress registry for namespace agents; to allow it, add "
        "an entry {host: api.evil.example, ports: [{number: 8443, protocol: TLS}], "
        "namespaces: [agents]} to the registry")


def test_golden_skill_passes_with_a_registry_that_approves_it() -> None:
    outcome = admit(review_from_document(load_review("skill-create.json")), stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=REGISTRY))
    assert outcome.allowed
    assert outcome.code == 200


def test_golden_skill_is_refused_by_the_empty_default_registry() -> None:
    outcome = admit(review_from_document(load_review("skill-create.json")), stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=load_registry(None)))
    assert not outcome.allowed
    assert outcome.rules == ("skill.host-not-approved",)
    message = outcome.review["response"]["status"]["message"]
    assert "api.frankfurter.app" in message
    assert "api.exchangerate.host" in message
    assert "{number: 8443, protocol: TLS}" in message


def test_without_a_registry_skills_with_egress_fail_closed() -> None:
    context = Context(policy=POLICY, registry=None, registry_problem="the file is missing")
    with pytest.raises(Undecidable, match="the file is missing"):
        validate_skill(review([FRANKFURTER]), context)
    assert validate_skill(review([]), context).violations == ()


def test_off_rules_are_skipped() -> None:
    policy = parse_policy("rules: {skill.host-not-approved: 'off', skill.host-denied: 'off'}",
                          source="t")
    verdict = validate_skill(review([{"host": "api.evil.example"}]),
                             Context(policy=policy, registry=None))
    assert verdict.violations == ()
