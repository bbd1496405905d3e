"""What a policy may know besides the object: the loaded policy file and egress registry.

Owns the ``Context`` value handed to every handler and the ``Handler`` signature. The
registry is ``None`` until a good registry has been loaded; ``registry_problem`` then says
why, so that egress policies can fail closed with a useful message. ``exported`` is set on
the context of namespaces in warn-only rollout: what such a namespace exports beyond itself
becomes part of other (enforced) namespaces' proxy config, so it is judged with that
context, in enforce mode (``webhook.admission.seam`` switches; ``exports_beyond`` says when:
ServiceEntries and VirtualServices by ``exportTo``, Services by Istio's
``networking.istio.io/exportTo`` annotation, Endpoints and EndpointSlices always).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from webhook.config.policy import Policy
from webhook.core.review import Request
from webhook.egress.registry import Registry
from webhook.policies.result import Verdict

NO_REGISTRY = ("no egress registry has been loaded yet, so egress objects cannot be checked "
               "and are refused; an operator must provide a valid registry file")


# Kinds with exportTo, where Istio's default (unset or empty) is every namespace.
EXPORTING_KINDS = frozenset({("networking.istio.io", "ServiceEntry"),
                             ("networking.istio.io", "VirtualService")})
# Istio exports a Kubernetes Service to every namespace unless this annotation narrows it;
# an Endpoints object or EndpointSlice cannot say how its Service is exported, so it counts
# as exported.
SERVICE_EXPORT_ANNOTATION = "networking.istio.io/exportTo"
ENDPOINT_KINDS = frozenset({("", "Endpoints"), ("discovery.k8s.io", "EndpointSlice")})


NO_SKILLS = "the Skill cache is not running (serve --watch-skills starts it)"


class SkillCatalog:
    """The Skills the webhook knows of, by (namespace, name): filled in the background."""

    __slots__ = ("_skills",)

    def __init__(self, skills: Iterable[dict[str, Any]] = ()) -> None:
        by_key: dict[tuple[str, str], dict[str, Any]] = {}
        for skill in skills:
            meta = skill.get("metadata") if isinstance(skill, dict) else None
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                by_key[(str(meta.get("namespace") or ""), meta["name"])] = skill
        self._skills = MappingProxyType(by_key)

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._skills.get((namespace, name))

    def __len__(self) -> int:
        return len(self._skills)


@dataclass(frozen=True, slots=True)
class Context:
    policy: Policy
    registry: Registry | None = None
    registry_problem: str = NO_REGISTRY
    # None until the background cache has synced: pods naming a Skill then fail closed.
    skills: SkillCatalog | None = None
    skills_problem: str = NO_SKILLS
    exported: Context | None = None


def exports_beyond(request: Request) -> bool:
    """Whether the object is exported to any namespace but its own (``*`` or unset included)."""
    key = (request.group, request.kind)
    if key in ENDPOINT_KINDS:
        return True
    obj = request.object or {}
    if key == ("", "Service"):
        metadata = obj.get("metadata")
        annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
        value = annotations.get(SERVICE_EXPORT_ANNOTATION) if isinstance(annotations,
                                                                          dict) else None
        export_to: Any = ([v.strip() for v in value.split(",")] if isinstance(value, str)
                          else None)
    elif key in EXPORTING_KINDS:
        spec = obj.get("spec")
        export_to = spec.get("exportTo") if isinstance(spec, dict) else None
    else:
        return False
    if not isinstance(export_to, list) or not export_to:
        return True
    own = (".", "~", request.object_namespace)
    return any(value not in own for value in export_to)


Handler = Callable[[Request, Context], Verdict]
