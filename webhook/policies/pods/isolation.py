"""The isolation rules of THREATS.md: nothing of the host, no privilege, no proxy identity.

Owns the pod-level checks (host namespaces, sysctls, shareProcessNamespace,
hostAliases, Kata annotations, pod securityContext identity) and the per-container checks
(hostPort, privileged, procMount, added capabilities, runAsUser/runAsGroup) over containers,
init containers and ephemeral containers alike. Istio's own containers are recognised by
``classify`` (name AND shape) so that only they get their exemptions: ``istio-init`` may add
NET_ADMIN/NET_RAW, ``istio-proxy`` (and the CNI's ``istio-validation``) may run as the proxy
UID/GID. It does not decide what is Istio's before injection: then every container is the
user's (``final=False``).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.iptables import ref_argv
from webhook.policies.pods.walk import INIT_CONTAINERS, ContainerRef, join
from webhook.policies.result import VerdictBuilder

ISTIO_INIT_CAPABILITIES = frozenset({"NET_ADMIN", "NET_RAW"})
KATA_ANNOTATION_PREFIX = "io.katacontainers."
RUNTIME_HANDLER_ANNOTATIONS = frozenset({"io.containerd.cri.runtime-handler",
                                         "io.kubernetes.cri.runtime-handler",
                                         "io.kubernetes.cri-o.RuntimeHandler"})


class Role(Enum):
    APP = "app"
    PROXY = "istio-proxy"
    IPTABLES_INIT = "istio-init"
    CNI_VALIDATION = "istio-validation"


def classify(ref: ContainerRef, *, final: bool) -> Role:
    """Which of Istio's injected containers this is, if any (only in the final pod)."""
    if not final or ref.kind not in ("containers", INIT_CONTAINERS):
        return Role.APP
    if ref.name == "istio-proxy":
        if ref.kind == "containers" or ref.body.get("restartPolicy") == "Always":
            return Role.PROXY
        return Role.APP
    if ref.kind == INIT_CONTAINERS and ref_argv(ref) is not None:
        if ref.name == "istio-init":
            return Role.IPTABLES_INIT
        if ref.name == "istio-validation":
            return Role.CNI_VALIDATION
    return Role.APP


def _set(value: Any) -> bool:
    """A boolean-ish field that is anything but absent or false counts as set."""
    return value is not None and value is not False


def check_pod_level(metadata: dict[str, Any], spec: dict[str, Any], annotations: dict[str, Any],
                    *, compiled: CompiledPolicy, builder: VerdictBuilder, path: str,
                    proxy_uids: frozenset[int], proxy_gids: frozenset[int]) -> None:
    """Pod-level rules; ``proxy_uids``/``proxy_gids`` are the IDs only the proxy may use."""
    # Display paths are joined only inside a violation: a compliant pod needs none.
    on = compiled.checked.__contains__  # bound once: a set lookup per rule
    if on("pod.host-namespaces"):
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if _set(spec.get(key)):
                builder.violate("pod.host-namespaces", join(path, f"spec.{key}"), "shares a host "
                                f"namespace, which the Kata VM cannot give and would bypass "
                                f"the sidecar; remove {key}")
    if on("pod.share-process-namespace") and _set(spec.get("shareProcessNamespace")):
        builder.violate("pod.share-process-namespace",
                        join(path, "spec.shareProcessNamespace"),
                        "lets app containers reach the proxy's processes; remove it")
    if on("pod.host-aliases") and spec.get("hostAliases"):
        builder.violate("pod.host-aliases", join(path, "spec.hostAliases"), "pins names to "
                        "arbitrary IPs in /etc/hosts, around the filtering resolver; remove "
                        "hostAliases")
    security = spec.get("securityContext")
    if isinstance(security, dict) and security:
        _check_pod_security(security, compiled=compiled, builder=builder, path=path,
                            proxy_uids=proxy_uids, proxy_gids=proxy_gids)
    if annotations:
        check_kata_annotations(annotations, compiled=compiled, builder=builder, path=path)


def check_kata_annotations(annotations: dict[str, Any], *, compiled: CompiledPolicy,
                           builder: VerdictBuilder, path: str) -> None:
    """``pod.kata-annotations`` over these annotations (a whole pod's, or an update's)."""
    if "pod.kata-annotations" not in compiled.checked:
        return
    for key in annotations:
        if key.startswith(KATA_ANNOTATION_PREFIX) or key in RUNTIME_HANDLER_ANNOTATIONS:
            builder.violate("pod.kata-annotations", join(path, f"metadata.annotations[{key}]"),
                            "overrides the Kata runtime or hypervisor per pod; remove the "
                            "annotation")


