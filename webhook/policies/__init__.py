"""Pure admission policies, one module (or package) per kind, and the table of handlers.

Each handler takes the request facts and a ``Context`` and returns a ``Verdict``; none does
I/O. ``webhook.admission.seam`` looks handlers up here by (API group, kind): versions are not part
of the key, so every served version of a kind gets the same policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from webhook.policies import pods
from webhook.policies.context import Handler
from webhook.policies.forbidden import validate_envoyfilter, validate_workloadentry
from webhook.policies.networkpolicies import validate_networkpolicy
from webhook.policies.registry_configmap import validate_configmap
from webhook.policies.serviceentries import validate_serviceentry
from webhook.policies.sidecars import validate_sidecar
from webhook.policies.skills import validate_skill
from webhook.policies.virtualservices import validate_virtualservice
from webhook.policies.workloads import validate_workload

MUTATING: Mapping[tuple[str, str], Handler] = MappingProxyType({
    ("", "Pod"): pods.mutate_pod,
})

VALIDATING: Mapping[tuple[str, str], Handler] = MappingProxyType({
    ("", "Pod"): pods.validate_pod,
    # CONNECT on pods/exec and pods/attach: the request object is the options.
    ("", "PodExecOptions"): pods.validate_connect,
    ("", "PodAttachOptions"): pods.validate_connect,
    ("networking.istio.io", "ServiceEntry"): validate_serviceentry,
    ("agentsandbox.io", "Skill"): validate_skill,
    ("networking.istio.io", "Sidecar"): validate_sidecar,
    # Istio objects that can undo REGISTRY_ONLY; the configuration sends agent namespaces only.
    ("networking.istio.io", "EnvoyFilter"): validate_envoyfilter,
    ("networking.istio.io", "WorkloadEntry"): validate_workloadentry,
    ("networking.istio.io", "VirtualService"): validate_virtualservice,
    ("", "ConfigMap"): validate_configmap,
    # Agent namespaces: a tenant policy must not widen egress past the rendered floor.
    ("networking.k8s.io", "NetworkPolicy"): validate_networkpolicy,
    # Pod templates: refusals and warnings at `kubectl apply --dry-run=server` time.
    ("apps", "Deployment"): validate_workload,
    ("apps", "ReplicaSet"): validate_workload,
    ("apps", "StatefulSet"): validate_workload,
    ("apps", "DaemonSet"): validate_workload,
    ("batch", "Job"): validate_workload,
    ("batch", "CronJob"): validate_workload,
    ("agents.x-k8s.io", "Sandbox"): validate_workload,
    ("extensions.agents.x-k8s.io", "SandboxTemplate"): validate_workload,
})
