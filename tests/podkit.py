"""Small builders of raw pods and policies for the pod-policy tests."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonpatch

from webhook.config.policy import Policy
from webhook.policies.pods import mutate_pod_object
from webhook.policies.result import Verdict

REVIEWS = Path(__file__).parent / "fixtures" / "reviews"


def review(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads((REVIEWS / name).read_text("utf-8"))
    return result


def fixture_pod(name: str = "pod-create.json") -> dict[str, Any]:
    pod: dict[str, Any] = review(name)["request"]["object"]
    return pod


def policy(**sections: Any) -> Policy:
    return Policy.model_validate(sections)


def container(name: str = "agent", *, request: str | None = None, limit: str | None = None,
              **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": "registry.example.com/agents/a:1"}
    resources: dict[str, Any] = {}
    if request is not None:
        resources["requests"] = {"memory": request}
    if limit is not None:
        resources["limits"] = {"memory": limit}
    if resources:
        body["resources"] = resources
    body.update(extra)
    return body


# A container's share of the run-time identity guarantee, as the mutating webhook fills it.
HARDENED = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def identity(uid: int = 10001, gid: int = 10001, **more: Any) -> dict[str, Any]:
    """An explicit pod-level identity (the mutating webhook fills one in when absent).

    ``pod`` sets it unless the caller passes its own ``securityContext`` (``None`` or ``{}``
    to build a pod whose image would pick its identity).
    """
    return {"runAsUser": uid, "runAsGroup": gid, **more}


def pod(*containers: dict[str, Any], labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "p", "namespace": "agents"}
    if labels is not None:
        metadata["labels"] = labels
    if annotations is not None:
        metadata["annotations"] = annotations
    body = {"containers": list(containers) or [container(request="512Mi", limit="1Gi")],
            "dnsPolicy": "ClusterFirst", "securityContext": identity()}
    body.update(spec)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": body}


def patch_of(verdict: Verdict) -> list[dict[str, Any]]:
    return [op for mutation in verdict.mutations for op in mutation.ops]


def apply(verdict: Verdict, obj: dict[str, Any]) -> dict[str, Any]:
    """Apply a verdict's patch to a copy of ``obj`` exactly as the API server would."""
    patched: dict[str, Any] = jsonpatch.apply_patch(copy.deepcopy(obj), patch_of(verdict))
    return patched


def mutated(obj: dict[str, Any], *, namespace: str = "agents",
            policy_: Policy | None = None) -> dict[str, Any]:
    verdict = mutate_pod_object(obj, namespace=namespace, policy=policy_ or Policy())
    assert verdict.violations == (), [v.render() for v in verdict.violations]
    return apply(verdict, obj)


def rules_of(verdict: Verdict) -> list[tuple[str, str]]:
    return [(v.rule, v.path) for v in verdict.violations]
