"""Per-agent and per-Skill egress: registry serviceAccounts, the identity labels the mutating
webhook stamps and the validating webhook trusts, the Skill cache, and the Sidecars render
makes from them (golden file; each admitted by the project's own Sidecar policy)."""

from __future__ import annotations

import copy
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from conftest import load_review
from objectreview import request_for

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy
from webhook.core.errors import ConfigError
from webhook.core.review import review_from_document
from webhook.egress.registry import Approval, parse_registry
from webhook.egress.render import render_layers
from webhook.policies.context import Context, SkillCatalog
from webhook.tools.render import write_objects

GOLDEN = Path(__file__).parent / "golden"
SA_LABEL = "agentsandbox.io/service-account"
SKILL_LABEL = "agentsandbox.io/skill"
POLICY = load_policy(None)
REGISTRY = parse_registry("""
entries:
- host: shared.example.com          # every agent in agents
  namespaces: [agents]
  protocols: [TLS, HTTPS]
- host: rates.example.com           # only the currency agent
  serviceAccounts: [agents/currency-agent]
  protocols: [TLS, HTTPS]
- host: news.example.org            # only the news agent
  serviceAccounts: [agents/news-agent]
  protocols: [TLS, HTTPS]
- host: "*.googleapis.com"
  protocols: [TLS, HTTPS]
""", source="test registry")
SKILL = {"apiVersion": "agentsandbox.io/v1alpha1", "kind": "Skill",
         "metadata": {"name": "bigquery-reader", "namespace": "agents"},
         "spec": {"egressRequirements": [
             {"host": "bigquery.googleapis.com", "port": 443, "protocol": "HTTPS"}]}}


def rendered(skills: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    return render_layers(REGISTRY, POLICY, ["agents"], skills=skills or [SKILL])


def sidecars() -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in rendered() if o["kind"] == "Sidecar"}


# --- registry semantics --------------------------------------------------------------------

@pytest.mark.parametrize(("host", "namespace", "approved"), [
    ("shared.example.com", "agents", True),
    ("rates.example.com", "agents", True),  # admission stays per namespace
    ("rates.example.com", "other", False),  # the accounts' namespaces only
    ("news.example.org", "agents", True),
    ("bigquery.googleapis.com", "other", True),
])
def test_service_account_entries_keep_admission_per_namespace(host: str, namespace: str,
                                                              approved: bool) -> None:
    result = REGISTRY.approve(host=host, namespace=namespace, port=443, protocol="TLS")
    assert isinstance(result, Approval) is approved


@pytest.mark.parametrize("entry", [
    "{host: a.example.com, serviceAccounts: [currency-agent]}",  # not namespace/name
    "{host: a.example.com, serviceAccounts: ['agents/Bad_Name']}",
    "{host: a.example.com, namespaces: [tools], serviceAccounts: [agents/x]}",  # outside
    "{host: a.example.com, serviceAccounts: []}",
])
def test_malformed_service_accounts_fail_at_load_time(entry: str) -> None:
    with pytest.raises(ConfigError):
        parse_registry(f"entries: [{entry}]\n", source="test")


def test_an_existing_registry_keeps_its_meaning() -> None:
    plain = parse_registry("entries: [{host: a.example.com, namespaces: [agents]}]\n",
                           source="test")
    (default,) = [o for o in render_layers(plain, POLICY, ["agents"]) if o["kind"] == "Sidecar"]
    assert "./a.example.com" in default["spec"]["egress"][0]["hosts"]


# --- rendered Sidecars ---------------------------------------------------------------------

