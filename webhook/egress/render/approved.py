"""What the registry grants one namespace, in the shape rendering needs.

Owns ``Approved``: the exact hosts (with their approved port/protocol pairs and pinned
addresses) and the ``*.suffix`` keys a namespace may use, read once from the registry index,
and which of them are open to every pod of the namespace and which only to pods running as
named service accounts (registry ``serviceAccounts``). Deny-listed keys are already gone. It
renders nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from webhook.egress.registry import IPAddress, PortProtocol, Registry


@dataclass(frozen=True, slots=True)
class ExactHost:
    name: str
    pairs: frozenset[PortProtocol]
    addresses: tuple[IPAddress, ...]


@dataclass(frozen=True, slots=True)
class Approved:
    namespace: str
    exact: tuple[ExactHost, ...]
    suffixes: tuple[str, ...]  # "googleapis.com" for a "*.googleapis.com" key
    suffix_pairs: frozenset[PortProtocol]
    # Sidecar host spellings ("api.example.com", "*.example.com") every pod may use ...
    open_hosts: tuple[str, ...] = ()
    # ... and those only the named service accounts may (service account -> hosts).
    by_service_account: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))

    def ports(self) -> list[int]:
        """Every port number any approved host may be reached on, sorted."""
        numbers = {port for host in self.exact for port, _ in host.pairs}
        numbers.update(port for port, _ in self.suffix_pairs)
        return sorted(numbers)


def approved_for(registry: Registry, namespace: str) -> Approved:
    exact: list[ExactHost] = []
    suffixes: list[str] = []
    suffix_pairs: set[PortProtocol] = set()
    open_hosts: list[str] = []
    by_account: dict[str, list[str]] = {}
    for key, pairs, addresses in registry.granted_keys(namespace):
        if key.wildcard:
            suffixes.append(key.name)
            suffix_pairs.update(pairs)
        else:
            exact.append(ExactHost(key.name, pairs, tuple(sorted(addresses, key=str))))
        accounts = registry.service_accounts_for(key, namespace)
        if accounts is None:
            open_hosts.append(str(key))
            continue
        for account in sorted(accounts):
            by_account.setdefault(account, []).append(str(key))
    return Approved(namespace, tuple(exact), tuple(suffixes), frozenset(suffix_pairs),
                    tuple(_exact_first(open_hosts)), MappingProxyType(
                        {sa: tuple(_exact_first(hosts)) for sa, hosts in
                         sorted(by_account.items())}))


def _exact_first(hosts: list[str]) -> list[str]:
    return sorted(hosts, key=lambda h: (h.startswith("*."), h))
