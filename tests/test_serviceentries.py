"""ServiceEntry admission: one table per rule, every case in v1alpha3, v1beta1 and v1."""

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
from webhook.policies.serviceentries import validate_serviceentry

VERSIONS = ("v1alpha3", "v1beta1", "v1")
GOLDEN = ("serviceentry-v1.json", "serviceentry-v1beta1.json", "serviceentry-v1alpha3.json",
          "serviceentry-v1alpha3-equivalent.json")
POLICY = load_policy(None)
REGISTRY = parse_registry("""
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocols: [TLS, HTTPS]}]
  namespaces: [agents]
- host: pinned.example.net
  ports: [{number: 443, protocol: TLS}]
  namespaces: [agents]
  addresses: [203.0.113.10, "2001:db8::10"]
- host: shared.example.org
  ports: [{number: 443, protocol: TLS}]
  allowMeshWideExport: true
- host: "*.googleapis.com"
  ports: [{number: 443, protocol: TLS}]
  namespaces: [agents, tools]
deny:
- host: evil.googleapis.com
  reason: exfiltration endpoint
""", source="test registry")
FRANKFURTER_ONLY = parse_registry("""
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocol: TLS}]
  namespaces: [agents]
""", source="test registry")
DELETE = object()


def review(version: str, changes: dict[str, Any] | None = None, *,
           namespace: str = "agents", operation: str = "CREATE") -> Request:
    """The captured v<version> ServiceEntry with ``changes`` merged into its spec."""
    document = copy.deepcopy(load_review(f"serviceentry-{version}.json"))
    request = document["request"]
    request["namespace"] = namespace
    request["operation"] = operation
    spec = request["object"]["spec"]
    for key, value in (changes or {}).items():
        if value is DELETE:
            spec.pop(key, None)
        else:
            spec[key] = value
    return review_from_document(document)


def rules(request: Request, registry: Registry | None = REGISTRY) -> set[str]:
    verdict = validate_serviceentry(request, Context(policy=POLICY, registry=registry))
    return {violation.rule for violation in verdict.violations}


def se(name: str) -> str:
    return f"serviceentry.{name}"


