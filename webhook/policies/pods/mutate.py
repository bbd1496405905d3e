"""The mutating side of the pod policy: the JSON Patch that makes a pod an agent pod.

Owns planning every change (runtime class, Istio labels, DNS, the native-sidecar request,
memory, the enforced-policy annotation) as JSON Patch operations against the raw object, and
``mutate_pod_object``, which also runs every pre-injection check so a user sees all refusals
at once. Each change belongs to a rule: enforced rules patch, warned rules only say
``would ...``, rules that are off do neither. Ops only ever ``add`` (which sets a member
whether or not it exists), and a missing map is added before anything is added into it.
Changes are planned in a fixed order, so the same input gives the same patch, and a pod that
already complies gives none.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from webhook.config.policy import Policy
from webhook.policies.pods import agentlabels, dns, fills, identity, initorder, istio, memory
from webhook.policies.pods.compiled import CompiledPolicy, compile_policy
from webhook.policies.pods.validate import (
    RUNTIME_RULE,
    check_new_ephemeral,
    check_parts,
    new_ephemeral,
    pod_maps,
)
from webhook.policies.pods.walk import containers, display_from_pointer, escape, pod_parts
from webhook.policies.result import PatchOp, Verdict, VerdictBuilder

ENFORCED_ANNOTATION = "agentsandbox.io/enforced"
MUTATING_RULES = (RUNTIME_RULE, memory.RULE, dns.RULE, "pod.istio-inject", *identity.RULES)
_ENFORCED_KEY = escape(ENFORCED_ANNOTATION)  # the pointer segment, escaped once
_NATIVE_KEY = escape(initorder.NATIVE_ANNOTATION)


class Planned(NamedTuple):
    """One change the webhook would make, with the rule it belongs to.

    A NamedTuple, not a dataclass: a patched pod plans about seven of these per review, and
    a tuple is the cheapest immutable record to build.
    """

    rule: str
    field: str
    ops: tuple[PatchOp, ...]
    note: str  # kubectl's voice, e.g. "set runtimeClassName=kata"
    marker: bool = False  # the bookkeeping annotation, not a change users need to hear of


class _Maps:
    """Which metadata maps exist (or were added by earlier ops) so ``add`` never targets a gap."""

    __slots__ = ("_present",)

    def __init__(self, metadata: dict[str, Any] | None) -> None:
        present = set()
        if metadata is not None:
            present.add("metadata")
            for key in ("labels", "annotations"):
                if isinstance(metadata.get(key), dict):
                    present.add(key)
        self._present = present

    def ensure(self, pointer: str, name: str, ops: list[PatchOp], *, applied: bool) -> None:
        """Add ``/metadata`` and then ``/metadata/<name>`` when they are missing.

        ``applied`` says whether these ops will be in the patch (the change's rule is
        enforced); only then do later changes find the maps there.
        """
        if "metadata" not in self._present:
            ops.append({"op": "add", "path": f"{pointer}/metadata", "value": {}})
            if applied:
                self._present.add("metadata")
        if name not in self._present:
            ops.append({"op": "add", "path": f"{pointer}/metadata/{name}", "value": {}})
            if applied:
                self._present.add(name)


def plan_pod(pod: dict[str, Any], *, namespace: str, compiled: CompiledPolicy, pointer: str,
             builder: VerdictBuilder) -> list[Planned]:
    """Check ``pod`` before injection (into ``builder``) and plan every change to it."""
    path = display_from_pointer(pointer) if pointer else ""
    parts = pod_maps(pod, path=path)
    _, spec, labels, annotations = parts
    refs = containers(spec, pointer=pointer, path=path)
    sizings = check_parts(parts, compiled=compiled, builder=builder, path=path, final=False,
                          namespace=namespace, read_memory=False, pointer=pointer, refs=refs)
    raw_metadata = pod.get("metadata")
    maps = _Maps(raw_metadata if isinstance(raw_metadata, dict) else None)
    planned: list[Planned] = []
    refused = {violation.rule for violation in builder.violations}

    wanted_labels, wanted_annotations = istio.wanted_marks(labels, annotations, compiled)
    if ((wanted_labels or wanted_annotations) and "pod.istio-inject" not in refused
            and "pod.istio-inject" in compiled.checked):
        ops: list[PatchOp] = []
        notes = []
        for section, wanted in (("labels", wanted_labels), ("annotations", wanted_annotations)):
            if wanted:
                maps.ensure(pointer, section, ops,
                            applied="pod.istio-inject" in compiled.patching)
            for key, value in wanted:
                ops.append({"op": "add", "path": f"{pointer}/metadata/{section}/{escape(key)}",
                            "value": value})
                notes.append(f"add {section[:-1]} {key}={value}")
        planned.append(Planned("pod.istio-inject", "labels", tuple(ops), "; ".join(notes)))

    identity_labels = agentlabels.wanted_labels(spec, labels)
    if (identity_labels and agentlabels.RULE not in refused
            and agentlabels.RULE in compiled.checked):
        ops = []
        maps.ensure(pointer, "labels", ops, applied=agentlabels.RULE in compiled.patching)
        for key, value in identity_labels:
            ops.append({"op": "add", "path": f"{pointer}/metadata/labels/{escape(key)}",
                        "value": value})
        # Bookkeeping like the enforced annotation: a pod's patch warns of it, a template's
        # "will add at pod creation" and warn mode's "would add" do not (every pod gets it).
        planned.append(Planned(agentlabels.RULE, "labels", tuple(ops), "; ".join(
            f"add label {key}={value or '(empty: no Skill)'}" for key, value in identity_labels),
            marker=True))

    if RUNTIME_RULE in compiled.checked and spec.get("runtimeClassName") is None:
        planned.append(Planned(RUNTIME_RULE, "runtimeClassName", ({
            "op": "add", "path": f"{pointer}/spec/runtimeClassName",
            "value": compiled.runtime_class},), compiled.runtime_note))

    if dns.RULE in compiled.checked:
        for ops_, note in dns.plan_dns(spec, namespace=namespace, compiled=compiled,
                                       pointer=pointer):
            planned.append(Planned(dns.RULE, "dnsConfig", ops_, note))

    planned.extend(Planned(fill.rule, "securityContext", fill.ops, fill.note)
                   for fill in fills.plan_fills(spec, refs, compiled=compiled,
                                                   pointer=pointer)
                   if fill.rule not in refused)

    if initorder.wants_native(spec, annotations, compiled):
        ops = []
        maps.ensure(pointer, "annotations", ops,
                    applied=initorder.NATIVE_RULE in compiled.patching)
        ops.append({"op": "add", "path": f"{pointer}/metadata/annotations/{_NATIVE_KEY}",
                    "value": "true"})
        planned.append(Planned(initorder.NATIVE_RULE, "annotations", tuple(ops),
                               initorder.NATIVE_NOTE))

    if memory.RULE in compiled.checked:
        planned.extend(_plan_memory(sizings, annotations, compiled=compiled, path=path,
                                    builder=builder))

    marker_rule = _marker_rule(compiled)
    if marker_rule is not None and annotations.get(ENFORCED_ANNOTATION) != compiled.digest:
        ops = []
        maps.ensure(pointer, "annotations", ops, applied=True)  # its rule is enforced
        ops.append({"op": "add", "path": f"{pointer}/metadata/annotations/{_ENFORCED_KEY}",
                    "value": compiled.digest})
        planned.append(Planned(marker_rule, "annotations", tuple(ops), "set annotation "
                               f"{ENFORCED_ANNOTATION}={compiled.digest}", marker=True))
    return planned


def _marker_rule(compiled: CompiledPolicy) -> str | None:
    """The first enforced mutating rule (it owns the enforced annotation), or None."""
    for rule in MUTATING_RULES:
        if rule in compiled.patching:
            return rule
    return None


def _plan_memory(sizings: list[memory.Sizing] | None, annotations: dict[str, Any], *,
                 compiled: CompiledPolicy, path: str, builder: VerdictBuilder) -> list[Planned]:
    """Raises for the sizings ``check_pod`` read (None: a quantity was unusable, reported)."""
    if sizings is None:
        return []
    if not sizings:
        builder.violate(memory.RULE, f"{path + '.' if path else ''}spec.containers", "the pod "
                        f"has no app container to carry the {compiled.pod_floor_text} memory "
                        "floor; add a container")
        return []
    planned = []
    present: dict[str, set[str]] = {}  # container pointer -> resources maps present
    for change in memory.plan_raises(sizings, annotations=annotations, compiled=compiled):
        container = change.ref.pointer
        maps = present.get(container)
        if maps is None:
            maps = present[container] = _resource_maps(change.ref.body)
        ops: list[PatchOp] = []
        if "resources" not in maps:
            ops.append({"op": "add", "path": f"{container}/resources", "value": {}})
            maps.add("resources")
        section = change.section
        if section not in maps:
            ops.append({"op": "add", "path": f"{container}/resources/{section}", "value": {}})
            maps.add(section)
        ops.append({"op": "add", "path": f"{container}/resources/{section}/memory",
                    "value": change.value})
        planned.append(Planned(memory.RULE, "memory", tuple(ops),
                               f"set {change.ref.short}.resources.{section}.memory="
                               f"{change.value} ({change.reason})"))
    return planned


def _resource_maps(container: dict[str, Any]) -> set[str]:
    """Which of ``resources``, ``requests`` and ``limits`` the container already has."""
    resources = container.get("resources")
    if not isinstance(resources, dict):
        return set()
    return {"resources", *[section for section in memory.SECTIONS
                           if isinstance(resources.get(section), dict)]}


def mutate_pod_object(pod: dict[str, Any], *, namespace: str, policy: Policy,
                      pointer: str = "") -> Verdict:
    """Pre-injection checks and the patch for one raw pod; op paths start with ``pointer``."""
    compiled = compile_policy(policy)
    builder = VerdictBuilder()
    _record(plan_pod(pod, namespace=namespace, compiled=compiled, pointer=pointer,
                     builder=builder), compiled=compiled, builder=builder)
    return builder.build()


def mutate_ephemeral(pod: dict[str, Any], old: dict[str, Any] | None, *,
                     policy: Policy) -> Verdict:
    """``pods/ephemeralcontainers``: harden the containers ``kubectl debug`` adds.

    Only ``spec.ephemeralContainers`` may change through this subresource, so every identity
    field the pod level does not already give is set on the new container itself.
    """
    compiled = compile_policy(policy)
    checked = check_new_ephemeral(pod, old, policy=policy, final=False)
    builder = VerdictBuilder(violations=list(checked.violations))
    _, spec = pod_parts(pod, path="")
    refused = {violation.rule for violation in checked.violations}
    planned = fills.plan_fills(spec, new_ephemeral(pod, old), compiled=compiled, pointer="",
                               pod_level=False)
    _record([Planned(fill.rule, "securityContext", fill.ops, fill.note) for fill in planned
             if fill.rule not in refused], compiled=compiled, builder=builder)
    return builder.build()


def _record(changes: list[Planned], *, compiled: CompiledPolicy,
            builder: VerdictBuilder) -> None:
    """Enforced rules patch; warned rules say what they would do."""
    for change in changes:
        if change.rule in compiled.patching:
            builder.mutate(change.rule, change.field, change.ops, change.note)
        elif not change.marker:
            builder.warn(f"[{change.rule}] would {change.note}")
