"""What a ``doctor`` check reports, and the small readings of objects several checks share.

Owns ``Finding`` (✔, ✖ with the fix, or - when a check does not apply) and its
constructors, plus reading names, namespaces and ready endpoints out of raw objects. It
knows no check.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.tools.doctor.snapshot import Unreadable

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the report: ✔ (ok), ✖ (not ok, with the fix) or - (does not apply)."""

    check: str
    ok: bool
    message: str
    fix: str = ""
    applies: bool = True


def passed(check: str, message: str) -> Finding:
    return Finding(check=check, ok=True, message=message)


def failed(check: str, message: str, fix: str) -> Finding:
    return Finding(check=check, ok=False, message=message, fix=fix)


def not_applicable(check: str, message: str) -> Finding:
    return Finding(check=check, ok=True, message=message, applies=False)


def unreadable(check: str, problem: Unreadable) -> Finding:
    return failed(check, f"could not read: {problem.reason}",
                  "run doctor with credentials that can get and list these objects "
                  "(it only reads)")


def ready_endpoints(slices: Iterable[dict[str, Any]], *, namespace: str, service: str) -> int:
    """Endpoints of a Service that are ready (an absent ``ready`` condition means ready)."""
    return sum(1 for s in slices if namespace_of(s) == namespace and service_of(s) == service
               for endpoint in s.get("endpoints") or []
               if (endpoint.get("conditions") or {}).get("ready") is not False)


def service_of(endpoint_slice: dict[str, Any]) -> str:
    labels = (endpoint_slice.get("metadata") or {}).get("labels") or {}
    return str(labels.get(SERVICE_NAME_LABEL, ""))


def name_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def namespace_of(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace", ""))
