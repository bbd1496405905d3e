"""The filtering resolver's allowlist: an RPZ zone and the same list as a CoreDNS Corefile.

Forwarding an unlisted name still leaks data to whoever runs its authoritative server (DNS
tunnelling), so the resolver must answer NXDOMAIN for it without asking anyone. Owns the
ConfigMap ``agent-sandbox-dns-allowlist`` with two keys:

- ``allowlist.rpz``: a Response Policy Zone (Unbound, BIND, PowerDNS, Knot load it). Owner
  names are relative to the zone's origin; ``CNAME rpz-passthru.`` lets a name through,
  ``CNAME .`` answers NXDOMAIN. Approved exact names and ``*.suffix`` keys of the rendered
  namespaces, and the cluster domain, pass; deny-list names and ``*`` (everything else) are
  NXDOMAIN (an exact deny name with everything under it). Every name mentioned gets an
  explicit owner for itself and for ``*.`` under it.
  Names under an exact registry key are NXDOMAIN unless a nearer ``*.suffix`` key allows
  them, as the registry decides (an exact entry governs its subtree; ``webhook.egress.index``).
- ``Corefile``: one server block per name the list mentions. CoreDNS picks the block of the
  longest matching zone; ``template`` answers NXDOMAIN for what is not allowed, ``forward``
  sends the rest to the resolver pod's own upstream. The root block answers NXDOMAIN.

Both are derived from one ``Allowlist``, so they agree name for name.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from webhook.config.policy import Policy
from webhook.core.labels import DNS_ALLOWLIST_CONFIGMAP
from webhook.egress.registry import Registry
from webhook.egress.render.approved import Approved
from webhook.egress.render.objects import envelope

RPZ_KEY = "allowlist.rpz"
COREFILE_KEY = "Corefile"
UPSTREAM = "/etc/resolv.conf"  # the resolver pod's own resolv.conf: the cluster's DNS
TTL = 300


@dataclass(frozen=True, slots=True)
class Allowlist:
    exact: frozenset[str]  # names that resolve
    suffixes: frozenset[str]  # names under these resolve
    deny_exact: frozenset[str]
    deny_suffixes: frozenset[str]
    governed: frozenset[str] = frozenset()  # exact registry keys: nothing under them resolves

    def name_allowed(self, name: str) -> bool:
        """Whether the resolver answers ``name``: deny first, then exact, then suffixes."""
        name = name.lower().rstrip(".")
        if name in self.deny_exact:
            return False
        if name in self.exact:
            return True
        return self.under_allowed(_parent(name))

    def under_allowed(self, zone: str | None) -> bool:
        """Whether names strictly under ``zone`` resolve, by the nearest suffix rule."""
        while zone is not None:
            if zone in self.deny_suffixes:
                return False
            if zone in self.suffixes:
                return True
            if zone in self.governed:
                return False  # an exact entry governs its subtree: no broader suffix reaches
            zone = _parent(zone)
        return False


def _parent(name: str) -> str | None:
    _, dot, rest = name.partition(".")
    return rest if dot and rest else None


def build_allowlist(registry: Registry, grants: Iterable[Approved], policy: Policy) -> Allowlist:
    exact: set[str] = set()
    suffixes: set[str] = set()
    for approved in grants:
        exact.update(host.name for host in approved.exact)
        suffixes.update(approved.suffixes)
    domain = policy.dns.cluster_domain.lower().strip(".")
    exact.add(domain)
    suffixes.add(domain)
    deny_exact = frozenset(d.host.name for d in registry.deny if not d.host.wildcard)
    # An exact deny entry covers the names under it too (``webhook.egress.index``).
    deny_suffixes = frozenset(d.host.name for d in registry.deny)
    return Allowlist(frozenset(exact - deny_exact), frozenset(suffixes - deny_suffixes),
                     deny_exact, deny_suffixes, registry.governing_names())


def _zones(allowlist: Allowlist) -> list[str]:
    """Every name the list mentions, parents before children."""
    # A governed name matters only where a suffix above it would otherwise let its subtree in.
    governed = {name for name in allowlist.governed if _under_any(name, allowlist.suffixes)}
    return sorted(allowlist.exact | allowlist.suffixes | allowlist.deny_exact
                  | allowlist.deny_suffixes | governed, key=lambda z: (z.count("."), z))


def _under_any(name: str, suffixes: frozenset[str]) -> bool:
    zone = _parent(name)
    while zone is not None:
        if zone in suffixes:
            return True
        zone = _parent(zone)
    return False


def rpz_zone(allowlist: Allowlist) -> str:
    """Each mentioned name and its subtree get an explicit action.

    Resolvers differ on whether a name's trigger also covers the names under it (Unbound's
    does for ``rpz-passthru.``) and whether ``*.suffix`` covers the suffix itself; spelling
    out both owners for every name leaves only "the most specific owner wins", which every
    RPZ implementation shares.
    """
    records = []
    for zone in _zones(allowlist):
        records.append(f"{zone} CNAME {_action(allowlist.name_allowed(zone))}")
        records.append(f"*.{zone} CNAME {_action(allowlist.under_allowed(zone))}")
    body = "\n".join(records)
    # No clock in rendering: the serial is derived from the content, so it changes with it.
    serial = int(hashlib.sha256(body.encode()).hexdigest()[:7], 16)
    return "\n".join([
        "; agent-sandbox-webhook: the filtering resolver's allowlist (Response Policy Zone).",
        "; Approved names pass (rpz-passthru.); deny-listed names and everything else answer",
        "; NXDOMAIN (CNAME .) without being forwarded. Rendered from the egress registry.",
        f"$TTL {TTL}",
        f"@ SOA localhost. hostmaster.localhost. {serial} 3600 600 86400 {TTL}",
        "@ NS localhost.",
        body,
        "; everything else",
        "* CNAME .",
        "",
    ])


def _action(allowed: bool) -> str:
    return "rpz-passthru." if allowed else "."


def corefile(allowlist: Allowlist) -> str:
    blocks = [
        "# agent-sandbox-webhook: the filtering resolver's allowlist for CoreDNS. Names not",
        "# listed answer NXDOMAIN here (root block) and are never forwarded.",
        ".:53 {\n    errors\n    template ANY ANY {\n        rcode NXDOMAIN\n    }\n}",
    ]
    blocks.extend(_zone_block(zone, apex=allowlist.name_allowed(zone),
                              under=allowlist.under_allowed(zone))
                  for zone in _zones(allowlist))
    return "\n".join(blocks) + "\n"


def _zone_block(zone: str, *, apex: bool, under: bool) -> str:
    quoted = re.escape(zone).replace(r"\.", "[.]").replace(r"\-", "-")
    lines = [f"{zone}:53 {{", "    errors"]
    if not apex and not under:
        lines += ["    template ANY ANY {", "        rcode NXDOMAIN", "    }", "}"]
        return "\n".join(lines)
    refused = None if apex and under else (f"^{quoted}[.]$" if under else f"[.]{quoted}[.]$")
    if refused is not None:
        lines += ["    template ANY ANY {", f'        match "{refused}"',
                  "        rcode NXDOMAIN", "        fallthrough", "    }"]
    lines += [f"    forward . {UPSTREAM}", "}"]
    return "\n".join(lines)


def allowlist_configmap(registry: Registry, grants: Iterable[Approved], policy: Policy, *,
                        namespace: str) -> dict[str, Any]:
    allowlist = build_allowlist(registry, grants, policy)
    return envelope("v1", "ConfigMap", DNS_ALLOWLIST_CONFIGMAP, namespace,
                    data={RPZ_KEY: rpz_zone(allowlist), COREFILE_KEY: corefile(allowlist)})