def _check_pod_security(security: dict[str, Any], *, compiled: CompiledPolicy,
                        builder: VerdictBuilder, path: str, proxy_uids: frozenset[int],
                        proxy_gids: frozenset[int]) -> None:
    on = compiled.checked.__contains__
    if on("pod.sysctls") and security.get("sysctls"):
        builder.violate("pod.sysctls", join(path, "spec.securityContext.sysctls"), "sets "
                        "kernel parameters per pod; remove sysctls")
    if on("pod.proxy-identity"):
        for key, wanted in (("runAsUser", proxy_uids), ("runAsGroup", proxy_gids),
                            ("fsGroup", proxy_gids)):
            value = security.get(key)
            if _is_one_of(value, wanted):
                builder.violate("pod.proxy-identity", join(path, f"spec.securityContext.{key}"),
                                _identity_message(key, value))
        groups = security.get("supplementalGroups")
        shared = [g for g in groups if _is_one_of(g, proxy_gids)] if isinstance(groups, list) \
            else []
        if shared:
            builder.violate("pod.proxy-identity",
                            join(path, "spec.securityContext.supplementalGroups"),
                            _identity_message("supplementalGroups", shared[0]))


def _is_one_of(value: Any, wanted: frozenset[int]) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value in wanted


def _identity_message(key: str, wanted: Any) -> str:
    return (f"is {wanted}, the Istio proxy's identity, whose traffic iptables lets through "
            f"uncaptured; use another {('UID' if key == 'runAsUser' else 'GID')}")


# The securityContext keys a container check reads: a context with none of them (the usual
# runAsNonRoot / readOnlyRootFilesystem / drop ALL) is skipped with a few ``in`` tests.
_RISKY_KEYS = ("privileged", "procMount", "capabilities", "runAsUser", "runAsGroup")


def check_container(ref: ContainerRef, role: Role, *, compiled: CompiledPolicy,
                    builder: VerdictBuilder, proxy_uids: frozenset[int],
                    proxy_gids: frozenset[int]) -> None:
    """Per-container isolation checks; ``role`` grants Istio's containers their exemptions."""
    body = ref.body
    ports = body.get("ports")
    if ports and "pod.host-ports" in compiled.checked:
        for index, port in enumerate(ports if isinstance(ports, list) else ()):
            if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
                builder.violate("pod.host-ports", f"{ref.path}.ports[{index}].hostPort",
                                "binds a port on the host; remove hostPort (use a Service)")
    security = body.get("securityContext")
    if security is None:
        return
    if not isinstance(security, dict):
        builder.violate("pod.privileged", join(ref.path, "securityContext"), "must be an "
                        "object; fix the container's securityContext")
        return
    for key in _RISKY_KEYS:
        if key in security:
            _check_security(ref, role, security, compiled=compiled, builder=builder,
                            proxy_uids=proxy_uids, proxy_gids=proxy_gids)
            return


def _check_security(ref: ContainerRef, role: Role, security: dict[str, Any], *,
                    compiled: CompiledPolicy, builder: VerdictBuilder,
                    proxy_uids: frozenset[int], proxy_gids: frozenset[int]) -> None:
    on = compiled.checked.__contains__
    if on("pod.privileged") and _set(security.get("privileged")):
        builder.violate("pod.privileged", f"{ref.path}.securityContext.privileged", "gives the "
                        "container the whole VM and its network rules; remove privileged: true")
    if on("pod.proc-mount") and security.get("procMount") not in (None, "Default"):
        builder.violate("pod.proc-mount", f"{ref.path}.securityContext.procMount",
                        f"is {security.get('procMount')!r}; remove it or set Default")
    if on("pod.capabilities"):
        _check_capabilities(ref, role, security, builder=builder)
    if on("pod.proxy-identity") and role not in (Role.PROXY, Role.CNI_VALIDATION):
        for key, wanted in (("runAsUser", proxy_uids), ("runAsGroup", proxy_gids)):
            value = security.get(key)
            if _is_one_of(value, wanted):
                builder.violate("pod.proxy-identity", f"{ref.path}.securityContext.{key}",
                                _identity_message(key, value))


def _check_capabilities(ref: ContainerRef, role: Role, security: dict[str, Any], *,
                        builder: VerdictBuilder) -> None:
    capabilities = security.get("capabilities")
    if capabilities is None:
        return
    added = capabilities.get("add") if isinstance(capabilities, dict) else capabilities
    if added is None or added == []:
        return
    where = f"{ref.path}.securityContext.capabilities.add"
    if not isinstance(added, list):
        builder.violate("pod.capabilities", where, "must be a list; drop capabilities instead "
                        "of adding them")
        return
    allowed = ISTIO_INIT_CAPABILITIES if role is Role.IPTABLES_INIT else frozenset()
    extra = [str(cap) for cap in added
             if not (isinstance(cap, str) and cap.upper().removeprefix("CAP_") in allowed)]
    if extra:
        builder.violate("pod.capabilities", where, f"adds {', '.join(extra)}, which lets the "
                        "container rewrite or evade its own traffic capture; remove "
                        "capabilities.add (only Istio's istio-init may add NET_ADMIN/NET_RAW)")
