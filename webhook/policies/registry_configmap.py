"""Admission of the registry ConfigMap: a malformed registry is refused at apply time.

Owns ``validate_configmap``. The webhook configuration sends it ConfigMaps in the webhook's
namespace only; this policy checks the one named ``egress-registry`` by parsing its
``registry.yaml`` key with the same loader the webhook uses at run time, so a registry that
would not load never reaches the pods' webhook, and one that loads with warnings (a suffix
entry covering shared-storage or paste endpoints) is admitted with those warnings. Other
ConfigMaps are allowed untouched. A registry that loads but that the running webhook would
reject cannot exist: it is one parser.
"""

from __future__ import annotations

from webhook.core.errors import ConfigError
from webhook.core.review import Request
from webhook.egress.registry import parse_registry
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.result import Verdict, VerdictBuilder

REGISTRY_INVALID = "registry.invalid"
REGISTRY_CONFIGMAP = "egress-registry"
REGISTRY_KEY = "registry.yaml"


def validate_configmap(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    metadata = obj.get("metadata")
    name = request.name or (metadata.get("name", "") if isinstance(metadata, dict) else "")
    if (name != REGISTRY_CONFIGMAP or needs_no_check(request, obj)
            or not active(context.policy, REGISTRY_INVALID)):
        return Verdict()
    b = VerdictBuilder()
    where = f"ConfigMap {request.object_namespace}/{name} key {REGISTRY_KEY}"
    data = obj.get("data")
    text = data.get(REGISTRY_KEY) if isinstance(data, dict) else None
    if not isinstance(text, str):
        binary = obj.get("binaryData")
        hint = ("it is under binaryData; put it under data" if isinstance(binary, dict)
                and REGISTRY_KEY in binary else f"add the key {REGISTRY_KEY}")
        b.violate(REGISTRY_INVALID, f"data.{REGISTRY_KEY}", f"{where} is missing, so the "
                  f"webhook would keep its last good registry; {hint}")
        return b.build()
    try:
        registry = parse_registry(text, source=where)
    except ConfigError as exc:
        b.violate(REGISTRY_INVALID, f"data.{REGISTRY_KEY}", f"{exc}. The webhook would keep "
                  "its last good registry; fix the file (format: docs/egress.md)")
        return b.build()
    for warning in registry.warnings:  # it loads; kubectl shows what the operator should know
        b.warn(f"{where}: {warning}")
    return b.build()
