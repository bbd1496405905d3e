"""The validating side of the pod policy: every rule over one pod, pre- or post-injection.

Owns ``validate_pod_object`` (the pure check of a raw pod dict) and ``check_new_ephemeral``
(``kubectl debug`` adding containers to a running pod). ``final=True`` means the pod as it
will run, after every mutating webhook (Istio's included): what the mutating webhook
guarantees must hold, and the sidecar must be there. ``final=False`` means a pod (or template)
before injection: only escapes are refused, and every container is the user's. It emits no
patches (``mutate``).
"""

from __future__ import annotations

from typing import Any

from webhook.config.policy import Policy
from webhook.policies.pods import (
    agentlabels,
    dns,
    identity,
    initorder,
    isolation,
    istio,
    memory,
    node,
    volumes,
)
from webhook.policies.pods.compiled import CompiledPolicy, compile_policy
from webhook.policies.pods.proxyids import proxy_ids
from webhook.policies.pods.walk import (
    CONTAINERS,
    EPHEMERAL_CONTAINERS,
    INIT_CONTAINERS,
    ContainerRef,
    containers,
    iter_containers,
    join,
    pod_parts,
    string_map,
)
from webhook.policies.result import Verdict, VerdictBuilder

RUNTIME_RULE = "pod.runtime-class"


def check_runtime_class(spec: dict[str, Any], *, compiled: CompiledPolicy,
                        builder: VerdictBuilder, path: str, final: bool) -> None:
    if RUNTIME_RULE not in compiled.checked:
        return
    current = spec.get("runtimeClassName")
    if isinstance(current, str) and current in compiled.runtime_classes:
        return
    where = join(path, "spec.runtimeClassName")
    wanted = compiled.runtime_class
    if current is None:
        if final:
            builder.violate(RUNTIME_RULE, where, f"is not set; agent pods run in the {wanted} "
                            "RuntimeClass (the mutating webhook sets it: is it installed?)")
        return
    approved = " or ".join(f'"{name}"' for name in sorted(compiled.runtime_classes))
    builder.violate(RUNTIME_RULE, where, f"{_quote(current)} is not an approved class "
                    f"({approved}); the API server has already applied {_plain(current)}'s "
                    "overhead, so the webhook cannot switch it: remove runtimeClassName "
                    f"or set it to {wanted}")


def _quote(value: Any) -> str:
    return f"\"{value}\"" if isinstance(value, str) else repr(value)


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


PodMaps = tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]


def pod_maps(pod: Any, *, path: str) -> PodMaps:
    """``(metadata, spec, labels, annotations)`` of a raw pod, read once for every rule."""
    metadata, spec = pod_parts(pod, path=path)
    return (metadata, spec, string_map(metadata, "labels", path=path),
            string_map(metadata, "annotations", path=path))


def check_pod(pod: Any, *, compiled: CompiledPolicy, builder: VerdictBuilder, path: str,
              final: bool, namespace: str | None, read_memory: bool = True,
              pointer: str = "") -> list[memory.Sizing] | None:
    """Every pod rule over one raw pod; violations go to ``builder`` (see ``check_parts``)."""
    return check_parts(pod_maps(pod, path=path), compiled=compiled, builder=builder, path=path,
                       final=final, namespace=namespace, read_memory=read_memory,
                       pointer=pointer)


