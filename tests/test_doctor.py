"""``doctor`` against a fake kube-apiserver: a local HTTP server answering the client's GETs.

The only fake is the API server itself: ``FakeApiServer`` (``http.server`` on 127.0.0.1)
answers each path with JSON built from the kubernetes client's own models
(``V1Namespace``, ``V1MutatingWebhookConfiguration``, ``V1RuntimeClass``, ``V1EndpointSlice``,
...) via ``sanitize_for_serialization``, and 404 ``Status`` for anything else. Everything
above it is real: a real ``ApiClient`` and urllib3 connection, the client's API classes
building the URLs, ``KubernetesInspector`` reading the raw JSON, the pure checks, real
certificates from ``webhook.certs.pki``. The server records every request, so the tests can
also assert that doctor only ever sends GETs.
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

import pytest
from kubernetes import client

from webhook.certs.pki import encode_certificate, generate_ca, issue_serving_certificate
from webhook.cluster.inspection import KubernetesInspector
from webhook.tools.doctor.command import run_doctor

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
SYSTEM = "agent-sandbox-system"
ENFORCE = "agentsandbox.io/enforce"
SERIALIZE = client.ApiClient().sanitize_for_serialization


class FakeApiServer:
    """Serves ``routes`` (path -> JSON-able object) over plain HTTP; records every request."""

    def __init__(self, routes: dict[str, Any]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            do_PUT = do_PATCH = do_DELETE = do_POST

            def _answer(self) -> None:
                outer.requests.append((self.command, self.path))
                path = urlparse(self.path).path
                if self.command == "GET" and path in outer.routes:
                    status, body = 200, SERIALIZE(outer.routes[path])
                else:
                    status, body = 404, {"kind": "Status", "apiVersion": "v1",
                                         "status": "Failure", "reason": "NotFound",
                                         "code": 404}
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def inspector(self) -> KubernetesInspector:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        return KubernetesInspector(client.ApiClient(configuration))


@pytest.fixture
def pki() -> dict[str, Any]:
    ca, ca_key = generate_ca("agent-sandbox-webhook CA", valid_for=timedelta(days=1800),
                             now=NOW - timedelta(days=1))
    serving, _key = issue_serving_certificate(
        ca, ca_key, dns_names=["agent-sandbox-webhook.agent-sandbox-system.svc"],
        ip_addresses=[], valid_for=timedelta(days=30), now=NOW - timedelta(days=1))
    other, _ = generate_ca("someone else", valid_for=timedelta(days=10), now=NOW)
    return {"ca": encode_certificate(ca), "serving": encode_certificate(serving),
            "other": encode_certificate(other)}


def _meta(name: str, namespace: str | None = None, **extra: Any) -> client.V1ObjectMeta:
    return client.V1ObjectMeta(name=name, namespace=namespace, **extra)


def _client_config(ca_pem: bytes, path: str) -> Any:
    return client.AdmissionregistrationV1WebhookClientConfig(
        ca_bundle=base64.b64encode(ca_pem).decode(),
        service=client.AdmissionregistrationV1ServiceReference(
            name="agent-sandbox-webhook", namespace=SYSTEM, path=path, port=443))


def _slice(namespace: str, service: str, *addresses: str, ready: bool = True) -> Any:
    return client.V1EndpointSlice(
        address_type="IPv4",
        metadata=_meta(f"{service}-abcde", namespace,
                       labels={"kubernetes.io/service-name": service}),
        endpoints=[client.V1Endpoint(addresses=[address],
                                     conditions=client.V1EndpointConditions(ready=ready))
                   for address in addresses])


def _sidecar(name: str, namespace: str, mode: str = "REGISTRY_ONLY") -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"outboundTrafficPolicy": {"mode": mode}}}


def healthy_cluster(pki: dict[str, Any]) -> dict[str, Any]:
    """Every prerequisite in place, as README's install and Prerequisites describe it."""
    mutating = client.V1MutatingWebhookConfiguration(
        metadata=_meta("agent-sandbox-webhook"),
        webhooks=[client.V1MutatingWebhook(
            name="mutate.pods.agentsandbox.io", admission_review_versions=["v1"],
            side_effects="None", client_config=_client_config(pki["ca"], "/mutate"))])
    injector = client.V1MutatingWebhookConfiguration(
        metadata=_meta("istio-sidecar-injector"),
        webhooks=[client.V1MutatingWebhook(
            name="rev.namespace.sidecar-injector.istio.io", admission_review_versions=["v1"],
            side_effects="None", client_config=client.AdmissionregistrationV1WebhookClientConfig(
                service=client.AdmissionregistrationV1ServiceReference(
                    name="istiod", namespace="istio-system")))])
    validating = client.V1ValidatingWebhookConfiguration(
        metadata=_meta("agent-sandbox-webhook"),
        webhooks=[client.V1ValidatingWebhook(
            name=f"validate.{kind}.agentsandbox.io", admission_review_versions=["v1"],
            side_effects="None", client_config=_client_config(pki["ca"], "/validate"))
            for kind in ("pods", "serviceentries")])
    version = client.VersionInfo(
        major="1", minor="30", git_version="v1.30.4", git_commit="x", git_tree_state="clean",
        build_date="2024-07-17T00:00:00Z", go_version="go1.22", compiler="gc",
        platform="linux/amd64")
    return {
        "/version/": version,
        "/api/v1/namespaces": client.V1NamespaceList(items=[
            client.V1Namespace(metadata=_meta("agents", labels={ENFORCE: "true"})),
            client.V1Namespace(metadata=_meta("trial", labels={ENFORCE: "warn"})),
            client.V1Namespace(metadata=_meta("default"))]),
        "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations":
            client.V1MutatingWebhookConfigurationList(items=[mutating, injector]),
        "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
        "agent-sandbox-webhook": validating,
        f"/api/v1/namespaces/{SYSTEM}/configmaps/agent-sandbox-policy": client.V1ConfigMap(
            metadata=_meta("agent-sandbox-policy", SYSTEM),
            data={"policy.yaml": "dns:\n  nameservers: [10.96.0.53]\n"}),
        f"/api/v1/namespaces/{SYSTEM}/configmaps/egress-registry": client.V1ConfigMap(
            metadata=_meta("egress-registry", SYSTEM),
            data={"registry.yaml": "entries:\n- host: api.frankfurter.app\n"}),
        "/api/v1/namespaces/istio-system/configmaps/istio": client.V1ConfigMap(
            metadata=_meta("istio", "istio-system"),
            data={"mesh": "outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n"}),
        f"/api/v1/namespaces/{SYSTEM}/secrets/agent-sandbox-webhook-tls": client.V1Secret(
            metadata=_meta("agent-sandbox-webhook-tls", SYSTEM), type="kubernetes.io/tls",
            data={"tls.crt": base64.b64encode(pki["serving"]).decode(),
                  "ca.crt": base64.b64encode(pki["ca"]).decode(),
                  "tls.key": base64.b64encode(b"PRIVATE KEY MATERIAL").decode()}),
        "/apis/node.k8s.io/v1/runtimeclasses/kata": client.V1RuntimeClass(
            metadata=_meta("kata"), handler="kata",
            overhead=client.V1Overhead(pod_fixed={"memory": "160Mi", "cpu": "250m"}),
            scheduling=client.V1Scheduling(node_selector={"katacontainers.io/kata-runtime":
                                                          "true"})),
        "/api/v1/nodes": client.V1NodeList(items=[client.V1Node(metadata=_meta(
            "node-1", labels={"katacontainers.io/kata-runtime": "true"}))]),
        "/api/v1/services": client.V1ServiceList(items=[
            client.V1Service(metadata=_meta("filtering-dns", "dns"),
                             spec=client.V1ServiceSpec(cluster_ip="10.96.0.53",
                                                       cluster_ips=["10.96.0.53"])),
            client.V1Service(metadata=_meta("agent-sandbox-webhook", SYSTEM),
                             spec=client.V1ServiceSpec(cluster_ip="10.96.12.7"))]),
        "/apis/discovery.k8s.io/v1/endpointslices": client.V1EndpointSliceList(items=[
            _slice("dns", "filtering-dns", "10.244.0.5"),
            _slice(SYSTEM, "agent-sandbox-webhook", "10.244.0.8", "10.244.1.9")]),
        f"/apis/apps/v1/namespaces/{SYSTEM}/deployments/agent-sandbox-controller":
            client.V1Deployment(
                metadata=_meta("agent-sandbox-controller", SYSTEM),
                spec=client.V1DeploymentSpec(
                    selector=client.V1LabelSelector(match_labels={"app": "controller"}),
                    template=client.V1PodTemplateSpec(spec=client.V1PodSpec(containers=[
                        client.V1Container(name="controller", image="controller")]))),
                status=client.V1DeploymentStatus(available_replicas=1)),
        "/apis/networking.istio.io/v1/namespaces/agents/sidecars": {
            "items": [_sidecar("agent-sandbox-default", "agents")]},
        "/apis/networking.istio.io/v1/namespaces/istio-system/sidecars": {"items": []},
        "/apis/networking.k8s.io/v1/namespaces/agents/networkpolicies/agent-sandbox-egress":
            client.V1NetworkPolicy(metadata=_meta("agent-sandbox-egress", "agents"),
                                   spec=client.V1NetworkPolicySpec(
                                       pod_selector=client.V1LabelSelector())),
    }


