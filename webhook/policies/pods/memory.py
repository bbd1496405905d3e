"""The memory floor (``pod.memory-floor``): what a Kata VM needs to boot and keep running.

Owns reading app containers' memory requests and limits exactly, planning the smallest
raises that satisfy the floors, and checking that a final pod satisfies them. The rules:
every app container has a memory request and limit (defaults from the policy; a limit never
below its request); the pod's totals of requests and of limits each reach ``podFloor``, the
shortfall going to the main container (``kubectl.kubernetes.io/default-container``, else the
first). Nothing is ever lowered. "App containers" are ``spec.containers`` without Istio's
``istio-proxy``, at both stages, so the mutating and validating webhooks count the same
thing. It does not emit JSON Patch itself (``mutate`` does) nor look at other resources.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple

from webhook.config.quantity import exact_quantity, format_bytes
from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.walk import CONTAINERS, ContainerRef, iter_containers, join
from webhook.policies.result import VerdictBuilder

RULE = "pod.memory-floor"
PROXY_CONTAINER = "istio-proxy"
DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
SECTIONS = ("requests", "limits")
Amount = int | Fraction  # bytes; int whenever whole, which is nearly always


@dataclass(slots=True)
class Sizing:
    """One app container's memory request and limit, as read and as planned."""

    ref: ContainerRef
    request: Amount | None
    limit: Amount | None
    request_text: str | None
    limit_text: str | None
    usable: bool = True  # False when a quantity could not be read (a violation says why)


class MemoryRaise(NamedTuple):
    """One planned raise: ``section`` is ``requests`` or ``limits``.

    A NamedTuple: the cheapest immutable record, built for nearly every pod on the hot path.
    """

    ref: ContainerRef
    section: str
    value: str
    reason: str


def app_containers(spec: dict[str, Any], *, pointer: str, path: str) -> list[ContainerRef]:
    return [ref for ref in iter_containers(spec, pointer=pointer, path=path, kinds=(CONTAINERS,))
            if ref.name != PROXY_CONTAINER]


def read_sizings(refs: list[ContainerRef], *, builder: VerdictBuilder) -> list[Sizing] | None:
    """Each container's memory, or None when any quantity is unusable (violations recorded)."""
    sizings: list[Sizing] = []
    usable = True
    for ref in refs:
        sizing = read_sizing(ref, builder=builder)
        usable = usable and sizing.usable
        sizings.append(sizing)
    return sizings if usable else None


def read_sizing(ref: ContainerRef, *, builder: VerdictBuilder) -> Sizing:
    """One container's memory; ``usable`` is False when a quantity is (violations recorded)."""
    resources = ref.body.get("resources")
    # Fast path: a resources map with plain string quantities (nearly every pod). The parse
    # is memoised, and only a negative or malformed value needs the slow path's messages.
    if isinstance(resources, dict):
        requests, limits = resources.get("requests"), resources.get("limits")
        if (requests is None or isinstance(requests, dict)) and (
                limits is None or isinstance(limits, dict)):
            request, request_text = _fast(requests)
            limit, limit_text = _fast(limits)
            if request is not _SLOW and limit is not _SLOW:
                return Sizing(ref, request, limit, request_text, limit_text)
    request_read = _read(ref, "requests", builder=builder)
    limit_read = _read(ref, "limits", builder=builder)
    request, request_text = request_read or (None, None)
    limit, limit_text = limit_read or (None, None)
    return Sizing(ref, request, limit, request_text, limit_text,
                  request_read is not None and limit_read is not None)


_SLOW = object()  # _fast's answer for "not a plain quantity: take the slow path"


def _fast(values: dict[str, Any] | None) -> tuple[Any, str | None]:
    """A section's memory as (Amount, text), (None, None) when absent, else (_SLOW, None)."""
    text = None if values is None else values.get("memory")
    if text is None:
        return None, None
    if type(text) is not str:
        return _SLOW, None
    try:
        amount = exact_quantity(text)
    except ValueError:
        return _SLOW, None
    return (_SLOW, None) if amount < 0 else (amount, text)


def _read(ref: ContainerRef, section: str, *,
          builder: VerdictBuilder) -> tuple[Amount | None, str | None] | None:
    """(value, text), (None, None) when absent, or None when unusable (violation recorded)."""
    resources = ref.body.get("resources")
    if resources is None:
        return None, None
    if not isinstance(resources, dict):
        builder.violate(RULE, join(ref.path, "resources"), "must be an object with requests "
                        "and limits; fix the container's resources")
        return None
    values = resources.get(section)
    if values is None:
        return None, None
    if not isinstance(values, dict):
        builder.violate(RULE, join(ref.path, f"resources.{section}"), "must be a map of "
                        "resource names to quantities; fix the container's resources")
        return None
    text = values.get("memory")
    if text is None:
        return None, None
    where = join(ref.path, f"resources.{section}.memory")
    try:
        value = exact_quantity(text)
    except ValueError as exc:
        builder.violate(RULE, where, f"{exc}; write the memory as a Kubernetes quantity "
                        "such as 512Mi or 2Gi")
        return None
    if value < 0:
        builder.violate(RULE, where, f"{text!r} is negative; write a positive quantity "
                        "such as 512Mi")
        return None
    return value, str(text)