def _port(number: int = 443, protocol: str | None = "TLS", **extra: Any) -> dict[str, Any]:
    port: dict[str, Any] = {"name": "p", "number": number, **extra}
    if protocol is not None:
        port["protocol"] = protocol
    return port


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    # hosts
    ("approved host", {}, set()),
    ("approved host in other case with a dot", {"hosts": ["API.Frankfurter.APP."]}, set()),
    ("host approved by a suffix entry", {"hosts": ["pubsub.googleapis.com"]}, set()),
    ("unknown host", {"hosts": ["api.evil.example"]}, {se("host-not-approved")}),
    ("one unknown host among good ones", {"hosts": ["api.frankfurter.app", "x.evil.example"]},
     {se("host-not-approved")}),
    ("suffix itself", {"hosts": ["googleapis.com"]}, {se("host-not-approved")}),
    ("denied host under an approved suffix", {"hosts": ["evil.googleapis.com"]},
     {se("host-denied")}),
    ("metadata IP", {"hosts": ["169.254.169.254"]}, {se("host-invalid")}),
    ("integer IPv4", {"hosts": ["2130706433"]}, {se("host-invalid")}),
    ("hex IPv4", {"hosts": ["0x7f.1"]}, {se("host-invalid")}),
    ("IPv6", {"hosts": ["[fd00:ec2::254]"]}, {se("host-invalid")}),
    ("localhost", {"hosts": ["localhost"]}, {se("host-invalid")}),
    ("metadata name", {"hosts": ["metadata.google.internal"]}, {se("host-invalid")}),
    ("cluster service", {"hosts": ["kubernetes.default.svc.cluster.local"]},
     {se("host-invalid")}),
    ("svc short name", {"hosts": ["api.agents.svc"]}, {se("host-invalid")}),
    ("no hosts", {"hosts": []}, {se("host-invalid")}),
    ("wildcard host", {"hosts": ["*.googleapis.com"]}, {se("wildcard-host")}),
    ("bare star", {"hosts": ["*"]}, {se("wildcard-host")}),
    # resolution
    ("resolution NONE", {"resolution": "NONE"}, {se("resolution")}),
    ("resolution omitted (defaults to NONE)", {"resolution": DELETE}, {se("resolution")}),
    ("resolution DYNAMIC_DNS", {"resolution": "DYNAMIC_DNS"}, {se("resolution")}),
    ("resolution DNS_ROUND_ROBIN", {"resolution": "DNS_ROUND_ROBIN"}, set()),
    ("resolution NONE with pinned approved addresses",
     {"hosts": ["pinned.example.net"], "resolution": "NONE", "addresses": ["203.0.113.10"]},
     set()),
    # opaque protocols
    ("TCP", {"ports": [_port(protocol="TCP")]}, {se("opaque-protocol")}),
    ("MONGO", {"ports": [_port(protocol="MONGO")]}, {se("opaque-protocol")}),
    ("protocol unset", {"ports": [_port(protocol=None)]}, {se("opaque-protocol")}),
    ("protocol in lower case", {"ports": [_port(protocol="tls")]}, set()),
    # addresses
    ("addresses not listed", {"resolution": "NONE", "addresses": ["198.51.100.7"]},
     {se("addresses")}),
    ("addresses as a CIDR", {"hosts": ["pinned.example.net"], "addresses": ["203.0.113.0/24"]},
     {se("addresses")}),
    ("addresses mapping a name to metadata",
     {"hosts": ["pinned.example.net"], "addresses": ["169.254.169.254"]}, {se("addresses")}),
    ("exact /32 of a listed address",
     {"hosts": ["pinned.example.net"], "addresses": ["203.0.113.10/32"]}, set()),
    # endpoints
    ("STATIC endpoint at a listed address",
     {"hosts": ["pinned.example.net"], "resolution": "STATIC",
      "endpoints": [{"address": "203.0.113.10"}, {"address": "2001:db8::10"}]}, set()),
    ("STATIC endpoint at metadata",
     {"hosts": ["pinned.example.net"], "resolution": "STATIC",
      "endpoints": [{"address": "169.254.169.254"}]}, {se("endpoints")}),
    ("STATIC endpoint at an unlisted address",
     {"resolution": "STATIC", "endpoints": [{"address": "203.0.113.10"}]}, {se("endpoints")}),
    ("STATIC endpoint given as a name",
     {"resolution": "STATIC", "endpoints": [{"address": "api.frankfurter.app"}]},
     {se("endpoints")}),
    ("DNS endpoint pointing at an unlisted name",
     {"endpoints": [{"address": "attacker.example"}]}, {se("endpoints")}),
    ("DNS endpoint pointing at localhost", {"endpoints": [{"address": "localhost"}]},
     {se("endpoints")}),
    ("DNS endpoint pointing at an integer IP", {"endpoints": [{"address": "2130706433"}]},
     {se("endpoints")}),
    ("DNS endpoint pointing at a denied name",
     {"endpoints": [{"address": "evil.googleapis.com"}]}, {se("endpoints")}),
    ("DNS endpoint at the host itself", {"endpoints": [{"address": "api.frankfurter.app"}]},
     set()),
    ("unix socket endpoint", {"endpoints": [{"address": "unix:///var/run/x.sock"}]},
     {se("endpoints")}),
    ("endpoint port moved to an unapproved port",
     {"endpoints": [{"address": "api.frankfurter.app", "ports": {"tls": 22}}]},
     {se("port-not-approved")}),
    # exportTo
    ("exportTo omitted (exports everywhere)", {"exportTo": DELETE}, {se("export-to")}),
    ("exportTo empty", {"exportTo": []}, {se("export-to")}),
    ("exportTo star", {"exportTo": ["*"]}, {se("export-to")}),
    ("exportTo star where the registry allows it",
     {"hosts": ["shared.example.org"], "exportTo": ["*"]}, set()),
    ("exportTo another namespace", {"exportTo": ["other"]}, {se("export-to")}),
    ("exportTo a namespace the host is approved for",
     {"hosts": ["pubsub.googleapis.com"], "exportTo": [".", "tools"]}, set()),
    ("exportTo own namespace by name", {"exportTo": ["agents"]}, set()),
    ("exportTo hidden", {"exportTo": ["~"]}, set()),
    # location and selector
    ("MESH_INTERNAL", {"location": "MESH_INTERNAL"}, {se("mesh-internal")}),
    ("location omitted (MESH_EXTERNAL)", {"location": DELETE}, set()),
    ("workloadSelector", {"workloadSelector": {"labels": {"app": "x"}}},
     {se("workload-selector")}),
    # ports
    ("unapproved port", {"ports": [_port(8443)]}, {se("port-not-approved")}),
    ("unapproved protocol", {"ports": [_port(443, "HTTP")]}, {se("port-not-approved")}),
    ("targetPort elsewhere", {"ports": [_port(443, targetPort=22)]}, {se("port-not-approved")}),
    ("targetPort equal to the port", {"ports": [_port(443, targetPort=443)]}, set()),
    ("no ports", {"ports": []}, {se("port-not-approved")}),
    ("not a port number", {"ports": [_port(70000)]}, {se("port-not-approved")}),
    # everything at once: every problem is reported, not just the first
    ("a thoroughly bad entry",
     {"hosts": ["api.evil.example", "*.x.example", "127.0.0.1"], "resolution": "NONE",
      "ports": [_port(22, "TCP")], "exportTo": DELETE, "location": "MESH_INTERNAL"},
     {se("host-not-approved"), se("wildcard-host"), se("host-invalid"), se("resolution"),
      se("opaque-protocol"), se("export-to"), se("mesh-internal")}),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("changes", "expected"), [(c, e) for _, c, e in CASES],
                         ids=[name for name, _, _ in CASES])
