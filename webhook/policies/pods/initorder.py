"""Init containers and Istio's capture: whether each init container runs behind the rules.

Istio's injector orders the init containers it adds by mode (``reorderPod``):

- proxy as a native sidecar: ``istio-init`` (or the CNI's ``istio-validation``), then
  ``istio-proxy``, then the pod's own init containers, which therefore run captured;
- classic: ``istio-init`` goes LAST, "so we do not blackhole init containers": every user init
  container, and any native sidecar the user declares, runs before any iptables rule exists
  (and a connection opened then keeps going after the rules arrive: NAT applies to new
  connections only);
- Istio CNI: the rules are set up with the pod's network, before any container starts.

Owns ``pod.native-sidecar`` (before injection: ask Istio for native mode with
``sidecar.istio.io/nativeSidecar: "true"`` on pods that have init containers, and refuse
``"false"`` there) and ``pod.init-before-capture`` (the final pod: no user init container
ahead of ``istio-init`` without the CNI). Native mode needs Kubernetes >= 1.29 and Istio >=
1.24 (the per-pod annotation); ``istio.nativeSidecars: false`` turns the request off for
older clusters, where the final-pod rule still refuses what would run uncaptured.
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.isolation import Role
from webhook.policies.pods.walk import ContainerRef, join
from webhook.policies.result import VerdictBuilder

NATIVE_ANNOTATION = "sidecar.istio.io/nativeSidecar"
NATIVE_RULE = "pod.native-sidecar"
ORDER_RULE = "pod.init-before-capture"
NATIVE_NOTE = (f"set annotation {NATIVE_ANNOTATION}=true (init containers then run behind "
               "Istio's capture)")


def _has_init_containers(spec: dict[str, Any]) -> bool:
    inits = spec.get("initContainers")
    return isinstance(inits, list) and bool(inits)


def wants_native(spec: dict[str, Any], annotations: dict[str, Any],
                 compiled: CompiledPolicy) -> bool:
    """Whether the mutating webhook should add the native-sidecar annotation (pre-injection)."""
    return (compiled.native_sidecars and NATIVE_RULE in compiled.checked
            and NATIVE_ANNOTATION not in annotations and _has_init_containers(spec))


def check_native_annotation(spec: dict[str, Any], annotations: dict[str, Any], *,
                            compiled: CompiledPolicy, builder: VerdictBuilder,
                            path: str) -> None:
    """Before injection: an explicit non-"true" value on a pod whose init containers need it."""
    value = annotations.get(NATIVE_ANNOTATION)
    if (value is None or value == "true" or not compiled.native_sidecars
            or NATIVE_RULE not in compiled.checked or not _has_init_containers(spec)):
        return
    builder.violate(NATIVE_RULE, join(path, f"metadata.annotations[{NATIVE_ANNOTATION}]"),
                    f"is {value!r}; in Istio's classic injection istio-init runs after the "
                    "pod's init containers, so their connections skip the proxy: remove the "
                    "annotation (the webhook sets it to \"true\")")


def check_order(inits: list[tuple[ContainerRef, Role]], *, compiled: CompiledPolicy,
                builder: VerdictBuilder) -> None:
    """The final pod: user init containers placed before ``istio-init`` (classic, no CNI)."""
    if ORDER_RULE not in compiled.checked or not inits:
        return
    early: list[ContainerRef] = []
    for ref, role in inits:
        if role is Role.CNI_VALIDATION:
            return  # the CNI set up capture before any container
        if role is Role.IPTABLES_INIT:
            break
        if role is Role.APP:
            early.append(ref)
    else:
        return  # no istio-init at all: pod.istio-sidecar says so
    for ref in early:
        builder.violate(ORDER_RULE, ref.path, "runs before istio-init sets up capture (Istio's "
                        "classic injection puts istio-init last), so its connections skip the "
                        "proxy; let the webhook request a native sidecar (istio.nativeSidecars: "
                        "Kubernetes >= 1.29, Istio >= 1.24), use the Istio CNI, or move this "
                        "work into the app container")
