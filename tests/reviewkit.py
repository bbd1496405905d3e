"""Building AdmissionReview requests for any kind, and asking the seam about them.

Shared by the tests of Services, endpoints, Istio and Gateway API objects: one request per
call, shaped like the captured ones (tests/fixtures/reviews), and ``decide``, which returns the
(rule, path) pairs a handler reports after asserting that ``admit`` agrees on the verdict.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client

from webhook.admission.seam import Outcome, Stage, admit, handler_for
from webhook.config.policy import Policy
from webhook.core.review import Request, review_from_document
from webhook.egress.registry import Registry
from webhook.policies.context import Context
from webhook.tools.offline import plural


def make_request(api_version: str, kind: str, body: dict[str, Any], *,
                 namespace: str = "agents", operation: str = "CREATE",
                 username: str = "alice", name: str = "x",
                 metadata: dict[str, Any] | None = None) -> Request:
    """A request for ``body`` (spec or top-level fields of the object, merged in)."""
    group, _, version = api_version.rpartition("/")
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": plural(kind)}
    obj = {"apiVersion": api_version, "kind": kind,
           "metadata": {"name": name, "namespace": namespace, **(metadata or {})}, **body}
    request: dict[str, Any] = {
        "uid": "5b1f3a52-8f0e-4a53-9a0e-0c8b8f6c1d10", "kind": gvk, "resource": gvr,
        "requestKind": gvk, "requestResource": gvr, "name": name, "namespace": namespace,
        "operation": operation, "userInfo": {"username": username}, "object": obj,
        "oldObject": obj if operation == "UPDATE" else None, "dryRun": False}
    return review_from_document({"apiVersion": "admission.k8s.io/v1",
                                 "kind": "AdmissionReview", "request": request})


def decide(request: Request, *, policy: Policy, registry: Registry | None,
           exported: Context | None = None) -> tuple[list[tuple[str, str]], Outcome]:
    """(rule, path) of each violation, and the seam's outcome, which must agree."""
    context = Context(policy=policy, registry=registry, exported=exported)
    handler = handler_for(request, Stage.VALIDATE)
    assert handler is not None, (request.group, request.kind)
    violations = [(v.rule, v.path) for v in handler(request, context).violations]
    outcome = admit(request, stage=Stage.VALIDATE, context=context)
    if exported is None:
        refused = bool(violations) and any(policy.mode(r).value == "enforce"
                                           for r, _ in violations)
        assert outcome.allowed is not refused, outcome.review
    return violations, outcome


def listed(api_version: str, kind: str, body: dict[str, Any],
           *namespaces: str) -> dict[str, Any]:
    """A list response as the API server sends it: one ``<kind>-<namespace>`` object each."""
    return {"items": [{"apiVersion": api_version, "kind": kind,
                       "metadata": {"name": f"{kind.lower()}-{ns}", "namespace": ns}, **body}
                      for ns in namespaces]}


def agent_namespaces(*names: str) -> Any:
    """The Namespace list ``audit`` reads: each name labelled as an enforced agent namespace."""
    return client.V1NamespaceList(items=[client.V1Namespace(metadata=client.V1ObjectMeta(
        name=name, labels={"agentsandbox.io/enforce": "true"})) for name in names])