def test_each_rule_in_every_version(version: str, changes: dict[str, Any],
                                    expected: set[str]) -> None:
    assert rules(review(version, changes)) == expected


@pytest.mark.parametrize("version", VERSIONS)
def test_a_host_approved_for_another_namespace_is_refused(version: str) -> None:
    request = review(version, namespace="tools")
    verdict = validate_serviceentry(request, Context(policy=POLICY, registry=REGISTRY))
    assert [v.rule for v in verdict.violations] == [se("host-not-approved")]
    assert "not for namespace tools" in verdict.violations[0].message
    assert "add tools to that entry's namespaces" in verdict.violations[0].message


def test_updates_are_checked_like_creates() -> None:
    assert rules(review("v1", {"hosts": ["api.evil.example"]}, operation="UPDATE")) == {
        se("host-not-approved")}


def test_an_update_of_a_terminating_entry_is_not_blocked() -> None:
    document = copy.deepcopy(load_review("serviceentry-v1.json"))
    request = document["request"]
    request["operation"] = "UPDATE"
    request["object"]["spec"]["hosts"] = ["api.evil.example"]
    request["object"]["metadata"]["deletionTimestamp"] = "2026-11-22T05:00:00Z"
    assert rules(review_from_document(document)) == set()


def test_messages_say_what_the_registry_would_need() -> None:
    verdict = validate_serviceentry(review("v1", {"hosts": ["api.evil.example"]}),
                                    Context(policy=POLICY, registry=REGISTRY))
    assert verdict.violations[0].render() == (
        "[serviceentry.host-not-approved] spec.hosts[0]: api.evil.example is not in the egress "
        "registry for namespace agents; to allow it, add an entry {host: api.evil.example, "
        "ports: [{number: 443, protocol: TLS}], namespaces: [agents]} to the registry")
    port = validate_serviceentry(review("v1", {"ports": [_port(8443)]}),
                                 Context(policy=POLICY, registry=REGISTRY)).violations[0]
    assert "api.frankfurter.app is approved for namespace agents on" in port.message
    assert "{number: 8443, protocol: TLS}" in port.message
    denied = validate_serviceentry(review("v1", {"hosts": ["evil.googleapis.com"]}),
                                   Context(policy=POLICY, registry=REGISTRY)).violations[0]
    assert "deny list" in denied.message
    assert "exfiltration endpoint" in denied.message


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_entries_pass_with_a_registry_that_approves_them(name: str) -> None:
    request = review_from_document(load_review(name))
    outcome = admit(request, stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=FRANKFURTER_ONLY))
    assert outcome.allowed
    assert outcome.review["response"]["uid"] == load_review(name)["request"]["uid"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_entries_are_refused_by_the_empty_default_registry(name: str) -> None:
    request = review_from_document(load_review(name))
    outcome = admit(request, stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=load_registry(None)))
    assert not outcome.allowed
    assert outcome.code == 403
    assert outcome.rules == (se("host-not-approved"),)
    message = outcome.review["response"]["status"]["message"]
    assert "api.frankfurter.app" in message
    assert "namespace agents" in message


def test_without_a_registry_the_request_fails_closed_saying_why() -> None:
    context = Context(policy=POLICY, registry=None,
                      registry_problem="registry.yaml: entries.0.host: bad")
    with pytest.raises(Undecidable, match=r"entries\.0\.host: bad"):
        validate_serviceentry(review("v1"), context)
    outcome = admit(review("v1"), stage=Stage.VALIDATE, context=context)
    assert not outcome.allowed
    assert outcome.code == 500
    assert "fix the registry" in outcome.review["response"]["status"]["message"]


def test_warn_mode_admits_with_a_warning() -> None:
    policy = parse_policy("rules: {serviceentry.export-to: warn}", source="test")
    outcome = admit(review("v1beta1", {"exportTo": ["*"]}), stage=Stage.VALIDATE,
                    context=Context(policy=policy, registry=REGISTRY))
    assert outcome.allowed
    assert any("[serviceentry.export-to]" in w for w in outcome.warnings)


def test_off_rules_are_not_evaluated_and_need_no_registry() -> None:
    names = ("host-not-approved", "host-denied", "port-not-approved", "addresses", "endpoints",
             "export-to")
    policy = parse_policy("rules: {" + ", ".join(f"serviceentry.{r}: 'off'" for r in names)
                          + "}", source="t")
    verdict = validate_serviceentry(review("v1", {"hosts": ["api.evil.example"]}),
                                    Context(policy=policy, registry=None))
    assert verdict.violations == ()
    verdict = validate_serviceentry(review("v1", {"location": "MESH_INTERNAL"}),
                                    Context(policy=policy, registry=None))
    assert [v.rule for v in verdict.violations] == [se("mesh-internal")]
