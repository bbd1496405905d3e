"""The run-time identity guarantee: no non-Istio container can become the proxy's UID or GID.

Istio's iptables return traffic owned by the proxy's UID or GID (``--uid-owner``,
``--gid-owner``) without redirecting it. ``pod.proxy-identity`` refuses those IDs when the
spec names them; this module makes sure no process can *become* them at run time:

- ``pod.run-as-non-root``: an explicit, non-zero UID (root keeps CAP_SETUID/CAP_SETGID under
  containerd's and CRI-O's default capability sets, and ``os.setuid(1337)`` is one line) and
  ``runAsNonRoot`` never false; a container without a UID runs as its image's ``USER``;
- ``pod.run-as-group``: an explicit primary GID (else the image's ``/etc/passwd`` picks it);
- ``pod.no-privilege-escalation``: ``allowPrivilegeEscalation: false`` (no_new_privs: a
  setuid-root binary or file capability gives nothing);
- ``pod.drop-capabilities``: ``capabilities.drop`` contains ALL (or both SETUID and SETGID),
  by their bare names: ``CAP_ALL`` or ``CAP_SETUID`` do not count (see ``_capability``).

Safe by construction: what a pod leaves unset is planned as a fill (pod-level
``runAsUser``/``runAsGroup`` from ``identity`` in the policy and ``runAsNonRoot: true``; per
container ``allowPrivilegeEscalation: false`` and ``drop: [ALL]``), one change each, never
over a value the pod or the platform (OpenShift's SCC) already set. What the pod sets against
the guarantee is refused. With ``identity.fillUnset: false`` a missing field is refused too.

Owns the per-container and pod-level checks; the fills are planned by ``fills`` and turned
into a patch by ``mutate``. It does not decide which containers are Istio's
(``isolation.classify``) or check the proxy's IDs themselves (``isolation``). Windows pods
are out of scope: these fields and the iptables capture are Linux's.
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.isolation import Role
from webhook.policies.pods.walk import ContainerRef, join
from webhook.policies.result import VerdictBuilder

NON_ROOT = "pod.run-as-non-root"
GROUP = "pod.run-as-group"
NO_ESCALATION = "pod.no-privilege-escalation"
DROP = "pod.drop-capabilities"
RULES = (NON_ROOT, GROUP, NO_ESCALATION, DROP)
ISTIO_ROLES = frozenset({Role.PROXY, Role.IPTABLES_INIT, Role.CNI_VALIDATION})
_SETID = frozenset({"SETUID", "SETGID"})


def applies(spec: dict[str, Any], compiled: CompiledPolicy) -> bool:
    """Whether any identity rule is on and the pod is a Linux pod."""
    os = spec.get("os")
    windows = isinstance(os, dict) and os.get("name") == "windows"
    return not windows and not compiled.checked.isdisjoint(RULES)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def context_of(owner: dict[str, Any]) -> dict[str, Any] | None:
    """``owner.securityContext`` as a dict ({} when absent), None when it is not an object."""
    value = owner.get("securityContext")
    if value is None:
        return {}
    return value if isinstance(value, dict) else None


def pod_security(spec: dict[str, Any]) -> dict[str, Any]:
    """The pod-level securityContext ({} when absent or malformed: ``check_pod_level`` says)."""
    return context_of(spec) or {}


def _capability(name: Any) -> str:
    # Bare names only, compared without case, as the runtimes read ``drop``: containerd's CRI
    # plugin (WithCapabilities) and CRI-O drop everything for "ALL" in any case, and
    # containerd prefixes every other name with "CAP_", so "CAP_ALL" drops nothing and
    # "CAP_SETUID" becomes the unknown "CAP_CAP_SETUID". A prefixed name does not count.
    return name.upper() if isinstance(name, str) else ""


def drops_setid(capabilities: Any) -> bool | None:
    """True when ``drop`` covers SETUID and SETGID, False when not, None when malformed."""
    if capabilities is None:
        return False
    if not isinstance(capabilities, dict):
        return None
    drop = capabilities.get("drop")
    if drop is None:
        return False
    if not isinstance(drop, list):
        return None
    names = {_capability(name) for name in drop}
    return "ALL" in names or names >= _SETID


def check_pod_level(spec: dict[str, Any], *, compiled: CompiledPolicy,
                    builder: VerdictBuilder, path: str) -> None:
    """What the pod-level securityContext sets against the guarantee (reported once)."""
    security = context_of(spec)
    where = join(path, "spec.securityContext")
    if security is None:
        if NON_ROOT in compiled.checked:
            builder.violate(NON_ROOT, where, "must be an object; fix the pod's securityContext")
        return
    if NON_ROOT not in compiled.checked:
        return
    uid = security.get("runAsUser")
    if uid is not None and (not _is_id(uid) or uid == 0):
        builder.violate(NON_ROOT, f"{where}.runAsUser", _root_message(uid))
    if security.get("runAsNonRoot") is False:
        builder.violate(NON_ROOT, f"{where}.runAsNonRoot", "is false, which lets containers "
                        "run as root, and root can setuid to the Istio proxy's UID, whose "
                        "traffic skips capture; remove it (the webhook sets it to true)")
    if GROUP in compiled.checked:
        gid = security.get("runAsGroup")
        if gid is not None and not _is_id(gid):
            builder.violate(GROUP, f"{where}.runAsGroup", f"is {gid!r}, not a GID; set a "
                            "number or remove it")


def _root_message(uid: Any) -> str:
    if not _is_id(uid):
        return f"is {uid!r}, not a UID; set a non-root number or remove it"
    return ("is 0 (root), and root can setuid to the Istio proxy's UID, whose traffic skips "
            "capture; remove it (the webhook sets a non-root UID) or set a non-root UID")


def check_container(ref: ContainerRef, role: Role, pod_level: dict[str, Any], *,
                    compiled: CompiledPolicy, builder: VerdictBuilder, path: str,
                    final: bool) -> None:
    """Refuse what ``ref`` sets against the guarantee, and what it lacks unless it is filled.

    ``pod_level`` is the pod's securityContext (``{}`` when absent or malformed: the pod-level
    check reports that); it applies to every container kind, ephemeral ones included.
    Before injection (``final=False``) with ``identity.fillUnset`` on, a missing field is the
    mutating webhook's to set, so only explicit settings are refused.
    """
    if role in ISTIO_ROLES:
        return
    on = compiled.checked.__contains__
    security = context_of(ref.body)
    if security is None:
        if on(NON_ROOT):
            builder.violate(NON_ROOT, join(ref.path, "securityContext"), "must be an object; "
                            "fix the container's securityContext")
        return
    # Display paths are built only for a violation, and a missing field is only reported
    # when the mutating webhook will not fill it: a compliant container needs neither.
    missing = None if compiled.fill_identity and not final else _MissingReporter(
        builder, compiled=compiled, ref=ref, path=path, final=final)
    if on(NON_ROOT):
        uid = security.get("runAsUser")
        if uid is not None:
            if not _is_id(uid) or uid == 0:
                builder.violate(NON_ROOT, _where(ref, "runAsUser"), _root_message(uid))
        elif missing is not None and pod_level.get("runAsUser") is None:
            missing.report(NON_ROOT, "runAsUser", "is not set at container or pod level, so "
                           "the image's USER decides the UID, and root (or the proxy's UID) "
                           "would skip capture")
        if security.get("runAsNonRoot") is False:
            builder.violate(NON_ROOT, _where(ref, "runAsNonRoot"), "is false, which lets the "
                            "container run as root, and root can setuid to the Istio proxy's "
                            "UID; remove it")
    if on(GROUP):
        gid = security.get("runAsGroup")
        if gid is not None and not _is_id(gid):
            builder.violate(GROUP, _where(ref, "runAsGroup"), f"is {gid!r}, not a GID; set a "
                            "number or remove it")
        elif missing is not None and gid is None and pod_level.get("runAsGroup") is None:
            missing.report(GROUP, "runAsGroup", "is not set at container or pod level, so "
                           "the image's /etc/passwd picks the primary GID, which could be the "
                           "Istio proxy's")
    if on(NO_ESCALATION):
        escalation = security.get("allowPrivilegeEscalation")
        if escalation is None:
            if missing is not None:
                missing.report(NO_ESCALATION, "allowPrivilegeEscalation", "is not set, so a "
                               "setuid-root binary in the image gives root, and root can "
                               "setuid to the proxy's UID")
        elif escalation is not False:
            builder.violate(NO_ESCALATION, _where(ref, "allowPrivilegeEscalation"),
                            f"is {yaml_text(escalation)}: a setuid-root binary in the image "
                            "gives root, and root can setuid to the Istio proxy's UID; set it "
                            "to false (or remove it: the webhook sets false)")
    if on(DROP):
        drops = drops_setid(security.get("capabilities"))
        if drops is None:
            builder.violate(DROP, _where(ref, "capabilities"), "must be an object with a drop "
                            "list; set capabilities.drop: [ALL]")
        elif not drops and missing is not None:
            missing.report(DROP, "capabilities.drop", "does not include ALL (or SETUID and "
                           "SETGID), so a process can change its UID or GID to the proxy's")


def _where(ref: ContainerRef, key: str) -> str:
    return f"{join(ref.path, 'securityContext')}.{key}"


class _MissingReporter:
    """Turns "this field is unset" into a refusal (only made when nothing will fill it)."""

    __slots__ = ("builder", "compiled", "final", "path", "ref")

    def __init__(self, builder: VerdictBuilder, *, compiled: CompiledPolicy, ref: ContainerRef,
                 path: str, final: bool) -> None:
        self.builder, self.compiled, self.ref = builder, compiled, ref
        self.path, self.final = path, final

    def report(self, rule: str, key: str, what: str) -> None:
        if key in ("runAsUser", "runAsGroup"):
            value = (self.compiled.default_uid if key == "runAsUser"
                     else self.compiled.default_gid)
            fix = (f"set {join(self.path, 'spec.securityContext')}.{key} (e.g. {value}) or "
                   "set it on the container")
        else:
            fix = f"set {key}: {'[ALL]' if key == 'capabilities.drop' else 'false'}"
        if self.final and self.compiled.fill_identity:
            fix += " (the mutating webhook sets it: is it installed?)"
        self.builder.violate(rule, _where(self.ref, key), f"{what}; {fix}")


def yaml_text(value: Any) -> str:
    """A value as YAML shows it (true/false, numbers), for notes and messages."""
    return "true" if value is True else "false" if value is False else (
        str(value) if isinstance(value, int) else repr(value))
