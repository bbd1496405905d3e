"""The approved egress registry: its file format, loading, and the lookups policies use.

Owns the pydantic model of ``registry.yaml`` (strict: unknown fields fail at load time),
parsing and loading, and ``Registry.approve``/``addresses``/``mesh_wide_export``, which read
an index built once per load (``webhook.registry_index``). It does not watch files
(``webhook.reload``) and does not decide about objects (``webhook.policies``); host syntax
belongs to ``webhook.hosts``.

Matching: an entry's host is an exact name or ``*.suffix`` (any name under the suffix, not
the suffix itself). For a given host only the most specific group of entries counts: the
entries for that exact name if there are any, else those of the longest matching suffix. So an
exact entry narrows a broader suffix entry instead of adding to it. Within a group, entries
add up. A deny-list match wins over every approval.
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Any, Final, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from webhook.hosts import Host, is_forbidden_address, parse_host
from webhook.registry_index import (
    Approval,
    IPAddress,
    PortProtocol,
    Refusal,
    Refused,
    RegistryIndex,
)
from webhook.yamlfile import parse_model, read_source

__all__ = ["API_VERSION", "HOST_MATCHED_PROTOCOLS", "KIND", "Approval", "DenyEntry", "Entry",
           "IPAddress", "PortApproval", "PortProtocol", "Refusal", "Refused", "Registry",
           "load_registry", "parse_registry"]

DEFAULT_REGISTRY_RESOURCE = "defaults/registry.yaml"
API_VERSION: Final = "agentsandbox.io/v1alpha1"
KIND: Final = "EgressRegistry"

# Protocols where Istio matches the host (SNI or Host/:authority). Opaque ones never qualify.
Protocol = Literal["HTTPS", "TLS", "HTTP", "HTTP2", "GRPC"]
HOST_MATCHED_PROTOCOLS: frozenset[str] = frozenset({"HTTPS", "TLS", "HTTP", "HTTP2", "GRPC"})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list | tuple):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


class PortApproval(_Strict):
    """One approved port: ``{number: 443, protocol: TLS}`` or ``protocols: [TLS, HTTPS]``."""

    number: int = Field(ge=1, le=65535)
    protocol: Protocol | None = None
    protocols: tuple[Protocol, ...] | None = Field(None, min_length=1)

    _up = field_validator("protocol", "protocols", mode="before")(lambda cls, v: _upper(v))

    @model_validator(mode="after")
    def _one_spelling(self) -> PortApproval:
        if self.protocol is not None and self.protocols is not None:
            raise ValueError("give protocol or protocols, not both")
        return self


class Entry(_Strict):
    """Approves one host (or ``*.suffix``) on some ports for some namespaces."""

    host: Host
    ports: tuple[PortApproval, ...] = (PortApproval(number=443),)
    # The protocol(s) of ports written as bare numbers or without their own protocol.
    protocol: Protocol | None = None
    protocols: tuple[Protocol, ...] | None = Field(None, min_length=1)
    namespaces: tuple[str, ...] | None = Field(None, min_length=1)
    addresses: tuple[IPAddress, ...] = ()
    allow_mesh_wide_export: bool = Field(False, alias="allowMeshWideExport")
    description: str | None = None
    owner: str | None = None

    _up = field_validator("protocol", "protocols", mode="before")(lambda cls, v: _upper(v))

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Host:
        return value if isinstance(value, Host) else parse_host(value, allow_wildcard=True)

    @field_validator("ports", mode="before")
    @classmethod
    def _bare_numbers(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"number": v} if isinstance(v, int) and not isinstance(v, bool) else v
                    for v in value]
        return value

    @field_validator("ports")
    @classmethod
    def _some_port(cls, value: tuple[PortApproval, ...]) -> tuple[PortApproval, ...]:
        if not value:
            raise ValueError("list at least one port, or omit ports for 443")
        return value

    @field_validator("namespaces")
    @classmethod
    def _namespace_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for name in value or ():
            if not _is_dns_label(name):
                raise ValueError(f"{name!r} is not a namespace name; omit namespaces to "
                                 "approve every namespace")
        return value

    @field_validator("addresses", mode="before")
    @classmethod
    def _exact_ips(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            return value
        addresses = []
        for item in value:
            if isinstance(item, str) and "/" in item:
                raise ValueError(f"{item!r} is a CIDR; list exact addresses only")
            try:
                addresses.append(ipaddress.ip_address(item))
            except ValueError:
                raise ValueError(f"{item!r} is not an IP address") from None
        return addresses

    @field_validator("addresses")
    @classmethod
    def _no_forbidden(cls, value: tuple[IPAddress, ...]) -> tuple[IPAddress, ...]:
        for address in value:
            if is_forbidden_address(address):
                raise ValueError(f"{address} is a loopback, link-local, metadata or reserved "
                                 "address and can never be approved")
        return value

    @model_validator(mode="after")
    def _one_spelling(self) -> Entry:
        if self.protocol is not None and self.protocols is not None:
            raise ValueError("give protocol or protocols, not both")
        return self

    def pairs(self) -> frozenset[PortProtocol]:
        """Every (port, protocol) this entry approves."""
        default = (self.protocols or ((self.protocol,) if self.protocol else ("HTTPS",)))
        out: set[PortProtocol] = set()
        for port in self.ports:
            own = port.protocols or ((port.protocol,) if port.protocol else None)
            out.update((port.number, proto) for proto in (own or default))
        return frozenset(out)


class DenyEntry(_Strict):
    host: Host
    reason: str | None = None

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Host:
        return value if isinstance(value, Host) else parse_host(value, allow_wildcard=True)


class Registry(_Strict):
    """The whole registry file; lookups go through an index built once, at validation.

    ``apiVersion``/``kind`` are optional but checked when present. Every lookup takes a host
    already normalised by ``webhook.hosts.parse_host`` (an exact name).
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
            [(e.host, e.pairs(), e.namespaces, frozenset(e.addresses), e.allow_mesh_wide_export)
             for e in self.entries],
            [(d.host, d) for d in self.deny])

    @cached_property
    def digest(self) -> str:
        """A short fingerprint of the content, for logs, metrics and /readyz."""
        canonical = orjson.dumps(self.model_dump(mode="json", by_alias=True),
                                 option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]

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

    def mesh_wide_export(self, *, host: str, namespace: str) -> bool:
        return self.index.grant(host, namespace).mesh_wide_export


def parse_registry(text: str, *, source: str) -> Registry:
    """Parse registry YAML; every problem is a ConfigError naming the source and field."""
    return parse_model(Registry, text, source=source, what="registry")


def load_registry(path: Path | None) -> Registry:
    """Load a registry file, or the embedded default (empty: approves nothing) for None."""
    text, source = read_source(path, default_resource=DEFAULT_REGISTRY_RESOURCE,
                               what="registry")
    return parse_registry(text, source=source)


def _is_dns_label(name: str) -> bool:
    return (0 < len(name) <= 63 and name.isascii() and name[0].isalnum() and name[-1].isalnum()
            and all(c.islower() or c.isdigit() or c == "-" for c in name))
