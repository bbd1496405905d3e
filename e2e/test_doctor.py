"""``doctor`` against the real cluster the e2e fixture installed the manifests into.

Only in-cluster mode installs ``manifests/`` (configurations, Service, Deployment, ConfigMaps,
certificate Secret); out of cluster the configurations are the fixture's own, so the test is
skipped there. A test cluster usually lacks Istio and Kata, so only the lines about what the
manifests install are asserted, not the exit status.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from e2e.conftest import ROOT, Cluster

INSTALLED = (
    "MutatingWebhookConfiguration agent-sandbox-webhook",
    "ValidatingWebhookConfiguration agent-sandbox-webhook",
    "webhook endpoints",
    "policy ConfigMap agent-sandbox-policy",
    "registry ConfigMap egress-registry",
    "Kubernetes version",
)


@pytest.mark.skipif(os.environ.get("E2E_IN_CLUSTER") != "1",
                    reason="doctor checks the installed manifests: needs E2E_IN_CLUSTER=1")
def test_doctor_passes_every_check_about_what_the_manifests_install(cluster: Cluster) -> None:
    result = subprocess.run([sys.executable, "-m", "webhook", "doctor"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode in (0, 1), result.stderr
    lines = result.stdout.splitlines()
    for check in INSTALLED:
        found = [line for line in lines if line[2:].startswith(check)]
        assert found, f"no {check!r} line in:\n{result.stdout}"
        assert all(line.startswith("✔") for line in found), result.stdout