def test_two_agents_in_one_namespace_get_disjoint_hosts_and_a_skill_exactly_its_own() -> None:
    found = sidecars()
    hosts = {name: set(obj["spec"]["egress"][0]["hosts"]) for name, obj in found.items()}
    mesh = {"istio-system/*"}
    assert hosts["agent-sandbox-default"] == {"./shared.example.com", "./*.googleapis.com",
                                              *mesh}
    assert hosts["agent-sandbox-sa-currency-agent"] - hosts["agent-sandbox-default"] == {
        "./rates.example.com"}
    assert hosts["agent-sandbox-sa-news-agent"] - hosts["agent-sandbox-default"] == {
        "./news.example.org"}
    assert hosts["agent-sandbox-skill-bigquery-reader"] == {"./bigquery.googleapis.com", *mesh}
    selectors = {name: obj["spec"].get("workloadSelector") for name, obj in found.items()}
    assert selectors["agent-sandbox-default"] is None
    assert selectors["agent-sandbox-sa-news-agent"] == {
        "labels": {SA_LABEL: "news-agent", SKILL_LABEL: ""}}
    assert selectors["agent-sandbox-skill-bigquery-reader"] == {
        "labels": {SKILL_LABEL: "bigquery-reader"}}


def test_a_skill_host_approved_through_a_suffix_gets_its_own_service_entry() -> None:
    entries = {o["spec"]["hosts"][0]: o for o in rendered() if o["kind"] == "ServiceEntry"}
    bigquery = entries["bigquery.googleapis.com"]
    assert bigquery["spec"]["ports"] == [{"number": 443, "name": "https-443",
                                          "protocol": "HTTPS"}]
    assert set(entries) == {"shared.example.com", "rates.example.com", "news.example.org",
                            "bigquery.googleapis.com"}


def test_a_skill_requirement_the_registry_does_not_approve_is_left_out() -> None:
    skill = copy.deepcopy(SKILL)
    skill["spec"]["egressRequirements"].append({"host": "evil.example.net", "port": 443,
                                                "protocol": "HTTPS"})
    (sidecar,) = [o for o in rendered([skill]) if o["metadata"]["name"].endswith("-reader")]
    assert "./evil.example.net" not in sidecar["spec"]["egress"][0]["hosts"]


def test_the_rendered_sidecars_match_their_golden_file_and_are_admitted() -> None:
    objects = [o for o in rendered() if o["kind"] in ("Sidecar", "ServiceEntry")]
    out = io.StringIO()
    write_objects(objects, "yaml", out)
    path = GOLDEN / "render-agents.yaml"
    if os.environ.get("UPDATE_GOLDEN"):
        path.write_text(out.getvalue())
    assert out.getvalue() == path.read_text()
    context = Context(policy=POLICY, registry=REGISTRY)
    for obj in objects:
        outcome = admit(request_for(obj), stage=Stage.VALIDATE, context=context)
        assert outcome.allowed, (obj["metadata"]["name"], outcome.review)


# --- the identity labels -------------------------------------------------------------------

def pod_review(labels: dict[str, str] | None = None, *, account: str | None = "default",
               operation: str = "CREATE") -> dict[str, Any]:
    document = copy.deepcopy(load_review("pod-create.json"))
    pod = document["request"]["object"]
    pod["metadata"]["labels"] = dict(labels or {})
    if account is None:
        pod["spec"].pop("serviceAccountName", None)
        pod["spec"].pop("serviceAccount", None)
    else:
        pod["spec"]["serviceAccountName"] = account
    document["request"]["operation"] = operation
    return document


def mutate(document: dict[str, Any], context: Context | None = None) -> Any:
    request = review_from_document(document)
    outcome = admit(request, stage=Stage.MUTATE, context=context or Context(policy=POLICY))
    return outcome, jsonpatch.apply_patch(request.object, list(outcome.patch))


@pytest.mark.parametrize(("account", "expected"), [("default", "default"),
                                                   ("currency-agent", "currency-agent"),
                                                   (None, "default")])
def test_the_service_account_label_is_stamped_from_the_spec(account: str | None,
                                                            expected: str) -> None:
    outcome, pod = mutate(pod_review(account=account))
    assert outcome.allowed
    assert pod["metadata"]["labels"][SA_LABEL] == expected
    assert pod["metadata"]["labels"][SKILL_LABEL] == ""
    assert any(f"add label {SA_LABEL}={expected}" in w for w in outcome.warnings)


def test_a_pod_without_a_labels_map_gets_one_and_keeps_the_inject_label() -> None:
    document = pod_review()
    del document["request"]["object"]["metadata"]["labels"]
    _, pod = mutate(document)
    assert pod["metadata"]["labels"][SA_LABEL] == "default"
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"


