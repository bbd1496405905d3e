"""The objects the e2e suite registers, as pure functions (tests/test_e2e_objects.py checks them).

Nothing here talks to a cluster: each function returns the object (or file content) that
conftest.py then applies or writes.
"""

from __future__ import annotations

import base64
import ipaddress
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
E2E_CONFIG_NAME = "agent-sandbox-webhook-e2e"  # still sorts before istio-sidecar-injector
ENFORCE_LABEL = "agentsandbox.io/enforce"
# The RuntimeClasses the API server's RuntimeClass admission plugin must find: kata (set by
# the webhook) and a foreign one for the escape test. name -> (handler, memory, cpu).
RUNTIME_CLASSES = {"kata": ("kata", "160Mi", "250m"), "e2e-foreign": ("runc", "64Mi", "100m")}


def e2e_policy() -> dict[str, Any]:
    # No Istio injector in a plain kind cluster: do not require the injected sidecar.
    return {"istio": {"requireSidecar": False}}


def e2e_registry(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "agentsandbox.io/v1alpha1",
        "kind": "EgressRegistry",
        "entries": [
            {
                "host": "api.frankfurter.app",
                "ports": [{"number": 443, "protocols": ["TLS", "HTTPS"]}],
                "namespaces": [namespace],
            }
        ],
        "deny": [],
    }


def namespace_object(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {ENFORCE_LABEL: "true"}},
    }


def runtime_class(name: str) -> dict[str, Any]:
    handler, memory, cpu = RUNTIME_CLASSES[name]
    return {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": name},
        "handler": handler,
        "overhead": {"podFixed": {"memory": memory, "cpu": cpu}},
    }


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def base_url(host: str, port: int) -> str:
    """``https://HOST:PORT``, with an IPv6 literal in brackets."""
    shown = f"[{host}]" if is_ip(host) and ":" in host else host
    return f"https://{shown}:{port}"


def configurations(*, namespace: str, base_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The real configurations, re-pointed at our URL and narrowed to the test namespace."""
    docs = []
    for name in ("mutatingwebhookconfiguration.yaml", "validatingwebhookconfiguration.yaml"):
        doc = yaml.safe_load((ROOT / "manifests" / "base" / name).read_text())
        doc["metadata"]["name"] = E2E_CONFIG_NAME
        kept = []
        for webhook in doc["webhooks"]:
            if webhook["name"].startswith(("validate.registry.", "validate.root-namespace.")):
                continue  # would select the webhook's or Istio's namespace; not needed here
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {
                "url": f"{base_url}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            selector = webhook["namespaceSelector"]
            # A new list: the manifests share lists between entries through YAML anchors, and
            # each entry must get exactly one name restriction.
            selector["matchExpressions"] = [
                *selector.get("matchExpressions", []),
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]},
            ]
            kept.append(webhook)
        doc["webhooks"] = kept
        docs.append(doc)
    return docs
