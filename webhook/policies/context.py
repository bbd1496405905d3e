"""What a policy may know besides the object: the loaded policy file and egress registry.

Owns the ``Context`` value handed to every handler and the ``Handler`` signature. The
registry is ``None`` until a good registry has been loaded; ``registry_problem`` then says
why, so that egress policies can fail closed with a useful message. ``exported`` is set on
the context of namespaces in warn-only rollout: what such a namespace exports beyond itself
becomes part of other (enforced) namespaces' proxy config, so it is judged with that
context, in enforce mode (``webhook.admission.seam`` switches; ``exports_beyond`` says when).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from webhook.config.policy import Policy
from webhook.core.review import Request
from webhook.egress.registry import Registry
from webhook.policies.result import Verdict

NO_REGISTRY = ("no egress registry has been loaded yet, so egress objects cannot be checked "
               "and are refused; an operator must provide a valid registry file")


# Kinds with exportTo, where Istio's default (unset or empty) is every namespace.
EXPORTING_KINDS = frozenset({("networking.istio.io", "ServiceEntry"),
                             ("networking.istio.io", "VirtualService")})


@dataclass(frozen=True, slots=True)
class Context:
    policy: Policy
    registry: Registry | None = None
    registry_problem: str = NO_REGISTRY
    exported: Context | None = None


def exports_beyond(request: Request) -> bool:
    """Whether the object is exported to any namespace but its own (``*`` or unset included)."""
    if (request.group, request.kind) not in EXPORTING_KINDS:
        return False
    spec = (request.object or {}).get("spec")
    export_to = spec.get("exportTo") if isinstance(spec, dict) else None
    if not isinstance(export_to, list) or not export_to:
        return True
    own = (".", "~", request.object_namespace)
    return any(value not in own for value in export_to)


Handler = Callable[[Request, Context], Verdict]
