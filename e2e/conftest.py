"""End-to-end fixtures: a real cluster from ``KUBECONFIG``, the webhook, and cleanup.

Out of cluster (default): runs ``python -m webhook serve`` on this machine, listening on
``0.0.0.0:$E2E_WEBHOOK_PORT`` (default 9443), and registers e2e copies of the webhook
configurations with ``clientConfig.url = https://$E2E_WEBHOOK_HOST:PORT/...`` and a generated
CA. The copies select only the test namespace, so a crashed run cannot block the rest of the
cluster. In cluster (``E2E_IN_CLUSTER=1`` and ``E2E_IMAGE``): applies ``manifests/`` with that
image and waits for the rollout.

The whole suite is skipped, with the reason printed, when no cluster is reachable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook.certs import write_dev_bundle

ROOT = Path(__file__).resolve().parent.parent
E2E_CONFIG_NAME = "agent-sandbox-webhook-e2e"  # still sorts before istio-sidecar-injector


def _kubectl_reachable() -> str | None:
    """None if a cluster answers, else why not."""
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    if not os.environ.get("KUBECONFIG"):
        return "KUBECONFIG is not set (point it at a disposable cluster, e.g. kind)"
    try:
        probe = subprocess.run(
            ["kubectl", "get", "--raw", "/readyz"], capture_output=True, text=True, timeout=15
        )
    except subprocess.TimeoutExpired:
        return "the API server did not answer /readyz within 15s"
    if probe.returncode != 0:
        return f"kubectl get --raw /readyz failed: {probe.stderr.strip()[:200]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _kubectl_reachable()
    if reason is None:
        return
    print(f"\ne2e skipped: no reachable cluster: {reason}", file=sys.stderr)
    skip = pytest.mark.skip(reason=f"no reachable cluster: {reason}")
    for item in items:
        item.add_marker(skip)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def kubectl(*args: str, stdin: str | None = None, check: bool = False) -> Result:
    done = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=60
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return Result(done.returncode, done.stdout, done.stderr)


def apply(obj: dict[str, Any], *extra: str) -> Result:
    return kubectl("apply", "-f", "-", *extra, stdin=json.dumps(obj))


def _exists(kind: str, name: str) -> bool:
    return kubectl("get", kind, name, "-o", "name").returncode == 0


@dataclass(frozen=True)
class Cluster:
    namespace: str
    istio_crds: bool


def _e2e_policy() -> dict[str, Any]:
    # No Istio in a plain kind cluster: do not require the injected sidecar.
    return {"istio": {"requireSidecar": False}}


def _e2e_registry(namespace: str) -> dict[str, Any]:
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


def _configurations(*, namespace: str, base_url: str, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The real configurations, re-pointed at our URL and narrowed to the test namespace."""
    docs = []
    for name in ("mutatingwebhookconfiguration.yaml", "validatingwebhookconfiguration.yaml"):
        doc = yaml.safe_load((ROOT / "manifests" / "base" / name).read_text())
        doc["metadata"]["name"] = E2E_CONFIG_NAME
        kept = []
        for webhook in doc["webhooks"]:
            if webhook["name"].startswith("validate.registry."):
                continue  # would select the webhook's namespace; not needed here
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {
                "url": f"{base_url}{path}",
                "caBundle": base64.b64encode(ca_bundle).decode(),
            }
            webhook["namespaceSelector"].setdefault("matchExpressions", []).append(
                {"key": "kubernetes.io/metadata.name", "operator": "In", "values": [namespace]}
            )
            kept.append(webhook)
        doc["webhooks"] = kept
        docs.append(doc)
    return docs


def _wait_healthy(port: int, ca_file: Path, process: subprocess.Popen[bytes]) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.check_hostname = False  # the SAN is the public host, we probe via 127.0.0.1
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"webhook exited with {process.returncode}")
        try:
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/readyz", context=context, timeout=2
            ) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("webhook did not become ready within 30s")


def _ensure_runtime_classes(created: list[tuple[str, str]]) -> None:
    # The API server's RuntimeClass plugin refuses pods naming a class that does not exist, so
    # the class the webhook sets (kata) and a foreign one for the escape test must exist.
    classes = {"kata": ("kata", "160Mi", "250m"), "e2e-foreign": ("runc", "64Mi", "100m")}
    for name, (handler, memory, cpu) in classes.items():
        if not _exists("runtimeclass", name):
            apply(
                {
                    "apiVersion": "node.k8s.io/v1",
                    "kind": "RuntimeClass",
                    "metadata": {"name": name},
                    "handler": handler,
                    "overhead": {"podFixed": {"memory": memory, "cpu": cpu}},
                }
            )
            created.append(("runtimeclass", name))