@pytest.fixture
def cluster(pki: dict[str, Any]) -> Iterator[FakeApiServer]:
    server = FakeApiServer(healthy_cluster(pki))
    server.thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def doctor(server: FakeApiServer) -> tuple[int, list[str]]:
    args = argparse.Namespace(context=None, namespace=SYSTEM, istio_namespace=None)
    out = io.StringIO()
    code = run_doctor(args, inspector=server.inspector(), out=out, err=io.StringIO(), now=NOW)
    return code, out.getvalue().splitlines()


def line(lines: list[str], check: str) -> str:
    found = [text for text in lines if text[2:].startswith(check)]
    assert found, f"no line for {check!r} in {lines}"
    return found[0]


def test_a_cluster_with_every_prerequisite_passes_every_check(cluster: FakeApiServer) -> None:
    code, lines = doctor(cluster)
    assert code == 0, "\n".join(lines)
    assert all(text.startswith("✔") for text in lines[:-1]), "\n".join(lines)
    assert lines[-1].endswith("passed, 0 failed")
    assert "1.27" in line(lines, "Kubernetes version")
    assert "mesh-wide" in line(lines, "REGISTRY_ONLY egress")
    assert "handler kata, overhead 160Mi memory, on 1 node(s)" in line(lines, "RuntimeClass kata")
    assert "caBundle verifies the serving certificate" in line(
        lines, "ValidatingWebhookConfiguration agent-sandbox-webhook")
    assert "2 ready" in line(lines, "webhook endpoints")
    assert "10.96.0.53 is Service dns/filtering-dns" in line(lines, "filtering resolver")
    assert "agents: NetworkPolicy agent-sandbox-egress" in line(lines, "rendered egress layers")


