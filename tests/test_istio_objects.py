"""EnvoyFilter, WorkloadEntry and VirtualService admission in agent namespaces.

One table per rule, each case asserting (rule, path) pairs, run in every served version;
modes off and warn; a missing registry failing closed through ``admit``; the real ``check``
command agreeing with the server on scope and verdict; ``audit`` listing them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.test_audit import FakeApiClient
from webhook.admission.seam import Stage, admit, handler_for
from webhook.cluster.listing import KubernetesSource
from webhook.config.policy import load_policy, parse_policy
from webhook.core.errors import Undecidable
from webhook.core.review import Request, review_from_document
from webhook.egress.registry import Registry, parse_registry
from webhook.policies.context import Context
from webhook.policies.virtualservices import validate_virtualservice
from webhook.tools.audit import audit_cluster
from webhook.tools.offline import Contexts, Decision

GROUP = "networking.istio.io"
VERSIONS = {"EnvoyFilter": ("v1alpha3",), "WorkloadEntry": ("v1alpha3", "v1beta1", "v1"),
            "VirtualService": ("v1alpha3", "v1beta1", "v1")}
POLICY = load_policy(None)
REGISTRY_TEXT = """
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocols: [TLS, HTTPS]}]
  namespaces: [agents]
- host: "*.googleapis.com"
  ports: [{number: 443, protocol: TLS}]
  namespaces: [agents]
- host: tools-only.example.org
  namespaces: [tools]
deny:
- host: evil.googleapis.com
  reason: exfiltration endpoint
