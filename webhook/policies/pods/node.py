"""Connections the node makes for a container: probe and lifecycle hosts, image pulls.

The kubelet runs probes and lifecycle hooks from the node: an ``httpGet`` or ``tcpSocket``
with a ``host`` makes it connect to that host (headers included), outside the pod's network,
around the sidecar, the filtering resolver and NetworkPolicy; Kubernetes' Pod Security
baseline restricts the same field. With Istio's probe rewriting, pilot-agent (the proxy's
UID, uncaptured) would make that connection instead. And the node pulls each image from the
registry the image names. So, per container (every kind):

- ``pod.probe-host``: no ``host`` in ``livenessProbe``, ``readinessProbe``, ``startupProbe``
  or ``lifecycle.postStart``/``preStop`` handlers (the pod's own IP is what an unset host
  means);
- ``pod.image-registry``: when ``images.allowedRegistries`` is set, the image comes from one
  of them. Istio's injected containers in the final pod are exempt: their image is the mesh's
  (``sidecar.istio.io/proxyImage`` is refused, and UPDATE cannot change it).

Owns ``check_container`` and ``image_location``; it finds no containers (the caller's single
pass does) and knows nothing of volumes (``volumes``).
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.isolation import Role
from webhook.policies.pods.walk import ContainerRef
from webhook.policies.result import VerdictBuilder

PROBE_RULE = "pod.probe-host"
REGISTRY_RULE = "pod.image-registry"
PROBES = ("livenessProbe", "readinessProbe", "startupProbe")
HOOKS = ("postStart", "preStop")
CONNECTING_HANDLERS = ("httpGet", "tcpSocket")
DOCKER_HUB = "docker.io"


def check_container(ref: ContainerRef, role: Role, *, compiled: CompiledPolicy,
                    builder: VerdictBuilder) -> None:
    if role is not Role.APP:
        return  # Istio's injected containers: their probes and image are the injector's
    body = ref.body
    if PROBE_RULE in compiled.checked:
        for key in PROBES:
            probe = body.get(key)
            if probe:
                _check_handler(ref, key, probe, builder=builder)
        lifecycle = body.get("lifecycle")
        if isinstance(lifecycle, dict):
            for hook in HOOKS:
                handler = lifecycle.get(hook)
                if handler:
                    _check_handler(ref, f"lifecycle.{hook}", handler, builder=builder)
    if compiled.registries and REGISTRY_RULE in compiled.checked:
        _check_registry(ref, compiled.registries, builder=builder)


def _check_handler(ref: ContainerRef, where: str, handler: Any, *,
                   builder: VerdictBuilder) -> None:
    if not isinstance(handler, dict):
        return
    for kind in CONNECTING_HANDLERS:
        action = handler.get(kind)
        if isinstance(action, dict) and action.get("host") not in (None, ""):
            builder.violate(PROBE_RULE, f"{ref.path}.{where}.{kind}.host", f"is "
                            f"{action.get('host')!r}: the kubelet would connect there from "
                            "the node, outside the pod's network and the sidecar; remove "
                            "host (the probe then targets the pod itself)")


def image_location(image: str) -> str:
    """``registry/repository[:tag]`` with Docker Hub's implied parts made explicit."""
    first, slash, _ = image.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return image
    if not slash:
        return f"{DOCKER_HUB}/library/{image}"
    return f"{DOCKER_HUB}/{image}"


def allowed(image: str, registries: tuple[str, ...]) -> bool:
    location = image_location(image)
    return any(location == entry or location.startswith(f"{entry}/") for entry in registries)


def _check_registry(ref: ContainerRef, registries: tuple[str, ...], *,
                    builder: VerdictBuilder) -> None:
    image = ref.body.get("image")
    if isinstance(image, str) and allowed(image, registries):
        return
    builder.violate(REGISTRY_RULE, f"{ref.path}.image", f"{image!r} is not from an approved "
                    f"registry ({', '.join(registries)}); the node pulls it from wherever it "
                    "names: use an image from one of them")