def test_doctor_only_reads(cluster: FakeApiServer) -> None:
    doctor(cluster)
    assert cluster.requests, "no request reached the fake API server"
    assert {method for method, _ in cluster.requests} == {"GET"}


def test_the_private_keys_in_the_certificate_secret_never_leave_the_inspector(
        cluster: FakeApiServer) -> None:
    found = cluster.inspector().read_certificates(SYSTEM, "agent-sandbox-webhook-tls")
    assert found is not None
    assert set(found) == {"tls.crt", "ca.crt"}


def test_allow_any_without_sidecars_fails_with_the_istioctl_fix(cluster: FakeApiServer) -> None:
    cluster.routes["/api/v1/namespaces/istio-system/configmaps/istio"].data = {"mesh": ""}
    cluster.routes["/apis/networking.istio.io/v1/namespaces/agents/sidecars"] = {"items": []}
    code, lines = doctor(cluster)
    assert code == 1
    egress = line(lines, "REGISTRY_ONLY egress")
    assert egress.startswith("✖")
    assert "mesh mode is ALLOW_ANY" in egress
    assert "no REGISTRY_ONLY Sidecar in agents" in egress
    assert "fix: set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY" in egress


def test_a_registry_only_sidecar_in_every_enforced_namespace_is_enough(
        cluster: FakeApiServer) -> None:
    cluster.routes["/api/v1/namespaces/istio-system/configmaps/istio"].data = {"mesh": ""}
    code, lines = doctor(cluster)
    assert code == 0, "\n".join(lines)
    assert "per namespace" in line(lines, "REGISTRY_ONLY egress")


def test_an_injector_sorting_before_ours_fails(cluster: FakeApiServer) -> None:
    listed = cluster.routes["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"]
    listed.items[1].metadata.name = "aaa-istio-injector"
    code, lines = doctor(cluster)
    assert code == 1
    assert "aaa-istio-injector sorts before agent-sandbox-webhook" in line(
        lines, "Istio sidecar injector")


def test_no_istio_injector_fails(cluster: FakeApiServer) -> None:
    listed = cluster.routes["/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"]
    del listed.items[1]
    code, lines = doctor(cluster)
    assert code == 1
    assert "install Istio in sidecar mode" in line(lines, "Istio sidecar injector")


