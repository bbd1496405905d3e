"""Builders for AdmissionReview responses, so that no handler builds one by hand.

Owns the wire shape of a response: uid and apiVersion echoed, ``allowed``, ``status`` with
code and reason, base64 JSON Patch, warnings and audit annotations. Mirrors
controller-runtime's ``Allowed``/``Denied``/``Errored``/``Patched`` helpers.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

# The API server truncates long warnings and may drop many; keep each on one short line.
MAX_WARNING_CHARS = 256
MAX_WARNINGS = 50


def allowed(*, uid: str, api_version: str, patch: Sequence[Mapping[str, Any]] = (),
            warnings: Sequence[str] = (),
            audit: Mapping[str, str] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": True}
    if patch:
        response["patchType"] = "JSONPatch"
        ops = patch if isinstance(patch, list | tuple) else list(patch)
        response["patch"] = binascii.b2a_base64(orjson.dumps(ops), newline=False).decode("ascii")
    return _envelope(api_version, response, warnings, audit)


def denied(*, uid: str, api_version: str, message: str, warnings: Sequence[str] = (),
           audit: Mapping[str, str] | None = None) -> dict[str, Any]:
    response = {"uid": uid, "allowed": False,
                "status": {"code": 403, "reason": "Forbidden", "message": message}}
    return _envelope(api_version, response, warnings, audit)


def errored(*, uid: str, api_version: str, message: str) -> dict[str, Any]:
    """Fail closed: the webhook could not decide, so the object is refused with code 500."""
    response = {"uid": uid, "allowed": False,
                "status": {"code": 500, "reason": "InternalError", "message": message}}
    return _envelope(api_version, response, (), None)


def _envelope(api_version: str, response: dict[str, Any], warnings: Sequence[str],
              audit: Mapping[str, str] | None) -> dict[str, Any]:
    if warnings:
        if len(warnings) > MAX_WARNINGS:
            warnings = warnings[:MAX_WARNINGS]
        response["warnings"] = [_one_line(w) for w in warnings]
    if audit:
        response["auditAnnotations"] = dict(audit)
    return {"apiVersion": api_version, "kind": "AdmissionReview", "response": response}


# Warnings are mostly the same few texts review after review (a mutation's note, a rule's
# message): each is flattened once. Bounded, since some carry names from the object.
_FLAT: dict[str, str] = {}
_FLAT_LIMIT = 4096


def _one_line(text: str) -> str:
    flat = _FLAT.get(text)
    if flat is None:
        if len(_FLAT) >= _FLAT_LIMIT:
            _FLAT.clear()
        flat = _FLAT[text] = _flatten(text)
    return flat


def _flatten(text: str) -> str:
    # Fast path for the usual warning: printable means the only whitespace is ASCII space
    # (str.isprintable is False for every other space and control character), so a text
    # with no doubled, leading or trailing space is already what split/join would give.
    if (len(text) <= MAX_WARNING_CHARS and text.isprintable() and "  " not in text
            and text[:1] != " " and text[-1:] != " "):
        return text
    flat = " ".join(text.split())
    if len(flat) > MAX_WARNING_CHARS:
        return flat[: MAX_WARNING_CHARS - 3] + "..."
    return flat
