"""The README's sample pod and the example manifests do what the README says they do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
AGENTS = ("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: agents\n  labels:\n"
          "    agentsandbox.io/enforce: 'true'\n---\n")


def check(path: Path, *options: str) -> tuple[int, list[dict[str, object]]]:
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(path),
                             "-o", "json", *options], capture_output=True, text=True, cwd=ROOT,
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


CURRENCY_AGENT = ROOT / "examples" / "currency-agent"


def check_with(path: Path, *args: str) -> tuple[int, dict[str, str]]:
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(path),
                             "-o", "json", *args], capture_output=True, text=True, cwd=ROOT,
                            timeout=60)
    verdicts = {r["kind"]: r["verdict"] for r in json.loads(result.stdout)["results"]}
    return result.returncode, verdicts


def test_the_currency_agent_example_is_admitted_with_the_example_registry() -> None:
    code, verdicts = check_with(CURRENCY_AGENT, "--registry",
                                str(ROOT / "examples" / "registry.yaml"))
    assert code == 0, verdicts
    assert verdicts == {"Namespace": "skipped", "Deployment": "admitted",
                        "ServiceEntry": "admitted", "Skill": "admitted"}


def test_the_currency_agent_egress_is_admitted_only_because_the_registry_approves_it() -> None:
    code, verdicts = check_with(CURRENCY_AGENT)  # the embedded registry approves nothing
    assert code == 1
    assert (verdicts["ServiceEntry"], verdicts["Skill"]) == ("refused", "refused")


def test_the_currency_agent_example_objects_match_the_kubernetes_schemas() -> None:
    import kubernetes_validate
    import yaml

    validated = set()
    for path in sorted(CURRENCY_AGENT.glob("*.yaml")):
        for obj in yaml.safe_load_all(path.read_text()):
            try:
                kubernetes_validate.validate(obj, "1.30.0", strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                continue  # ServiceEntry, Skill: checked by the webhook's own policies above
            validated.add(obj["kind"])
    assert validated == {"Namespace", "Deployment"}


def test_one_image_name_everywhere_and_the_readme_says_how_to_point_the_install_at_it() -> None:
    import tomllib

    import yaml

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = f"agent-sandbox-webhook:{version}"
    for kustomization in ("manifests/kustomization.yaml",
                          "manifests/overlays/cert-manager/kustomization.yaml",
                          "manifests/overlays/openshift/kustomization.yaml"):
        (entry,) = yaml.safe_load((ROOT / kustomization).read_text())["images"]
        assert entry == {"name": "agent-sandbox-webhook", "newTag": version}, kustomization
    deployment = yaml.safe_load((ROOT / "manifests/base/deployment.yaml").read_text())
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "agent-sandbox-webhook"
    readme = (ROOT / "README.md").read_text()
    assert f"docker build -t {image} ." in readme
    assert "kustomize edit set image agent-sandbox-webhook=" in readme
    for where in ("Dockerfile", "e2e/README.md"):
        assert image in (ROOT / where).read_text(), where
    assert "ghcr.io" not in readme


def test_the_readme_skill_is_admitted_with_the_example_registry(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Skills"):]
    start = section.index("```yaml\n") + len("```yaml\n")
    skill = section[start:section.index("\n```", start)]
    manifest = tmp_path / "skill.yaml"
    manifest.write_text(skill)
    code, verdicts = check_with(manifest, "--registry", str(ROOT / "examples" / "registry.yaml"))
    assert code == 0
    assert verdicts == {"Skill": "admitted"}


def test_the_openshift_verify_pod_is_admitted_on_the_overlay_policy(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### OpenShift"):]
    start = section.index("cat <<'EOF' | oc apply -f -")
    pod = section[start:].split("\n", 1)[1].split("\nEOF", 1)[0]
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(AGENTS + pod)
    overlay = yaml.safe_load((ROOT / "manifests/overlays/openshift/policy.yaml").read_text())
    policy = tmp_path / "policy.yaml"
    policy.write_text(overlay["data"]["policy.yaml"])
    code, results = check(manifest, "--policy", str(policy))
    assert code == 0
    (verdict,) = [r for r in results if r["kind"] == "Pod"]
    assert verdict["verdict"] == "admitted"
    assert {"runtimeClassName", "labels", "securityContext"} <= set(verdict["changes"])


def test_the_sample_doctor_output_counts_the_webhooks_the_manifests_install() -> None:
    readme = (ROOT / "README.md").read_text()
    for kind, name in (("MutatingWebhookConfiguration", "mutatingwebhookconfiguration.yaml"),
                       ("ValidatingWebhookConfiguration",
                        "validatingwebhookconfiguration.yaml")):
        installed = yaml.safe_load((ROOT / "manifests" / "base" / name).read_text())
        assert installed["kind"] == kind
        count = len(installed["webhooks"])
        assert f"{kind} agent-sandbox-webhook: {count} webhooks;" in readme, (kind, count)