def test_a_ca_bundle_from_another_ca_fails_the_configuration(cluster: FakeApiServer,
                                                             pki: dict[str, Any]) -> None:
    path = ("/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
            "agent-sandbox-webhook")
    validating = cluster.routes[path]
    validating.webhooks[1].client_config = _client_config(pki["other"], "/validate")
    code, lines = doctor(cluster)
    assert code == 1
    failing = line(lines, "ValidatingWebhookConfiguration agent-sandbox-webhook")
    assert "caBundle of validate.serviceentries.agentsandbox.io does not verify" in failing
    assert line(lines, "MutatingWebhookConfiguration agent-sandbox-webhook").startswith("✔")


def test_a_missing_configuration_and_no_ready_endpoints_fail(cluster: FakeApiServer) -> None:
    del cluster.routes["/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/"
                       "agent-sandbox-webhook"]
    slices = cluster.routes["/apis/discovery.k8s.io/v1/endpointslices"]
    slices.items[1] = _slice(SYSTEM, "agent-sandbox-webhook", "10.244.0.8", ready=False)
    code, lines = doctor(cluster)
    assert code == 1
    assert "not found" in line(lines, "ValidatingWebhookConfiguration agent-sandbox-webhook")
    assert "has no ready endpoints" in line(lines, "webhook endpoints")


def test_a_missing_certificate_secret_says_which_names_were_tried(
        cluster: FakeApiServer) -> None:
    del cluster.routes[f"/api/v1/namespaces/{SYSTEM}/secrets/agent-sandbox-webhook-tls"]
    code, lines = doctor(cluster)
    assert code == 1
    assert "tried agent-sandbox-webhook-tls, agent-sandbox-webhook-cert" in line(
        lines, "MutatingWebhookConfiguration agent-sandbox-webhook")


def test_a_runtime_class_that_is_not_kata_fails(cluster: FakeApiServer) -> None:
    runtime = cluster.routes["/apis/node.k8s.io/v1/runtimeclasses/kata"]
    runtime.handler = "runc"
    runtime.overhead = None
    cluster.routes["/api/v1/nodes"] = client.V1NodeList(items=[])
    code, lines = doctor(cluster)
    assert code == 1
    failing = line(lines, "RuntimeClass kata")
    assert "handler 'runc' is not a Kata Containers handler" in failing
    assert "no overhead.podFixed.memory" in failing
    assert "no node matches" in failing


def test_a_resolver_address_that_is_nothing_in_the_cluster_fails(cluster: FakeApiServer) -> None:
    policy = cluster.routes[f"/api/v1/namespaces/{SYSTEM}/configmaps/agent-sandbox-policy"]
    policy.data = {"policy.yaml": "dns:\n  nameservers: [10.96.0.99, 10.244.0.5]\n"}
    code, lines = doctor(cluster)
    assert code == 1
    resolver = [text for text in lines if text[2:].startswith("filtering resolver")]
    assert resolver[0].startswith("✖")
    assert "10.96.0.99 is no Service's ClusterIP" in resolver[0]
    assert resolver[1].startswith("✔")
    assert "10.244.0.5 is an endpoint of dns/filtering-dns" \
        in resolver[1]


def test_a_broken_registry_configmap_fails_naming_the_field(cluster: FakeApiServer) -> None:
    registry = cluster.routes[f"/api/v1/namespaces/{SYSTEM}/configmaps/egress-registry"]
    registry.data = {"registry.yaml": "entries:\n- host: api.frankfurter.app\n  port: 443\n"}
    code, lines = doctor(cluster)
    assert code == 1
    assert "(did you mean 'ports'?)" in line(lines, "registry ConfigMap egress-registry")


def test_look_alike_labels_and_no_enforced_namespace_fail(cluster: FakeApiServer) -> None:
    cluster.routes["/api/v1/namespaces"] = client.V1NamespaceList(items=[
        client.V1Namespace(metadata=_meta("agents",
                                          labels={"agentsandbox.io/enforced": "true"}))])
    code, lines = doctor(cluster)
    assert code == 1
    agent_lines = [text for text in lines if text[2:].startswith("agent namespaces")]
    assert any("agentsandbox.io/enforced='true' looks like" in text for text in agent_lines)
    assert any("no namespace is labelled" in text for text in agent_lines)


def test_missing_rendered_objects_fail_when_the_controller_runs(cluster: FakeApiServer) -> None:
    del cluster.routes["/apis/networking.k8s.io/v1/namespaces/agents/networkpolicies/"
                       "agent-sandbox-egress"]
    code, lines = doctor(cluster)
    assert code == 1
    assert "agents: no NetworkPolicy agent-sandbox-egress" in line(lines,
                                                                   "rendered egress layers")


