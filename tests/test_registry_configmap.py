"""The registry ConfigMap is admitted by the same loader the webhook runs with."""

from __future__ import annotations

import copy
from typing import Any

from conftest import load_review

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context

CONTEXT = Context(policy=load_policy(None))


def configmap(*, data: Any = None, name: str | None = None, binary: Any = None) -> Any:
    document = copy.deepcopy(load_review("configmap-create.json"))
    request = document["request"]
    if data is not None:
        request["object"]["data"] = data
    if binary is not None:
        request["object"]["binaryData"] = binary
    if name is not None:
        request["name"] = name
        request["object"]["metadata"]["name"] = name
    return admit(review_from_document(document), stage=Stage.VALIDATE, context=CONTEXT)


def test_golden_registry_configmap_is_allowed() -> None:
    outcome = configmap()
    assert outcome.allowed
    assert outcome.rules == ()


def test_a_broken_registry_is_refused_with_the_loaders_message() -> None:
    outcome = configmap(data={"registry.yaml": "entries:\n- host: 169.254.169.254\n"})
    assert not outcome.allowed
    assert outcome.code == 403
    assert outcome.rules == ("registry.invalid",)
    message = outcome.review["response"]["status"]["message"]
    assert "[registry.invalid] data.registry.yaml: ConfigMap agent-sandbox-system/egress-registry" \
        in message
    assert "entries.0.host" in message
    assert "IPv4" in message


def test_a_typo_in_a_field_name_is_refused() -> None:
    outcome = configmap(data={"registry.yaml": "entries:\n- host: api.example.com\n  port: 443\n"})
    assert outcome.rules == ("registry.invalid",)
    assert "entries.0.port" in outcome.review["response"]["status"]["message"]


def test_a_missing_key_is_refused() -> None:
    outcome = configmap(data={"registry.yml": "entries: []"})
    assert outcome.rules == ("registry.invalid",)
    assert "add the key registry.yaml" in outcome.review["response"]["status"]["message"]
    outcome = configmap(data={"other": "x"}, binary={"registry.yaml": "ZW50cmllczogW10K"})
    assert "put it under data" in outcome.review["response"]["status"]["message"]


def test_other_configmaps_are_allowed_whatever_they_hold() -> None:
    outcome = configmap(name="something-else", data={"registry.yaml": "not: [valid"})
    assert outcome.allowed
    assert outcome.rules == ()


def test_a_registry_that_loads_with_warnings_is_admitted_with_them() -> None:
    outcome = configmap(data={"registry.yaml": "entries:\n- host: '*.core.windows.net'\n"})
    assert outcome.allowed
    (warning,) = outcome.review["response"]["warnings"]
    assert "*.core.windows.net" in warning
    assert "Azure Blob Storage" in warning