@contextlib.contextmanager
def _out_of_cluster(tmp: Path, namespace: str) -> Iterator[None]:
    host = os.environ.get("E2E_WEBHOOK_HOST", "")
    if not host:
        pytest.skip(
            "set E2E_WEBHOOK_HOST to an address of this machine the API server can "
            "reach (kind on Linux: the docker bridge gateway, e.g. 172.18.0.1; Docker "
            "Desktop: host.docker.internal)"
        )
    port = int(os.environ.get("E2E_WEBHOOK_PORT", "9443"))
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
        bundle = write_dev_bundle(
            tmp / "certs", dns_names=["localhost"], ip_addresses=[host, "127.0.0.1"]
        )
    except OSError:
        bundle = write_dev_bundle(
            tmp / "certs", dns_names=[host, "localhost"], ip_addresses=["127.0.0.1"]
        )
    (tmp / "policy.yaml").write_text(yaml.safe_dump(_e2e_policy()))
    (tmp / "registry.yaml").write_text(yaml.safe_dump(_e2e_registry(namespace)))
    log = (tmp / "webhook.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--listen",
            f"0.0.0.0:{port}",
            "--tls-cert",
            str(bundle.cert),
            "--tls-key",
            str(bundle.key),
            "--policy",
            str(tmp / "policy.yaml"),
            "--registry",
            str(tmp / "registry.yaml"),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(port, bundle.ca_cert, process)
        for doc in _configurations(
            namespace=namespace,
            base_url=f"https://{host}:{port}",
            ca_bundle=bundle.ca_cert.read_bytes(),
        ):
            result = apply(doc)
            assert result.returncode == 0, result.stderr
        time.sleep(2)  # the API server's webhook informer picks the configurations up
        yield
    finally:
        for kind in ("mutatingwebhookconfiguration", "validatingwebhookconfiguration"):
            kubectl("delete", kind, E2E_CONFIG_NAME, "--ignore-not-found", "--wait=false")
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextlib.contextmanager
def _in_cluster(namespace: str) -> Iterator[None]:
    image = os.environ.get("E2E_IMAGE")
    if not image:
        pytest.skip("E2E_IN_CLUSTER=1 needs E2E_IMAGE (an image the cluster can pull)")
    rendered = kubectl("kustomize", str(ROOT / "manifests"), check=True).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "agent-sandbox-policy":
            doc["data"]["policy.yaml"] = yaml.safe_dump(_e2e_policy())
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "egress-registry":
            doc["data"]["registry.yaml"] = yaml.safe_dump(_e2e_registry(namespace))
    stream = "\n---\n".join(yaml.safe_dump(d) for d in docs)
    try:
        kubectl("apply", "-f", "-", stdin=stream, check=True)
        kubectl(
            "-n",
            "agent-sandbox-system",
            "rollout",
            "status",
            "deployment/agent-sandbox-webhook",
            "--timeout=180s",
            check=True,
        )
        time.sleep(5)  # caBundle injection happens right after start-up
        yield
    finally:
        kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", stdin=stream)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    namespace = f"e2e-agents-{uuid.uuid4().hex[:6]}"
    created: list[tuple[str, str]] = []
    apply(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {"agentsandbox.io/enforce": "true"}},
        }
    )
    created.append(("namespace", namespace))
    try:
        _ensure_runtime_classes(created)
        if not _exists("crd", "skills.agentsandbox.io"):
            kubectl("apply", "-f", str(ROOT / "manifests" / "crd-skills.yaml"), check=True)
            kubectl(
                "wait",
                "--for=condition=Established",
                "crd/skills.agentsandbox.io",
                "--timeout=60s",
                check=True,
            )
            created.append(("crd", "skills.agentsandbox.io"))
        istio = _exists("crd", "serviceentries.networking.istio.io")
        runner = (
            _in_cluster(namespace)
            if os.environ.get("E2E_IN_CLUSTER") == "1"
            else _out_of_cluster(tmp_path_factory.mktemp("webhook"), namespace)
        )
        with runner:
            yield Cluster(namespace=namespace, istio_crds=istio)
    finally:
        for kind, name in reversed(created):
            kubectl("delete", kind, name, "--ignore-not-found", "--wait=false")
