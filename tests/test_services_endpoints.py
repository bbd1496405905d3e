"""Services, Endpoints and EndpointSlices in agent namespaces: no way out past the registry.

Tables per kind and rule, asserting (rule, path) pairs through the handler and the verdict
through ``admit``; the captured reviews (a real API server with its controller-manager) as
golden cases; controller-written slices; modes; failing closed without a registry; ``check``
and ``audit`` (the latter over ``FakeApiClient``, a fake only at the HTTP boundary).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.conftest import load_review
from tests.reviewkit import agent_namespaces, decide, listed, make_request
from tests.test_audit import FakeApiClient
from webhook.admission.engine import Engine
from webhook.admission.seam import Stage, admit
from webhook.cluster.listing import KubernetesSource
from webhook.config.policy import load_policy, parse_policy
from webhook.core.errors import ConfigError
from webhook.core.review import review_from_document
from webhook.egress.registry import parse_registry
from webhook.policies.context import Context
from webhook.tools.audit import audit_cluster
from webhook.tools.offline import Contexts, Decision

POLICY = load_policy(None)
REGISTRY_TEXT = """
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocols: [TLS, HTTPS]}, {number: 80, protocol: HTTP}]
  namespaces: [agents]
- host: partner-api.example.net
  ports: [{number: 8443, protocol: TLS}]
  namespaces: [agents]
  addresses: [203.0.113.10]
- host: "*.googleapis.com"
  ports: [443]
  protocols: [TLS, HTTPS]
- host: storage.googleapis.com
  ports: [443]
  protocols: [TLS, HTTPS]
  namespaces: [data-pipeline]
- host: httpbin.org
  ports: [{number: 80, protocol: HTTP}]
  namespaces: [tools]
