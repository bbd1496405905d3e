"""What one reconcile pass must do: the difference between what is rendered and what exists.

Owns ``plan``: every rendered object that is missing is created, one whose fields differ from
the rendered ones is repaired (drift), one that exists without the managed-by label belongs to
someone else and is left alone (reported, never overwritten), and every labelled object of a
managed kind that is no longer rendered is deleted. Fields the API server or other managers
added are not drift: only the rendered fields are compared. Pure; no client, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.cluster.owned import ObjectKey
from webhook.core.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE


@dataclass(frozen=True, slots=True)
class Plan:
    create: tuple[dict[str, Any], ...] = ()
    repair: tuple[dict[str, Any], ...] = ()
    unchanged: tuple[ObjectKey, ...] = ()
    foreign: tuple[ObjectKey, ...] = ()  # named like ours, not labelled ours: untouched
    delete: tuple[ObjectKey, ...] = ()
    problems: tuple[str, ...] = field(default=())


def owned(obj: Mapping[str, Any] | None) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return bool(labels.get(MANAGED_BY_LABEL) == MANAGED_BY_VALUE)


def covers(live: Any, wanted: Any) -> bool:
    """Whether ``live`` holds every field of ``wanted`` with the same value."""
    if isinstance(wanted, dict):
        return isinstance(live, dict) and all(
            key in live and covers(live[key], value) for key, value in wanted.items())
    if isinstance(wanted, list):
        return (isinstance(live, list) and len(live) == len(wanted)
                and all(covers(a, b) for a, b in zip(live, wanted, strict=True)))
    return bool(live == wanted)


def _drifted(live: dict[str, Any], wanted: dict[str, Any]) -> bool:
    body = {key: value for key, value in wanted.items() if key not in ("apiVersion", "kind",
                                                                        "metadata")}
    labels = wanted["metadata"].get("labels") or {}
    return not (covers(live, body) and covers(live.get("metadata", {}).get("labels"), labels))


def plan(desired: Iterable[dict[str, Any]], live: Mapping[ObjectKey, dict[str, Any] | None],
         listed: Iterable[dict[str, Any]]) -> Plan:
    """``live``: each desired key's object as read (None: absent); ``listed``: the labelled
    objects of the managed kinds found in the cluster."""
    create, repair, unchanged, foreign = [], [], [], []
    wanted_keys = set()
    for obj in desired:
        key = ObjectKey.of(obj)
        wanted_keys.add(key)
        current = live.get(key)
        if current is None:
            create.append(obj)
        elif not owned(current):
            foreign.append(key)
        elif _drifted(current, obj):
            repair.append(obj)
        else:
            unchanged.append(key)
    delete = sorted({ObjectKey.of(obj) for obj in listed if owned(obj)} - wanted_keys)
    problems = tuple(f"{key} exists but is not labelled {MANAGED_BY_LABEL}="
                     f"{MANAGED_BY_VALUE}: it belongs to someone else and is left as it is; "
                     "delete or rename it to let the controller create its own"
                     for key in foreign)
    return Plan(tuple(create), tuple(repair), tuple(unchanged), tuple(foreign), tuple(delete),
                problems)
