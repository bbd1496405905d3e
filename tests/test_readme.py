"""The README's sample pod and the example manifests do what the README says they do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: agents\n  labels:\n"
          "    agentsandbox.io/enforce: 'true'\n---\n")


def check(path: Path) -> tuple[int, list[dict[str, object]]]:
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(path),
                             "-o", "json"], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    return result.returncode, json.loads(result.stdout)["results"]


def test_the_readme_verify_pod_is_admitted_with_every_mutation(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("cat <<'POD'")
    pod = readme[start:].split("\n", 1)[1].split("\nPOD", 1)[0]
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(AGENTS + pod)
    code, results = check(manifest)
    assert code == 0
    (verdict,) = [r for r in results if r["kind"] == "Pod"]
    assert verdict["verdict"] == "admitted"
    assert {"runtimeClassName", "dnsConfig", "memory", "labels"} <= set(verdict["changes"])


def test_the_example_agent_pod_is_admitted() -> None:
    code, results = check(ROOT / "examples" / "agent-pod.yaml")
    assert code == 0
    assert [r["verdict"] for r in results if r["kind"] == "Pod"] == ["admitted"]


def test_each_example_escape_pod_is_refused_for_exactly_one_rule() -> None:
    code, results = check(ROOT / "examples" / "escape-pods.yaml")
    assert code == 1
    pods = [r for r in results if r["kind"] == "Pod"]
    assert len(pods) >= 5
    for pod in pods:
        assert pod["verdict"] == "refused", pod["name"]
        assert len(pod["rules"]) == 1, (pod["name"], pod["rules"])
