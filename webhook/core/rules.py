"""The rule catalogue: every rule id the webhook can report, with its default mode.

This module owns the *names* of rules and what they mean to an operator. It deliberately
holds no logic: the policies under ``webhook.policies`` decide when a rule is broken, and
``webhook.config.policy`` lets an operator change a rule's mode. A rule id is a stable public
interface (it appears in refusals, metrics, audit logs and the policy file), so ids are never
renamed, only added; a retired id stays in ``RETIRED`` with the ids that replaced it, so
a policy file naming it fails with a pointer to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class Mode(StrEnum):
    """What happens when a rule is broken."""

    ENFORCE = "enforce"  # refuse the object (code 403)
    WARN = "warn"  # admit it, with a warning that names the rule
    OFF = "off"  # do not check (and, for mutating rules, do not mutate)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    applies_to: str
    summary: str
    default: Mode = Mode.ENFORCE


def _catalogue(*rules: Rule) -> Mapping[str, Rule]:
    by_id = {rule.id: rule for rule in rules}
    if len(by_id) != len(rules):
        raise ValueError("duplicate rule id in the catalogue")
    return MappingProxyType(by_id)


POD_RULES = (
    Rule("pod.runtime-class", "Pod", "runs in an approved RuntimeClass (the first is set when "
         "absent; a foreign class is refused, never overwritten)"),
    Rule("pod.memory-floor", "Pod", "every app container has a memory request and limit, and "
         "the pod totals reach the floor the VM needs"),
    Rule("pod.kata-annotations", "Pod", "no io.katacontainers.* or runtime-handler annotations "
         "(per-pod hypervisor overrides)"),
    Rule("pod.host-namespaces", "Pod", "no hostNetwork, hostPID or hostIPC"),
    Rule("pod.host-ports", "Pod", "no hostPort on any container"),
    Rule("pod.host-path", "Pod", "no hostPath volumes"),
    Rule("pod.privileged", "Pod", "no privileged containers"),
    Rule("pod.proc-mount", "Pod", "no procMount other than Default"),
    Rule("pod.sysctls", "Pod", "no pod sysctls"),
    Rule("pod.share-process-namespace", "Pod", "no shareProcessNamespace"),
    Rule("pod.capabilities", "Pod", "no added capabilities outside Istio's init container"),
    Rule("pod.proxy-identity", "Pod", "no container, pod, group or fsGroup runs as the Istio "
         "proxy's UID/GID (its traffic would skip capture)"),
    Rule("pod.run-as-non-root", "Pod", "every non-Istio container runs as an explicit UID "
         "other than root (root can setuid to the proxy's UID); runAsUser is set at pod level "
         "when unset, runAsNonRoot true"),
    Rule("pod.run-as-group", "Pod", "every non-Istio container runs with an explicit primary "
         "GID, so the image's /etc/passwd cannot pick the proxy's (set at pod level when unset)"),
    Rule("pod.no-privilege-escalation", "Pod", "every non-Istio container has "
         "allowPrivilegeEscalation false, so no setuid binary gives root (set when unset)"),
    Rule("pod.drop-capabilities", "Pod", "every non-Istio container drops ALL capabilities "
         "(or at least SETUID and SETGID), so nothing can change its UID or GID (added when "
         "missing)"),
    Rule("pod.istio-inject", "Pod", "sidecar injection is on: inject label/annotation true, "
         "our istio.io/rev, no ambient opt-out"),
    Rule("pod.istio-reserved-names", "Pod", "no user container named istio-proxy, istio-init "
         "or istio-validation"),
    Rule("pod.istio-capture-annotations", "Pod", "no annotation that narrows traffic capture "
         "(excluded ranges, ports, interfaces, interception mode)"),
    Rule("pod.istio-proxy-override", "Pod", "no annotation that replaces the proxy, its image, "
         "template, bootstrap, volumes or control plane, or turns off probe rewriting"),
    Rule("pod.istio-sidecar", "Pod", "the final pod carries istio-proxy and an init container "
         "that captures all outbound traffic"),
    Rule("pod.istio-image-update", "Pod", "an UPDATE never changes the image of Istio's "
         "injected containers"),
    Rule("pod.native-sidecar", "Pod", "a pod with init containers is injected with Istio's "
         "proxy as a native sidecar (annotation set when absent; \"false\" is refused)"),
    Rule("pod.init-before-capture", "Pod", "in the final pod no user init container runs "
         "before Istio's capture is in place"),
    Rule("pod.istio-volumes", "Pod", "no user container mounts Istio's volumes (istio-envoy, "
         "istio-token, workload-socket, ...), no user volume takes their names, and before "
         "injection no mount names an undeclared volume"),
    Rule("pod.istio-exec", "Pod", "no kubectl exec or attach into Istio's containers "
         "(a process there runs as the proxy and skips capture)"),
    Rule("pod.network-volumes", "Pod", "no volume the node mounts from the network (nfs, "
         "iscsi, rbd, cephfs, glusterfs, flexVolume, gitRepo, unapproved inline CSI, ...)"),
    Rule("pod.probe-host", "Pod", "no host in probes or lifecycle handlers (the kubelet would "
         "connect there from the node)"),
    Rule("pod.image-registry", "Pod", "images come from the policy's registries (only when "
         "images.allowedRegistries is set)"),
    Rule("pod.dns", "Pod", "dnsPolicy None with exactly the filtering resolver's dnsConfig"),
    Rule("pod.host-aliases", "Pod", "no hostAliases"),
    Rule("pod.agent-identity", "Pod", "the agentsandbox.io/service-account label names the "
         "pod's own service account (set when absent; per-agent Sidecars select on it)"),
    Rule("pod.skill", "Pod", "a pod naming a Skill (agentsandbox.io/skill) names one that "
         "exists in its namespace with approved egress, and runs as a service account every "
         "Skill host limited to service accounts is approved for"),
)

SERVICEENTRY_RULES = (
    Rule("serviceentry.host-not-approved", "ServiceEntry", "every host is in the egress "
         "registry for the object's namespace"),
    Rule("serviceentry.host-denied", "ServiceEntry", "no host is on the registry's deny list"),
    Rule("serviceentry.host-invalid", "ServiceEntry", "every host is a valid DNS name: no IP "
         "literal, localhost, metadata, private-use or cluster name"),
    Rule("serviceentry.wildcard-host", "ServiceEntry", "no wildcard hosts"),
    Rule("serviceentry.resolution", "ServiceEntry", "resolution DNS, DNS_ROUND_ROBIN or "
         "STATIC; NONE only with addresses the registry pins; never DYNAMIC_DNS"),
    Rule("serviceentry.opaque-protocol", "ServiceEntry", "every port has a host-matched "
         "protocol (HTTPS, TLS, HTTP, HTTP2, GRPC), not TCP or other opaque ones"),
    Rule("serviceentry.addresses", "ServiceEntry", "addresses are exact IPs the registry lists "
         "for every host (no CIDRs)"),
    Rule("serviceentry.endpoints", "ServiceEntry", "endpoints point only at addresses or names "
         "the registry lists, on approved ports"),
    Rule("serviceentry.export-to", "ServiceEntry", "exportTo names only namespaces the hosts "
         "are approved for ('*' only when the registry allows mesh-wide export); an absent "
         "exportTo is set to [\".\"]"),
    Rule("serviceentry.mesh-internal", "ServiceEntry", "location is MESH_EXTERNAL"),
    Rule("serviceentry.workload-selector", "ServiceEntry", "no workloadSelector"),
    Rule("serviceentry.port-not-approved", "ServiceEntry", "every port and protocol (and "
         "targetPort) is approved for every host"),
)

SKILL_RULES = (
    Rule("skill.egress-missing", "Skill", "spec.egressRequirements is present (an empty list "
         "means no egress)"),
    Rule("skill.egress-invalid", "Skill", "each requirement is {host, port, protocol} with an "
         "exact DNS name, a port 1-65535 and HTTPS, TLS or HTTP"),
    Rule("skill.host-not-approved", "Skill", "each host is approved for the Skill's namespace "
         "on the declared port and protocol"),
    Rule("skill.host-denied", "Skill", "no host is on the registry's deny list"),
    Rule("skill.duplicate", "Skill", "no requirement is declared twice"),
)

SIDECAR_RULES = (
    Rule("sidecar.allow-any", "Sidecar", "no outboundTrafficPolicy ALLOW_ANY or egressProxy "
         "(they undo REGISTRY_ONLY)"),
    Rule("sidecar.wildcard-egress", "Sidecar", "no egress hosts that import wildcard hosts "
         "from every namespace (*/*, */*.example.com)"),
    Rule("sidecar.namespace-import", "Sidecar", "egress hosts import only from the Sidecar's "
         "own namespace, the mesh's control-plane namespace and the policy's "
         "mesh.inClusterNamespaces (no otherns/*, */<host>)"),
)

ISTIO_OBJECT_RULES = (
    Rule("envoyfilter.forbidden", "EnvoyFilter", "no EnvoyFilter in agent namespaces (it can "
         "rewrite the proxy's listeners and clusters; nothing in it can be checked)"),
    Rule("workloadentry.forbidden", "WorkloadEntry", "no WorkloadEntry in agent namespaces "
         "(it adds mesh endpoints at arbitrary addresses)"),
    Rule("virtualservice.destination-not-approved", "VirtualService", "every route and mirror "
         "destination is a cluster-local Service or an exact host the registry approves for "
         "the namespace"),
    Rule("virtualservice.host-not-approved", "VirtualService", "every external name in hosts "
         "is an exact host the registry approves for the namespace"),
    Rule("virtualservice.export-to", "VirtualService", "exportTo is set and is not '*' (the "
         "routes stay out of other namespaces' proxies)"),
)

NETWORK_POLICY_RULES = (
    Rule("networkpolicy.widens-egress", "NetworkPolicy", "no egress rule allows UDP, SCTP or "
         "every protocol (only DNS to the filtering resolver; TCP is filtered by the sidecar)"),
)

SERVICE_RULES = (
    Rule("service.external-name", "Service", "an ExternalName Service names an exact host the "
         "registry approves for the namespace on every declared port and protocol"),
    Rule("service.external-ips", "Service", "externalIPs and loadBalancerIP are in the "
         "cluster's pod or Service ranges, or addresses the registry pins for an approved host"),
    Rule("endpoints.address-not-approved", "Endpoints, EndpointSlice", "every address is in "
         "the cluster's pod or Service ranges (never loopback, link-local or metadata), or one "
         "the registry pins for a host approved for the namespace on that port"),
)

MESH_EXTENSION_RULES = (
    Rule("wasmplugin.forbidden", "WasmPlugin", "no WasmPlugin in agent namespaces (code in "
         "the agent's proxy; nothing in it can be checked)"),
    Rule("proxyconfig.unsafe-field", "ProxyConfig", "a ProxyConfig in an agent namespace sets "
         "only the fields istio.proxyConfigSafeFields lists"),
    Rule("route.backend-not-approved", "HTTPRoute, GRPCRoute, TCPRoute, TLSRoute", "every "
         "backendRef (and mirror) is a Service of the route's namespace or a Hostname the "
         "registry approves for it"),
    Rule("requestauthentication.jwks-uri", "RequestAuthentication", "every jwksUri (or the "
         "issuer, when istiod discovers the keys) names a host the registry approves for the "
         "namespace; or the keys are inline (jwks)"),
)

ROOT_NAMESPACE_RULES = (
    Rule("rootnamespace.envoyfilter", "EnvoyFilter", "no EnvoyFilter in the Istio root "
         "namespace that selects every proxy (no workloadSelector, or one on labels every "
         "mesh pod carries)"),
    Rule("rootnamespace.wasmplugin", "WasmPlugin", "no WasmPlugin in the Istio root namespace "
         "that selects every proxy"),
    Rule("rootnamespace.sidecar", "Sidecar", "the root namespace's mesh-wide Sidecar has no "
         "ALLOW_ANY, egressProxy or wildcard imports from every namespace"),
    Rule("rootnamespace.proxyconfig", "ProxyConfig", "the root namespace's mesh-wide "
         "ProxyConfig sets only the fields istio.proxyConfigSafeFields lists"),
)

NAMESPACE_RULES = (
    Rule("namespace.enforce-label", "Namespace", "the agentsandbox.io/enforce label of a "
         "namespace is not removed or weakened, except by the policy's break-glass groups"),
)

REGISTRY_RULES = (
    Rule("registry.invalid", "ConfigMap", "the egress-registry ConfigMap holds a registry.yaml "
         "that loads"),
)

# Retired id -> the ids that replaced it (a policy file naming a retired id fails at load).
RETIRED: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "pod.explicit-identity": ("pod.run-as-non-root", "pod.run-as-group"),
})

RULES: Mapping[str, Rule] = _catalogue(*POD_RULES, *SERVICEENTRY_RULES, *SKILL_RULES,
                                      *SIDECAR_RULES, *REGISTRY_RULES, *ISTIO_OBJECT_RULES,
                                      *NETWORK_POLICY_RULES, *SERVICE_RULES,
                                      *MESH_EXTENSION_RULES, *ROOT_NAMESPACE_RULES,
                                      *NAMESPACE_RULES)
