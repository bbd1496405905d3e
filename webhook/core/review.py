"""Reading an AdmissionReview request into the facts a policy needs.

Owns the shape check of the envelope the API server POSTs (``admission.k8s.io/v1``) and the
``Request`` value handed to policies. Anything unusable raises ``BadReview`` with a reason,
which the transport answers with HTTP 400. It does not look inside ``object``: policies own
that, and must treat it as untrusted.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from webhook.core.errors import BadReview

SUPPORTED_API_VERSIONS = frozenset({"admission.k8s.io/v1"})
OPERATIONS = frozenset({"CREATE", "UPDATE", "DELETE", "CONNECT"})


class Request(NamedTuple):
    """One admission request. ``object``/``old_object`` are the raw, untrusted dicts.

    A NamedTuple rather than a frozen dataclass: as immutable, and built in one call per
    review instead of fourteen ``object.__setattr__`` calls.
    """

    uid: str
    api_version: str
    group: str
    version: str
    kind: str
    resource: str
    sub_resource: str
    operation: str
    namespace: str
    name: str
    dry_run: bool
    username: str
    object: dict[str, Any] | None
    old_object: dict[str, Any] | None
    groups: tuple[str, ...] = ()  # userInfo.groups: who may break glass

    @property
    def object_namespace(self) -> str:
        """The namespace the object lives in: the request's, else the body's.

        The request's namespace is authoritative and always set for namespaced kinds by the
        API server; the body's is a fallback for reviews built offline (``check``).
        """
        if self.namespace:
            return self.namespace
        metadata = self.object.get("metadata") if self.object else None
        namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
        return namespace if isinstance(namespace, str) else ""


def parse_review(body: bytes) -> Request:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadReview(f"body is not valid JSON: {exc}") from exc
    return review_from_document(document)


def review_from_document(document: Any) -> Request:
    if not isinstance(document, dict):
        raise BadReview("body must be a JSON object (an AdmissionReview)")
    if document.get("kind") != "AdmissionReview":
        raise BadReview("kind must be AdmissionReview")
    api_version = document.get("apiVersion")
    # isinstance first: a list or an object here is unhashable and must be a 400, not a crash.
    if not isinstance(api_version, str) or api_version not in SUPPORTED_API_VERSIONS:
        raise BadReview(f"apiVersion {api_version!r} is not supported; "
                        "configure admissionReviewVersions: [v1]")
    request = document.get("request")
    if not isinstance(request, dict):
        raise BadReview("the AdmissionReview has no request object")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise BadReview("request.uid must be a non-empty string")
    kind = _mapping(request, "kind")
    resource = _mapping(request, "resource")
    operation = request.get("operation")
    if not isinstance(operation, str) or operation not in OPERATIONS:
        raise BadReview(f"request.operation {operation!r} is not one of "
                        f"{', '.join(sorted(OPERATIONS))}")
    obj = _optional_object(request, "object")
    old = _optional_object(request, "oldObject")
    if obj is None and operation in ("CREATE", "UPDATE"):
        raise BadReview(f"request.object is required for {operation}")
    user = request.get("userInfo")
    username = user.get("username") if isinstance(user, dict) else None
    raw_groups = user.get("groups") if isinstance(user, dict) else None
    groups = tuple(g for g in raw_groups if isinstance(g, str)) \
        if isinstance(raw_groups, list) else ()
    return Request(
        uid=uid,
        api_version=api_version,
        group=_text(kind, "group", "request.kind"),
        version=_text(kind, "version", "request.kind"),
        kind=_text(kind, "kind", "request.kind"),
        resource=_text(resource, "resource", "request.resource"),
        sub_resource=_text(request, "subResource", "request"),
        operation=operation,
        namespace=_text(request, "namespace", "request"),
        name=_text(request, "name", "request"),
        dry_run=request.get("dryRun") is True,
        username=username if isinstance(username, str) else "",
        object=obj,
        old_object=old,
        groups=groups,
    )


def _mapping(request: dict[str, Any], key: str) -> dict[str, Any]:
    value = request.get(key)
    if not isinstance(value, dict):
        raise BadReview(f"request.{key} must be an object")
    return value


def _text(mapping: dict[str, Any], key: str, where: str) -> str:
    value = mapping.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadReview(f"{where}.{key} must be a string")
    return value


def _optional_object(request: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = request.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise BadReview(f"request.{key} must be an object or null")
