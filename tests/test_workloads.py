"""Pod templates in workloads: where each kind keeps one, and the verdict a dry run gets."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.conftest import load_review
from webhook.admission.seam import Outcome, Stage, admit
from webhook.config.policy import load_policy
from webhook.core.review import review_from_document
from webhook.policies import VALIDATING
from webhook.policies.context import Context
from webhook.policies.workloads import (
    TEMPLATE_PATHS,
    extract_pod_template,
    validate_workload,
)

TEMPLATE = {
    "metadata": {"labels": {"app": "agent"}, "annotations": {"note": "kept"}},
    "spec": {"containers": [{"name": "agent", "image": "registry.example.com/agent:1"}]},
}

# (apiVersion, kind, the object around the template, dotted path of the template)
WORKLOADS = [
    ("apps/v1", "Deployment", {"spec": {"replicas": 2, "template": TEMPLATE}},
     "spec.template"),
    ("apps/v1", "ReplicaSet", {"spec": {"template": TEMPLATE}}, "spec.template"),
    ("apps/v1", "StatefulSet", {"spec": {"serviceName": "s", "template": TEMPLATE}},
     "spec.template"),
    ("apps/v1", "DaemonSet", {"spec": {"template": TEMPLATE}}, "spec.template"),
    ("batch/v1", "Job", {"spec": {"backoffLimit": 1, "template": TEMPLATE}}, "spec.template"),
    ("batch/v1", "CronJob",
     {"spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": TEMPLATE}}}},
     "spec.jobTemplate.spec.template"),
    ("agents.x-k8s.io/v1beta1", "Sandbox", {"spec": {"podTemplate": TEMPLATE}},
     "spec.podTemplate"),
    ("extensions.agents.x-k8s.io/v1beta1", "SandboxTemplate",
     {"spec": {"podTemplate": TEMPLATE}}, "spec.podTemplate"),
]


def _group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


@pytest.mark.parametrize(("api_version", "kind", "body", "path"), WORKLOADS)
def test_every_workload_kind_yields_its_pod_template_and_path(
        api_version: str, kind: str, body: dict[str, Any], path: str) -> None:
    found = extract_pod_template(body, group=_group(api_version), kind=kind)
    assert found is not None
    assert found.path == path
    assert found.pod == {"metadata": TEMPLATE["metadata"], "spec": TEMPLATE["spec"]}


def test_every_listed_kind_is_covered_by_the_table_above() -> None:
    assert {(_group(v), k) for v, k, _, _ in WORKLOADS} == set(TEMPLATE_PATHS)


@pytest.mark.parametrize(("api_version", "kind", "body", "path"), WORKLOADS)
def test_every_workload_kind_is_routed_to_the_validating_workload_handler(
        api_version: str, kind: str, body: dict[str, Any], path: str) -> None:
    assert VALIDATING[(_group(api_version), kind)] is validate_workload


@pytest.mark.parametrize("body", [
    {},
    {"spec": None},
    {"spec": {"template": "not a mapping"}},
    {"spec": {"template": {"metadata": {}}}},
    {"spec": {"jobTemplate": {"spec": {"template": TEMPLATE}}}},  # a CronJob shape on a Job
])
def test_a_missing_or_malformed_template_yields_nothing(body: dict[str, Any]) -> None:
    assert extract_pod_template(body, group="batch", kind="Job") is None


def test_a_kind_without_a_pod_template_yields_nothing() -> None:
    body = {"spec": {"template": TEMPLATE}}
    assert extract_pod_template(body, group="", kind="ConfigMap") is None


def test_a_template_without_metadata_gets_empty_metadata() -> None:
    found = extract_pod_template({"spec": {"template": {"spec": {"containers": []}}}},
                                 group="apps", kind="Deployment")
    assert found is not None
    assert found.pod["metadata"] == {}


# Through the admission seam, on what a real API server sent for a Deployment and a CronJob.

FIXTURES = {"Deployment": ("deployment-create.json", ("spec", "template")),
            "CronJob": ("cronjob-create.json", ("spec", "jobTemplate", "spec", "template"))}
CONTEXT = Context(policy=load_policy(None))


def _validate(document: dict[str, Any]) -> Outcome:
    return admit(review_from_document(document), stage=Stage.VALIDATE, context=CONTEXT)


def _with_template_change(kind: str, change: Any) -> dict[str, Any]:
    name, keys = FIXTURES[kind]
    document = copy.deepcopy(load_review(name))
    template = document["request"]["object"]
    for key in keys:
        template = template[key]
    change(template)
    return document


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_a_clean_workload_is_admitted_with_warnings_naming_what_will_change(kind: str) -> None:
    outcome = _validate(load_review(FIXTURES[kind][0]))
    assert outcome.allowed, outcome.review
    assert outcome.patch == ()  # templates are never mutated: the pod webhook does that
    joined = "\n".join(outcome.warnings)
    assert "pod.runtime-class" in joined
    assert "kata" in joined
    template_path = ".".join(FIXTURES[kind][1])
    assert template_path in joined


def _host_network(template: dict[str, Any]) -> None:
    template["spec"]["hostNetwork"] = True


def _proxy_uid(template: dict[str, Any]) -> None:
    template["spec"]["containers"][0]["securityContext"]["runAsUser"] = 1337


def _foreign_runtime_class(template: dict[str, Any]) -> None:
    template["spec"]["runtimeClassName"] = "gvisor"


@pytest.mark.parametrize("kind", sorted(FIXTURES))
@pytest.mark.parametrize(("change", "rule"), [
    (_host_network, "pod.host-namespaces"),
    (_proxy_uid, "pod.proxy-identity"),
    (_foreign_runtime_class, "pod.runtime-class"),
])
def test_a_workload_with_an_escape_is_refused_with_the_rule_id(kind: str, change: Any,
                                                               rule: str) -> None:
    outcome = _validate(_with_template_change(kind, change))
    assert not outcome.allowed
    assert outcome.code == 403
    assert rule in outcome.rules
    message = outcome.review["response"]["status"]["message"]
    assert f"[{rule}]" in message
    assert ".".join(FIXTURES[kind][1]) in message


def test_an_update_is_checked_like_a_create() -> None:
    document = _with_template_change("Deployment", _host_network)
    document["request"]["operation"] = "UPDATE"
    document["request"]["oldObject"] = load_review("deployment-create.json")["request"]["object"]
    outcome = _validate(document)
    assert not outcome.allowed
    assert "pod.host-namespaces" in outcome.rules


def test_a_status_update_is_not_judged_by_its_template() -> None:
    document = _with_template_change("Deployment", _host_network)
    document["request"]["operation"] = "UPDATE"
    document["request"]["subResource"] = "status"
    outcome = _validate(document)
    assert outcome.allowed
    assert outcome.warnings == ()


def test_a_dry_run_gets_the_same_verdict() -> None:
    document = _with_template_change("Deployment", _host_network)
    document["request"]["dryRun"] = True
    assert not _validate(document).allowed


def test_warn_mode_admits_the_escape_but_names_the_rule() -> None:
    document = _with_template_change("CronJob", _host_network)
    warn = Context(policy=load_policy(None).downgraded())
    outcome = admit(review_from_document(document), stage=Stage.VALIDATE, context=warn)
    assert outcome.allowed
    assert any("[pod.host-namespaces]" in w for w in outcome.warnings)
