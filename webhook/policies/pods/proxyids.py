"""The Istio proxy's identity, read from the final pod: what iptables exempts from capture.

The proxy's UID/GID is not the same everywhere: Istio gives it 1337 by default, but on
OpenShift the top of the namespace's ``openshift.io/sa.scc.uid-range`` and of its
``supplemental-groups`` range (Istio's ``GetProxyIDs``), and ``istio-iptables -u/-g`` carry
those IDs. So in the final pod the identity is taken from the pod itself: the injected
``istio-proxy``'s effective ``runAsUser``/``runAsGroup`` and the iptables arguments, which
``iptables.capture_problems`` checks agree with it. Where the pod tells nothing, the
policy's ``istio.proxyUID``/``proxyGID`` stand. Before injection (the mutating stage) the
proxy does not exist yet, so only the policy's IDs are known.

Owns ``proxy_ids``: the IDs to expect in the iptables arguments, and every UID and GID no
other container may run as (the policy's, the proxy's, and what iptables really exempts:
``-g`` defaults to ``-u``). It decides nothing itself (``isolation`` and ``istio`` refuse).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, NamedTuple

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.iptables import parse_args, ref_argv
from webhook.policies.pods.isolation import Role, classify
from webhook.policies.pods.walk import INIT_CONTAINERS, ContainerRef


class ProxyIds(NamedTuple):
    uid: int  # the proxy's UID: what istio-iptables -u must say
    gid: int  # the proxy's GID: what istio-iptables -g must say (when given)
    uids: frozenset[int]  # UIDs no other container may run as
    gids: frozenset[int]  # GIDs no other container (or fsGroup, supplementalGroups) may use


def policy_ids(compiled: CompiledPolicy) -> ProxyIds:
    """The policy's fixed IDs alone (before injection, or when the pod tells nothing)."""
    return _fixed_ids(compiled.proxy_uid, compiled.proxy_gid)


@lru_cache(maxsize=16)  # one pair per loaded policy: built once, not per review
def _fixed_ids(uid: int, gid: int) -> ProxyIds:
    return ProxyIds(uid, gid, frozenset({uid}), frozenset({gid}))


def _id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def proxy_ids(refs: list[ContainerRef], pod_security: dict[str, Any], *,
              compiled: CompiledPolicy, final: bool) -> ProxyIds:
    """The proxy's identity in this pod, and every ID that must stay the proxy's alone."""
    if not final:
        return policy_ids(compiled)
    uid, gid = compiled.proxy_uid, compiled.proxy_gid
    uids, gids = {uid}, {gid}
    for ref in refs:
        if classify(ref, final=True) is Role.PROXY:
            security = ref.body.get("securityContext")
            security = security if isinstance(security, dict) else {}
            found_uid = _id(security.get("runAsUser"))
            if found_uid is None:
                found_uid = _id(pod_security.get("runAsUser"))
            found_gid = _id(security.get("runAsGroup"))
            if found_gid is None:
                found_gid = _id(pod_security.get("runAsGroup"))
            uid = found_uid if found_uid is not None else uid
            gid = found_gid if found_gid is not None else gid
            uids.add(uid)
            gids.add(gid)
            break
    for ref in refs:
        if ref.kind != INIT_CONTAINERS or ref.name not in ("istio-init", "istio-validation"):
            continue
        found = ref_argv(ref)
        if found is None:
            continue
        exempt_uid, exempt_gid = (_memo_exempted(found.words) if found.small
                                  else _exempted(found.words))
        if exempt_uid is not None:
            uids.add(exempt_uid)
        if exempt_gid is not None:
            gids.add(exempt_gid)
    return ProxyIds(uid, gid, frozenset(uids), frozenset(gids))


def _exempted(words: tuple[str, ...]) -> tuple[int | None, int | None]:
    """The UID and GID these istio-iptables arguments exempt from capture."""
    values = parse_args(list(words)).values
    exempt_uid = _numeric(values.get("proxy-uid"))
    exempt_gid = _numeric(values.get("proxy-gid"))
    if exempt_gid is None:
        exempt_gid = exempt_uid  # istio-iptables exempts -u's value as a GID without -g
    return exempt_uid, exempt_gid


# The injector writes the same few vectors into every pod (bounded like capture_problems).
_memo_exempted = lru_cache(maxsize=128)(_exempted)


def _numeric(values: list[str] | None) -> int | None:
    """The last occurrence of a flag as a number (pflag's rule), else None."""
    if not values:
        return None
    text = values[-1].strip()
    return int(text) if text.isdigit() else None
