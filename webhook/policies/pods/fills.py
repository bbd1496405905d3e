"""The fills of the run-time identity guarantee: what the mutating webhook sets, never over.

Owns planning, for the fields a pod leaves unset, one change each (with the ``add {}`` of any
missing parent map first): pod-level ``runAsUser``/``runAsGroup`` from the policy's
``identity`` and ``runAsNonRoot: true``; per container ``allowPrivilegeEscalation: false`` and
``capabilities.drop`` with ALL. Nothing already set is replaced: a ``drop`` list is appended
to, and a pod-level UID is only added when some container has none of its own (OpenShift's SCC
gives every container one). The checks live in ``identity``; ``mutate`` applies the plan.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.identity import (
    DROP,
    GROUP,
    NO_ESCALATION,
    NON_ROOT,
    applies,
    context_of,
    drops_setid,
    yaml_text,
)
from webhook.policies.pods.walk import ContainerRef
from webhook.policies.result import PatchOp


class Fill(NamedTuple):
    """One field the mutating webhook sets, with the operations (parents added first)."""

    rule: str
    ops: tuple[PatchOp, ...]
    note: str


class _Parents:
    """Which securityContext maps exist (or are added by patching fills before this one)."""

    __slots__ = ("_present",)

    def __init__(self) -> None:
        self._present: set[str] = set()

    def ops(self, pointers: list[tuple[str, bool]], *, patching: bool) -> list[PatchOp]:
        """``add {}`` for each (pointer, exists) not there yet; remembered only if patching."""
        ops: list[PatchOp] = []
        for pointer, exists in pointers:
            if exists or pointer in self._present:
                continue
            ops.append({"op": "add", "path": pointer, "value": {}})
            if patching:
                self._present.add(pointer)
        return ops


def plan_fills(spec: dict[str, Any], refs: list[ContainerRef], *, compiled: CompiledPolicy,
               pointer: str, pod_level: bool = True) -> list[Fill]:
    """Every field of the guarantee ``refs`` leave unset, as fills (empty when filling is off).

    ``pod_level=False`` is the ``pods/ephemeralcontainers`` subresource, where only the new
    containers may change: their UID, GID and runAsNonRoot are then set on the container.
    Malformed contexts get no fill (the checks refuse them).
    """
    if not compiled.fill_identity or not applies(spec, compiled):
        return []
    on, patching = compiled.checked.__contains__, compiled.patching.__contains__
    parents = _Parents()
    fills: list[Fill] = []
    pod_security = context_of(spec)
    if pod_security is None:
        return []
    if pod_level:
        pod_pointer = f"{pointer}/spec/securityContext"
        exists = spec.get("securityContext") is not None
        for rule, key, value, needed in (
                (NON_ROOT, "runAsUser", compiled.default_uid, _inherits(refs, "runAsUser")),
                (GROUP, "runAsGroup", compiled.default_gid, _inherits(refs, "runAsGroup")),
                (NON_ROOT, "runAsNonRoot", True, True)):
            if on(rule) and needed and pod_security.get(key) is None:
                ops = parents.ops([(pod_pointer, exists)], patching=patching(rule))
                ops.append({"op": "add", "path": f"{pod_pointer}/{key}", "value": value})
                fills.append(Fill(rule, tuple(ops), f"set securityContext.{key}="
                                  f"{yaml_text(value)}"))
    for ref in refs:
        security = context_of(ref.body)
        if security is None:
            continue
        wanted: list[tuple[str, str, Any]] = []
        if not pod_level:
            for rule, key, value in ((NON_ROOT, "runAsUser", compiled.default_uid),
                                     (GROUP, "runAsGroup", compiled.default_gid)):
                if security.get(key) is None and pod_security.get(key) is None:
                    wanted.append((rule, key, value))
            if security.get("runAsNonRoot") is None and pod_security.get("runAsNonRoot") is None:
                wanted.append((NON_ROOT, "runAsNonRoot", True))
        if security.get("allowPrivilegeEscalation") is None:
            wanted.append((NO_ESCALATION, "allowPrivilegeEscalation", False))
        drop = on(DROP) and drops_setid(security.get("capabilities")) is False
        if not (wanted or drop):  # the usual hardened container: nothing to fill
            continue
        own = f"{ref.pointer}/securityContext"
        exists = ref.body.get("securityContext") is not None
        for rule, key, value in wanted:
            if on(rule):
                ops = parents.ops([(own, exists)], patching=patching(rule))
                ops.append({"op": "add", "path": f"{own}/{key}", "value": value})
                fills.append(Fill(rule, tuple(ops), f"set {ref.short}.securityContext.{key}="
                                  f"{yaml_text(value)}"))
        if drop:
            fills.append(_drop_fill(ref, security, parents, own=own, exists=exists,
                                    patching=patching(DROP)))
    return fills


def _drop_fill(ref: ContainerRef, security: dict[str, Any], parents: _Parents, *, own: str,
               exists: bool, patching: bool) -> Fill:
    capabilities = security.get("capabilities")
    drop = capabilities.get("drop") if isinstance(capabilities, dict) else None
    where = f"{ref.short}.securityContext.capabilities.drop"
    if isinstance(drop, list):
        return Fill(DROP, ({"op": "add", "path": f"{own}/capabilities/drop/-", "value": "ALL"},),
                    f"add ALL to {where} (was {', '.join(map(str, drop)) or 'empty'})")
    ops = parents.ops([(own, exists), (f"{own}/capabilities", capabilities is not None)],
                      patching=patching)
    ops.append({"op": "add", "path": f"{own}/capabilities/drop", "value": ["ALL"]})
    return Fill(DROP, tuple(ops), f"set {where}=[ALL]")


def _inherits(refs: list[ContainerRef], key: str) -> bool:
    """Whether some container has no ``key`` of its own (so the pod-level one applies)."""
    for ref in refs:
        security = ref.body.get("securityContext")
        if not isinstance(security, dict) or security.get(key) is None:
            return True
    return False
