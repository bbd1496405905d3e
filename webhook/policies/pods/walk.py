"""Walking a raw pod dict: containers of every kind with their JSON pointers and display paths.

Owns the untrusted-input plumbing shared by the pod rules: finding ``spec`` and ``metadata``,
iterating ``containers``, ``initContainers`` and ``ephemeralContainers`` with the JSON pointer
a patch needs and the dotted path a message shows, and escaping pointer segments. It decides
nothing about policy. Structural garbage the API server would never send (``spec.containers``
that is not a list, ...) raises ``Undecidable``, which the seam turns into a fail-closed 500
with this message; field-level oddities are left to the rules, which treat them as violations.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from webhook.core.errors import Undecidable

CONTAINERS = "containers"
INIT_CONTAINERS = "initContainers"
EPHEMERAL_CONTAINERS = "ephemeralContainers"
ALL_KINDS = (CONTAINERS, INIT_CONTAINERS, EPHEMERAL_CONTAINERS)


UNREAD: Any = object()  # a ContainerRef slot not read yet


class ContainerRef:
    """One container as found in the raw object, with where it lives.

    ``pointer`` and ``path`` are built on first use: on the hot path most containers break
    no rule and need neither, so a ref only stores the pod's own pointer and display path.
    ``iptables`` holds ``iptables.ref_argv``'s answer once read (several rules ask).
    """

    __slots__ = ("_base_pointer", "_spec_path", "body", "index", "iptables", "kind", "name")

    def __init__(self, kind: str, index: int, name: str, body: dict[str, Any],
                 base_pointer: str, spec_path: str) -> None:
        self.kind = kind  # containers | initContainers | ephemeralContainers
        self.index = index
        self.name = name  # "" when the name is missing or not a string
        self.body = body
        self._base_pointer = base_pointer  # the pod's JSON pointer ("" for a whole pod)
        self._spec_path = spec_path  # the pod's spec display path, e.g. spec.template.spec
        self.iptables: Any = UNREAD

    @property
    def pointer(self) -> str:
        """JSON pointer for patches, e.g. ``/spec/containers/0``."""
        return f"{self._base_pointer}/spec/{self.kind}/{self.index}"

    @property
    def path(self) -> str:
        """Dotted path for messages, e.g. ``spec.containers[agent]``."""
        return f"{self._spec_path}.{self.kind}[{self.name or self.index}]"

    @property
    def short(self) -> str:
        """``containers[agent]``: the path in kubectl's voice, without ``spec.``."""
        return f"{self.kind}[{self.name or self.index}]"

    def __repr__(self) -> str:
        return f"ContainerRef({self.path!r})"


def escape(segment: str) -> str:
    """Escape one JSON pointer segment (RFC 6901): label keys contain ``/``."""
    return segment.replace("~", "~0").replace("/", "~1")


def join(path: str, child: str) -> str:
    """Join dotted display paths, tolerating an empty prefix."""
    return f"{path}.{child}" if path else child


def display_from_pointer(pointer: str) -> str:
    """``/spec/template`` -> ``spec.template`` (for messages about a nested pod)."""
    return ".".join(part.replace("~1", "/").replace("~0", "~")
                    for part in pointer.split("/") if part)


def mapping_at(parent: dict[str, Any], key: str, *, path: str) -> dict[str, Any] | None:
    """``parent[key]`` when it is an object, ``None`` when absent or null; else Undecidable."""
    value = parent.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise Undecidable(f"{join(path, key)} must be an object, got {type(value).__name__}; "
                      "the object is malformed")


def list_at(parent: dict[str, Any], key: str, *, path: str) -> list[Any]:
    """``parent[key]`` when it is a list, ``[]`` when absent or null; else Undecidable."""
    value = parent.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise Undecidable(f"{join(path, key)} must be a list, got {type(value).__name__}; "
                      "the object is malformed")


def pod_parts(pod: Any, *, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``metadata`` and ``spec`` of a pod-shaped dict (empty dicts when absent)."""
    if not isinstance(pod, dict):
        raise Undecidable(f"{path or 'the object'} must be a pod object, got "
                          f"{type(pod).__name__}")
    metadata = mapping_at(pod, "metadata", path=path) or {}
    spec = mapping_at(pod, "spec", path=path)
    if spec is None:
        raise Undecidable(f"{join(path, 'spec')} is missing; a pod needs a spec")
    return metadata, spec


def string_map(metadata: dict[str, Any], key: str, *, path: str) -> dict[str, Any]:
    """``metadata.labels`` / ``metadata.annotations`` (values are checked by the rules)."""
    return mapping_at(metadata, key, path=join(path, "metadata")) or {}


def containers(spec: dict[str, Any], *, pointer: str, path: str,
               kinds: tuple[str, ...] = ALL_KINDS) -> list[ContainerRef]:
    """Every container of the given kinds, in document order (one walk, no generator)."""
    spec_path = join(path, "spec")
    refs: list[ContainerRef] = []
    for kind in kinds:
        items = spec.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            list_at(spec, kind, path=spec_path)  # raises Undecidable with the usual wording
        for index, body in enumerate(items):
            if not isinstance(body, dict):
                raise Undecidable(f"{spec_path}.{kind}[{index}] must be an object; the object "
                                  "is malformed")
            name = body.get("name")
            refs.append(ContainerRef(kind, index, name if isinstance(name, str) else "", body,
                                     pointer, spec_path))
    return refs


def iter_containers(spec: dict[str, Any], *, pointer: str, path: str,
                    kinds: tuple[str, ...] = ALL_KINDS) -> Iterator[ContainerRef]:
    """``containers`` as an iterator, for callers that stop early."""
    return iter(containers(spec, pointer=pointer, path=path, kinds=kinds))


def argv(container: dict[str, Any]) -> list[str]:
    """``command`` + ``args`` as strings (non-strings dropped: they cannot be a program)."""
    words: list[str] = []
    for key in ("command", "args"):
        value = container.get(key)
        if isinstance(value, list):
            words.extend(item for item in value if isinstance(item, str))
    return words