def main_index(sizings: list[Sizing], annotations: dict[str, Any]) -> int:
    """The container that takes the shortfall: the default-container annotation, else first."""
    wanted = annotations.get(DEFAULT_CONTAINER_ANNOTATION)
    for index, sizing in enumerate(sizings):
        if isinstance(wanted, str) and sizing.ref.name == wanted:
            return index
    return 0


def plan_raises(sizings: list[Sizing], *, annotations: dict[str, Any],
                compiled: CompiledPolicy) -> list[MemoryRaise]:
    """The smallest raises that satisfy every floor, in container order, requests first."""
    if not sizings:
        return []
    main = main_index(sizings, annotations)
    return [MemoryRaise(sizings[index].ref, section, value, reason)
            for index, section, value, reason in _remembered_plan(sizings, main, compiled)]


def _remembered_plan(sizings: list[Sizing], main: int,
                     compiled: CompiledPolicy) -> tuple[tuple[int, str, str, str], ...]:
    """``_plan``, worked out once per shape of quantities and policy.

    The plan depends only on the quantities as written and on which container is main, and
    pods repeat a few shapes endlessly. Shapes come from requests: the memo is bounded in
    number, and pods with many containers or long quantity texts (too big a key to keep) are
    planned afresh.
    """
    if len(sizings) > _PLAN_CONTAINERS_MAX:
        return _plan(sizings, main, compiled)
    texts = [(s.request_text, s.limit_text) for s in sizings]
    if sum(len(text or "") for pair in texts for text in pair) > _PLAN_KEY_CHARS:
        return _plan(sizings, main, compiled)
    key = (main, *texts)
    plans = compiled.raise_plans
    plan = plans.get(key)
    if plan is None:
        plan = _plan(sizings, main, compiled)
        if len(plans) >= _PLANS_SIZE:
            plans.clear()
        plans[key] = plan
    return plan


_PLANS_SIZE = 512
_PLAN_CONTAINERS_MAX = 8
_PLAN_KEY_CHARS = 512  # every real pod's quantities are far shorter


def _plan(sizings: list[Sizing], main: int,
          compiled: CompiledPolicy) -> tuple[tuple[int, str, str, str], ...]:
    floor_note = compiled.floor_note
    planned: list[tuple[Amount, str | None, str]] = []  # per container and section
    for sizing in sizings:
        request, limit = sizing.request, sizing.limit
        request_text, limit_text = sizing.request_text, sizing.limit_text
        limit_reason = request_reason = ""
        if limit is None:
            if request is not None and request > compiled.default_limit:
                limit, limit_text, limit_reason = request, request_text, "not below its request"
            else:
                limit, limit_text = compiled.default_limit, compiled.default_limit_text
                limit_reason = "container default"
        if request is None:
            if compiled.default_request > limit:
                request, request_text, request_reason = limit, limit_text, "not above its limit"
            else:
                request, request_text = compiled.default_request, compiled.default_request_text
                request_reason = "container default"
        if request > limit:  # invalid input; raise the limit rather than lower the request
            limit, limit_text, limit_reason = request, request_text, "not below its request"
        planned.append((request, request_text, request_reason))
        planned.append((limit, limit_text, limit_reason))
    for offset in (0, 1):  # requests, then limits
        total = sum(planned[2 * i + offset][0] for i in range(len(sizings)))
        if total < compiled.pod_floor:
            value = planned[2 * main + offset][0] + compiled.pod_floor - total
            planned[2 * main + offset] = (value, None, floor_note)
    if planned[2 * main][0] > planned[2 * main + 1][0]:
        planned[2 * main + 1] = (planned[2 * main][0], planned[2 * main][1], floor_note)
    raises: list[tuple[int, str, str, str]] = []
    for index, sizing in enumerate(sizings):
        for offset, section in enumerate(SECTIONS):
            value, text, reason = planned[2 * index + offset]
            old = sizing.request if offset == 0 else sizing.limit
            if old is not None and value <= old:
                continue
            raises.append((index, section, text or format_bytes(value), reason))
    return tuple(raises)


def check_floors(sizings: list[Sizing], *, compiled: CompiledPolicy,
                 builder: VerdictBuilder, path: str) -> None:
    """Final-pod check: every request and limit present, ordered, and totals at the floor."""
    floor = compiled.pod_floor_text
    if not sizings:
        builder.violate(RULE, join(path, "spec.containers"), "the pod has no app container "
                        f"to carry the {floor} memory floor; add a container")
        return
    for sizing in sizings:
        for section, value in (("requests", sizing.request), ("limits", sizing.limit)):
            if value is None:
                builder.violate(RULE, join(sizing.ref.path, f"resources.{section}.memory"),
                                f"is not set; set a memory {section[:-1]} (the mutating "
                                "webhook sets one: is it installed and ordered first?)")
        if (sizing.request is not None and sizing.limit is not None
                and sizing.request > sizing.limit):
            builder.violate(RULE, join(sizing.ref.path, "resources.requests.memory"),
                            f"{sizing.request_text} is above the limit {sizing.limit_text}; "
                            "raise the limit")
    for section, index in (("requests", 0), ("limits", 1)):
        values = [(s.request, s.limit)[index] for s in sizings]
        total: Amount = sum(v for v in values if v is not None)
        if total < compiled.pod_floor:
            builder.violate(RULE, join(path, "spec.containers"),
                            f"the app containers' memory {section} total "
                            f"{format_bytes(total)}, below the {floor} floor a Kata VM needs; "
                            f"raise the main container's memory {section[:-1]}")
