"""Everything ``doctor`` looks at, fetched once: the ``Snapshot`` and how it is gathered.

Owns which objects are read (from the policy in force: the RuntimeClass name, the Istio
revision, the resolver addresses; from the namespaces labelled for enforcement: their
Sidecars and NetworkPolicies) and the rule that a read the cluster refuses becomes an
``Unreadable`` value in the snapshot, for the check that needed it to report, instead of
stopping the run.

Deliberately decides nothing: ``webhook.tools.doctor.checks`` judges the snapshot, as pure
functions, and the reads themselves are ``webhook.cluster.inspection``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial as partial_call
from typing import Any, TypeVar

from webhook.cluster.inspection import ClusterInspector
from webhook.cluster.listing import SourceError
from webhook.config.policy import Policy, load_policy, parse_policy
from webhook.core.errors import ConfigError
from webhook.tools.offline import NamespaceMode, namespace_mode

T = TypeVar("T")

POLICY_CONFIGMAP = "agent-sandbox-policy"
POLICY_KEY = "policy.yaml"
REGISTRY_CONFIGMAP = "egress-registry"
REGISTRY_KEY = "registry.yaml"
CONFIGURATION_NAME = "agent-sandbox-webhook"
# The certificate Secret in secret mode (the default install), then in the cert-manager overlay.
CERT_SECRETS = ("agent-sandbox-webhook-tls", "agent-sandbox-webhook-cert")
CONTROLLER_DEPLOYMENT = "agent-sandbox-controller"
RENDERED_NETWORK_POLICY = "agent-sandbox-egress"
RENDERED_SIDECAR = "agent-sandbox-default"


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A read the cluster refused or could not answer; ``reason`` names the call."""

    reason: str


@dataclass(frozen=True, slots=True)
class Settings:
    namespace: str = "agent-sandbox-system"
    istio_namespace: str | None = None  # None: the policy's mesh.controlPlaneNamespace
    configuration: str = CONFIGURATION_NAME
    cert_secrets: tuple[str, ...] = CERT_SECRETS


@dataclass(frozen=True)
class Snapshot:
    """The cluster as ``doctor`` saw it. ``None``: not there; ``Unreadable``: could not look."""

    settings: Settings
    now: datetime
    version: dict[str, Any] | Unreadable
    namespaces: list[dict[str, Any]] | Unreadable
    mutating_webhooks: list[dict[str, Any]] | Unreadable
    validating_webhook: dict[str, Any] | Unreadable | None
    policy_configmap: dict[str, Any] | Unreadable | None
    registry_configmap: dict[str, Any] | Unreadable | None
    mesh_configmap: dict[str, Any] | Unreadable | None
    mesh_configmap_name: str
    istio_namespace: str
    certificates: dict[str, bytes] | Unreadable | None  # tls.crt and ca.crt only
    certificate_secret: str | None
    runtime_class: dict[str, Any] | Unreadable | None
    runtime_nodes: list[dict[str, Any]] | Unreadable | None  # None: no nodeSelector to match
    services: list[dict[str, Any]] | Unreadable
    endpoint_slices: list[dict[str, Any]] | Unreadable
    controller: dict[str, Any] | Unreadable | None
    root_sidecars: list[dict[str, Any]] | Unreadable | None
    sidecars: dict[str, list[dict[str, Any]] | Unreadable | None] = field(default_factory=dict)
    network_policies: dict[str, dict[str, Any] | Unreadable | None] = field(
        default_factory=dict)

    @property
    def policy(self) -> Policy:
        """The policy in force (the embedded default when its ConfigMap cannot be used)."""
        return policy_in(self.policy_configmap) or load_policy(None)

    def enforced_namespaces(self) -> list[str]:
        if isinstance(self.namespaces, Unreadable):
            return []
        return sorted(str((n.get("metadata") or {}).get("name")) for n in self.namespaces
                      if namespace_mode((n.get("metadata") or {}).get("labels"))
                      is NamespaceMode.ENFORCE)


def policy_in(configmap: dict[str, Any] | Unreadable | None) -> Policy | None:
    if not isinstance(configmap, dict):
        return None
    try:
        return parse_policy(str((configmap.get("data") or {}).get(POLICY_KEY, "")),
                            source=f"ConfigMap {POLICY_CONFIGMAP}")
    except ConfigError:
        return None


def _read(call: Callable[[], T]) -> T | Unreadable:
    try:
        return call()
    except SourceError as exc:
        return Unreadable(str(exc))


def gather(inspector: ClusterInspector, *, settings: Settings, now: datetime) -> Snapshot:
    """Read everything the checks need, once. Never raises for what the cluster refuses."""
    ns = settings.namespace
    policy_configmap = _read(lambda: inspector.read_config_map(ns, POLICY_CONFIGMAP))
    policy = policy_in(policy_configmap) or load_policy(None)
    revision = policy.istio.revision
    mesh_name = f"istio-{revision}" if revision else "istio"
    istio = settings.istio_namespace or policy.mesh.control_plane_namespace
    namespaces = _read(inspector.list_namespaces)
    runtime_class = _read(lambda: inspector.read_runtime_class(policy.runtime_class.name))
    secret_name, certificates = _certificates(inspector, settings)
    partial = Snapshot(
        settings=settings, now=now, version=_read(inspector.version), namespaces=namespaces,
        mutating_webhooks=_read(inspector.list_mutating_webhooks),
        validating_webhook=_read(lambda: inspector.read_validating_webhook(
            settings.configuration)),
        policy_configmap=policy_configmap,
        registry_configmap=_read(lambda: inspector.read_config_map(ns, REGISTRY_CONFIGMAP)),
        mesh_configmap=_read(lambda: inspector.read_config_map(istio, mesh_name)),
        mesh_configmap_name=mesh_name, istio_namespace=istio, certificates=certificates,
        certificate_secret=secret_name, runtime_class=runtime_class,
        runtime_nodes=_read(lambda: _runtime_nodes(inspector, runtime_class)),
        services=_read(inspector.list_services),
        endpoint_slices=_read(inspector.list_endpoint_slices),
        controller=_read(lambda: inspector.read_deployment(ns, CONTROLLER_DEPLOYMENT)),
        root_sidecars=_read(lambda: inspector.list_sidecars(istio)))
    for name in partial.enforced_namespaces():
        partial.sidecars[name] = _read(partial_call(inspector.list_sidecars, name))
        partial.network_policies[name] = _read(partial_call(
            inspector.read_network_policy, name, RENDERED_NETWORK_POLICY))
    return partial


def _certificates(inspector: ClusterInspector, settings: Settings
                  ) -> tuple[str | None, dict[str, bytes] | Unreadable | None]:
    problem: Unreadable | None = None
    for name in settings.cert_secrets:
        found = _read(partial_call(inspector.read_certificates, settings.namespace, name))
        if isinstance(found, dict):
            return name, found
        if isinstance(found, Unreadable):
            problem = problem or found
    return None, problem


def _runtime_nodes(inspector: ClusterInspector, runtime_class: Any
                   ) -> list[dict[str, Any]] | None:
    if not isinstance(runtime_class, dict):
        return None
    selector = ((runtime_class.get("scheduling") or {}).get("nodeSelector") or {})
    if not selector:
        return None
    return inspector.list_nodes(",".join(f"{k}={v}" for k, v in sorted(selector.items())))