deny:
- paste.example.com
"""
REGISTRY = parse_registry(REGISTRY_TEXT, source="test registry")
EXT = "service.external-name"
IPS = "service.external-ips"
ADDR = "endpoints.address-not-approved"
KCM = "system:kube-controller-manager"


def service(spec: dict[str, Any], **kwargs: Any) -> Any:
    return make_request("v1", "Service", {"spec": spec}, **kwargs)


def external(name: str, *ports: dict[str, Any]) -> Any:
    spec: dict[str, Any] = {"type": "ExternalName", "externalName": name}
    if ports:
        spec["ports"] = list(ports)
    return service(spec)


HTTPS = {"name": "https", "port": 443, "protocol": "TCP"}
SERVICES = [
    ("an approved ExternalName on its approved port", external("api.frankfurter.app", HTTPS),
     []),
    ("an approved ExternalName without ports", external("api.frankfurter.app"), []),
    ("a tls- port name", external("api.frankfurter.app", {"name": "tls-api", "port": 443}), []),
    ("appProtocol http on 80", external("api.frankfurter.app",
                                        {"name": "web", "port": 80, "appProtocol": "http"}), []),
    ("two approved ports", external("api.frankfurter.app", HTTPS, {"name": "http", "port": 80}),
     []),
    ("a name under an approved suffix", external("bigquery.googleapis.com", HTTPS), []),
    ("an IP address the API server accepts as a DNS name", external("93.184.216.34", HTTPS),
     [(EXT, "spec.externalName")]),
    ("an IPv4 address in integer notation", external("2130706433", HTTPS),
     [(EXT, "spec.externalName")]),
    ("a metadata name", external("metadata.google.internal", HTTPS),
     [(EXT, "spec.externalName")]),
    ("a cluster name", external("kubernetes.default.svc.cluster.local", HTTPS),
     [(EXT, "spec.externalName")]),
    ("a host not in the registry", external("httpbin.org", {"name": "http", "port": 80}),
     [(EXT, "spec.externalName")]),
    ("a denied host", external("paste.example.com", HTTPS), [(EXT, "spec.externalName")]),
    ("a bucket under an exact entry that narrows the suffix",
     external("attacker-bucket.storage.googleapis.com", HTTPS), [(EXT, "spec.externalName")]),
    ("an approved host on a port not approved",
     external("api.frankfurter.app", {"name": "https-alt", "port": 8443}),
     [(EXT, "spec.ports[0]")]),
    ("an opaque (unnamed) port", external("api.frankfurter.app", {"port": 443}),
     [(EXT, "spec.ports[0]")]),
    ("a UDP port", external("api.frankfurter.app", {"name": "https", "port": 443,
                                                   "protocol": "UDP"}),
     [(EXT, "spec.ports[0]")]),
    ("the second of two ports opaque", external("api.frankfurter.app", HTTPS, {"port": 22}),
     [(EXT, "spec.ports[1]")]),
    ("an ordinary Service with a selector",
     service({"selector": {"app": "x"}, "ports": [HTTPS]}), []),
    ("externalIPs at an address nobody pinned",
     service({"externalIPs": ["203.0.113.99"], "ports": [HTTPS]}), [(IPS, "spec.externalIPs[0]")]),
    ("externalIPs pinned for an approved host on its port",
     service({"externalIPs": ["203.0.113.10"], "ports": [{"name": "tls", "port": 8443}]}), []),
    ("externalIPs pinned, on another port",
     service({"externalIPs": ["203.0.113.10"], "ports": [HTTPS]}), [(IPS, "spec.externalIPs[0]")]),
    ("externalIPs in the Service range", service({"externalIPs": ["10.96.5.5"], "ports": [HTTPS]}),
     []),
    ("externalIPs at the metadata address",
     service({"externalIPs": ["10.96.0.1", "169.254.169.254"], "ports": [HTTPS]}),
     [(IPS, "spec.externalIPs[1]")]),
    ("a LoadBalancer asking for an outside loadBalancerIP",
     service({"type": "LoadBalancer", "loadBalancerIP": "203.0.113.99", "ports": [HTTPS]}),
     [(IPS, "spec.loadBalancerIP")]),
    ("a LoadBalancer without loadBalancerIP", service({"type": "LoadBalancer", "ports": [HTTPS]}),
     []),
]


@pytest.mark.parametrize(("case", "request_", "expected"), SERVICES, ids=[c[0] for c in SERVICES])
def test_service_rules(case: str, request_: Any, expected: list[tuple[str, str]]) -> None:
    assert decide(request_, policy=POLICY, registry=REGISTRY)[0] == expected


def endpoints(*addresses: str, port: int = 443, not_ready: tuple[str, ...] = (),
              **kwargs: Any) -> Any:
    subset: dict[str, Any] = {"addresses": [{"ip": a} for a in addresses],
                              "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
    if not_ready:
        subset["notReadyAddresses"] = [{"ip": a} for a in not_ready]
    return make_request("v1", "Endpoints", {"subsets": [subset]}, **kwargs)


def slice_of(*addresses: str, address_type: str = "IPv4", port: int = 443,
             port_name: str = "https", **kwargs: Any) -> Any:
    body = {"addressType": address_type,
            "endpoints": [{"addresses": [a], "conditions": {}} for a in addresses],
            "ports": [{"name": port_name, "protocol": "TCP", "port": port}]}
    return make_request("discovery.k8s.io/v1", "EndpointSlice", body, **kwargs)


E0 = "subsets[0].addresses[0].ip"
ENDPOINTS = [
    # Hand-made (user "alice"): in-cluster addresses reach any namespace's pod or ClusterIP.
    ("hand-made pod addresses", endpoints("10.244.1.5", "10.244.2.7"),
     [(ADDR, E0), (ADDR, "subsets[0].addresses[1].ip")]),
    ("a hand-made ClusterIP", endpoints("10.96.0.10"), [(ADDR, E0)]),
    ("pod addresses the endpoints controller wrote",
     endpoints("10.244.1.5", "10.244.2.7", username=KCM), []),
    ("pod addresses the endpoint controller's service account wrote",
     endpoints("10.244.1.5", username="system:serviceaccount:kube-system:endpoint-controller"),
     []),
    ("an address outside the cluster", endpoints("203.0.113.99"), [(ADDR, E0)]),
    ("an outside address among pod addresses",
     endpoints("10.244.1.5", "203.0.113.99", username="bob"),
     [(ADDR, E0), (ADDR, "subsets[0].addresses[1].ip")]),
    ("an outside address not ready yet", endpoints("203.0.113.10", port=8443,
                                                   not_ready=("198.51.100.7",)),
     [(ADDR, "subsets[0].notReadyAddresses[0].ip")]),
    ("loopback", endpoints("127.0.0.1"), [(ADDR, E0)]),
    ("IPv6 loopback", endpoints("::1"), [(ADDR, E0)]),
    ("the metadata address", endpoints("169.254.169.254"), [(ADDR, E0)]),
    ("AWS's IPv6 metadata address", endpoints("fd00:ec2::254"), [(ADDR, E0)]),
    ("a private address outside the cluster's ranges", endpoints("10.0.0.5"), [(ADDR, E0)]),
    ("not an address", endpoints("api.frankfurter.app"), [(ADDR, E0)]),
    ("a pinned address on its approved port", endpoints("203.0.113.10", port=8443), []),
    ("a pinned address on another port", endpoints("203.0.113.10", port=443), [(ADDR, E0)]),
    ("a pinned address from a namespace the host is not approved for",
     endpoints("203.0.113.10", port=8443, namespace="tools"), [(ADDR, E0)]),
]
S0 = "endpoints[0].addresses[0]"
SLICES = [
    ("hand-made pod addresses", slice_of("10.244.1.5"), [(ADDR, S0)]),
    ("a hand-made ClusterIP", slice_of("10.96.55.5"), [(ADDR, S0)]),
    ("pod addresses written as the controller-manager but unlabelled",
     slice_of("10.244.1.5", username=KCM), [(ADDR, S0)]),
    ("an address outside the cluster", slice_of("203.0.113.99"), [(ADDR, S0)]),
    ("IPv6 outside the cluster", slice_of("2001:db8::1", address_type="IPv6"), [(ADDR, S0)]),
    ("a pinned address", slice_of("203.0.113.10", port=8443), []),
    ("an FQDN the registry approves", slice_of("api.frankfurter.app", address_type="FQDN"), []),
    ("an FQDN the registry does not approve", slice_of("httpbin.org", address_type="FQDN"),
     [(ADDR, S0)]),
    ("an FQDN that is an IP", slice_of("93.184.216.34", address_type="FQDN"), [(ADDR, S0)]),
    ("an approved FQDN on an opaque port",
     slice_of("api.frankfurter.app", address_type="FQDN", port_name="raw"), [(ADDR, S0)]),
]


@pytest.mark.parametrize(("case", "request_", "expected"), ENDPOINTS + SLICES,
                         ids=[f"endpoints: {c[0]}" for c in ENDPOINTS]
                         + [f"slice: {c[0]}" for c in SLICES])
def test_endpoint_address_rules(case: str, request_: Any, expected: list[tuple[str, str]]) -> None:
    assert decide(request_, policy=POLICY, registry=REGISTRY)[0] == expected


CONTROLLER_SLICE = {"labels": {"endpointslice.kubernetes.io/managed-by":
                               "endpointslice-controller.k8s.io",
                               "kubernetes.io/service-name": "selected"},
                    "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                         "name": "selected", "uid": "u", "controller": True}]}
MIRROR_SLICE = {"labels": {"endpointslice.kubernetes.io/managed-by":
                           "endpointslicemirroring-controller.k8s.io",
                           "kubernetes.io/service-name": "hand-made"},
                "ownerReferences": [{"apiVersion": "v1", "kind": "Endpoints",
                                     "name": "hand-made", "uid": "u", "controller": True}]}
WRITERS = [
    ("the slice controller's own slice, written as the controller-manager",
     slice_of("192.0.2.50", username=KCM, metadata=CONTROLLER_SLICE), []),
    ("the slice controller's own slice, per-controller credentials",
     slice_of("192.0.2.50", metadata=CONTROLLER_SLICE,
              username="system:serviceaccount:kube-system:endpointslice-controller"), []),
    ("the same labels forged by a user", slice_of("192.0.2.50", metadata=CONTROLLER_SLICE),
     [(ADDR, S0)]),
    ("a mirror of a hand-made Endpoints, written as the controller-manager",
     slice_of("192.0.2.50", username=KCM, metadata=MIRROR_SLICE), [(ADDR, S0)]),
    ("a mirror written by the mirroring controller's own account",
     slice_of("192.0.2.50", metadata=MIRROR_SLICE,
              username="system:serviceaccount:kube-system:endpointslicemirroring-controller"),
     [(ADDR, S0)]),
    ("a slice controller label with an Endpoints owner",
     slice_of("192.0.2.50", username=KCM, metadata={**CONTROLLER_SLICE, "ownerReferences":
                                                    MIRROR_SLICE["ownerReferences"]}),
     [(ADDR, S0)]),
    ("Endpoints written by the endpoint controller",
     endpoints("192.0.2.50", username="system:serviceaccount:kube-system:endpoint-controller"),
     []),
]


@pytest.mark.parametrize(("case", "request_", "expected"), WRITERS, ids=[c[0] for c in WRITERS])
def test_only_the_endpoint_controllers_own_objects_are_taken_on_trust(
        case: str, request_: Any, expected: list[tuple[str, str]]) -> None:
    assert decide(request_, policy=POLICY, registry=REGISTRY)[0] == expected


GOLDEN = [("service-externalname-create.json", False, (EXT,)),
          ("service-selectorless-create.json", True, ()),
          ("endpoints-handmade-create.json", False, (ADDR,)),
          ("endpointslice-mirrored-create.json", False, (ADDR,)),
          ("endpointslice-handmade-create.json", False, (ADDR,)),
          ("endpointslice-controller-create.json", True, ()),
          ("endpoints-controller-create.json", True, ())]


@pytest.mark.parametrize(("fixture", "allowed", "rules"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_captured_reviews_get_the_expected_verdict(fixture: str, allowed: bool,
                                                   rules: tuple[str, ...]) -> None:
    request = review_from_document(load_review(fixture))
    outcome = admit(request, stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=REGISTRY))
    assert (outcome.allowed, outcome.rules) == (allowed, rules)
    assert outcome.review["response"]["uid"] == request.uid


def test_the_captured_externalname_is_admitted_once_the_registry_approves_it() -> None:
    request = review_from_document(load_review("service-externalname-create.json"))
    approved = parse_registry("entries:\n- host: httpbin.org\n  ports: [{number: 80, protocol: "
                              "HTTP}]\n  namespaces: [cap-agents]\n", source="approves httpbin")
    assert decide(request, policy=POLICY, registry=approved)[0] == []
    on_other_port = parse_registry("entries:\n- host: httpbin.org\n  namespaces: [cap-agents]\n",
                                   source="443 only")
    assert decide(request, policy=POLICY, registry=on_other_port)[0] == [(EXT, "spec.ports[0]")]


def test_the_mirrored_slice_carries_the_hand_made_address_and_is_judged_by_it() -> None:
    document = load_review("endpointslice-mirrored-create.json")
    assert document["request"]["userInfo"]["username"] == KCM
    context = Context(policy=POLICY, registry=REGISTRY)
    assert not admit(review_from_document(document), stage=Stage.VALIDATE,
                     context=context).allowed
    # A mirror of a hand-made pod address is refused too: the mirroring controller copies it,
    # unless the policy allows that range for hand-made endpoints.
    inside = copy.deepcopy(document)
    inside["request"]["object"]["endpoints"][0]["addresses"] = ["10.244.3.3"]
    assert not admit(review_from_document(inside), stage=Stage.VALIDATE,
                     context=context).allowed
    allowed = parse_policy("network:\n  handMadeEndpointCIDRs: [10.244.3.0/24]\n", source="t")
    assert admit(review_from_document(inside), stage=Stage.VALIDATE,
                 context=Context(policy=allowed, registry=REGISTRY)).allowed


def test_hand_made_in_cluster_addresses_pass_only_where_the_policy_allows() -> None:
    allowed = parse_policy("network:\n  handMadeEndpointCIDRs: [10.244.3.0/24]\n",
                           source="hand-made")
    assert decide(endpoints("10.244.3.7"), policy=allowed, registry=REGISTRY)[0] == []
    assert decide(endpoints("10.244.4.7"), policy=allowed, registry=REGISTRY)[0] == [(ADDR, E0)]
    (_, outcome) = decide(endpoints("10.96.55.5"), policy=POLICY, registry=REGISTRY)
    message = outcome.review["response"]["status"]["message"]
    assert "no endpoint controller wrote this object" in message
    assert "network.handMadeEndpointCIDRs" in message


def test_refusals_say_what_to_change() -> None:
    (_, outcome) = decide(external("93.184.216.34", HTTPS), policy=POLICY, registry=REGISTRY)
    message = outcome.review["response"]["status"]["message"]
    assert "[service.external-name] spec.externalName:" in message
    assert "IPv4 address" in message
    assert "ServiceEntry" in message
    (_, outcome) = decide(endpoints("203.0.113.99"), policy=POLICY, registry=REGISTRY)
    message = outcome.review["response"]["status"]["message"]
    assert "10.244.0.0/16" in message
    assert "network.podCIDRs" in message
    assert "addresses:" in message
    assert "selector" in message
    (_, outcome) = decide(external("attacker-bucket.storage.googleapis.com", HTTPS),
                          policy=POLICY, registry=REGISTRY)
    assert "subdomains: inherit" in outcome.review["response"]["status"]["message"]


def test_the_cluster_ranges_are_policy_fields() -> None:
    policy = parse_policy("network:\n  podCIDRs: [192.168.0.0/16]\n  serviceCIDRs: "
                          "['fd00:10::/108']\n", source="ranges")
    assert decide(endpoints("192.168.4.4", username=KCM), policy=policy,
                  registry=REGISTRY)[0] == []
    assert decide(endpoints("fd00:10::5", username=KCM), policy=policy,
                  registry=REGISTRY)[0] == []
    assert decide(service({"externalIPs": ["10.244.1.5"], "ports": [HTTPS]}), policy=policy,
                  registry=REGISTRY)[0] == [(IPS, "spec.externalIPs[0]")]
    # Never loopback or metadata, whatever the ranges say.
    wide = parse_policy("network:\n  podCIDRs: [0.0.0.0/0]\n", source="too wide")
    assert decide(endpoints("169.254.169.254"), policy=wide, registry=REGISTRY)[0] == [(ADDR, E0)]
    with pytest.raises(ConfigError, match="host bits"):
        parse_policy("network:\n  podCIDRs: [10.244.0.1/16]\n", source="host bits")


def test_without_a_registry_outside_addresses_fail_closed_and_pod_addresses_pass() -> None:
    context = Context(policy=POLICY, registry=None)
    for request in (external("api.frankfurter.app", HTTPS), endpoints("203.0.113.10")):
        outcome = admit(request, stage=Stage.VALIDATE, context=context)
        assert (outcome.allowed, outcome.code) == (False, 500)
    for request in (endpoints("10.244.1.5", username=KCM), endpoints("127.0.0.1")):
        outcome = admit(request, stage=Stage.VALIDATE, context=context)
        assert outcome.code != 500  # decided without the registry


@pytest.mark.parametrize("rule", [EXT, IPS, ADDR])
def test_warn_and_off_modes(rule: str) -> None:
    request = {EXT: external("httpbin.org", HTTPS),
               IPS: service({"externalIPs": ["203.0.113.99"]}),
               ADDR: endpoints("203.0.113.99")}[rule]
    warn = parse_policy(f"rules:\n  {rule}: warn\n", source="warn")
    violations, outcome = decide(request, policy=warn, registry=REGISTRY)
    assert outcome.allowed
    assert [r for r, _ in violations] == [rule]
    assert any(f"[{rule}]" in w for w in outcome.review["response"]["warnings"])
    off = parse_policy(f"rules:\n  {rule}: 'off'\n", source="off")
    violations, outcome = decide(request, policy=off, registry=None)  # no registry needed
    assert (violations, outcome.allowed) == ([], True)


def test_check_agrees_with_the_server_and_skips_other_namespaces(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text(REGISTRY_TEXT)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "agents", "labels": {"agentsandbox.io/enforce": "true"}}}
    bad = external("httpbin.org", HTTPS).object
    good = external("api.frankfurter.app", HTTPS).object
    good["metadata"]["name"] = "good"
    elsewhere = json.loads(json.dumps(bad))
    elsewhere["metadata"]["namespace"] = "web"
    manifest = tmp_path / "objects.yaml"
    manifest.write_text(yaml.safe_dump_all([namespace, bad, good, elsewhere]))
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(manifest),
                             "--registry", str(registry), "-o", "json"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1, result.stderr
    verdicts = [(r["verdict"], r["rules"]) for r in json.loads(result.stdout)["results"]
                if r["kind"] == "Service"]
    assert verdicts == [("refused", [EXT]), ("admitted", []), ("skipped", [])]


def test_audit_lists_services_endpoints_and_slices_in_agent_namespaces() -> None:
    slices = listed("discovery.k8s.io/v1", "EndpointSlice", {
        "addressType": "IPv4", "endpoints": [{"addresses": ["203.0.113.99"]}],
        "ports": [{"port": 443}]}, "agents", "web")
    api = FakeApiClient({
        "/api/v1/namespaces": agent_namespaces("agents"),
        "/api/v1/namespaces/agents/services": client.V1ServiceList(items=[client.V1Service(
            metadata=client.V1ObjectMeta(name="ext", namespace="agents"),
            spec=client.V1ServiceSpec(type="ExternalName", external_name="httpbin.org"))]),
        "/api/v1/namespaces/agents/endpoints": client.V1EndpointsList(items=[client.V1Endpoints(
            metadata=client.V1ObjectMeta(name="hand", namespace="agents"),
            subsets=[client.V1EndpointSubset(addresses=[client.V1EndpointAddress(
                ip="198.51.100.1")])])]),
        "/apis/discovery.k8s.io/v1/endpointslices": slices,
    })
    contexts = Contexts.build(policy=POLICY, registry=REGISTRY, registry_problem="none")
    results = {r.name: r for r in audit_cluster(KubernetesSource(api), contexts=contexts)}
    assert {name: r.rules for name, r in results.items()} == {
        "ext": (EXT,), "hand": (ADDR,), "endpointslice-agents": (ADDR,)}
    assert all(r.decision is Decision.REFUSED for r in results.values())


def test_in_a_warn_namespace_services_and_endpoints_are_judged_as_exported() -> None:
    # Istio exports a Service to every namespace unless networking.istio.io/exportTo narrows
    # it; an endpoint cannot say how its Service is exported.
    contexts = Engine(policy=POLICY, registry=REGISTRY).contexts
    exported = external("httpbin.org", HTTPS)
    local = make_request("v1", "Service", {"spec": exported.object["spec"]}, metadata={
        "annotations": {"networking.istio.io/exportTo": "."}})
    outcomes = [admit(r, stage=Stage.VALIDATE, context=contexts.warn)
                for r in (exported, local, endpoints("203.0.113.99"),
                          endpoints("10.244.1.5", username=KCM))]
    assert [(o.allowed, o.rules) for o in outcomes] == [
        (False, (EXT,)), (True, (EXT,)), (False, (ADDR,)), (True, ())]
    message = outcomes[0].review["response"]["status"]["message"]
    assert "[service.external-name]" in message
    assert any("judged in enforce mode" in w for w in outcomes[0].review["response"]["warnings"])
