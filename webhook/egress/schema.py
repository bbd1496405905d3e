"""The egress registry's file format: one approved entry, one deny-list item, their types.

Owns the strict pydantic models of the items of ``registry.yaml`` (unknown fields fail at load
time) and the small types every egress module speaks (``IPAddress``, ``PortProtocol``). It does
not index (``webhook.egress.index``) or load (``webhook.egress.registry``) anything.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from webhook.egress.hosts import Host, is_forbidden_address, parse_host

__all__ = ["HOST_MATCHED_PROTOCOLS", "DenyEntry", "Entry", "IPAddress", "PortApproval",
           "PortProtocol", "Protocol", "StrictModel"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
PortProtocol = tuple[int, str]

# Protocols where Istio matches the host (SNI or Host/:authority). Opaque ones never qualify.
Protocol = Literal["HTTPS", "TLS", "HTTP", "HTTP2", "GRPC"]
HOST_MATCHED_PROTOCOLS: frozenset[str] = frozenset({"HTTPS", "TLS", "HTTP", "HTTP2", "GRPC"})


class StrictModel(BaseModel):
    """Strict and frozen: an operator's typo fails at load time."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _upper(value: Any) -> Any:
    if isinstance(value, str):
        return value.upper()
    if isinstance(value, list | tuple):
        return [v.upper() if isinstance(v, str) else v for v in value]
    return value


class PortApproval(StrictModel):
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


class Entry(StrictModel):
    """Approves one host (or ``*.suffix``) on some ports for some namespaces."""

    host: Host
    ports: tuple[PortApproval, ...] = (PortApproval(number=443),)
    # The protocol(s) of ports written as bare numbers or without their own protocol.
    protocol: Protocol | None = None
    protocols: tuple[Protocol, ...] | None = Field(None, min_length=1)
    namespaces: tuple[str, ...] | None = Field(None, min_length=1)
    # "namespace/name": the host is approved only for pods running as these service accounts
    # (the per-agent Sidecars say so; admission of ServiceEntries and Skills stays per
    # namespace, since a ServiceEntry is visible to the whole namespace).
    service_accounts: tuple[str, ...] | None = Field(None, alias="serviceAccounts",
                                                     min_length=1)
    addresses: tuple[IPAddress, ...] = ()
    allow_mesh_wide_export: bool = Field(False, alias="allowMeshWideExport")
    # An exact entry governs the names under it too ("govern"): they are approved only by
    # entries of their own, never by a broader *.suffix. "inherit" says otherwise, explicitly.
    subdomains: Literal["govern", "inherit"] = "govern"
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

    @field_validator("service_accounts")
    @classmethod
    def _qualified(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for item in value or ():
            namespace, slash, name = item.partition("/")
            if not slash or not _is_dns_label(namespace) or not _is_dns_subdomain(name):
                raise ValueError(f"{item!r} is not namespace/name of a service account "
                                 "(e.g. agents/currency-agent)")
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
        if self.host.wildcard and self.subdomains != "govern":
            raise ValueError("subdomains applies to exact hosts only; a *.suffix entry "
                             "already covers every name under it")
        outside = sorted(sa for sa in self.service_accounts or ()
                         if self.namespaces is not None
                         and sa.partition("/")[0] not in self.namespaces)
        if outside:
            raise ValueError(f"serviceAccounts {', '.join(outside)} are outside the entry's "
                             "namespaces; add their namespaces or omit namespaces")
        return self

    def effective_namespaces(self) -> tuple[str, ...] | None:
        """The namespaces the entry approves: its own, else its service accounts' (else all)."""
        if self.namespaces is not None or not self.service_accounts:
            return self.namespaces
        return tuple(sorted({sa.partition("/")[0] for sa in self.service_accounts}))

    def service_accounts_in(self, namespace: str) -> frozenset[str] | None:
        """The service-account names the entry is limited to in ``namespace`` (None: all)."""
        if not self.service_accounts:
            return None
        return frozenset(name for ns, _, name in (sa.partition("/")
                                                  for sa in self.service_accounts)
                         if ns == namespace)

    def pairs(self) -> frozenset[PortProtocol]:
        """Every (port, protocol) this entry approves."""
        default = (self.protocols or ((self.protocol,) if self.protocol else ("HTTPS",)))
        out: set[PortProtocol] = set()
        for port in self.ports:
            own = port.protocols or ((port.protocol,) if port.protocol else None)
            out.update((port.number, proto) for proto in (own or default))
        return frozenset(out)


class DenyEntry(StrictModel):
    host: Host
    reason: str | None = None

    @field_validator("host", mode="before")
    @classmethod
    def _host(cls, value: Any) -> Host:
        return value if isinstance(value, Host) else parse_host(value, allow_wildcard=True)


def _is_dns_subdomain(name: str) -> bool:
    return 0 < len(name) <= 253 and all(_is_dns_label(part) for part in name.split("."))


def _is_dns_label(name: str) -> bool:
    return (0 < len(name) <= 63 and name.isascii() and name[0].isalnum() and name[-1].isalnum()
            and all(c.islower() or c.isdigit() or c == "-" for c in name))
