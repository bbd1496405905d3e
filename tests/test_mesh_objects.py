"""WasmPlugin, ProxyConfig, Gateway API routes, RequestAuthentication, the root namespace and
warn-mode exports: tables per kind and rule through the handler and ``admit``, in every version
the webhook configuration sends; modes; ``check`` and ``audit`` (``FakeApiClient`` fakes only
the HTTP boundary).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.reviewkit import agent_namespaces, decide, listed, make_request
from tests.test_audit import FakeApiClient
from webhook.admission.engine import Engine
from webhook.admission.seam import Stage, admit
from webhook.cluster.listing import KubernetesSource
from webhook.config.policy import load_policy, parse_policy
from webhook.core.errors import ConfigError
from webhook.egress.registry import parse_registry
from webhook.policies.context import Context
from webhook.tools.audit import audit_cluster
from webhook.tools.offline import Contexts, Decision

POLICY = load_policy(None)
REGISTRY_TEXT = """
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocols: [TLS, HTTPS]}]
  namespaces: [agents]
- host: login.example.com
  ports: [{number: 443, protocols: [HTTPS]}]
  namespaces: [agents]
- host: shared.example.org
  ports: [{number: 443, protocol: TLS}]
  allowMeshWideExport: true
"""
REGISTRY = parse_registry(REGISTRY_TEXT, source="test registry")
ROOT = "istio-system"


def found(request: Any, policy: Any = POLICY, registry: Any = REGISTRY) -> list[tuple[str, str]]:
    return decide(request, policy=policy, registry=registry)[0]


# WasmPlugin and ProxyConfig in agent namespaces.

WASM = {"url": "oci://ghcr.io/attacker/exfil:1", "phase": "AUTHN"}


@pytest.mark.parametrize("spec", [WASM, {}, {**WASM, "selector": {"matchLabels": {"a": "b"}}}])
def test_a_wasmplugin_in_an_agent_namespace_is_refused(spec: dict[str, Any]) -> None:
    request = make_request("extensions.istio.io/v1alpha1", "WasmPlugin", {"spec": spec})
    assert found(request, registry=None) == [("wasmplugin.forbidden", "spec")]


PROXYCONFIGS = [
    ("only concurrency", {"concurrency": 2}, []),
    ("a selector and the image type", {"selector": {"matchLabels": {"app": "a"}},
                                       "image": {"imageType": "distroless"}}, []),
    ("environment variables", {"environmentVariables": {"ISTIO_META_DNS_CAPTURE": "false"}},
     [("proxyconfig.unsafe-field", "spec.environmentVariables")]),
    ("an unknown field", {"concurrency": 1, "bootstrap": {}},
     [("proxyconfig.unsafe-field", "spec.bootstrap")]),
]


@pytest.mark.parametrize(("case", "spec", "expected"), PROXYCONFIGS,
                         ids=[c[0] for c in PROXYCONFIGS])
def test_proxyconfig_fields(case: str, spec: dict[str, Any],
                            expected: list[tuple[str, str]]) -> None:
    request = make_request("networking.istio.io/v1beta1", "ProxyConfig", {"spec": spec})
    assert found(request, registry=None) == expected


def test_the_safe_proxyconfig_fields_are_a_policy_field() -> None:
    strict = parse_policy("istio:\n  proxyConfigSafeFields: []\n", source="strict")
    request = make_request("networking.istio.io/v1beta1", "ProxyConfig",
                           {"spec": {"concurrency": 2}})
    assert found(request, policy=strict) == [("proxyconfig.unsafe-field", "spec.concurrency")]
    with pytest.raises(ConfigError, match="unknown ProxyConfig field"):
        parse_policy("istio:\n  proxyConfigSafeFields: [bootstrap]\n", source="typo")


# Gateway API routes.

ROUTE = "route.backend-not-approved"


def route(kind: str, version: str, *refs: dict[str, Any],
          filters: list[dict[str, Any]] | None = None) -> Any:
    rule: dict[str, Any] = {"backendRefs": list(refs)}
    if filters:
        rule["filters"] = filters
    spec = {"parentRefs": [{"name": "gw"}], "rules": [rule]}
    return make_request(f"gateway.networking.k8s.io/{version}", kind, {"spec": spec})


def hostname(name: str) -> dict[str, Any]:
    return {"group": "networking.istio.io", "kind": "Hostname", "name": name, "port": 443}


B0 = "spec.rules[0].backendRefs[0]"
ROUTES: list[tuple[str, tuple[dict[str, Any], ...], list[dict[str, Any]] | None,
                   list[tuple[str, str]]]] = [
    ("a Service of the namespace", ({"name": "ratings", "port": 8080},), None, []),
    ("a Service named with its own namespace",
     ({"name": "ratings", "namespace": "agents", "port": 8080},), None, []),
    ("an approved Hostname", (hostname("api.frankfurter.app"),), None, []),
    ("a Service of another namespace", ({"name": "db", "namespace": "prod", "port": 5432},),
     None, [(ROUTE, f"{B0}.namespace")]),
    ("a Hostname not in the registry", (hostname("paste.example.net"),), None,
     [(ROUTE, f"{B0}.name")]),
    ("a Hostname that is an IP", (hostname("203.0.113.99"),), None, [(ROUTE, f"{B0}.name")]),
    ("a ServiceImport", ({"group": "multicluster.x-k8s.io", "kind": "ServiceImport",
                          "name": "x"},), None, [(ROUTE, B0)]),
    ("a mirror to an unapproved Hostname", ({"name": "ratings"},),
     [{"type": "RequestMirror", "requestMirror": {"backendRef": hostname("evil.example.net")}}],
     [(ROUTE, "spec.rules[0].filters[0].requestMirror.backendRef.name")]),
]
ROUTE_VERSIONS = [("HTTPRoute", "v1"), ("HTTPRoute", "v1beta1"), ("GRPCRoute", "v1"),
                  ("GRPCRoute", "v1alpha2"), ("TCPRoute", "v1alpha2"), ("TLSRoute", "v1alpha2"),
                  ("TLSRoute", "v1alpha3")]


@pytest.mark.parametrize(("kind", "version"), ROUTE_VERSIONS)
@pytest.mark.parametrize(("case", "refs", "filters", "expected"), ROUTES,
                         ids=[c[0] for c in ROUTES])
def test_route_backends(kind: str, version: str, case: str, refs: tuple[dict[str, Any], ...],
                        filters: list[dict[str, Any]] | None,
                        expected: list[tuple[str, str]]) -> None:
    assert found(route(kind, version, *refs, filters=filters)) == expected


def test_a_backend_level_mirror_is_checked_too() -> None:
    ref = {"name": "ratings", "filters": [{"type": "RequestMirror", "requestMirror": {
        "backendRef": {"name": "x", "namespace": "other"}}}]}
    assert found(route("HTTPRoute", "v1", ref)) == [
        (ROUTE, f"{B0}.filters[0].requestMirror.backendRef.namespace")]


def test_routes_to_local_services_need_no_registry() -> None:
    context = Context(policy=POLICY, registry=None)
    local = admit(route("HTTPRoute", "v1", {"name": "ratings"}), stage=Stage.VALIDATE,
                  context=context)
    external = admit(route("HTTPRoute", "v1", hostname("api.frankfurter.app")),
                     stage=Stage.VALIDATE, context=context)
    assert (local.allowed, external.code) == (True, 500)


# RequestAuthentication.

JWKS = "requestauthentication.jwks-uri"


def jwt(*rules: dict[str, Any], version: str = "v1") -> Any:
    return make_request(f"security.istio.io/{version}", "RequestAuthentication",
                        {"spec": {"jwtRules": list(rules)}})


AUTHS = [
    ("an approved jwksUri", {"issuer": "x", "jwksUri": "https://login.example.com/keys"}, []),
    ("inline keys", {"issuer": "https://anything.example.net", "jwks": "{\"keys\": []}"}, []),
    ("a Service of the namespace", {"issuer": "x",
                                    "jwksUri": "http://keycloak.agents.svc.cluster.local/certs"},
     []),
    ("a Service of another namespace",
     {"issuer": "x", "jwksUri": "http://keycloak.auth.svc.cluster.local/certs"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("a short Service name (istiod resolves it in its own namespace)",
     {"issuer": "x", "jwksUri": "http://keycloak/certs"}, [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("a jwksUri to an unapproved host",
     {"issuer": "x", "jwksUri": "https://attacker.example.net/k"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("an approved host on an unapproved port",
     {"issuer": "x", "jwksUri": "https://login.example.com:8443/keys"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("an approved host over plain http", {"issuer": "x", "jwksUri": "http://login.example.com/k"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("the metadata address", {"issuer": "x", "jwksUri": "http://169.254.169.254/latest"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("a pod name that resolves to any IP",
     {"issuer": "x", "jwksUri": "https://1-2-3-4.agents.pod.cluster.local/k"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
    ("discovery from an approved issuer", {"issuer": "https://login.example.com"}, []),
    ("discovery from an unapproved issuer", {"issuer": "https://attacker.example.net"},
     [(JWKS, "spec.jwtRules[0].issuer")]),
    ("a file URL", {"issuer": "x", "jwksUri": "file:///etc/passwd"},
     [(JWKS, "spec.jwtRules[0].jwksUri")]),
]


@pytest.mark.parametrize("version", ["v1", "v1beta1"])
@pytest.mark.parametrize(("case", "rule", "expected"), AUTHS, ids=[c[0] for c in AUTHS])
def test_request_authentication_fetches(version: str, case: str, rule: dict[str, Any],
                                        expected: list[tuple[str, str]]) -> None:
    assert found(jwt(rule, version=version)) == expected


# The root namespace.

def root(api_version: str, kind: str, spec: dict[str, Any]) -> Any:
    return make_request(api_version, kind, {"spec": spec}, namespace=ROOT)


PASSTHROUGH = {"configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "ADD"}}]}
GATEWAY = {"workloadSelector": {"labels": {"istio": "egressgateway"}}}
ROOTS = [
    ("an EnvoyFilter for every proxy", root("networking.istio.io/v1alpha3", "EnvoyFilter",
                                            PASSTHROUGH),
     [("rootnamespace.envoyfilter", "spec.workloadSelector")]),
    ("an EnvoyFilter selecting every mesh pod by its tlsMode label",
     root("networking.istio.io/v1alpha3", "EnvoyFilter", {
         **PASSTHROUGH, "workloadSelector": {"labels": {"security.istio.io/tlsMode": "istio"}}}),
     [("rootnamespace.envoyfilter", "spec.workloadSelector")]),
    ("an EnvoyFilter for the egress gateway", root("networking.istio.io/v1alpha3",
                                                   "EnvoyFilter", {**PASSTHROUGH, **GATEWAY}), []),
    ("a WasmPlugin for every proxy", root("extensions.istio.io/v1alpha1", "WasmPlugin", WASM),
     [("rootnamespace.wasmplugin", "spec.selector")]),
    ("a WasmPlugin selecting agent pods by our label",
     root("extensions.istio.io/v1alpha1", "WasmPlugin", {
         **WASM, "selector": {"matchLabels": {"agentsandbox.io/skill": "x"}}}),
     [("rootnamespace.wasmplugin", "spec.selector")]),
    ("a WasmPlugin attached to a Gateway", root("extensions.istio.io/v1alpha1", "WasmPlugin", {
        **WASM, "targetRefs": [{"kind": "Gateway", "name": "gw"}]}), []),
    ("a mesh-wide Sidecar with ALLOW_ANY", root("networking.istio.io/v1", "Sidecar", {
        "outboundTrafficPolicy": {"mode": "ALLOW_ANY"}}),
     [("rootnamespace.sidecar", "spec.outboundTrafficPolicy.mode")]),
    ("a mesh-wide Sidecar importing */*", root("networking.istio.io/v1", "Sidecar", {
        "egress": [{"hosts": ["*/*"]}]}), [("rootnamespace.sidecar", "spec.egress[0].hosts[0]")]),
    ("a mesh-wide Sidecar importing ./* and istio-system/*", root(
        "networking.istio.io/v1", "Sidecar", {"egress": [{"hosts": ["./*", "istio-system/*"]}],
                                              "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"}}),
     []),
    ("a selected Sidecar with ALLOW_ANY (the root namespace's own workloads)", root(
        "networking.istio.io/v1", "Sidecar", {**GATEWAY, "outboundTrafficPolicy": {
            "mode": "ALLOW_ANY"}}), []),
    ("a mesh-wide ProxyConfig with concurrency", root("networking.istio.io/v1beta1",
                                                      "ProxyConfig", {"concurrency": 2}), []),
    ("a mesh-wide ProxyConfig with environment variables", root(
        "networking.istio.io/v1beta1", "ProxyConfig", {"environmentVariables": {"A": "b"}}),
     [("rootnamespace.proxyconfig", "spec.environmentVariables")]),
]


@pytest.mark.parametrize(("case", "request_", "expected"), ROOTS, ids=[c[0] for c in ROOTS])
def test_root_namespace_objects(case: str, request_: Any,
                                expected: list[tuple[str, str]]) -> None:
    assert found(request_, registry=None) == expected


def test_the_root_namespace_is_a_policy_field_with_a_mode_per_rule() -> None:
    moved = parse_policy("istio:\n  rootNamespace: mesh-root\n", source="moved")
    in_istio_system = root("networking.istio.io/v1alpha3", "EnvoyFilter", PASSTHROUGH)
    elsewhere = make_request("networking.istio.io/v1alpha3", "EnvoyFilter", {"spec": PASSTHROUGH},
                             namespace="mesh-root")
    # istio-system is then an ordinary namespace (only agent namespaces are sent there).
    assert found(in_istio_system, policy=moved) == [("envoyfilter.forbidden", "spec")]
    assert found(elsewhere, policy=moved) == [("rootnamespace.envoyfilter",
                                                "spec.workloadSelector")]
    warn = parse_policy("rules:\n  rootnamespace.envoyfilter: warn\n", source="warn")
    violations, outcome = decide(in_istio_system, policy=warn, registry=None)
    assert outcome.allowed
    assert violations
    assert any("[rootnamespace.envoyfilter]" in w for w in outcome.review["response"]["warnings"])


# Warn-mode namespaces: what they export beyond themselves is judged in enforce mode.

def serviceentry(export_to: list[str] | None, host: str = "api.frankfurter.app") -> Any:
    spec: dict[str, Any] = {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}
    if export_to is not None:
        spec["exportTo"] = export_to
    return make_request("networking.istio.io/v1", "ServiceEntry", {"spec": spec})


@pytest.mark.parametrize(("export_to", "allowed"), [
    (["."], True), (["agents"], True), (None, False), (["*"], False), (["prod"], False),
    ([".", "prod"], False)])
def test_a_warn_namespace_exporting_beyond_itself_is_judged_in_enforce_mode(
        export_to: list[str] | None, allowed: bool) -> None:
    contexts = Engine(policy=POLICY, registry=REGISTRY).contexts
    outcome = admit(serviceentry(export_to), stage=Stage.VALIDATE, context=contexts.warn)
    assert outcome.allowed is allowed
    warnings = outcome.review["response"].get("warnings") or []
    assert any("judged in enforce mode" in w for w in warnings) is (export_to != ["."]
                                                                     and export_to != ["agents"])


def test_a_warn_namespace_serviceentry_without_export_to_is_made_safe_as_if_enforced() -> None:
    contexts = Engine(policy=POLICY, registry=REGISTRY).contexts
    request = serviceentry(None)
    mutated = admit(request, stage=Stage.MUTATE, context=contexts.warn)
    assert mutated.allowed
    assert mutated.mutated == ("exportTo",)
    obj = jsonpatch.apply_patch(request.object, list(mutated.patch))
    assert obj["spec"]["exportTo"] == ["."]
    final = make_request("networking.istio.io/v1", "ServiceEntry", {"spec": obj["spec"]})
    assert admit(final, stage=Stage.VALIDATE, context=contexts.warn).allowed


def test_what_stays_in_a_warn_namespace_still_only_warns() -> None:
    contexts = Engine(policy=POLICY, registry=REGISTRY).contexts
    outcome = admit(serviceentry(["."], host="unapproved.example.net"), stage=Stage.VALIDATE,
                    context=contexts.warn)
    assert outcome.allowed
    assert outcome.rules == ("serviceentry.host-not-approved",)
    exported = admit(serviceentry(["*"], host="shared.example.org"), stage=Stage.VALIDATE,
                     context=contexts.warn)
    assert exported.allowed  # approved for mesh-wide export: nothing to refuse
    vs = make_request("networking.istio.io/v1", "VirtualService", {"spec": {
        "hosts": ["ratings"], "http": [{"route": [{"destination": {"host": "ratings"}}]}]}})
    refused = admit(vs, stage=Stage.VALIDATE, context=contexts.warn)
    assert (refused.allowed, refused.rules) == (False, ("virtualservice.export-to",))


# check and audit.

def test_check_covers_the_new_kinds_and_the_root_namespace(tmp_path: Path) -> None:
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "agents", "labels": {"agentsandbox.io/enforce": "true"}}}
    objects = [namespace,
               make_request("extensions.istio.io/v1alpha1", "WasmPlugin", {"spec": WASM}).object,
               route("HTTPRoute", "v1", {"name": "db", "namespace": "prod"}).object,
               root("networking.istio.io/v1alpha3", "EnvoyFilter", PASSTHROUGH).object,
               make_request("networking.istio.io/v1alpha3", "EnvoyFilter", {"spec": PASSTHROUGH},
                            namespace="web").object]
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all(objects))
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(manifest),
                             "-o", "json"], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1, result.stderr
    verdicts = [(r["kind"], r["namespace"], r["verdict"], r["rules"])
                for r in json.loads(result.stdout)["results"] if r["kind"] != "Namespace"]
    assert verdicts == [
        ("WasmPlugin", "agents", "refused", ["wasmplugin.forbidden"]),
        ("HTTPRoute", "agents", "refused", [ROUTE]),
        ("EnvoyFilter", ROOT, "refused", ["rootnamespace.envoyfilter"]),
        ("EnvoyFilter", "web", "skipped", []),
    ]


def test_audit_lists_the_new_kinds_and_the_root_namespace() -> None:
    api = FakeApiClient({
        "/api/v1/namespaces": agent_namespaces("agents"),
        "/apis/extensions.istio.io/v1alpha1/wasmplugins": listed(
            "extensions.istio.io/v1alpha1", "WasmPlugin", {"spec": WASM}, "agents", ROOT, "web"),
        "/apis/gateway.networking.k8s.io/v1/httproutes": listed(
            "gateway.networking.k8s.io/v1", "HTTPRoute",
            {"spec": {"rules": [{"backendRefs": [{"name": "x", "namespace": "prod"}]}]}},
            "agents", ROOT),
        "/apis/security.istio.io/v1/requestauthentications": listed(
            "security.istio.io/v1", "RequestAuthentication",
            {"spec": {"jwtRules": [{"issuer": "https://attacker.example.net"}]}}, "agents"),
    })
    contexts = Contexts.build(policy=POLICY, registry=REGISTRY, registry_problem="none")
    results = {r.name: r for r in audit_cluster(KubernetesSource(api), contexts=contexts)}
    assert {name: r.rules for name, r in results.items()} == {
        "wasmplugin-agents": ("wasmplugin.forbidden",),
        f"wasmplugin-{ROOT}": ("rootnamespace.wasmplugin",),
        "httproute-agents": (ROUTE,),
        "requestauthentication-agents": (JWKS,),
    }
    assert all(r.decision is Decision.REFUSED for r in results.values())
