"""The policy file: what an operator may configure, validated strictly at load time.

Owns the pydantic model of ``policy.yaml``, its embedded defaults, loading with errors that
name the file, field and reason, and the policy digest written into enforced pods. It does
not watch files (``webhook.config.watch``) and does not decide anything (``webhook.policies``).

Every model forbids unknown fields, so a typo in the policy file fails at start-up instead of
silently leaving a control at its default.
"""

from __future__ import annotations

import hashlib
import ipaddress
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from webhook.config.quantity import parse_quantity
from webhook.config.yamlfile import parse_model, read_source
from webhook.core.rules import RETIRED, RULES, Mode

DEFAULT_POLICY_RESOURCE = "defaults/policy.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RuntimeClassConfig(_Strict):
    """The approved RuntimeClasses; the first is set on pods that name none.

    OpenShift Sandboxed Containers has ``kata`` and, for peer pods on cloud, ``kata-remote``.
    ``name: X`` (one class, the earlier form of this section) still loads, as ``names: [X]``.
    """

    names: tuple[Annotated[str, Field(min_length=1)], ...] = Field(("kata", "kata-remote"),
                                                                    min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, value: Any) -> Any:
        if isinstance(value, dict) and "name" in value:
            if "names" in value:
                raise ValueError("set names (a list) or name, not both")
            value = {**value, "names": [value["name"]]}
            del value["name"]
        return value

    @field_validator("names")
    @classmethod
    def _unique(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("names lists a class twice")
        return value

    @property
    def name(self) -> str:
        """The class set on pods without one (the first approved)."""
        return self.names[0]


def _check_quantity(value: str) -> str:
    parse_quantity(value)  # raises ValueError with a clear message
    return value


Quantity = Annotated[str, Field(min_length=1)]


class MemoryConfig(_Strict):
    pod_floor: Quantity = Field("2Gi", alias="podFloor")
    container_default_request: Quantity = Field("256Mi", alias="containerDefaultRequest")
    container_default_limit: Quantity = Field("512Mi", alias="containerDefaultLimit")

    @field_validator("pod_floor", "container_default_request", "container_default_limit")
    @classmethod
    def _quantity(cls, value: str) -> str:
        _check_quantity(value)
        if parse_quantity(value) <= 0:
            raise ValueError(f"{value!r} must be above zero")
        return value

    @model_validator(mode="after")
    def _request_within_limit(self) -> MemoryConfig:
        # The webhook never sets a request above its limit; defaults that did would force it
        # to break its own rule.
        if (parse_quantity(self.container_default_request)
                > parse_quantity(self.container_default_limit)):
            raise ValueError("containerDefaultRequest must not exceed containerDefaultLimit")
        return self


class DNSOption(_Strict):
    name: str = Field(min_length=1)
    value: str | None = None


class DNSConfig(_Strict):
    nameservers: tuple[str, ...] = Field(("10.96.0.53",), min_length=1, max_length=3)
    cluster_domain: str = Field("cluster.local", alias="clusterDomain", min_length=1)
    options: tuple[DNSOption, ...] = (DNSOption(name="ndots", value="5"),)

    @field_validator("nameservers")
    @classmethod
    def _ips(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for server in value:
            try:
                ipaddress.ip_address(server)
            except ValueError as exc:
                raise ValueError(f"nameserver {server!r} is not an IP address") from exc
        return value


# ProxyConfig fields that change nothing about where traffic goes (worker threads, the
# proxy image flavour). Everything else (environmentVariables above all) is refused.
DEFAULT_PROXYCONFIG_SAFE_FIELDS = ("concurrency", "image")
PROXYCONFIG_FIELDS = frozenset({"concurrency", "environmentVariables", "image"})


class MeshFlavour(StrEnum):
    """How the mesh selects pods for injection, and what it injects."""

    # Upstream Istio, Sail and OpenShift Service Mesh 3.x: the sidecar.istio.io/inject label
    # (and istio.io/rev for revisions); istio-init, or istio-validation with the CNI.
    ISTIO = "istio"
    # OpenShift Service Mesh 2.x (Maistra): the sidecar.istio.io/inject annotation in member
    # namespaces of a ServiceMeshMemberRoll; always istio-cni; revision = the control plane.
    OSSM2 = "ossm2"


class IstioConfig(_Strict):
    flavour: MeshFlavour = MeshFlavour.ISTIO
    revision: str | None = None
    require_sidecar: bool = Field(True, alias="requireSidecar")
    proxy_uid: int = Field(1337, alias="proxyUID", ge=0)
    proxy_gid: int = Field(1337, alias="proxyGID", ge=0)
    # Kubernetes >= 1.29 (SidecarContainers on by default) and Istio >= 1.24 (the per-pod
    # sidecar.istio.io/nativeSidecar annotation). Off: pods with init containers are refused
    # unless the Istio CNI sets up capture before any container runs.
    native_sidecars: bool = Field(True, alias="nativeSidecars")
    # Istio's config root namespace (meshConfig.rootNamespace): objects there without a
    # workloadSelector apply to every proxy in the mesh.
    root_namespace: str = Field("istio-system", alias="rootNamespace", min_length=1)
    proxy_config_safe_fields: tuple[str, ...] = Field(DEFAULT_PROXYCONFIG_SAFE_FIELDS,
                                                      alias="proxyConfigSafeFields")

    @field_validator("proxy_config_safe_fields")
    @classmethod
    def _known_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - PROXYCONFIG_FIELDS)
        if unknown:
            raise ValueError(f"unknown ProxyConfig field(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(PROXYCONFIG_FIELDS))}")
        return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# kube-controller-manager's endpoint controllers, with per-controller credentials
# (--use-service-account-credentials) and without. Not the EndpointSlice *mirroring*
# controller: it copies whatever a user wrote into an Endpoints object.
DEFAULT_ENDPOINT_CONTROLLERS = (
    "system:serviceaccount:kube-system:endpoint-controller",
    "system:serviceaccount:kube-system:endpointslice-controller",
    "system:kube-controller-manager",
)


class NetworkConfig(_Strict):
    """The cluster's own address ranges: endpoints there stay inside the cluster."""

    pod_cidrs: tuple[Network, ...] = Field((ipaddress.ip_network("10.244.0.0/16"),),
                                           alias="podCIDRs")
    service_cidrs: tuple[Network, ...] = Field((ipaddress.ip_network("10.96.0.0/12"),),
                                               alias="serviceCIDRs")
    endpoint_controllers: tuple[str, ...] = Field(DEFAULT_ENDPOINT_CONTROLLERS,
                                                  alias="endpointControllers")
    # In-cluster ranges that hand-made (or mirrored) endpoints may point at: none by default,
    # since a selector-less Service at another namespace's pod or ClusterIP reaches whatever
    # runs there (a forward proxy) past every egress check.
    hand_made_endpoint_cidrs: tuple[Network, ...] = Field((), alias="handMadeEndpointCIDRs")

    @field_validator("pod_cidrs", "service_cidrs", "hand_made_endpoint_cidrs", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        try:
            return [ipaddress.ip_network(v) if isinstance(v, str) else v for v in value]
        except ValueError as exc:
            raise ValueError(f"not a CIDR with its host bits zero: {exc}") from exc

    @cached_property
    def _masks(self) -> tuple[tuple[int, int, int], ...]:
        # (IP version, network as an int, netmask as an int): a containment test is then two
        # integer operations instead of ipaddress's (endpoints can list a thousand addresses).
        return tuple((n.version, int(n.network_address), int(n.netmask))
                     for n in (*self.pod_cidrs, *self.service_cidrs))

    def in_cluster(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        value, version = int(address), address.version
        return any(v == version and value & mask == network for v, network, mask in self._masks)

    def hand_made_allowed(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        return any(address in network for network in self.hand_made_endpoint_cidrs
                   if network.version == address.version)


class IdentityConfig(_Strict):
    """The run-time identity agent containers get when their pod leaves it unset.

    ``fillUnset`` on: the mutating webhook sets what is missing (pod-level runAsUser,
    runAsGroup, runAsNonRoot; per container allowPrivilegeEscalation false and drop ALL).
    Off: a missing field is refused instead, under the same rule. The UID is never root; the
    GID may be 0 (OpenShift's convention for arbitrary UIDs: group 0 grants no privilege);
    neither is ever the proxy's (checked against ``istio`` in ``Policy``).
    """

    fill_unset: bool = Field(True, alias="fillUnset")
    run_as_user: int = Field(10001, alias="runAsUser", ge=1, le=2**31 - 1)
    run_as_group: int = Field(10001, alias="runAsGroup", ge=0, le=2**31 - 1)


class MeshConfig(_Strict):
    """What agent pods need inside the cluster, for the rendered Sidecar and NetworkPolicy."""

    # Where istiod runs: every proxy imports its services and reaches it on the ports below.
    control_plane_namespace: str = Field("istio-system", alias="controlPlaneNamespace",
                                         min_length=1)
    # 15012: xDS and certificate signing (TLS); 15017: istiod's webhook port, kept reachable
    # for in-mesh health checks. TCP only.
    control_plane_ports: tuple[int, ...] = Field((15012, 15017), alias="controlPlanePorts")
    # Namespaces agents call in the cluster (gateways, model servers): any TCP port.
    in_cluster_namespaces: tuple[str, ...] = Field((), alias="inClusterNamespaces")

    @field_validator("control_plane_ports")
    @classmethod
    def _ports(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        for port in value:
            if not 0 < port < 65536:
                raise ValueError(f"{port} is not a port number")
        return value


class EnforceLabelConfig(_Strict):
    """Who may remove or weaken a namespace's agentsandbox.io/enforce label (break glass)."""

    break_glass_groups: tuple[str, ...] = Field((), alias="breakGlassGroups")


class VolumesConfig(_Strict):
    """Inline CSI drivers a pod may name: their node plugins decide what the node connects to."""

    allowed_csi_drivers: tuple[str, ...] = Field((), alias="allowedCSIDrivers")


class ImagesConfig(_Strict):
    """Registries the node may pull agent images from; empty means any (the rule is off)."""

    allowed_registries: tuple[str, ...] = Field((), alias="allowedRegistries")

    @field_validator("allowed_registries")
    @classmethod
    def _plain_prefixes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for entry in value:
            if not entry or "://" in entry or any(c.isspace() for c in entry) or "@" in entry:
                raise ValueError(f"registry {entry!r} must be a registry host or host/path "
                                 "prefix, like registry.example.com or ghcr.io/example")
        return tuple(entry.rstrip("/") for entry in value)


class Policy(_Strict):
    """The whole policy file. Field names are camelCase in YAML, like Kubernetes objects."""

    runtime_class: RuntimeClassConfig = Field(default_factory=RuntimeClassConfig,
                                              alias="runtimeClass")
    memory: MemoryConfig = Field(default_factory=MemoryConfig)
    dns: DNSConfig = Field(default_factory=DNSConfig)
    istio: IstioConfig = Field(default_factory=IstioConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    mesh: MeshConfig = Field(default_factory=MeshConfig)
    enforce_label: EnforceLabelConfig = Field(default_factory=EnforceLabelConfig,
                                              alias="enforceLabel")
    volumes: VolumesConfig = Field(default_factory=VolumesConfig)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    rules: dict[str, Mode] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_identity_is_not_the_proxys(self) -> Policy:
        # A default identity equal to the proxy's would itself be the escape it exists to stop.
        if self.identity.run_as_user == self.istio.proxy_uid:
            raise ValueError(f"identity.runAsUser {self.identity.run_as_user} is the Istio "
                             "proxy's UID (istio.proxyUID); choose another")
        if self.identity.run_as_group == self.istio.proxy_gid:
            raise ValueError(f"identity.runAsGroup {self.identity.run_as_group} is the Istio "
                             "proxy's GID (istio.proxyGID); choose another")
        return self

    @field_validator("rules", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        # YAML 1.1 reads an unquoted `off` as false; it can only mean the mode "off" here.
        if isinstance(value, dict):
            return {key: ("off" if mode is False else mode) for key, mode in value.items()}
        return value

    @field_validator("rules")
    @classmethod
    def _known_rules(cls, value: dict[str, Mode]) -> dict[str, Mode]:
        retired = sorted(set(value) & set(RETIRED))
        if retired:
            raise ValueError("; ".join(f"rule id {old} was replaced by {', '.join(RETIRED[old])}"
                                       for old in retired) + " (see README.md)")
        unknown = sorted(set(value) - set(RULES))
        if unknown:
            raise ValueError(f"unknown rule id(s) {', '.join(unknown)}; known ids are listed "
                             "in README.md")
        return value

    def mode(self, rule_id: str) -> Mode:
        """The mode in force for a rule (the file's setting, else the rule's default)."""
        mode = self.rules.get(rule_id)
        if mode is not None:
            return mode
        return RULES[rule_id].default

    def mutates(self, rule_id: str) -> bool:
        """Mutations belong to rules: only an enforced rule changes the object."""
        return self.mode(rule_id) is Mode.ENFORCE

    def downgraded(self) -> Policy:
        """This policy with every enforced rule turned to warn (namespaces in rollout)."""
        modes = {rule_id: (Mode.WARN if self.mode(rule_id) is Mode.ENFORCE else
                           self.mode(rule_id)) for rule_id in RULES}
        return self.model_copy(update={"rules": modes})

    @cached_property
    def digest(self) -> str:
        """A short, deterministic fingerprint of everything that shapes a decision."""
        canonical = orjson.dumps(self.model_dump(mode="json", by_alias=True),
                                 option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]


def parse_policy(text: str, *, source: str) -> Policy:
    """Parse policy YAML; every problem is a ConfigError naming the source and field."""
    return parse_model(Policy, text, source=source, what="policy")


def load_policy(path: Path | None) -> Policy:
    """Load the policy file, or the embedded default when no path is given."""
    text, source = read_source(path, default_resource=DEFAULT_POLICY_RESOURCE, what="policy")
    return parse_policy(text, source=source)
