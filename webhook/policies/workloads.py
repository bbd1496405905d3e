"""Pod templates inside workloads: find them, and judge them the way the pod webhook will.

Owns where each workload kind keeps its pod template (Deployment, ReplicaSet, StatefulSet,
DaemonSet, Job, CronJob's nested job template, and kubernetes-sigs/agent-sandbox's
``Sandbox`` and ``SandboxTemplate``) and the validating handler for those kinds. A workload
creates no pod during ``kubectl apply --dry-run=server``, so without this handler a dry run
of a Deployment would say nothing; with it, the user hears the refusal or the warnings now.

Deliberately does not own the pod rules: ``check_pod_template`` in ``webhook.policies.pods``
decides, with the same rule ids as pods. Nor does it mutate templates: the pod webhook makes
every change at pod creation and stays the backstop for anything a template cannot show
(admission plugins and Istio's injector only act on real pods).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.pods import check_pod_template
from webhook.policies.result import Verdict

CHECKED_OPERATIONS = frozenset({"CREATE", "UPDATE"})

_SPEC_TEMPLATE = ("spec", "template")
_SANDBOX_TEMPLATE = ("spec", "podTemplate")

TEMPLATE_PATHS: Mapping[tuple[str, str], tuple[str, ...]] = MappingProxyType({
    ("apps", "Deployment"): _SPEC_TEMPLATE,
    ("apps", "ReplicaSet"): _SPEC_TEMPLATE,
    ("apps", "StatefulSet"): _SPEC_TEMPLATE,
    ("apps", "DaemonSet"): _SPEC_TEMPLATE,
    ("batch", "Job"): _SPEC_TEMPLATE,
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template"),
    # kubernetes-sigs/agent-sandbox: a Sandbox is one pod; a SandboxTemplate is what
    # SandboxClaims and warm pools stamp Sandboxes from. Both embed the pod at podTemplate.
    ("agents.x-k8s.io", "Sandbox"): _SANDBOX_TEMPLATE,
    ("extensions.agents.x-k8s.io", "SandboxTemplate"): _SANDBOX_TEMPLATE,
})
"""Where each workload kind keeps its pod template, keyed like the handler tables."""

WORKLOAD_KINDS = frozenset(TEMPLATE_PATHS)


@dataclass(frozen=True, slots=True)
class PodTemplate:
    """A pod-shaped dict taken from a workload, and the dotted path it came from."""

    pod: dict[str, Any]
    path: str


def extract_pod_template(obj: Mapping[str, Any], *, group: str, kind: str) -> PodTemplate | None:
    """The pod template of a workload, or None when the kind has none or it is malformed.

    The result holds only ``metadata`` (labels and annotations are what pod rules read) and
    ``spec``: a template never has a name, namespace or status of its own.
    """
    keys = TEMPLATE_PATHS.get((group, kind))
    if keys is None:
        return None
    node: Any = obj
    for key in keys:
        node = node.get(key) if isinstance(node, Mapping) else None
    if not isinstance(node, Mapping) or not isinstance(node.get("spec"), Mapping):
        return None
    metadata = node.get("metadata")
    return PodTemplate(
        pod={"metadata": dict(metadata) if isinstance(metadata, Mapping) else {},
             "spec": dict(node["spec"])},
        path=".".join(keys),
    )


def validate_workload(request: Request, context: Context) -> Verdict:
    """Refuse template escapes the pod webhook could never fix; warn what it will change."""
    if request.operation not in CHECKED_OPERATIONS or request.object is None:
        return Verdict()
    if request.sub_resource:
        # status and scale updates cannot change the pod template.
        return Verdict()
    template = extract_pod_template(request.object, group=request.group, kind=request.kind)
    if template is None:
        # The API server's own validation refuses a workload without a template before
        # validating webhooks run; anything stranger is left to the pod webhook.
        where = ".".join(TEMPLATE_PATHS.get((request.group, request.kind), ("spec",)))
        return Verdict(warnings=(f"{where}: no pod template found; the pod webhook will "
                                 "check each pod when it is created",))
    return check_pod_template(template.pod, namespace=request.object_namespace,
                              policy=context.policy, path=template.path)