def test_a_matching_label_is_kept_and_a_skill_label_is_not_overwritten() -> None:
    outcome, pod = mutate(pod_review({SA_LABEL: "currency-agent", SKILL_LABEL: "fx"},
                                     account="currency-agent"))
    assert outcome.allowed
    assert pod["metadata"]["labels"][SKILL_LABEL] == "fx"
    assert not any(SA_LABEL in w for w in outcome.warnings)


def test_a_spoofed_service_account_label_is_refused_on_create() -> None:
    outcome, _ = mutate(pod_review({SA_LABEL: "currency-agent"}, account="default"))
    assert not outcome.allowed
    assert "pod.agent-identity" in outcome.rules
    assert f"[pod.agent-identity] metadata.labels[{SA_LABEL}]" in \
        outcome.review["response"]["status"]["message"]


def test_changing_the_label_on_update_is_refused_and_unrelated_updates_pass() -> None:
    old = review_from_document(pod_review({SA_LABEL: "default", SKILL_LABEL: ""})).object
    assert old is not None
    spoofed = copy.deepcopy(old)
    spoofed["metadata"]["labels"][SA_LABEL] = "currency-agent"
    context = Context(policy=POLICY, skills=SkillCatalog())
    refused = admit(request_for(spoofed, operation="UPDATE", old=old), stage=Stage.VALIDATE,
                    context=context)
    assert not refused.allowed
    assert "pod.agent-identity" in refused.rules
    relabelled = copy.deepcopy(old)
    relabelled["metadata"]["labels"]["team"] = "fx"
    assert admit(request_for(relabelled, operation="UPDATE", old=old), stage=Stage.VALIDATE,
                 context=context).allowed


def test_a_controller_made_pod_is_stamped_like_any_other() -> None:
    document = copy.deepcopy(load_review("pod-create-generatename.json"))
    outcome, pod = mutate(document)
    assert outcome.allowed
    assert pod["metadata"]["labels"][SA_LABEL] == pod["spec"]["serviceAccountName"]


# --- the Skill cache -----------------------------------------------------------------------

def skill_pod_update(skill: str) -> Any:
    """The captured `kubectl label pod ... agentsandbox.io/skill=<skill>` UPDATE."""
    document = copy.deepcopy(load_review("pod-update-labels.json"))
    document["request"]["object"]["metadata"]["labels"][SKILL_LABEL] = skill
    return review_from_document(document)


def validate_skill_pod(context: Context, skill: str = "bigquery-reader") -> Any:
    document = pod_review({SKILL_LABEL: skill})
    document["request"]["namespace"] = "agents"
    request = review_from_document(document)
    return admit(request, stage=Stage.VALIDATE, context=context)


def test_while_the_skill_cache_is_unsynced_a_skill_pod_fails_closed_with_the_reason() -> None:
    outcome = validate_skill_pod(Context(policy=POLICY, registry=REGISTRY))
    assert (outcome.allowed, outcome.code) == (False, 500)
    assert "Skill cache has not synced" in (outcome.failure or "")


def test_a_pod_without_a_skill_needs_no_cache() -> None:
    document = pod_review()
    outcome = admit(review_from_document(document), stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=REGISTRY))
    assert outcome.code != 500


def test_a_pod_naming_an_existing_approved_skill_is_not_refused_for_it() -> None:
    outcome = validate_skill_pod(Context(policy=POLICY, registry=REGISTRY,
                                         skills=SkillCatalog([SKILL])))
    assert "pod.skill" not in outcome.rules


def test_after_the_skill_is_deleted_the_next_pod_is_refused() -> None:
    present = Context(policy=POLICY, registry=REGISTRY, skills=SkillCatalog([SKILL]))
    assert "pod.skill" not in validate_skill_pod(present).rules
    deleted = Context(policy=POLICY, registry=REGISTRY, skills=SkillCatalog([]))
    outcome = validate_skill_pod(deleted)
    assert not outcome.allowed
    assert "pod.skill" in outcome.rules
    assert "does not exist in namespace agents" in outcome.review["response"]["status"][
        "message"]


