"""``agent-sandbox-webhook controller`` outside a cluster: one clear line, exit 2, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_the_controller_without_cluster_credentials_says_so_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if k not in {"KUBECONFIG", "KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"}}
    env["HOME"] = str(tmp_path)  # no ~/.kube/config
    done = subprocess.run([sys.executable, "-m", "webhook", "controller"], env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no cluster credentials")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
