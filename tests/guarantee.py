"""The run-time identity guarantee, restated independently of the webhook for tests.

A non-Istio container can gain the proxy's UID or GID at run time when its effective UID is
unset (the image's USER decides), root, or the proxy's; its effective GID is unset or the
proxy's; it may escalate privileges; it keeps CAP_SETUID or CAP_SETGID; it adds
capabilities; or it is privileged. The pod's fsGroup and supplementalGroups give every
container those GIDs. ``escapes`` lists what lets a container do that; empty means it cannot.
"""

from __future__ import annotations

from typing import Any

ISTIO_CONTAINERS = frozenset({"istio-proxy", "istio-init", "istio-validation"})
KINDS = ("containers", "initContainers", "ephemeralContainers")


def _caps(names: Any) -> set[str]:
    return {n.upper().removeprefix("CAP_") for n in names if isinstance(n, str)} if \
        isinstance(names, list) else set()


def container_escapes(pod_security: dict[str, Any], body: dict[str, Any], *, proxy_uid: int,
                      proxy_gid: int) -> list[str]:
    security = body.get("securityContext") or {}
    found = []
    uid = security.get("runAsUser", pod_security.get("runAsUser"))
    gid = security.get("runAsGroup", pod_security.get("runAsGroup"))
    if uid is None:
        found.append("the image's USER picks the UID")
    elif uid in (0, proxy_uid):
        found.append(f"runs as UID {uid}")
    if gid is None:
        found.append("the image picks the GID")
    elif gid == proxy_gid:
        found.append(f"runs as GID {gid}")
    if security.get("allowPrivilegeEscalation") is not False:
        found.append("may escalate privileges")
    if security.get("privileged"):
        found.append("privileged")
    capabilities = security.get("capabilities") or {}
    if _caps(capabilities.get("add")):
        found.append("adds capabilities")
    dropped = _caps(capabilities.get("drop"))
    if "ALL" not in dropped and not {"SETUID", "SETGID"} <= dropped:
        found.append("keeps CAP_SETUID/CAP_SETGID")
    return found


def escapes(pod: dict[str, Any], *, proxy_uid: int = 1337, proxy_gid: int = 1337,
            istio: frozenset[str] = ISTIO_CONTAINERS) -> dict[str, list[str]]:
    """``{container: [what lets it become the proxy]}`` for every non-Istio container."""
    spec = pod["spec"]
    pod_security = spec.get("securityContext") or {}
    found: dict[str, list[str]] = {}
    groups = pod_security.get("supplementalGroups") or []
    if proxy_gid in groups or pod_security.get("fsGroup") == proxy_gid:
        found["<pod>"] = ["the pod gives every container the proxy's GID"]
    for kind in KINDS:
        for body in spec.get(kind) or []:
            if body.get("name") in istio:
                continue
            problems = container_escapes(pod_security, body, proxy_uid=proxy_uid,
                                         proxy_gid=proxy_gid)
            if problems:
                found[f"{kind}[{body.get('name')}]"] = problems
    return found