def test_a_skill_whose_egress_is_no_longer_approved_is_refused() -> None:
    narrowed = parse_registry("entries: [{host: shared.example.com}]\n", source="t")
    outcome = validate_skill_pod(Context(policy=POLICY, registry=narrowed,
                                         skills=SkillCatalog([SKILL])))
    assert "pod.skill" in outcome.rules
    assert "skill.host-not-approved" in outcome.review["response"]["status"]["message"]


RATES_SKILL = {"apiVersion": "agentsandbox.io/v1alpha1", "kind": "Skill",
               "metadata": {"name": "fx", "namespace": "agents"},
               "spec": {"egressRequirements": [
                   {"host": "rates.example.com", "port": 443, "protocol": "HTTPS"}]}}


@pytest.mark.parametrize(("account", "refused"), [("default", True), ("news-agent", True),
                                                  ("currency-agent", False)])
def test_a_skill_lends_hosts_limited_to_service_accounts_only_to_those_accounts(
        account: str, refused: bool) -> None:
    document = pod_review({SKILL_LABEL: "fx"}, account=account)
    document["request"]["namespace"] = "agents"
    outcome = admit(review_from_document(document), stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=REGISTRY,
                                    skills=SkillCatalog([RATES_SKILL])))
    assert ("pod.skill" in outcome.rules) is refused
    if refused:
        message = outcome.review["response"]["status"]["message"]
        assert "only for service accounts currency-agent" in message


def test_labelling_a_running_pod_with_a_skill_is_checked_like_a_create() -> None:
    request = skill_pod_update("no-such-skill")
    outcome = admit(request, stage=Stage.VALIDATE,
                    context=Context(policy=POLICY, registry=REGISTRY, skills=SkillCatalog()))
    assert "pod.skill" in outcome.rules


# --- the command line ----------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
SKILL_POD = """apiVersion: v1
kind: Namespace
metadata: {name: agents, labels: {agentsandbox.io/enforce: "true"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
  namespace: agents
  labels: {agentsandbox.io/skill: bigquery-reader}
spec:
  securityContext: {runAsUser: 10001, runAsGroup: 10001, runAsNonRoot: true}
  containers:
    - name: agent
      image: registry.example.com/agents/reader:1.0
      resources: {requests: {memory: 2Gi}, limits: {memory: 2Gi}}
"""


def _check(tmp_path: Path, manifest: str) -> dict[str, Any]:
    registry = tmp_path / "registry.yaml"
    registry.write_text("entries: [{host: '*.googleapis.com', protocols: [TLS, HTTPS]}]\n")
    path = tmp_path / "in.yaml"
    path.write_text(manifest)
    result = subprocess.run([sys.executable, "-m", "webhook", "check", "-f", str(path),
                             "--registry", str(registry), "-o", "json"], capture_output=True,
                            text=True, cwd=ROOT, timeout=60)
    (pod,) = [r for r in json.loads(result.stdout)["results"] if r["kind"] == "Pod"]
    return pod


def test_check_judges_a_skill_pod_against_the_skills_in_its_input(tmp_path: Path) -> None:
    without = _check(tmp_path, SKILL_POD)
    assert without["verdict"] == "refused"
    assert "pod.skill" in without["rules"]
    with_skill = _check(tmp_path, SKILL_POD + "---\n" + yaml.safe_dump(SKILL))
    assert with_skill["verdict"] == "admitted", with_skill
    assert SA_LABEL not in str(with_skill.get("refusals"))


def test_render_reads_skills_from_a_file(tmp_path: Path) -> None:
    registry = tmp_path / "registry.yaml"
    registry.write_text("entries: [{host: '*.googleapis.com', protocols: [TLS, HTTPS]}]\n")
    skills = tmp_path / "skills.yaml"
    skills.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [SKILL]}))
    result = subprocess.run([sys.executable, "-m", "webhook", "render", "--registry",
                             str(registry), "--skills", str(skills), "-n", "agents"],
                            capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    names = [o["metadata"]["name"] for o in yaml.safe_load_all(result.stdout)]
    assert "agent-sandbox-skill-bigquery-reader" in names
    assert "agent-sandbox-bigquery-googleapis-com" in names
