"""``kubectl exec`` / ``kubectl attach`` (CONNECT on pods/exec and pods/attach) through ``admit``.

No CONNECT review was captured; these are built from the captured UPDATE envelope with the
fields a CONNECT carries instead (kind ``PodExecOptions``/``PodAttachOptions``, resource
``pods`` with the subresource, operation CONNECT, the options as ``object``, no oldObject),
following the ``PodExecOptions`` type of k8s.io/api.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.podkit import review
from webhook.admission.seam import Outcome, Stage, admit
from webhook.config.policy import Policy
from webhook.core.review import review_from_document
from webhook.policies.context import Context

KINDS = {"exec": "PodExecOptions", "attach": "PodAttachOptions"}


def connect(sub_resource: str, container: Any = None, **options: Any) -> dict[str, Any]:
    document = copy.deepcopy(review("pod-update-labels.json"))
    request = document["request"]
    kind = {"group": "", "version": "v1", "kind": KINDS.get(sub_resource, "PodExecOptions")}
    obj: dict[str, Any] = {"kind": kind["kind"], "apiVersion": "v1", "stdin": True,
                           "stdout": True, "tty": True, **options}
    if container is not None:
        obj["container"] = container
    if sub_resource == "exec":
        obj.setdefault("command", ["sh"])
    request.update(kind=kind, requestKind=kind, subResource=sub_resource,
                   requestSubResource=sub_resource, operation="CONNECT", object=obj,
                   oldObject=None, options=None)
    return document


def decide(document: dict[str, Any], policy: Policy | None = None) -> Outcome:
    return admit(review_from_document(document), stage=Stage.VALIDATE,
                 context=Context(policy=policy or Policy()))


@pytest.mark.parametrize("sub_resource", sorted(KINDS))
@pytest.mark.parametrize("container", ["istio-proxy", "istio-init", "istio-validation"])
def test_exec_and_attach_into_istios_containers_are_refused(sub_resource: str,
                                                            container: str) -> None:
    outcome = decide(connect(sub_resource, container))
    assert (outcome.allowed, outcome.code, outcome.rules) == (False, 403, ("pod.istio-exec",))
    assert "[pod.istio-exec] container:" in outcome.review["response"]["status"]["message"]


@pytest.mark.parametrize("sub_resource", sorted(KINDS))
def test_exec_and_attach_into_the_agents_container_are_admitted(sub_resource: str) -> None:
    assert decide(connect(sub_resource, "agent")).allowed


def test_an_unnamed_container_is_left_to_the_api_server() -> None:
    # The API server picks the only container, and refuses when there are several: an agent
    # pod's classic istio-proxy always has the agent's container beside it.
    assert decide(connect("exec")).allowed


def test_a_container_that_is_not_a_name_is_refused() -> None:
    assert decide(connect("exec", ["istio-proxy"])).rules == ("pod.istio-exec",)


def test_a_connect_without_options_fails_closed() -> None:
    document = connect("exec", "agent")
    document["request"]["object"] = None
    outcome = decide(document)
    assert (outcome.allowed, outcome.code) == (False, 500)


def test_the_exec_rule_follows_its_mode() -> None:
    warn = Policy.model_validate({"rules": {"pod.istio-exec": "warn"}})
    outcome = decide(connect("exec", "istio-proxy"), warn)
    assert outcome.allowed
    assert any("[pod.istio-exec]" in w for w in outcome.warnings)


def test_a_dry_run_flag_does_not_change_the_verdict() -> None:
    document = connect("attach", "istio-proxy")
    document["request"]["dryRun"] = True
    assert not decide(document).allowed
