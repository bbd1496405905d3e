"""``pod.explicit-identity``: every non-Istio container names its UID and GID in the spec.

Istio's iptables rules return traffic owned by the proxy's UID or GID without redirecting it.
``pod.proxy-identity`` refuses those IDs when the spec sets them, but a container without
``runAsUser``/``runAsGroup`` runs as whatever its image's ``USER`` says, which the webhook
cannot see: an image with ``USER 1337`` (or ``USER 1000:1337``) would skip capture. So this
rule requires both IDs to be set, on the container or at pod level (the kubelet's own
precedence: the container's value wins, else the pod's). It never patches an identity in:
changing the user an image runs as breaks images, so only the pod's author can choose one.

Owns the check for one container; which containers are Istio's own (exempt: their identity
is the injector's, set explicitly, and the proxy's is the proxy ID by design) is decided by
``isolation.classify``. Windows pods are skipped: ``runAsUser``/``runAsGroup`` do not apply to
them and the iptables capture is Linux's.
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.isolation import Role
from webhook.policies.pods.walk import ContainerRef, join
from webhook.policies.result import VerdictBuilder

RULE = "pod.explicit-identity"
KEYS = ("runAsUser", "runAsGroup")
ISTIO_ROLES = frozenset({Role.PROXY, Role.IPTABLES_INIT, Role.CNI_VALIDATION})


def applies(spec: dict[str, Any], compiled: CompiledPolicy) -> bool:
    """Whether the rule is on and the pod is a Linux pod."""
    os = spec.get("os")
    windows = isinstance(os, dict) and os.get("name") == "windows"
    return RULE in compiled.checked and not windows


def pod_security(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod-level securityContext (empty when absent or malformed: nothing is set)."""
    security = spec.get("securityContext")
    return security if isinstance(security, dict) else {}


def covers(pod_level: dict[str, Any]) -> bool:
    """Whether the pod-level securityContext sets both IDs (then every container has them)."""
    return _is_id(pod_level.get("runAsUser")) and _is_id(pod_level.get("runAsGroup"))


_DECIDES = {"runAsUser": "the UID", "runAsGroup": "the primary GID"}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _proxy_id(key: str, compiled: CompiledPolicy) -> int:
    return compiled.proxy_uid if key == "runAsUser" else compiled.proxy_gid


def check_container(ref: ContainerRef, role: Role, pod_level: dict[str, Any], *,
                    compiled: CompiledPolicy, builder: VerdictBuilder, path: str) -> None:
    """Refuse ``ref`` unless its effective runAsUser and runAsGroup are both set.

    ``pod_level`` is the pod's securityContext: it applies to every container kind,
    ephemeral ones included. ``path`` is the pod's display path (for the fix hint).
    """
    if role in ISTIO_ROLES:
        return
    security = ref.body.get("securityContext")
    security = security if isinstance(security, dict) else {}
    missing = [key for key in KEYS
               if not _is_id(security.get(key)) and not _is_id(pod_level.get(key))]
    if not missing:
        return
    what = " or ".join(missing)
    decides = " and ".join(_DECIDES[key] for key in missing)
    proxy = "/".join(dict.fromkeys(str(_proxy_id(key, compiled)) for key in missing))
    builder.violate(RULE, join(ref.path, "securityContext"),
                    f"no {what} at container or pod level, so the image's USER decides "
                    f"{decides} and could be the Istio proxy's ({proxy}), whose traffic "
                    "skips capture; set "
                    f"{join(path, 'spec.securityContext')}.runAsUser and runAsGroup "
                    "(e.g. 10001)")
