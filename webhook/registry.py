"""The approved egress registry: its file format, loading, and the lookups policies use.

Owns the pydantic model of ``registry.yaml`` (strict: unknown fields fail at load time), the
indexes built once per load, and ``Registry.approve``/``addresses``/``mesh_wide_export``. It
does not watch files (``webhook.reload``) and does not decide about objects
(``webhook.policies``); host syntax belongs to ``webhook.hosts``.

Matching: an entry's host is an exact name or ``*.suffix`` (any name under the suffix, not
the suffix itself). For a given host only the most specific group of entries counts: the
entries for that exact name if there are any, else those of the longest matching suffix. So an
exact entry narrows a broader suffix entry instead of adding to it. Within a group, entries
add up. A deny-list match wins over every approval.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import orjson
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from webhook.config import describe_validation_error
from webhook.errors import ConfigError
from webhook.hosts import Host, is_forbidden_address, parse_host

DEFAULT_REGISTRY_RESOURCE = "defaults/registry.yaml"
API_VERSION: Final = "agentsandbox.io/v1alpha1"
KIND: Final = "EgressRegistry"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# Protocols where Istio matches the host (SNI or Host/:authority). Opaque ones never qualify.
Protocol = Literal["HTTPS", "TLS", "HTTP", "HTTP2", "GRPC"]
HOST_MATCHED_PROTOCOLS: frozenset[str] = frozenset({"HTTPS", "TLS", "HTTP", "HTTP2", "GRPC"})
PortProtocol = tuple[int, str]


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


class Refused(StrEnum):
    DENIED = "denied"  # on the deny list
    NOT_LISTED = "not-listed"  # no entry matches the host
    NAMESPACE = "namespace"  # entries match, none for this namespace
    PORT = "port"  # approved for the namespace, not on this port/protocol


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

    def grant(self, namespace: str) -> _Grant | None:
        return self.by_namespace.get(namespace, self.everyone)


class Registry(_Strict):
    """The whole registry file, plus lookup indexes built once when it is validated.

    ``apiVersion``/``kind`` are optional but checked when present. Every lookup takes a host
    already normalised by ``webhook.hosts.parse_host`` (an exact name).
    """

    api_version: Literal["agentsandbox.io/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["EgressRegistry"] = KIND
    entries: tuple[Entry, ...] = ()
    deny: tuple[DenyEntry, ...] = ()

    _exact: dict[str, _Group] = PrivateAttr(default_factory=dict)
    _suffix: dict[str, _Group] = PrivateAttr(default_factory=dict)
    _deny_exact: dict[str, DenyEntry] = PrivateAttr(default_factory=dict)
    _deny_suffix: dict[str, DenyEntry] = PrivateAttr(default_factory=dict)

    @field_validator("deny", mode="before")
    @classmethod
    def _bare_hosts(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [{"host": v} if isinstance(v, str) else v for v in value]
        return value

    def model_post_init(self, context: Any, /) -> None:
        grouped: dict[Host, list[Entry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.host, []).append(entry)
        for key, entries in grouped.items():
            (self._suffix if key.wildcard else self._exact)[key.name] = _fold(key, entries)
        for item in self.deny:
            (self._deny_suffix if item.host.wildcard else self._deny_exact).setdefault(
                item.host.name, item)

    @cached_property
    def digest(self) -> str:
        """A short fingerprint of the content, for logs, metrics and /readyz."""
        canonical = orjson.dumps(self.model_dump(mode="json", by_alias=True),
                                 option=orjson.OPT_SORT_KEYS)
        return "sha256:" + hashlib.sha256(canonical).hexdigest()[:16]

    def denied(self, host: str) -> DenyEntry | None:
        """The deny-list item matching ``host`` (exactly, or under a ``*.suffix``), if any."""
        hit = self._deny_exact.get(host)
        if hit is not None:
            return hit
        for suffix in _parents(host):
            hit = self._deny_suffix.get(suffix)
            if hit is not None:
                return hit
        return None

    def approve(self, *, host: str, namespace: str, port: int | None = None,
                protocol: str | None = None) -> Approval | Refusal:
        """May ``namespace`` reach ``host`` (on ``port``/``protocol``, when given)?"""
        deny = self.denied(host)
        if deny is not None:
            return Refusal(host, Refused.DENIED, deny=deny)
        group = self._group(host)
        if group is None:
            return Refusal(host, Refused.NOT_LISTED)
        grant = group.grant(namespace)
        if grant is None:
            return Refusal(host, Refused.NAMESPACE, key=group.key)
        if port is not None and (port, (protocol or "").upper()) not in grant.pairs:
            return Refusal(host, Refused.PORT, key=group.key, approved=grant.pairs)
        return Approval(host, group.key)

    def addresses(self, *, host: str, namespace: str) -> frozenset[IPAddress]:
        """Exact IPs that endpoints/addresses may pin ``host`` to, for ``namespace``."""
        return self._grant(host, namespace).addresses

    def mesh_wide_export(self, *, host: str, namespace: str) -> bool:
        return self._grant(host, namespace).mesh_wide_export

    def _grant(self, host: str, namespace: str) -> _Grant:
        if self.denied(host) is not None:
            return _NO_GRANT
        group = self._group(host)
        grant = group.grant(namespace) if group is not None else None
        return grant or _NO_GRANT

    def _group(self, host: str) -> _Group | None:
        group = self._exact.get(host)
        if group is not None:
            return group
        for suffix in _parents(host):  # longest first: the most specific suffix wins
            group = self._suffix.get(suffix)
            if group is not None:
                return group
        return None


def _parents(host: str) -> Iterator[str]:
    """``a.b.c`` -> ``b.c``, ``c``: each proper suffix, longest first."""
    index = host.find(".")
    while index != -1:
        yield host[index + 1:]
        index = host.find(".", index + 1)


def _fold(key: Host, entries: list[Entry]) -> _Group:
    def merge(items: list[Entry]) -> _Grant:
        return _Grant(frozenset().union(*(e.pairs() for e in items)),
                      frozenset().union(*(e.addresses for e in items)),
                      any(e.allow_mesh_wide_export for e in items))

    shared = [e for e in entries if e.namespaces is None]
    everyone = merge(shared) if shared else None
    names = {ns for e in entries for ns in (e.namespaces or ())}
    by_namespace = {ns: merge([*shared, *(e for e in entries if e.namespaces and
                                          ns in e.namespaces)]) for ns in names}
    return _Group(key, everyone, MappingProxyType(by_namespace))


def parse_registry(text: str, *, source: str) -> Registry:
    """Parse registry YAML; every problem is a ConfigError naming the source and field."""
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the registry must be a mapping, got "
                          f"{type(data).__name__}")
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe_validation_error(exc)}") from exc


def load_registry(path: Path | None) -> Registry:
    """Load a registry file, or the embedded default (empty: approves nothing) for None."""
    if path is None:
        text = resources.files("webhook").joinpath(DEFAULT_REGISTRY_RESOURCE).read_text("utf-8")
        return parse_registry(text, source="embedded default registry")
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the registry file: {exc}") from exc
    return parse_registry(text, source=str(path))


def _is_dns_label(name: str) -> bool:
    return (0 < len(name) <= 63 and name.isascii() and name[0].isalnum() and name[-1].isalnum()
            and all(c.islower() or c.isdigit() or c == "-" for c in name))
