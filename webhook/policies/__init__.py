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
from webhook.policies.endpoints import validate_endpoints, validate_endpointslice
from webhook.policies.forbidden import validate_envoyfilter, validate_workloadentry
from webhook.policies.gatewayroutes import validate_route
from webhook.policies.meshextensions import validate_proxyconfig, validate_wasmplugin
from webhook.policies.namespaces import validate_namespace
from webhook.policies.networkpolicies import validate_networkpolicy
from webhook.policies.registry_configmap import validate_configmap
from webhook.policies.requestauthentication import validate_requestauthentication
from webhook.policies.rootnamespace import (
    root_envoyfilter,
    root_proxyconfig,
    root_sidecar,
    root_wasmplugin,
    split_by_root,
)
from webhook.policies.serviceentries import validate_serviceentry
from webhook.policies.serviceentry_export import mutate_serviceentry
from webhook.policies.services import validate_service
from webhook.policies.sidecars import validate_sidecar
from webhook.policies.skills import validate_skill
from webhook.policies.virtualservices import validate_virtualservice
from webhook.policies.workloads import validate_workload

MUTATING: Mapping[tuple[str, str], Handler] = MappingProxyType({
    ("", "Pod"): pods.mutate_pod,
    # An absent exportTo becomes ["."], so ServiceEntries written without one are admitted.
    ("networking.istio.io", "ServiceEntry"): mutate_serviceentry,
})

VALIDATING: Mapping[tuple[str, str], Handler] = MappingProxyType({
    ("", "Pod"): pods.validate_pod,
    # CONNECT on pods/exec and pods/attach: the request object is the options.
    ("", "PodExecOptions"): pods.validate_connect,
    ("", "PodAttachOptions"): pods.validate_connect,
    # pods/binding CREATE: the API server copies a Binding's annotations onto the pod.
    ("", "Binding"): pods.validate_binding,
    ("networking.istio.io", "ServiceEntry"): validate_serviceentry,
    ("agentsandbox.io", "Skill"): validate_skill,
    # Istio objects that can undo REGISTRY_ONLY; the configuration sends agent namespaces,
    # and for the mesh-wide kinds Istio's root namespace (judged by its own rules).
    ("networking.istio.io", "Sidecar"): split_by_root(validate_sidecar, root_sidecar),
    ("networking.istio.io", "EnvoyFilter"): split_by_root(validate_envoyfilter,
                                                          root_envoyfilter),
    ("extensions.istio.io", "WasmPlugin"): split_by_root(validate_wasmplugin, root_wasmplugin),
    ("networking.istio.io", "ProxyConfig"): split_by_root(validate_proxyconfig,
                                                          root_proxyconfig),
    ("networking.istio.io", "WorkloadEntry"): validate_workloadentry,
    ("networking.istio.io", "VirtualService"): validate_virtualservice,
    ("security.istio.io", "RequestAuthentication"): validate_requestauthentication,
    # Everything else Istio puts in the mesh's registry or routes by (agent namespaces).
    ("", "Service"): validate_service,
    ("", "Endpoints"): validate_endpoints,
    ("discovery.k8s.io", "EndpointSlice"): validate_endpointslice,
    ("gateway.networking.k8s.io", "HTTPRoute"): validate_route,
    ("gateway.networking.k8s.io", "GRPCRoute"): validate_route,
    ("gateway.networking.k8s.io", "TCPRoute"): validate_route,
    ("gateway.networking.k8s.io", "TLSRoute"): validate_route,
    ("", "ConfigMap"): validate_configmap,
    # The enforce label is the switch for everything: only break-glass groups may remove it.
    ("", "Namespace"): validate_namespace,
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
