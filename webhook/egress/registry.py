"""The approved egress registry: the whole file, loading, and the lookups policies use.

Owns the top-level model of ``registry.yaml`` (its items are ``webhook.egress.schema``),
parsing and loading, and ``Registry.approve``/``addresses``/``mesh_wide_export``, which read
an index built once per load (``webhook.egress.index``). It does not watch files
(``webhook.config.watch``) and does not decide about objects (``webhook.policies``); host syntax
belongs to ``webhook.egress.hosts``.

Matching: an entry's host is an exact name or ``*.suffix`` (any name under the suffix, not
the suffix itself). For a given host only the most specific group of entries counts: the
entries for that exact name if there are any, else those of its longest parent with entries,
where an exact entry for a parent governs the names under it (they are approved nowhere
unless the entry says ``subdomains: inherit``). So an exact entry narrows a broader suffix
entry, for its own name and the names under it, instead of adding to it. Within a group,
entries add up. A deny-list match wins over every approval.

Load warnings (``Registry.warnings``, logged at load and shown by ``kubectl apply`` of the
registry ConfigMap): a ``*.suffix`` entry that approves a well-known shared-storage or paste
endpoint (``webhook.egress.shared``), where anyone's bucket or paste sits under one name.
"""

from __future__ import annotations

import hashlib
import logging
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from pydantic import (
    Field,
    field_validator,
)

from webhook.config.yamlfile import parse_model, read_source
from webhook.egress.hosts import Host
from webhook.egress.index import Approval, Pin, Refusal, Refused, RegistryIndex
from webhook.egress.schema import (
    HOST_MATCHED_PROTOCOLS,
    DenyEntry,
    Entry,
    IPAddress,
    PortApproval,
    PortProtocol,
    StrictModel,
)
from webhook.egress.shared import suffix_warnings

__all__ = ["API_VERSION", "HOST_MATCHED_PROTOCOLS", "KIND", "Approval", "DenyEntry", "Entry",
           "IPAddress", "Pin", "PortApproval", "PortProtocol", "Refusal", "Refused", "Registry",
           "load_registry", "parse_registry"]

DEFAULT_REGISTRY_RESOURCE = "defaults/registry.yaml"
API_VERSION: Final = "agentsandbox.io/v1alpha1"
KIND: Final = "EgressRegistry"

log = logging.getLogger(__name__)

class Registry(StrictModel):
    """The whole registry file; lookups go through an index built once, at validation.

    ``apiVersion``/``kind`` are optional but checked when present. Every lookup takes a host
    already normalised by ``webhook.egress.hosts.parse_host`` (an exact name).
    """

    api_version: Literal["agentsandbox.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["EgressRegistry"] = KIND
    entries: tuple[Entry, ...] = ()
    deny: tuple[DenyEntry, ...] = ()

    @field_validator("deny", mode="before")
    @classmethod
    def _bare_hosts(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"host": v} if isinstance(v, str) else v for v in value]
        return value

    def model_post_init(self, context: Any, /) -> None:
        _ = self.index  # build now: a load pays for it, not the first request

    @cached_property
    def index(self) -> RegistryIndex:
        # A cached_property lands in the instance dict: a plain attribute read afterwards,
        # unlike pydantic private attributes, which cost microseconds per access.
        return RegistryIndex(
            [(e.host, e.pairs(), e.effective_namespaces(), frozenset(e.addresses),
              e.allow_mesh_wide_export, e.subdomains == "inherit") for e in self.entries],
            [(d.host, d) for d in self.deny])

    @cached_property
    def digest(self) -> str:
        """A short fingerprint of the content, for logs, metrics and /readyz."""
        canonical = orjson.dumps(self.model_dump(mode="json", by_alias=True),
                                 option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]

    @cached_property
    def warnings(self) -> tuple[str, ...]:
        """What an operator should know about this registry although it loads."""
        return suffix_warnings(self.index)

    def denied(self, host: str) -> DenyEntry | None:
        """The deny-list item matching ``host`` (exactly, or under a ``*.suffix``), if any."""
        return self.index.denied(host)

    def approve(self, *, host: str, namespace: str, port: int | None = None,
                protocol: str | None = None) -> Approval | Refusal:
        """May ``namespace`` reach ``host`` (on ``port``/``protocol``, when given)?"""
        return self.index.approve(host, namespace, port, protocol)

    def addresses(self, *, host: str, namespace: str) -> frozenset[IPAddress]:
        """Exact IPs that endpoints/addresses may pin ``host`` to, for ``namespace``."""
        return self.index.grant(host, namespace).addresses

    def granted_keys(self, namespace: str) -> list[tuple[Host, frozenset[PortProtocol],
                                                          frozenset[IPAddress]]]:
        """(key, approved pairs, pinned addresses) for every key ``namespace`` may use."""
        return self.index.granted_keys(namespace)

    def entries_for(self, key: Host, namespace: str) -> list[Entry]:
        """The entries with exactly ``key`` as host that approve ``namespace``."""
        return [e for e in self.entries if e.host == key
                and (e.effective_namespaces() is None
                     or namespace in (e.effective_namespaces() or ()))]

    def service_accounts_for(self, key: Host, namespace: str) -> frozenset[str] | None:
        """The service accounts of ``namespace`` that ``key`` is limited to (None: every pod).

        Entries add up: one entry for ``key`` without a limit opens it to every pod.
        """
        limits = [entry.service_accounts_in(namespace)
                  for entry in self.entries_for(key, namespace)]
        if not limits or any(limit is None for limit in limits):
            return None
        return frozenset().union(*(limit or () for limit in limits))

    def mesh_wide_export(self, *, host: str, namespace: str) -> bool:
        return self.index.grant(host, namespace).mesh_wide_export

    def governing_names(self) -> frozenset[str]:
        """Exact hosts under which no ``*.suffix`` entry approves anything (rendering needs it)."""
        return self.index.governing_names()

    def pins(self, *, address: IPAddress, namespace: str) -> list[Pin]:
        """Approved hosts (for ``namespace``) whose entries list ``address``, with their ports."""
        return self.index.pins(address, namespace)


def parse_registry(text: str, *, source: str) -> Registry:
    """Parse registry YAML; every problem is a ConfigError naming the source and field."""
    return parse_model(Registry, text, source=source, what="registry")


def load_registry(path: Path | None) -> Registry:
    """Load a registry file, or the embedded default (empty: approves nothing) for None."""
    text, source = read_source(path, default_resource=DEFAULT_REGISTRY_RESOURCE,
                               what="registry")
    registry = parse_registry(text, source=source)
    for warning in registry.warnings:
        log.warning("registry %s: %s", source, warning)
    return registry
