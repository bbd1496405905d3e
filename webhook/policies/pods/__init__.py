"""The agent-pod policy: Kata isolation, memory floors, filtered DNS and the Istio sidecar.

Every pod this webhook is sent is an agent pod (the webhook configuration selects only
namespaces labelled ``agentsandbox.io/enforce: "true"``). This package owns the two
admission handlers and the pure cores other policies reuse for pod templates:

- ``mutate_pod``: CREATE; checks everything that can be checked before Istio's injector
  runs and patches in the runtime class, memory floors, DNS, Istio labels and the run-time
  identity fields the pod leaves unset. UPDATE of ``pods/ephemeralcontainers``: the same
  identity hardening for the containers ``kubectl debug`` adds.
- ``validate_pod``: CREATE (the final pod, after every mutating webhook), plain UPDATE and
  ``pods/status`` UPDATE (what a live pod may still change: images, labels, annotations),
  UPDATE of ``pods/ephemeralcontainers`` (the added containers) and of ``pods/resize`` (the
  floor); the labels and annotations any UPDATE changes, whatever its subresource.
- ``mutate_pod_object`` / ``validate_pod_object`` / ``check_pod_template``: the same logic
  over a raw pod-shaped dict, for workload templates and offline checks.

Modules: ``walk`` (raw-dict plumbing), ``compiled`` (per-policy precomputation), ``memory``,
``dns``, ``isolation``, ``identity`` (with ``fills``, what it sets), ``istio``,
``initorder``, ``volumes``, ``node``, ``iptables`` and ``proxyids`` (the proxy's identity as
the final pod gives it) (the rules), ``validate``, ``update``, ``mutate`` and ``template``
(assembly), ``connect`` (``kubectl exec``/``attach``).
"""

from __future__ import annotations

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.pods.binding import validate_binding
from webhook.policies.pods.connect import validate_connect
from webhook.policies.pods.mutate import mutate_ephemeral, mutate_pod_object
from webhook.policies.pods.template import check_pod_template
from webhook.policies.pods.update import check_metadata_update, check_pod_update
from webhook.policies.pods.validate import check_new_ephemeral, check_resize, validate_pod_object
from webhook.policies.result import Verdict, merged
from webhook.policies.skill_pods import check_skill_label

__all__ = [
    "check_pod_template",
    "mutate_pod",
    "mutate_pod_object",
    "validate_binding",
    "validate_connect",
    "validate_pod",
    "validate_pod_object",
]


def mutate_pod(request: Request, context: Context) -> Verdict:
    """The mutating handler: a pod's CREATE, and containers ``kubectl debug`` adds."""
    if request.object is None:
        return Verdict()
    if request.operation == "UPDATE" and request.sub_resource == "ephemeralcontainers":
        return mutate_ephemeral(request.object, request.old_object, policy=context.policy)
    if request.operation != "CREATE" or request.sub_resource:
        return Verdict()
    return mutate_pod_object(request.object, namespace=request.object_namespace,
                             policy=context.policy)


def validate_pod(request: Request, context: Context) -> Verdict:
    """The validating handler over the object as it will be stored."""
    pod = request.object
    if pod is None:
        return Verdict()
    if request.operation == "CREATE" and not request.sub_resource:
        return merged(validate_pod_object(pod, policy=context.policy, final=True,
                                          namespace=request.object_namespace),
                      check_skill_label(request, context))
    if request.operation != "UPDATE":
        # CREATE of pods/binding arrives as kind Binding (validate_binding); eviction is
        # not selected.
        return Verdict()
    skill = check_skill_label(request, context)  # a label: any UPDATE can change it
    if request.sub_resource in (None, "", "status"):
        # pods/status keeps the old spec but not the old labels and annotations.
        return merged(check_pod_update(pod, request.old_object, policy=context.policy,
                                       namespace=request.object_namespace), skill)
    own = Verdict()
    if request.sub_resource == "ephemeralcontainers":
        own = check_new_ephemeral(pod, request.old_object, policy=context.policy)
    elif request.sub_resource == "resize":
        own = check_resize(pod, policy=context.policy)
    metadata = check_metadata_update(pod, request.old_object, policy=context.policy)
    return merged(merged(own, metadata), skill)
