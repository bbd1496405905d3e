"""The lookup side of the egress registry: indexes built once per load, read per request.

Owns the answer to "may this namespace reach this host on this port and protocol?" and its
reasons, and "which approved hosts does the registry pin this IP address to?". Each lookup is
a handful of dict reads (the exact name, then each parent, longest first), never a scan of
the entries or a regular expression. It does not parse files: ``webhook.egress.registry``
validates the YAML and builds this index from the result.

Which entries govern a host: its exact entries if there are any. Otherwise each parent name,
longest first: a ``*.parent`` entry governs it (names under the parent, explicitly), and an
exact entry for the parent governs it too, unless every entry for that parent says
``subdomains: inherit``. An exact entry therefore narrows a broader suffix for the names under
it as well: with ``*.googleapis.com`` for everyone and ``storage.googleapis.com`` for one
namespace, ``attacker-bucket.storage.googleapis.com`` (a Cloud Storage virtual-hosted bucket)
is approved nowhere, because an exact entry approves only its own name.

The deny list reads exact entries the same way: denying ``firebasestorage.googleapis.com``
denies ``x.firebasestorage.googleapis.com`` too, whatever suffix approves it. A deny entry
``*.parent`` denies only the names under ``parent``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType

from webhook.egress.hosts import Host
from webhook.egress.schema import DenyEntry, IPAddress, PortProtocol

# (key, approved (port, protocol) pairs, namespaces or None for all, addresses, export,
#  whether names under an exact key fall through to broader suffixes)
EntryFacts = tuple[Host, frozenset[PortProtocol], "tuple[str, ...] | None",
                   frozenset[IPAddress], bool, bool]


class Refused(StrEnum):
    DENIED = "denied"  # on the deny list
    NOT_LISTED = "not-listed"  # no entry matches the host
    NAMESPACE = "namespace"  # entries match, none for this namespace
    PORT = "port"  # approved for the namespace, not on this port/protocol
    UNDER_EXACT = "under-exact"  # under a name with an exact entry, which approves only itself


@dataclass(frozen=True, slots=True)
class Approval:
    host: str
    key: Host  # the registry key (exact or *.suffix) that approved it


@dataclass(frozen=True, slots=True)
class Refusal:
    host: str
    reason: Refused
    key: Host | None = None  # the most specific matching key, if any
    approved: frozenset[PortProtocol] = frozenset()  # what the namespace may use instead
    deny: DenyEntry | None = None


@dataclass(frozen=True, slots=True)
class Pin:
    """An approved host the registry pins an address to, and the ports it approves there."""

    key: Host
    pairs: frozenset[PortProtocol]


@dataclass(frozen=True, slots=True)
class _Grant:
    pairs: frozenset[PortProtocol]
    addresses: frozenset[IPAddress]
    mesh_wide_export: bool


_NO_GRANT = _Grant(frozenset(), frozenset(), mesh_wide_export=False)


@dataclass(frozen=True, slots=True)
class _Group:
    """Every entry with one key, folded per namespace at load time."""

    key: Host
    everyone: _Grant | None  # from entries without a namespaces list
    by_namespace: Mapping[str, _Grant]  # already includes ``everyone``
    governs_below: bool = True  # an exact key: names under it do not reach broader suffixes

    def grant(self, namespace: str) -> _Grant | None:
        return self.by_namespace.get(namespace, self.everyone)


class RegistryIndex:
    """Exact and suffix keys to folded grants, and the deny list, as dicts."""

    __slots__ = ("_by_address", "_deny_exact", "_deny_suffix", "_exact", "_suffix")

    def __init__(self, entries: Iterable[EntryFacts],
                 deny: Iterable[tuple[Host, DenyEntry]]) -> None:
        grouped: dict[Host, list[EntryFacts]] = {}
        for facts in entries:
            grouped.setdefault(facts[0], []).append(facts)
        self._exact: dict[str, _Group] = {}
        self._suffix: dict[str, _Group] = {}
        for key, items in grouped.items():
            (self._suffix if key.wildcard else self._exact)[key.name] = _fold(key, items)
        self._deny_exact: dict[str, DenyEntry] = {}
        self._deny_suffix: dict[str, DenyEntry] = {}
        for host, item in deny:
            (self._deny_suffix if host.wildcard else self._deny_exact).setdefault(host.name, item)
        self._by_address: dict[IPAddress, list[_Group]] = {}
        for group in (*self._exact.values(), *self._suffix.values()):
            grants = (group.everyone, *group.by_namespace.values())
            for address in frozenset().union(*(g.addresses for g in grants if g is not None)):
                self._by_address.setdefault(address, []).append(group)

    def pins(self, address: IPAddress, namespace: str) -> list[Pin]:
        """The hosts approved for ``namespace`` whose entries list ``address``.

        A suffix key counts as well: its entries pin the address for the names under it.
        Denied exact keys never count.
        """
        found = []
        for group in self._by_address.get(address, ()):
            grant = group.grant(namespace)
            if grant is None or address not in grant.addresses:
                continue
            if not group.key.wildcard and self.denied(group.key.name) is not None:
                continue
            found.append(Pin(group.key, grant.pairs))
        return found

    def denied(self, host: str) -> DenyEntry | None:
        """The deny entry covering ``host``: an exact entry covers its name and every name
        under it (as an exact approval governs its subtree), ``*.suffix`` the names under it."""
        hit = self._deny_exact.get(host)
        if hit is not None:
            return hit
        for parent in _parents(host):
            hit = self._deny_exact.get(parent) or self._deny_suffix.get(parent)
            if hit is not None:
                return hit
        return None

    def approve(self, host: str, namespace: str, port: int | None,
                protocol: str | None) -> Approval | Refusal:
        deny = self.denied(host)
        if deny is not None:
            return Refusal(host, Refused.DENIED, deny=deny)
        group = self._group(host)
        if group is None:
            return Refusal(host, Refused.NOT_LISTED)
        if not group.key.wildcard and group.key.name != host:
            return Refusal(host, Refused.UNDER_EXACT, key=group.key)
        grant = group.grant(namespace)
        if grant is None:
            return Refusal(host, Refused.NAMESPACE, key=group.key)
        if port is not None and (port, (protocol or "").upper()) not in grant.pairs:
            return Refusal(host, Refused.PORT, key=group.key, approved=grant.pairs)
        return Approval(host, group.key)

    def grant(self, host: str, namespace: str) -> _Grant:
        """What ``namespace`` may do with ``host`` (nothing when denied or unknown)."""
        if self.denied(host) is not None:
            return _NO_GRANT
        group = self._group(host)
        if group is None or not (group.key.wildcard or group.key.name == host):
            return _NO_GRANT  # unknown, or under an exact entry that approves only itself
        return group.grant(namespace) or _NO_GRANT

    def governing_names(self) -> frozenset[str]:
        """Exact keys whose entries govern the names under them (no broader suffix reaches)."""
        return frozenset(name for name, group in self._exact.items() if group.governs_below)

    def suffix_key(self, host: str) -> Host | None:
        """The ``*.suffix`` key that approves ``host`` for some namespace, if that is how."""
        if self.denied(host) is not None:
            return None
        group = self._group(host)
        return group.key if group is not None and group.key.wildcard else None

    def granted_keys(self, namespace: str) -> list[tuple[Host, frozenset[PortProtocol],
                                                          frozenset[IPAddress]]]:
        """Every key (exact name or ``*.suffix``) granting ``namespace`` something, sorted.

        Keys the deny list covers are left out: an exact name that is denied, a suffix that a
        denied suffix equals or contains. This is what rendering walks; lookups never do.
        """
        out = []
        for group in (*self._exact.values(), *self._suffix.values()):
            grant = group.grant(namespace)
            if grant is None or not grant.pairs or self._key_denied(group.key):
                continue
            out.append((group.key, grant.pairs, grant.addresses))
        return sorted(out, key=lambda item: (item[0].wildcard, item[0].name))

    def _key_denied(self, key: Host) -> bool:
        if not key.wildcard:
            return self.denied(key.name) is not None
        return any(name in self._deny_suffix or name in self._deny_exact
                   for name in (key.name, *_parents(key.name)))

    def _group(self, host: str) -> _Group | None:
        """The group governing ``host`` (see the module docstring), or None.

        A returned exact group whose key is not ``host`` itself means "under an exact entry":
        nothing is approved for ``host``.
        """
        group = self._exact.get(host)
        if group is not None or not self._suffix:
            return group
        governor: _Group | None = None
        for parent in _parents(host):  # longest first: the most specific parent wins
            group = self._suffix.get(parent)
            if group is not None:
                # Under a governing exact entry, the suffix would have approved it: say so.
                return governor or group
            if governor is None:
                exact = self._exact.get(parent)
                if exact is not None and exact.governs_below:
                    governor = exact
        return None


def _parents(host: str) -> Iterator[str]:
    """``a.b.c`` -> ``b.c``, ``c``: each proper suffix, longest first."""
    index = host.find(".")
    while index != -1:
        yield host[index + 1:]
        index = host.find(".", index + 1)


def _fold(key: Host, entries: list[EntryFacts]) -> _Group:
    def merge(items: list[EntryFacts]) -> _Grant:
        return _Grant(frozenset().union(*(pairs for _, pairs, _, _, _, _ in items)),
                      frozenset().union(*(addresses for _, _, _, addresses, _, _ in items)),
                      any(export for *_, export, _ in items))

    shared = [e for e in entries if e[2] is None]
    everyone = merge(shared) if shared else None
    names = {ns for e in entries for ns in (e[2] or ())}
    by_namespace = {ns: merge([*shared, *(e for e in entries if e[2] and ns in e[2])])
                    for ns in names}
    # Only an explicit word from every entry for the name lets names under it fall through.
    governs_below = not all(inherit for *_, inherit in entries)
    return _Group(key, everyone, MappingProxyType(by_namespace), governs_below)
