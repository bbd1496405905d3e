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

import contextlib
import json
import os
import shutil
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

from e2e.objects import (
    E2E_CONFIG_NAME,
    ROOT,
    RUNTIME_CLASSES,
    base_url,
    configurations,
    e2e_policy,
    e2e_registry,
    is_ip,
    namespace_object,
    runtime_class,
)
from webhook.certs.pki import write_dev_bundle

HERE = Path(__file__).resolve().parent
# Per test, session set-up included (the first test pays for it): a CRD to establish, the
# webhook to start or roll out (up to 180 s in cluster), the configurations to take effect.
# pyproject's default of 120 s is too short for that.
E2E_TIMEOUT = 600


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


def _unusable_settings() -> str | None:
    """Checked before anything is created in the cluster: None, or why the suite cannot run."""
    if os.environ.get("E2E_IN_CLUSTER") == "1":
        if not os.environ.get("E2E_IMAGE"):
            return "E2E_IN_CLUSTER=1 needs E2E_IMAGE (an image the cluster can pull)"
        return None
    if not os.environ.get("E2E_WEBHOOK_HOST"):
        return (
            "set E2E_WEBHOOK_HOST to an address of this machine the API server can reach "
            "(kind on Linux: the gateway of the kind docker network, e.g. 172.18.0.1; "
            "Docker Desktop: host.docker.internal)"
        )
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item, not only this directory's: touch only e2e's.
    ours = [item for item in items if HERE in item.path.parents]
    if not ours:
        return
    for item in ours:
        item.add_marker(pytest.mark.timeout(E2E_TIMEOUT))
    unreachable = _kubectl_reachable()
    reason = f"no reachable cluster: {unreachable}" if unreachable else _unusable_settings()
    if reason is None:
        return
    print(f"\ne2e skipped: {reason}", file=sys.stderr)
    skip = pytest.mark.skip(reason=reason)
    for item in ours:
        item.add_marker(skip)


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


def kubectl(
    *args: str, stdin: str | None = None, check: bool = False, timeout: float = 60
) -> Result:
    done = subprocess.run(
        ["kubectl", *args], input=stdin, capture_output=True, text=True, timeout=timeout
    )
    if check and done.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed: {done.stderr}")
    return Result(done.returncode, done.stdout, done.stderr)


def apply(obj: dict[str, Any], *extra: str) -> Result:
    return kubectl("apply", "-f", "-", *extra, stdin=json.dumps(obj))


def _exists(kind: str, name: str, namespace: str | None = None) -> bool:
    scope = ["-n", namespace] if namespace else []
    return kubectl(*scope, "get", kind, name, "-o", "name").returncode == 0


@dataclass(frozen=True)
class Cluster:
    namespace: str
    istio_crds: bool


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
    # The API server's RuntimeClass plugin refuses pods naming a class that does not exist
    # (`pod rejected: RuntimeClass "kata" not found`), so the class the webhook sets (kata)
    # and a foreign one for the escape test must exist.
    for name in RUNTIME_CLASSES:
        if not _exists("runtimeclass", name):
            result = apply(runtime_class(name))
            assert result.returncode == 0, result.stderr
            created.append(("runtimeclass", name))


def _probe_pod(namespace: str) -> dict[str, Any]:
    """A pod every rule admits, so a dry-run of it shows whether the webhook is answering."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "e2e-probe", "namespace": namespace},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001},
            "containers": [{"name": "probe", "image": "registry.example.com/probe:1.0"}],
        },
    }


def _wait_admitting(namespace: str, timeout: float = 60) -> None:
    """Until the API server calls the webhook for the test namespace (a dry-run is mutated).

    A fixed sleep is not enough: the API server's configuration informer, the caBundle
    injection (in cluster) and the network path to the webhook all take their own time, and
    when the path is broken, the last error (TLS, connection refused) is the useful message.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = apply(_probe_pod(namespace), "--dry-run=server", "-o", "json")
        if result.returncode == 0:
            if json.loads(result.stdout)["spec"].get("runtimeClassName") == "kata":
                return
            last = "the dry-run was admitted unmutated (configurations not in effect yet)"
        else:
            last = result.stderr.strip()
        time.sleep(1)
    raise RuntimeError(f"the webhook is not being called after {timeout:.0f}s: {last}")


