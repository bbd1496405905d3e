"""The controller in a real cluster: label a namespace, and its rendered layers appear.

Runs only in cluster (``E2E_IN_CLUSTER=1``): the controller is a Deployment of manifests/,
not something the out-of-cluster runner starts. The NetworkPolicy needs no CRD, so it is what
the test waits for; the Sidecar too when Istio's CRDs are installed.
"""

from __future__ import annotations

import os
import time
import uuid

import pytest

from e2e.conftest import Cluster, kubectl

pytestmark = pytest.mark.skipif(os.environ.get("E2E_IN_CLUSTER") != "1",
                                reason="the controller runs only in cluster (E2E_IN_CLUSTER=1)")


def _wait_for(kind: str, name: str, namespace: str, timeout: float = 90) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if kubectl("-n", namespace, "get", kind, name, "-o", "name").returncode == 0:
            return True
        time.sleep(2)
    return False


def test_labelling_a_namespace_makes_the_controller_render_its_egress_layers(
        cluster: Cluster) -> None:
    namespace = f"e2e-controller-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", namespace, check=True)
    try:
        kubectl("label", "namespace", namespace, "agentsandbox.io/enforce=true", check=True)
        assert _wait_for("networkpolicy", "agent-sandbox-egress", namespace)
        labels = kubectl("-n", namespace, "get", "networkpolicy", "agent-sandbox-egress", "-o",
                         "jsonpath={.metadata.labels.app\\.kubernetes\\.io/managed-by}",
                         check=True).stdout
        assert labels == "agent-sandbox-webhook"
        if cluster.istio_crds:
            assert _wait_for("sidecar", "agent-sandbox-default", namespace)
        # The enforce label is guarded: removing it is refused (no break-glass group is set).
        removed = kubectl("label", "namespace", namespace, "agentsandbox.io/enforce-")
        assert removed.returncode != 0
        assert "[namespace.enforce-label]" in removed.stderr
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")
