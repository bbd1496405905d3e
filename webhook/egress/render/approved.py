"""What the registry grants one namespace, in the shape rendering needs.

Owns ``Approved``: the exact hosts (with their approved port/protocol pairs and pinned
addresses) and the ``*.suffix`` keys a namespace may use, read once from the registry index.
Deny-listed keys are already gone. It renders nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def ports(self) -> list[int]:
        """Every port number any approved host may be reached on, sorted."""
        numbers = {port for host in self.exact for port, _ in host.pairs}
        numbers.update(port for port, _ in self.suffix_pairs)
        return sorted(numbers)


def approved_for(registry: Registry, namespace: str) -> Approved:
    exact: list[ExactHost] = []
    suffixes: list[str] = []
    suffix_pairs: set[PortProtocol] = set()
    for key, pairs, addresses in registry.granted_keys(namespace):
        if key.wildcard:
            suffixes.append(key.name)
            suffix_pairs.update(pairs)
        else:
            exact.append(ExactHost(key.name, pairs, tuple(sorted(addresses, key=str))))
    return Approved(namespace, tuple(exact), tuple(suffixes), frozenset(suffix_pairs))
