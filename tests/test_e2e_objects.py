"""What the e2e suite registers in a cluster, checked here without one.

The webhook configurations, RuntimeClasses and namespace the e2e fixtures apply are rendered
and validated offline with ``kubernetes_validate``, and the properties the API server relies on
are checked: an https URL with the serving certificate's CA as a base64 PEM ``caBundle``, a
namespaceSelector that selects the test namespace and nothing else, and a policy and registry
that the webhook loads.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml
from cryptography import x509

from e2e.objects import (
    E2E_CONFIG_NAME,
    RUNTIME_CLASSES,
    base_url,
    configurations,
    e2e_policy,
    e2e_registry,
    namespace_object,
    runtime_class,
)
from webhook.certs.pki import write_dev_bundle
from webhook.config.policy import load_policy
from webhook.egress.registry import load_registry

K8S_VERSION = "1.30.0"  # the oldest Kubernetes the e2e suite supports
NAMESPACE = "e2e-agents-0a1b2c"
HOST = "172.18.0.1"  # kind's docker network gateway, as E2E_WEBHOOK_HOST


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    bundle = write_dev_bundle(
        tmp_path_factory.mktemp("certs"), dns_names=["localhost"], ip_addresses=[HOST]
    )
    return bundle.ca_cert.read_bytes()


@pytest.fixture(scope="module")
def docs(ca_pem: bytes) -> list[dict[str, Any]]:
    return configurations(namespace=NAMESPACE, base_url=base_url(HOST, 9443), ca_bundle=ca_pem)


def _webhooks(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [webhook for doc in docs for webhook in doc["webhooks"]]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against ``labels``."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, operator, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[operator]
        if not ok:
            return False
    return True


def _labels(namespace: dict[str, Any]) -> dict[str, str]:
    """A namespace's labels as the API server stores them (it adds the name label)."""
    name = namespace["metadata"]["name"]
    return {**namespace["metadata"].get("labels", {}), "kubernetes.io/metadata.name": name}


def test_every_object_passes_schema_validation(docs: list[dict[str, Any]]) -> None:
    objects = [*docs, namespace_object(NAMESPACE), *map(runtime_class, RUNTIME_CLASSES)]
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_one_configuration_of_each_kind_named_to_sort_before_istio(
    docs: list[dict[str, Any]],
) -> None:
    kinds = [doc["kind"] for doc in docs]
    assert kinds == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
    for doc in docs:
        assert doc["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert doc["metadata"]["name"] == E2E_CONFIG_NAME
    assert E2E_CONFIG_NAME < "istio-revision-tag-default" < "istio-sidecar-injector"


def test_entries_are_complete_and_fully_qualified(docs: list[dict[str, Any]]) -> None:
    for doc in docs:
        names = [webhook["name"] for webhook in doc["webhooks"]]
        assert len(names) == len(set(names))
        for webhook in doc["webhooks"]:
            assert webhook["name"].count(".") >= 2, webhook["name"]
            assert webhook["sideEffects"] in ("None", "NoneOnDryRun"), "dry-run is sent"
            assert "v1" in webhook["admissionReviewVersions"]
            assert webhook["failurePolicy"] == "Fail"


def test_urls_are_https_to_the_host_with_the_webhook_paths(docs: list[dict[str, Any]]) -> None:
    paths = set()
    for webhook in _webhooks(docs):
        assert set(webhook["clientConfig"]) == {"url", "caBundle"}, "no service reference left"
        url = urlsplit(webhook["clientConfig"]["url"])
        assert (url.scheme, url.hostname, url.port) == ("https", HOST, 9443)
        assert not url.query, "the API server appends ?timeout= itself"
        assert not url.fragment
        paths.add(url.path)
    assert paths == {"/mutate", "/validate", "/mutate/warn", "/validate/warn"}


def test_ipv6_hosts_are_bracketed() -> None:
    assert base_url("fc00:f853:ccd:e793::1", 9443) == "https://[fc00:f853:ccd:e793::1]:9443"
    assert base_url("host.docker.internal", 9443) == "https://host.docker.internal:9443"


def test_ca_bundle_is_the_base64_pem_of_the_ca(docs: list[dict[str, Any]], ca_pem: bytes) -> None:
    for webhook in _webhooks(docs):
        decoded = base64.b64decode(webhook["clientConfig"]["caBundle"], validate=True)
        assert decoded == ca_pem
        x509.load_pem_x509_certificate(decoded)


def test_only_the_test_namespace_is_selected(docs: list[dict[str, Any]]) -> None:
    test_ns = _labels(namespace_object(NAMESPACE))
    others = [
        {**test_ns, "kubernetes.io/metadata.name": "agents"},  # another enforced namespace
        {"kubernetes.io/metadata.name": "default"},
        {"kubernetes.io/metadata.name": "kube-system"},
        {"kubernetes.io/metadata.name": "agent-sandbox-system"},
        {"kubernetes.io/metadata.name": "istio-system"},
    ]
    selected = set()
    for webhook in _webhooks(docs):
        for labels in others:
            assert not _selects(webhook["namespaceSelector"], labels), (webhook["name"], labels)
        if _selects(webhook["namespaceSelector"], test_ns):
            selected.add(webhook["name"])
    # Every enforcing entry reaches the test namespace; the warn twins select nothing.
    assert {name for name in selected if "-warn." in name} == set()
    assert {
        "mutate.pods.agentsandbox.io",
        "validate.pods.agentsandbox.io",
        "validate.serviceentries.agentsandbox.io",
        "validate.skills.agentsandbox.io",
    } <= selected
    # Each entry got exactly one name restriction (the manifests share lists via anchors).
    for webhook in _webhooks(docs):
        keys = [e["key"] for e in webhook["namespaceSelector"]["matchExpressions"]]
        restrictions = [
            e
            for e in webhook["namespaceSelector"]["matchExpressions"]
            if e["key"] == "kubernetes.io/metadata.name" and e["operator"] == "In"
        ]
        assert restrictions == [
            {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [NAMESPACE]}
        ], (webhook["name"], keys)


def test_the_registry_guard_entry_is_not_registered(docs: list[dict[str, Any]]) -> None:
    assert not [w for w in _webhooks(docs) if w["name"].startswith("validate.registry.")]
    # Nor the root-namespace entry: it selects istio-system, never the test namespace.
    assert not [w for w in _webhooks(docs) if w["name"].startswith("validate.root-namespace.")]


def test_ephemeral_containers_are_named_explicitly(docs: list[dict[str, Any]]) -> None:
    pods = next(w for w in _webhooks(docs) if w["name"] == "validate.pods.agentsandbox.io")
    resources = {r for rule in pods["rules"] for r in rule["resources"]}
    assert {"pods", "pods/ephemeralcontainers"} <= resources


def test_runtime_classes_carry_an_overhead() -> None:
    kata = runtime_class("kata")
    assert kata["metadata"]["name"] == "kata"
    assert kata["overhead"]["podFixed"] == {"memory": "160Mi", "cpu": "250m"}
    assert runtime_class("e2e-foreign")["handler"]


def test_policy_and_registry_load(tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.yaml"
    policy_file.write_text(yaml.safe_dump(e2e_policy()))
    policy = load_policy(policy_file)
    assert policy.istio.require_sidecar is False, "no Istio injector in a plain kind cluster"
    assert policy.runtime_class.name == "kata"
    registry_file = tmp_path / "registry.yaml"
    registry_file.write_text(yaml.safe_dump(e2e_registry(NAMESPACE)))
    registry = load_registry(registry_file)
    assert registry is not None
