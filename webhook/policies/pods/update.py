"""Pod UPDATE: what a live pod may still change, and that it stays as sealed as it was.

A plain pod UPDATE (no subresource) may change metadata (labels, annotations, owner
references, finalizers) and, in the spec, only container and init-container images,
``activeDeadlineSeconds``, added tolerations and removed scheduling gates: the API server
refuses the rest, and resources, ephemeral containers and status have subresources of their
own. Istio's injector does not run on UPDATE, but the kubelet restarts a container whose image
changed (native sidecars included), and pilot-agent reads the pod's annotations again, through
the downward API, when the proxy restarts. So an UPDATE is judged three ways:

- ``pod.istio-image-update``: the image of Istio's containers (``istio-proxy``, ``istio-init``,
  ``istio-validation``) never changes; a no-op ``istio-init`` image means no iptables rules,
  another ``istio-proxy`` image runs as the proxy's UID and relays anything.
- the labels and annotations the update adds or changes are judged by the pre-injection
  rules, as CREATE judged them (keys left as they were are not judged again: Istio wrote some
  of them itself, in CNI mode capture annotations among them).
- the final-pod rules run over the new object, and only violations the old object did not
  already have are reported. Controllers and the kubelet update pods all the time (labels,
  owner references, finalizers on deletion); a pod admitted under an older policy, or before
  the webhook was installed, must stay updatable and deletable. It cannot get worse.

Subresource UPDATEs are judged too: the API server's strategies for ``pods/status`` reset
only the spec, ``deletionTimestamp`` and owner references, so a status update can still add
labels and annotations (``proxy.istio.io/config``, capture exclusions). ``pods/status`` gets
the whole ``check_pod_update`` (its spec is the old one, so only metadata can differ; an
ordinary kubelet status update changes neither and passes); every other subresource UPDATE
gets ``check_metadata_update`` next to its own checks (``validate``).

Owns ``check_pod_update`` and ``check_metadata_update``. It does not decide what the rules are
(``validate``, ``istio``, ``isolation``).
"""

from __future__ import annotations

from typing import Any

from webhook.config.policy import Policy
from webhook.policies.pods import isolation, istio
from webhook.policies.pods.compiled import CompiledPolicy, compile_policy
from webhook.policies.pods.validate import PodMaps, check_parts, pod_maps
from webhook.policies.pods.walk import CONTAINERS, INIT_CONTAINERS, containers, join
from webhook.policies.result import Verdict, VerdictBuilder

IMAGE_RULE = "pod.istio-image-update"
_ISTIO_KINDS = (CONTAINERS, INIT_CONTAINERS)
_MISSING = object()


def check_pod_update(pod: dict[str, Any], old: dict[str, Any] | None, *, policy: Policy,
                     namespace: str | None) -> Verdict:
    """The violations a plain pod UPDATE introduces (see the module docstring)."""
    compiled = compile_policy(policy)
    builder = VerdictBuilder()
    parts = pod_maps(pod, path="")
    if not isinstance(old, dict):
        # The API server always sends oldObject on UPDATE; without it, judge the pod whole.
        check_parts(parts, compiled=compiled, builder=builder, path="", final=True,
                    namespace=namespace)
        return builder.build()
    old_parts = pod_maps(old, path="")
    _check_istio_images(parts[1], old_parts[1], compiled=compiled, builder=builder)
    _check_changed_metadata(parts, old_parts, compiled=compiled, builder=builder)
    final = VerdictBuilder()
    check_parts(parts, compiled=compiled, builder=final, path="", final=True,
                namespace=namespace)
    if final.violations:
        before = VerdictBuilder()
        check_parts(old_parts, compiled=compiled, builder=before, path="", final=True,
                    namespace=namespace)
        known = set(before.violations)
        reported = {(v.rule, v.path) for v in builder.violations}
        builder.violations.extend(v for v in final.violations
                                  if v not in known and (v.rule, v.path) not in reported)
    return builder.build()


def _check_istio_images(spec: dict[str, Any], old_spec: dict[str, Any], *,
                        compiled: CompiledPolicy, builder: VerdictBuilder) -> None:
    if IMAGE_RULE not in compiled.checked:
        return
    # Containers cannot be added, removed or renamed by an UPDATE: kind and name match them.
    before = {(ref.kind, ref.name): ref.body.get("image")
              for ref in containers(old_spec, pointer="", path="", kinds=_ISTIO_KINDS)
              if ref.name in istio.RESERVED_NAMES}
    if not before:
        return
    for ref in containers(spec, pointer="", path="", kinds=_ISTIO_KINDS):
        image = before.get((ref.kind, ref.name), _MISSING)
        if image is not _MISSING and ref.body.get("image") != image:
            builder.violate(IMAGE_RULE, join(ref.path, "image"), f"changes Istio's "
                            f"{ref.name} image from {image!r} to {ref.body.get('image')!r} "
                            "on a live pod; the kubelet would restart it with an image the "
                            "injector did not choose (no capture, or a proxy that relays "
                            "anything): recreate the pod to change Istio's version")


def _changed(new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``new`` that ``old`` lacks or holds with another value."""
    if new is old or new == old:
        return {}
    return {key: value for key, value in new.items() if old.get(key, _MISSING) != value}


def _check_changed_metadata(parts: PodMaps, old_parts: PodMaps, *,
                            compiled: CompiledPolicy, builder: VerdictBuilder) -> None:
    labels = _changed(parts[2], old_parts[2])
    annotations = _changed(parts[3], old_parts[3])
    if not labels and not annotations:
        return
    istio.check_injection(labels, annotations, compiled=compiled, builder=builder, path="",
                          final=False)
    if annotations:
        istio.check_annotations(annotations, compiled=compiled, builder=builder, path="",
                                final=False)
        isolation.check_kata_annotations(annotations, compiled=compiled, builder=builder,
                                         path="")


def check_metadata_update(pod: dict[str, Any], old: dict[str, Any] | None, *,
                          policy: Policy) -> Verdict:
    """The labels and annotations an UPDATE (of any subresource) adds or changes."""
    builder = VerdictBuilder()
    if isinstance(old, dict):
        _check_changed_metadata(pod_maps(pod, path=""), pod_maps(old, path=""),
                                compiled=compile_policy(policy), builder=builder)
    return builder.build()
