"""Pod templates of workloads (Deployment, CronJob, ...): refuse early what pods would be.

Owns ``check_pod_template``: the pre-injection checks over a template, so that a workload
whose pods the webhook would refuse is refused itself (a Deployment that can never create a
pod is worse than a refused Deployment), and one warning per change the pod webhook WILL make
at pod creation. Templates are never patched: pods are mutated when they are created, and
templates lack what admission plugins add to real pods (service account, token volume), so
nothing here expects those. Walking workloads to find templates belongs to their policies.
"""

from __future__ import annotations

from typing import Any

from webhook.config.policy import Policy
from webhook.policies.pods.compiled import compile_policy
from webhook.policies.pods.mutate import plan_pod
from webhook.policies.result import Verdict, VerdictBuilder


def check_pod_template(pod: dict[str, Any], *, namespace: str, policy: Policy,
                       path: str) -> Verdict:
    """Violations for escapes, warnings for what pod creation will change; never a patch.

    ``path`` is where the template sits in the workload (``spec.template``); it prefixes
    every violation path and warning.
    """
    compiled = compile_policy(policy)
    builder = VerdictBuilder()
    pointer = "".join(f"/{part}" for part in path.split(".") if part)
    for change in plan_pod(pod, namespace=namespace, compiled=compiled, pointer=pointer,
                           builder=builder):
        if change.marker:
            continue
        verb = "will" if change.rule in compiled.patching else "would (in warn mode, will not)"
        builder.warn(f"[{change.rule}] {path}: {verb} {change.note} at pod creation")
    return builder.build()
