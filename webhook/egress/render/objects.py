"""Names, labels and envelopes shared by every rendered object.

Owns the object names other tools look for (``webhook.core.labels`` spells them), the
``managed-by`` label that marks what the controller may change or delete, and the ServiceEntry
name derived from a host. It does not decide what an object says.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

from webhook.core.labels import MANAGED_BY_LABEL, MANAGED_BY_VALUE, SERVICE_ENTRY_PREFIX

DEFAULT_WEBHOOK_NAMESPACE: Final = "agent-sandbox-system"
MAX_NAME_LENGTH: Final = 253
OWNED_LABELS: Final = {MANAGED_BY_LABEL: MANAGED_BY_VALUE}


def metadata(name: str, namespace: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    meta["labels"] = dict(OWNED_LABELS)
    return meta


def envelope(api_version: str, kind: str, name: str, namespace: str | None,
             **body: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": metadata(name, namespace),
            **body}


def service_entry_name(host: str, *, disambiguate: bool = False) -> str:
    """``agent-sandbox-api-example-com`` for ``api.example.com``.

    Dots become dashes, so two hosts can meet on one name (``a-b.c``, ``a.b-c``): those, and
    names over the 253-character limit, end in a digest of the host instead.
    """
    return prefixed_name(SERVICE_ENTRY_PREFIX, host.replace(".", "-"), source=host,
                         disambiguate=disambiguate)


def prefixed_name(prefix: str, name: str, *, source: str | None = None,
                  disambiguate: bool = False) -> str:
    """``prefix + name``, ending in a digest of ``source`` when too long or ambiguous."""
    full = prefix + name
    if not disambiguate and len(full) <= MAX_NAME_LENGTH:
        return full
    digest = hashlib.sha256((source or name).encode()).hexdigest()[:12]
    return f"{full[:MAX_NAME_LENGTH - len(digest) - 1].rstrip('-')}-{digest}"