"""
REGISTRY = parse_registry(REGISTRY_TEXT, source="test registry")
PLURALS = {"EnvoyFilter": "envoyfilters", "WorkloadEntry": "workloadentries",
           "VirtualService": "virtualservices"}


def review(kind: str, version: str, spec: dict[str, Any], *, namespace: str = "agents",
           operation: str = "CREATE", sub_resource: str | None = None,
           metadata: dict[str, Any] | None = None) -> Request:
    gvk = {"group": GROUP, "version": version, "kind": kind}
    gvr = {"group": GROUP, "version": version, "resource": PLURALS[kind]}
    obj = {"apiVersion": f"{GROUP}/{version}", "kind": kind,
           "metadata": {"name": "x", "namespace": namespace, **(metadata or {})}, "spec": spec}
    request: dict[str, Any] = {
        "uid": "7d0c2a4e-7d7f-4f59-9d44-0d2f0b1b9a51", "kind": gvk, "resource": gvr,
        "requestKind": gvk, "requestResource": gvr, "name": "x", "namespace": namespace,
        "operation": operation, "userInfo": {"username": "alice"}, "object": obj,
        "oldObject": obj if operation == "UPDATE" else None, "dryRun": False}
    if sub_resource:
        request["subResource"] = sub_resource
    return review_from_document({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                 "request": request})


def found(request: Request, registry: Registry | None = REGISTRY,
          policy: Any = POLICY) -> list[tuple[str, str]]:
    """(rule, path) of each violation; ``admit`` must agree that the object is refused."""
    context = Context(policy=policy, registry=registry)
    handler = handler_for(request, Stage.VALIDATE)
    assert handler is not None
    violations = [(v.rule, v.path) for v in handler(request, context).violations]
    outcome = admit(request, stage=Stage.VALIDATE, context=context)
    assert (outcome.allowed, outcome.code) == ((True, 200) if not violations else (False, 403))
    return violations


# EnvoyFilter and WorkloadEntry: refused whatever they say, registry or not.

PASSTHROUGH = {"configPatches": [{"applyTo": "CLUSTER", "match": {"context": "SIDECAR_OUTBOUND"},
                                  "patch": {"operation": "ADD", "value": {
                                      "name": "passthrough", "type": "ORIGINAL_DST",
                                      "lbPolicy": "CLUSTER_PROVIDED"}}}]}
WORKLOAD = {"address": "203.0.113.99", "labels": {"app": "frankfurter"}}
FORBIDDEN = [("EnvoyFilter", PASSTHROUGH, "envoyfilter.forbidden"),
             ("EnvoyFilter", {}, "envoyfilter.forbidden"),
             ("WorkloadEntry", WORKLOAD, "workloadentry.forbidden"),
             ("WorkloadEntry", {"address": "api.frankfurter.app"}, "workloadentry.forbidden")]


@pytest.mark.parametrize(("kind", "version", "spec", "rule"),
                         [(k, v, s, r) for k, s, r in FORBIDDEN for v in VERSIONS[k]])
@pytest.mark.parametrize("operation", ["CREATE", "UPDATE"])
def test_forbidden_kinds_are_refused_in_every_version(kind: str, version: str,
                                                      spec: dict[str, Any], rule: str,
                                                      operation: str) -> None:
    request = review(kind, version, spec, operation=operation)
    for registry in (REGISTRY, None):  # the registry plays no part: never a 500
        outcome = admit(request, stage=Stage.VALIDATE,
                        context=Context(policy=POLICY, registry=registry))
        assert (outcome.allowed, outcome.code, outcome.rules) == (False, 403, (rule,))
    status = outcome.review["response"]["status"]["message"]
    assert f"[{rule}] spec:" in status
    if kind == "EnvoyFilter":
        assert "root namespace" in status
        assert "passthrough" in status


@pytest.mark.parametrize("kind", ["EnvoyFilter", "WorkloadEntry"])
def test_forbidden_kinds_can_still_be_deleted_and_their_status_written(kind: str) -> None:
    terminating = review(kind, VERSIONS[kind][-1], {}, operation="UPDATE",
                         metadata={"deletionTimestamp": "2026-01-01T00:00:00Z"})
    status = review(kind, VERSIONS[kind][-1], {}, operation="UPDATE", sub_resource="status")
    assert found(terminating) == []
    assert found(status) == []


# VirtualService: one table per rule.

def http_to(*hosts: Any, port: int | None = None) -> dict[str, Any]:
    route = [{"destination": {"host": h, **({"port": {"number": port}} if port else {})}}
             for h in hosts]
    return {"hosts": ["reviews"], "exportTo": ["."], "http": [{"route": route}]}


DEST = "virtualservice.destination-not-approved"
HOSTS = "virtualservice.host-not-approved"
EXPORT = "virtualservice.export-to"
R0 = "spec.http[0].route[0].destination.host"

DESTINATIONS: list[tuple[str, dict[str, Any], list[tuple[str, str]]]] = [
    ("a Service in the namespace (short name)", http_to("ratings"), []),
    ("a Service by its .svc name", http_to("ratings.agents.svc"), []),
    ("a Service of the control-plane namespace (the egress gateway)",
     http_to("istio-egressgateway.istio-system.svc"), []),
    ("a Service of another namespace", http_to("ratings.other.svc"), [(DEST, R0)]),
    ("a Service of another namespace by its full name",
     http_to("evil.trial.svc.cluster.local"), [(DEST, R0)]),
    ("every Service of another namespace", http_to("*.trial.svc"), [(DEST, R0)]),
    ("every Service of every namespace", http_to("*.svc.cluster.local"), [(DEST, R0)]),
    ("a Service by its full name", http_to("ratings.agents.svc.cluster.local"), []),
    ("an approved external host", http_to("api.frankfurter.app"), []),
    ("an approved host in other spelling", http_to("API.Frankfurter.App."), []),
    ("a host approved through a suffix entry", http_to("storage.googleapis.com"), []),
    ("a host nobody approved", http_to("paste.example.com"), [(DEST, R0)]),
    ("a host approved for another namespace", http_to("tools-only.example.org"), [(DEST, R0)]),
    ("a denied host under an approved suffix", http_to("evil.googleapis.com"), [(DEST, R0)]),
    ("an IPv4 literal", http_to("203.0.113.7"), [(DEST, R0)]),
    ("an IPv4 literal in integer notation", http_to("2130706433"), [(DEST, R0)]),
    ("an IPv6 literal", http_to("fd00:ec2::254"), [(DEST, R0)]),
    ("a metadata name", http_to("metadata.google.internal"), [(DEST, R0)]),
    ("localhost", http_to("localhost"), [(DEST, R0)]),
    ("a cluster name that is no Service", http_to("1-2-3-4.agents.pod.cluster.local"),
     [(DEST, R0)]),
    ("a wildcard", http_to("*.example.com"), [(DEST, R0)]),
    ("no host at all", {"hosts": ["reviews"], "exportTo": ["."],
                        "http": [{"route": [{"destination": {}}]}]}, [(DEST, R0)]),
    ("the second of two weighted routes", http_to("ratings", "paste.example.com"),
     [(DEST, "spec.http[0].route[1].destination.host")]),
    ("a mirror", {"hosts": ["reviews"], "exportTo": ["."], "http": [
        {"route": [{"destination": {"host": "ratings"}}],
         "mirror": {"host": "paste.example.com"}}]}, [(DEST, "spec.http[0].mirror.host")]),
    ("mirrors", {"hosts": ["reviews"], "exportTo": ["."], "http": [
        {"route": [{"destination": {"host": "ratings"}}],
         "mirrors": [{"destination": {"host": "ratings"}},
                     {"destination": {"host": "paste.example.com"}}]}]},
     [(DEST, "spec.http[0].mirrors[1].destination.host")]),
    ("a tls route", {"hosts": ["api.frankfurter.app"], "exportTo": ["."], "tls": [
        {"match": [{"sniHosts": ["api.frankfurter.app"]}],
         "route": [{"destination": {"host": "paste.example.com"}}]}]},
     [(DEST, "spec.tls[0].route[0].destination.host")]),
    ("a tcp route", {"hosts": ["reviews"], "exportTo": ["."], "tcp": [
        {"route": [{"destination": {"host": "203.0.113.7", "port": {"number": 22}}}]}]},
     [(DEST, "spec.tcp[0].route[0].destination.host")]),
    # Bound to an egress gateway: the gateway's hop to the external host needs approval too.
    ("an egress gateway route to an approved host", {
        "hosts": ["api.frankfurter.app"], "exportTo": ["."],
        "gateways": ["mesh", "istio-system/egressgateway"],
        "tls": [{"match": [{"gateways": ["mesh"], "sniHosts": ["api.frankfurter.app"]}],
                 "route": [{"destination": {
                     "host": "istio-egressgateway.istio-system.svc.cluster.local"}}]},
                {"match": [{"gateways": ["istio-system/egressgateway"],
                            "sniHosts": ["api.frankfurter.app"]}],
                 "route": [{"destination": {"host": "api.frankfurter.app"}}]}]}, []),
    ("an egress gateway route to an unapproved host", {
        "hosts": ["api.frankfurter.app"], "exportTo": ["."],
        "gateways": ["istio-system/egressgateway"],
        "tls": [{"match": [{"sniHosts": ["api.frankfurter.app"]}],
                 "route": [{"destination": {"host": "paste.example.com"}}]}]},
     [(DEST, "spec.tls[0].route[0].destination.host")]),
]

HOST_CASES: list[tuple[str, list[Any], list[tuple[str, str]]]] = [
    ("a Service name", ["reviews", "reviews.agents.svc.cluster.local"], []),
    ("a wildcard over cluster names", ["*.agents.svc.cluster.local"], []),
    ("an approved external host", ["api.frankfurter.app"], []),
    ("an external host nobody approved", ["reviews", "paste.example.com"],
     [(HOSTS, "spec.hosts[1]")]),
    ("a denied host", ["evil.googleapis.com"], [(HOSTS, "spec.hosts[0]")]),
    ("a wildcard over external names", ["*.googleapis.com"], [(HOSTS, "spec.hosts[0]")]),
    ("every host", ["*"], [(HOSTS, "spec.hosts[0]")]),
    ("an IP literal", ["169.254.169.254"], [(HOSTS, "spec.hosts[0]")]),
    ("a metadata name", ["metadata"], [(HOSTS, "spec.hosts[0]")]),
]

EXPORT_CASES: list[tuple[str, Any, list[tuple[str, str]]]] = [
    ("this namespace", ["."], []),
    ("named namespaces", [".", "tools"], []),
    ("everywhere", ["*"], [(EXPORT, "spec.exportTo[0]")]),
    ("everywhere, after this namespace", [".", "*"], [(EXPORT, "spec.exportTo[1]")]),
    ("unset (Istio exports everywhere)", None, [(EXPORT, "spec.exportTo")]),
    ("empty", [], [(EXPORT, "spec.exportTo")]),
]


def _vs_cases() -> list[Any]:
    cases = [pytest.param(spec, expected, id=name) for name, spec, expected in DESTINATIONS]
    for name, hosts, expected in HOST_CASES:
        spec = {"hosts": hosts, "exportTo": ["."],
                "http": [{"route": [{"destination": {"host": "ratings"}}]}]}
        cases.append(pytest.param(spec, expected, id=f"hosts: {name}"))
    for name, export_to, expected in EXPORT_CASES:
        spec = {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]}
        if export_to is not None:
            spec["exportTo"] = export_to
        cases.append(pytest.param(spec, expected, id=f"exportTo: {name}"))
    return cases


@pytest.mark.parametrize("version", VERSIONS["VirtualService"])
@pytest.mark.parametrize(("spec", "expected"), _vs_cases())
def test_virtualservice_rules_in_every_version(version: str, spec: dict[str, Any],
                                               expected: list[tuple[str, str]]) -> None:
    assert found(review("VirtualService", version, spec)) == expected


def test_refusals_say_what_the_registry_would_need() -> None:
    outcome = admit(review("VirtualService", "v1", http_to("paste.example.com", port=443)),
                    stage=Stage.VALIDATE, context=Context(policy=POLICY, registry=REGISTRY))
    message = outcome.review["response"]["status"]["message"]
    assert f"[{DEST}] {R0}: paste.example.com is not in the egress registry for namespace " \
        "agents" in message
    assert "{host: paste.example.com, ports: [{number: 443, protocol: HTTPS}]" in message
    other = admit(review("VirtualService", "v1", http_to("tools-only.example.org")),
                  stage=Stage.VALIDATE, context=Context(policy=POLICY, registry=REGISTRY))
    assert "add agents to that entry's namespaces" in \
        other.review["response"]["status"]["message"]


def test_without_a_registry_external_routes_fail_closed_and_internal_ones_pass() -> None:
    context = Context(policy=POLICY, registry=None,
                      registry_problem="registry.yaml: entries.0.host: bad")
    external = review("VirtualService", "v1beta1", http_to("api.frankfurter.app"))
    with pytest.raises(Undecidable, match=r"VirtualService agents/x: registry\.yaml"):
        validate_virtualservice(external, context)
    outcome = admit(external, stage=Stage.VALIDATE, context=context)
    assert (outcome.allowed, outcome.code) == (False, 500)
    assert "entries.0.host: bad" in outcome.review["response"]["status"]["message"]
    internal = admit(review("VirtualService", "v1beta1", http_to("ratings")),
                     stage=Stage.VALIDATE, context=context)
    assert (internal.allowed, internal.code) == (True, 200)


def test_warn_mode_admits_with_the_rules_as_warnings() -> None:
    warn = parse_policy(f"rules: {{{DEST}: warn, {EXPORT}: warn, envoyfilter.forbidden: warn}}",
                        source="t")
    spec = http_to("paste.example.com")
    del spec["exportTo"]
    outcome = admit(review("VirtualService", "v1", spec), stage=Stage.VALIDATE,
                    context=Context(policy=warn, registry=REGISTRY))
    assert outcome.allowed
    assert [w.split("]")[0] for w in outcome.warnings] == [f"[{DEST}", f"[{EXPORT}"]
    filtered = admit(review("EnvoyFilter", "v1alpha3", PASSTHROUGH), stage=Stage.VALIDATE,
                     context=Context(policy=warn))
    assert filtered.allowed
    assert any("[envoyfilter.forbidden] spec:" in w for w in filtered.warnings)


def test_off_rules_are_not_evaluated_and_need_no_registry() -> None:
    off = parse_policy(f"rules: {{{DEST}: 'off', {HOSTS}: 'off', workloadentry.forbidden: "
                       "'off'}", source="t")
    spec = http_to("paste.example.com")
    spec["hosts"] = ["paste.example.com"]
    assert found(review("VirtualService", "v1", spec), registry=None, policy=off) == []
    assert found(review("WorkloadEntry", "v1", WORKLOAD), registry=None, policy=off) == []
    # The rules left on still apply.
    assert found(review("EnvoyFilter", "v1alpha3", {}), registry=None, policy=off) == [
        ("envoyfilter.forbidden", "spec")]


def test_check_agrees_with_the_server_on_scope_and_verdict(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY_TEXT)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "agents", "labels": {"agentsandbox.io/enforce": "true"}}}
    request = review("VirtualService", "v1", http_to("paste.example.com"))
    route = request.object
    elsewhere = json.loads(json.dumps(route))
    elsewhere["metadata"]["namespace"] = "web"  # not an agent namespace: never sent
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all([namespace, route, elsewhere]))
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(manifest),
                             "--registry", str(registry), "-o", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    records = {r["source"].rsplit("#", 1)[1]: r for r in json.loads(result.stdout)["results"]}
    server = admit(request, stage=Stage.VALIDATE,
                   context=Context(policy=POLICY, registry=REGISTRY))
    assert (records["2"]["verdict"], tuple(records["2"]["rules"])) == ("refused", server.rules)
    assert server.rules == (DEST,)
    assert records["3"]["verdict"] == "skipped"


def test_audit_lists_and_reports_them_in_agent_namespaces_only() -> None:
    def listed(kind: str, version: str, *namespaces: str) -> dict[str, Any]:
        spec = PASSTHROUGH if kind == "EnvoyFilter" else http_to("paste.example.com")
        return {"items": [{"apiVersion": f"{GROUP}/{version}", "kind": kind,
                           "metadata": {"name": f"{kind.lower()}-{ns}", "namespace": ns},
                           "spec": spec} for ns in namespaces]}

    api = FakeApiClient({
        "/api/v1/namespaces": client.V1NamespaceList(items=[client.V1Namespace(
            metadata=client.V1ObjectMeta(name="agents",
                                         labels={"agentsandbox.io/enforce": "true"}))]),
        f"/apis/{GROUP}/v1alpha3/envoyfilters": listed("EnvoyFilter", "v1alpha3", "agents"),
        f"/apis/{GROUP}/v1/virtualservices": listed("VirtualService", "v1", "agents", "web"),
    })
    contexts = Contexts.build(policy=POLICY, registry=REGISTRY, registry_problem="none")
    results = {r.name: r for r in audit_cluster(KubernetesSource(api), contexts=contexts)}
    assert set(results) == {"envoyfilter-agents", "virtualservice-agents"}
    assert results["envoyfilter-agents"].rules == ("envoyfilter.forbidden",)
    assert results["virtualservice-agents"].rules == (DEST,)
    assert all(r.decision is Decision.REFUSED for r in results.values())