def test_without_the_controller_the_rendered_layers_are_not_applicable(
        cluster: FakeApiServer) -> None:
    del cluster.routes[f"/apis/apps/v1/namespaces/{SYSTEM}/deployments/agent-sandbox-controller"]
    del cluster.routes["/apis/networking.k8s.io/v1/namespaces/agents/networkpolicies/"
                       "agent-sandbox-egress"]
    code, lines = doctor(cluster)
    assert code == 0, "\n".join(lines)
    assert line(lines, "rendered egress layers").startswith("- ")
    assert lines[-1].endswith("0 failed, 1 not applicable")


def test_kubernetes_older_than_1_27_fails(cluster: FakeApiServer) -> None:
    version = copy.deepcopy(cluster.routes["/version/"])
    version.minor = "26"
    cluster.routes["/version/"] = version
    code, lines = doctor(cluster)
    assert code == 1
    assert "1.26 is older than 1.27" in line(lines, "Kubernetes version")


def test_native_sidecars_on_kubernetes_older_than_1_29_fail_with_the_policy_fix(
        cluster: FakeApiServer) -> None:
    version = copy.deepcopy(cluster.routes["/version/"])
    version.minor = "28"
    cluster.routes["/version/"] = version
    code, lines = doctor(cluster)
    assert code == 1
    assert line(lines, "Kubernetes version").startswith("✔")
    found = line(lines, "native sidecars")
    assert found.startswith("✖")
    assert "set istio.nativeSidecars: false" in found


def test_native_sidecars_off_is_not_applicable_on_kubernetes_1_27(
        cluster: FakeApiServer) -> None:
    version = copy.deepcopy(cluster.routes["/version/"])
    version.minor = "27"
    cluster.routes["/version/"] = version
    key = f"/api/v1/namespaces/{SYSTEM}/configmaps/agent-sandbox-policy"
    policy = copy.deepcopy(cluster.routes[key])
    policy.data = {"policy.yaml": policy.data["policy.yaml"] + "istio:\n  nativeSidecars: false\n"}
    cluster.routes[key] = policy
    code, lines = doctor(cluster)
    assert code == 0, "\n".join(lines)
    assert line(lines, "native sidecars").startswith("- ")


def test_a_forbidden_read_fails_that_check_and_not_the_run(cluster: FakeApiServer) -> None:
    del cluster.routes["/api/v1/services"]  # answered 404: "not served" for a list
    code, lines = doctor(cluster)
    assert code == 1
    assert "could not read: list services" in line(lines, "filtering resolver")
    assert line(lines, "RuntimeClass kata").startswith("✔")


def test_an_unreachable_cluster_exits_2() -> None:
    configuration = client.Configuration()
    configuration.host = "http://127.0.0.1:9"  # discard port: nothing listens
    configuration.retries = 0
    err = io.StringIO()
    args = argparse.Namespace(context=None, namespace=SYSTEM, istio_namespace=None)
    code = run_doctor(args, inspector=KubernetesInspector(client.ApiClient(configuration)),
                      out=io.StringIO(), err=err, now=NOW)
    assert code == 2
    assert "read the server version" in err.getvalue()


def test_the_mesh_config_is_read_in_the_policys_control_plane_namespace(
        cluster: FakeApiServer) -> None:
    policy = cluster.routes[f"/api/v1/namespaces/{SYSTEM}/configmaps/agent-sandbox-policy"]
    policy.data = {"policy.yaml": "dns:\n  nameservers: [10.96.0.53]\n"
                                  "mesh:\n  controlPlaneNamespace: istio-prod\n"}
    mesh = cluster.routes.pop("/api/v1/namespaces/istio-system/configmaps/istio")
    cluster.routes["/apis/networking.istio.io/v1/namespaces/agents/sidecars"] = {"items": [
        _sidecar("agent-sandbox-default", "agents", mode="ALLOW_ANY")]}
    assert line(doctor(cluster)[1], "REGISTRY_ONLY egress").startswith("✖")
    cluster.routes["/api/v1/namespaces/istio-prod/configmaps/istio"] = mesh
    code, lines = doctor(cluster)
    assert code == 0, "\n".join(lines)
    assert "mesh-wide (outboundTrafficPolicy in ConfigMap istio-prod/istio)" in line(
        lines, "REGISTRY_ONLY egress")