def check_parts(parts: PodMaps, *, compiled: CompiledPolicy, builder: VerdictBuilder,
                path: str, final: bool, namespace: str | None, read_memory: bool = True,
                pointer: str = "",
                refs: list[ContainerRef] | None = None) -> list[memory.Sizing] | None:
    """Every pod rule over one pod's ``pod_maps``; violations go to ``builder``.

    Returns the app containers' memory sizings (None when the memory rule is off or a
    quantity is unusable), read in the same single pass over the containers as every
    per-container rule. ``read_memory=False`` is the mutating side's order: memory problems
    are reported after every other check (where its raise planning used to find them), and
    the floors are not checked, since the caller plans raises to meet them. ``refs`` are
    the spec's ``containers`` when the caller has already walked them (nothing before the
    walk can raise, so walking earlier changes no answer).
    """
    metadata, spec, labels, annotations = parts
    check_runtime_class(spec, compiled=compiled, builder=builder, path=path, final=final)
    memory_at = len(builder.violations)  # memory problems are reported here (validating)
    if final and dns.RULE in compiled.checked:
        ns = namespace or metadata.get("namespace")
        dns.check_dns(spec, namespace=ns if isinstance(ns, str) and ns else None,
                      compiled=compiled, builder=builder, path=path)
    istio.check_injection(labels, annotations, compiled=compiled, builder=builder, path=path,
                          final=final)
    istio.check_annotations(annotations, compiled=compiled, builder=builder, path=path,
                            final=final)
    if refs is None:
        refs = containers(spec, pointer=pointer, path=path)
    pod_security = identity.pod_security(spec)
    ids = proxy_ids(refs, pod_security, compiled=compiled, final=final)
    isolation.check_pod_level(metadata, spec, annotations, compiled=compiled, builder=builder,
                              path=path, proxy_uids=ids.uids, proxy_gids=ids.gids)
    if agentlabels.RULE in compiled.checked:
        agentlabels.check_labels(spec, labels, builder=builder, path=path)
    declared = volumes.check_volumes(spec, compiled=compiled, builder=builder, path=path,
                                     final=final)
    if not final:
        initorder.check_native_annotation(spec, annotations, compiled=compiled,
                                          builder=builder, path=path)
    guarded = identity.applies(spec, compiled)
    if guarded:
        identity.check_pod_level(spec, compiled=compiled, builder=builder, path=path)
    reserved = "pod.istio-reserved-names" in compiled.checked
    sizing_memory = memory.RULE in compiled.checked
    # Memory problems go to a side builder, spliced in at their place once the pass is done.
    memory_builder = VerdictBuilder()
    sizings: list[memory.Sizing] = []
    usable = True
    inits: list[tuple[ContainerRef, isolation.Role]] = []  # final pod, in start order
    for ref in refs:
        role = isolation.classify(ref, final=final) if final else isolation.Role.APP
        if final and ref.kind == INIT_CONTAINERS:
            inits.append((ref, role))
        if reserved and ref.name in istio.RESERVED_NAMES:
            istio.check_reserved_name(ref, compiled=compiled, builder=builder, final=final)
        isolation.check_container(ref, role, compiled=compiled, builder=builder,
                                  proxy_uids=ids.uids, proxy_gids=ids.gids)
        if guarded:
            identity.check_container(ref, role, pod_security, compiled=compiled,
                                     builder=builder, path=path, final=final)
        if "volumeMounts" in ref.body:
            volumes.check_mounts(ref, role, declared, compiled=compiled, builder=builder,
                                 final=final)
        node.check_container(ref, role, compiled=compiled, builder=builder)
        if sizing_memory and ref.kind == CONTAINERS and ref.name != memory.PROXY_CONTAINER:
            sizing = memory.read_sizing(ref, builder=memory_builder)
            usable = usable and sizing.usable
            sizings.append(sizing)
    if final:
        istio.check_sidecar(refs, compiled=compiled, builder=builder, path=path, ids=ids)
        initorder.check_order(inits, compiled=compiled, builder=builder)
    if not sizing_memory:
        return None
    result = sizings if usable else None
    if read_memory:
        if final and result is not None:
            memory.check_floors(result, compiled=compiled, builder=memory_builder, path=path)
        builder.violations[memory_at:memory_at] = memory_builder.violations
    else:
        builder.violations.extend(memory_builder.violations)
    return result


def validate_pod_object(pod: dict[str, Any], *, policy: Policy, final: bool, path: str = "",
                        namespace: str | None = None) -> Verdict:
    """Check a raw pod. ``namespace`` (else ``metadata.namespace``) fixes the DNS searches."""
    builder = VerdictBuilder()
    check_pod(pod, compiled=compile_policy(policy), builder=builder, path=path, final=final,
              namespace=namespace)
    return builder.build()


def new_ephemeral(pod: dict[str, Any], old: dict[str, Any] | None) -> list[ContainerRef]:
    """The ephemeral containers of ``pod`` that ``old`` did not have (by name)."""
    _, spec = pod_parts(pod, path="")
    known: set[str] = set()
    if isinstance(old, dict):
        _, old_spec = pod_parts(old, path="")
        known = {ref.name for ref in iter_containers(old_spec, pointer="", path="",
                                                     kinds=(EPHEMERAL_CONTAINERS,))}
    return [ref for ref in containers(spec, pointer="", path="", kinds=(EPHEMERAL_CONTAINERS,))
            if not (ref.name and ref.name in known)]


def check_new_ephemeral(pod: dict[str, Any], old: dict[str, Any] | None, *,
                        policy: Policy, final: bool = True) -> Verdict:
    """``pods/ephemeralcontainers``: the containers ``kubectl debug`` adds, and only those.

    ``final=False`` is the mutating stage, where unset identity fields are still to be filled.
    """
    compiled = compile_policy(policy)
    builder = VerdictBuilder()
    _, spec = pod_parts(pod, path="")
    guarded = identity.applies(spec, compiled)
    # The pod-level securityContext applies to ephemeral containers too.
    pod_security = identity.pod_security(spec)
    # The pod is running, injected: its proxy says which IDs iptables exempts.
    ids = proxy_ids(containers(spec, pointer="", path=""), pod_security, compiled=compiled,
                    final=True)
    for ref in new_ephemeral(pod, old):
        istio.check_reserved_name(ref, compiled=compiled, builder=builder, final=False)
        isolation.check_container(ref, isolation.Role.APP, compiled=compiled, builder=builder,
                                  proxy_uids=ids.uids, proxy_gids=ids.gids)
        if guarded:
            identity.check_container(ref, isolation.Role.APP, pod_security, compiled=compiled,
                                     builder=builder, path="", final=final)
        # The pod is live: Istio's volumes exist, and an ephemeral container must not mount them.
        volumes.check_mounts(ref, isolation.Role.APP, None, compiled=compiled, builder=builder,
                             final=True)
        node.check_container(ref, isolation.Role.APP, compiled=compiled, builder=builder)
    return builder.build()


def check_resize(pod: dict[str, Any], *, policy: Policy) -> Verdict:
    """``pods/resize``: the memory floor must still hold after an in-place resize."""
    compiled = compile_policy(policy)
    builder = VerdictBuilder()
    if memory.RULE in compiled.checked:
        _, spec = pod_parts(pod, path="")
        sizings = memory.read_sizings(memory.app_containers(spec, pointer="", path=""),
                                      builder=builder)
        if sizings is not None:
            memory.check_floors(sizings, compiled=compiled, builder=builder, path="")
    return builder.build()
