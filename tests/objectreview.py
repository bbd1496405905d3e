"""Build an AdmissionReview around a plain object, as the API server would send it."""

from __future__ import annotations

import copy
from typing import Any

from webhook.core.review import Request, review_from_document


def request_for(obj: dict[str, Any], *, operation: str = "CREATE",
                old: dict[str, Any] | None = None, username: str = "someone",
                groups: tuple[str, ...] = ("system:authenticated",),
                sub_resource: str | None = None) -> Request:
    group, _, version = str(obj["apiVersion"]).rpartition("/")
    metadata = obj.get("metadata") or {}
    plural = obj["kind"].lower() + ("es" if obj["kind"].endswith("s") else "s")
    request: dict[str, Any] = {
        "uid": "00000000-0000-4000-8000-000000000000",
        "kind": {"group": group, "version": version, "kind": obj["kind"]},
        "resource": {"group": group, "version": version, "resource": plural},
        "requestKind": {"group": group, "version": version, "kind": obj["kind"]},
        "name": metadata.get("name", ""),
        "namespace": metadata.get("namespace", ""),
        "operation": operation,
        "userInfo": {"username": username, "groups": list(groups)},
        "object": copy.deepcopy(obj),
        "oldObject": copy.deepcopy(old),
        "dryRun": False,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return review_from_document({"kind": "AdmissionReview",
                                 "apiVersion": "admission.k8s.io/v1", "request": request})