@contextlib.contextmanager
def _out_of_cluster(tmp: Path, namespace: str) -> Iterator[None]:
    host = os.environ["E2E_WEBHOOK_HOST"]  # checked at collection (_unusable_settings)
    port = int(os.environ.get("E2E_WEBHOOK_PORT", "9443"))
    # The API server checks the serving certificate against the URL's host: an IP needs an
    # IP SAN, a name a DNS SAN. 127.0.0.1 is for our own readiness probe.
    ips = sorted({host, "127.0.0.1"}) if is_ip(host) else ["127.0.0.1"]
    names = ["localhost"] if is_ip(host) else [host, "localhost"]
    bundle = write_dev_bundle(tmp / "certs", dns_names=names, ip_addresses=ips)
    (tmp / "policy.yaml").write_text(yaml.safe_dump(e2e_policy()))
    (tmp / "registry.yaml").write_text(yaml.safe_dump(e2e_registry(namespace)))
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
        for doc in configurations(
            namespace=namespace,
            base_url=base_url(host, port),
            ca_bundle=bundle.ca_cert.read_bytes(),
        ):
            result = apply(doc)
            assert result.returncode == 0, result.stderr
        _wait_admitting(namespace)
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
    image = os.environ["E2E_IMAGE"]  # checked at collection (_unusable_settings)
    rendered = kubectl("kustomize", str(ROOT / "manifests"), check=True).stdout
    # The Skill CRD and the kata RuntimeClass are the cluster fixture's (created only if
    # missing, deleted only if it created them): never delete a cluster's own copy here.
    docs = [
        d
        for d in yaml.safe_load_all(rendered)
        if d and d["kind"] not in ("CustomResourceDefinition", "RuntimeClass")
    ]
    for doc in docs:
        if doc["kind"] == "Deployment":
            doc["spec"]["template"]["spec"]["containers"][0]["image"] = image
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "agent-sandbox-policy":
            doc["data"]["policy.yaml"] = yaml.safe_dump(e2e_policy())
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "egress-registry":
            doc["data"]["registry.yaml"] = yaml.safe_dump(e2e_registry(namespace))
    # Delete at the end only what this run created (e.g. not an `agents` namespace that was
    # already there).
    fresh = [
        d
        for d in docs
        if not _exists(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace"))
    ]
    try:
        kubectl("apply", "-f", "-", stdin=_stream(docs), check=True)
        kubectl(
            "-n",
            "agent-sandbox-system",
            "rollout",
            "status",
            "deployment/agent-sandbox-webhook",
            "--timeout=180s",
            check=True,
            timeout=200,
        )
        _wait_admitting(namespace)  # caBundle injection happens right after start-up
        yield
    finally:
        if fresh:
            kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", stdin=_stream(fresh))


def _stream(docs: list[dict[str, Any]]) -> str:
    return "\n---\n".join(yaml.safe_dump(d) for d in docs)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    namespace = f"e2e-agents-{uuid.uuid4().hex[:6]}"
    created: list[tuple[str, str]] = []
    result = apply(namespace_object(namespace))
    assert result.returncode == 0, result.stderr
    created.append(("namespace", namespace))
    try:
        _ensure_runtime_classes(created)
        if not _exists("crd", "skills.agentsandbox.io"):
            kubectl("apply", "-f", str(ROOT / "manifests" / "crd-skills.yaml"), check=True)
            created.append(("crd", "skills.agentsandbox.io"))
            kubectl(
                "wait",
                "--for=condition=Established",
                "crd/skills.agentsandbox.io",
                "--timeout=60s",
                check=True,
                timeout=75,
            )
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
