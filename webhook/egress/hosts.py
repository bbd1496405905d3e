"""The one host normaliser: every host the webhook compares goes through ``parse_host``.

Owns turning a host string from a ServiceEntry, a Skill, a Sidecar or the registry into a
canonical ``Host`` (lower case, one trailing dot dropped, IDNA labels as punycode, DNS label
and length rules) and refusing names that must never count as an egress destination: IP
literals in every spelling a resolver accepts, ``localhost``, cloud metadata names, private-use
names and cluster names. It deliberately knows nothing of the registry or of namespaces.

IDNA: the standard library's ``idna`` codec implements IDNA 2003 (nameprep). It agrees with
IDNA 2008/UTS 46 for almost every name, including the compatibility mappings an attacker would
use (full-width digits, ideographic full stops). It disagrees on the four "deviation"
characters (ß, ς, ZWJ, ZWNJ), where 2003 maps to other letters and 2008 keeps them; a host
containing one of those is refused, so the two standards can never disagree on a name we
accepted. Labels already in punycode (``xn--``) pass through unchanged once they decode.

Metadata names and addresses come from the providers' instance-metadata documentation: GCE
(``metadata.google.internal``, ``metadata``, 169.254.169.254), AWS EC2 IMDS (169.254.169.254,
fd00:ec2::254, ``instance-data``), ECS task metadata (169.254.170.2), Azure IMDS and wire server
(169.254.169.254, 168.63.129.16), Alibaba Cloud (100.100.100.200), Tencent Cloud
(``metadata.tencentyun.com``), Oracle Cloud's legacy endpoint (192.0.0.192). The whole
``.internal`` TLD (reserved by ICANN for private use, and where GCE and EC2 put their
internal names) is refused too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from webhook.core.errors import WebhookError

MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63

METADATA_NAMES = frozenset({
    "metadata.google.internal", "metadata", "metadata.tencentyun.com", "instance-data",
    "instance-data.ec2.internal",
})
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "fd00:ec2::254", "168.63.129.16", "100.100.100.200",
    "192.0.0.192",
))
# Suffixes that never name an Internet destination. Cluster suffixes are separate because
# the configured cluster domain joins them.
PRIVATE_SUFFIXES = ("internal", "local", "home.arpa", "arpa", "onion")
CLUSTER_SUFFIXES = ("svc", "cluster.local")

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_NUMERIC_LABEL = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)\Z")
# IDNA 2003 and 2008 map these differently (see the module docstring).
_DEVIATIONS = frozenset("\u00df\u03c2\u200c\u200d")


class HostProblem(StrEnum):
    SYNTAX = "syntax"
    WILDCARD = "wildcard"
    IP_LITERAL = "ip-literal"
    LOCALHOST = "localhost"
    METADATA = "metadata"
    PRIVATE = "private-use"
    CLUSTER = "cluster"


class HostError(WebhookError, ValueError):
    """A host that is unusable or never acceptable; ``reason`` says which, for rule choice.

    A ``ValueError`` too, so that pydantic validators turn it into a field error.
    """

    def __init__(self, host: str, reason: HostProblem, detail: str) -> None:
        super().__init__(f"{host!r} {detail}")
        self.host = host
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True, order=True)
class Host:
    """A normalised host. ``wildcard`` means "any name under ``name``" (``*.name``)."""

    name: str
    wildcard: bool = False

    def __str__(self) -> str:
        return f"*.{self.name}" if self.wildcard else self.name


def parse_host(raw: object, *, allow_wildcard: bool = False,
               cluster_domains: Iterable[str] = ()) -> Host:
    """Normalise ``raw`` or raise ``HostError``.

    ``allow_wildcard`` accepts ``*.suffix`` (registry entries); objects that must name an
    exact host pass False and get ``HostProblem.WILDCARD``. ``cluster_domains`` adds the
    configured cluster domain(s) to ``svc`` and ``cluster.local``.
    """
    if not isinstance(raw, str) or not raw:
        raise HostError(str(raw), HostProblem.SYNTAX, "is not a non-empty string")
    text = raw.lower()
    if ":" in text or text.startswith("["):
        raise HostError(raw, HostProblem.IP_LITERAL, "is an IPv6 literal, not a DNS name")
    wildcard = text.startswith("*")
    if wildcard:
        if not text.startswith("*."):
            raise HostError(raw, HostProblem.SYNTAX if allow_wildcard else HostProblem.WILDCARD,
                            "is a wildcard; only a leading '*.' label is recognised")
        text = text[2:]
    if "*" in text:
        raise HostError(raw, HostProblem.WILDCARD, "has a '*' inside the name")
    if not allow_wildcard and wildcard:
        raise HostError(raw, HostProblem.WILDCARD, "is a wildcard; name one exact host")
    name = _to_ascii(raw, text)
    _check_syntax(raw, name)
    _refuse_special(raw, name, wildcard=wildcard, cluster_domains=cluster_domains)
    return Host(name, wildcard)


def _to_ascii(raw: str, text: str) -> str:
    if _DEVIATIONS.intersection(text):
        raise HostError(raw, HostProblem.SYNTAX, "contains a character (ß, ς, ZWJ or ZWNJ) "
                        "that IDNA 2003 and IDNA 2008 map differently; write it in punycode")
    if text.isascii():
        ascii_name = text
    else:
        try:
            ascii_name = text.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise HostError(raw, HostProblem.SYNTAX, f"is not a valid IDNA name ({exc})") from exc
    if ascii_name.endswith("."):
        ascii_name = ascii_name[:-1]  # exactly one: "a.b.." stays invalid below
    return ascii_name


def _check_syntax(raw: str, name: str) -> None:
    if not name or len(name) > MAX_NAME_LENGTH:
        raise HostError(raw, HostProblem.SYNTAX, f"must be 1-{MAX_NAME_LENGTH} characters")
    labels = name.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # Resolvers (inet_aton, WHATWG URL) read a name ending in a number as IPv4:
        # 2130706433, 0x7f.1, 127.1 and 017700000001 are all 127.0.0.1. No TLD is numeric.
        raise HostError(raw, HostProblem.IP_LITERAL, "is an IPv4 address in some notation")
    for label in labels:
        if not _LABEL.match(label):
            raise HostError(raw, HostProblem.SYNTAX, f"has an invalid DNS label {label!r} "
                            "(1-63 of a-z, 0-9 and '-', not starting or ending with '-')")
        if label.startswith("xn--"):
            try:
                label[4:].encode("ascii").decode("punycode")
            except UnicodeError as exc:
                raise HostError(raw, HostProblem.SYNTAX,
                                f"has a punycode label {label!r} that does not decode") from exc


def _refuse_special(raw: str, name: str, *, wildcard: bool,
                    cluster_domains: Iterable[str]) -> None:
    if name == "localhost" or name.endswith(".localhost"):
        raise HostError(raw, HostProblem.LOCALHOST, "is a loopback name")
    if name in METADATA_NAMES:
        raise HostError(raw, HostProblem.METADATA, "is a cloud instance-metadata endpoint")
    for suffix in (*CLUSTER_SUFFIXES, *(d.lower().strip(".") for d in cluster_domains)):
        if suffix and _under(name, suffix):
            raise HostError(raw, HostProblem.CLUSTER, f"is a cluster name (under .{suffix}); "
                            "it would shadow or reach an in-cluster service")
    for suffix in PRIVATE_SUFFIXES:
        if _under(name, suffix):
            raise HostError(raw, HostProblem.PRIVATE, f"is under .{suffix}, a private-use "
                            "name that never denotes an Internet destination")
    if "." not in name:
        # A single label resolves through the pod's search path (ns.svc.cluster.local, ...).
        raise HostError(raw, HostProblem.CLUSTER if not wildcard else HostProblem.SYNTAX,
                        "is a single label; it would resolve through the cluster search path"
                        if not wildcard else "is a wildcard over a whole top-level domain")


def _under(name: str, suffix: str) -> bool:
    return name == suffix or name.endswith("." + suffix)


def parse_ip(raw: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address if ``raw`` is an exact IP literal (no prefix), else None."""
    if not isinstance(raw, str):
        return None
    text = raw.strip("[]") if raw.startswith("[") else raw
    for candidate in (text, text.removesuffix("/32"), text.removesuffix("/128")):
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None


def is_forbidden_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Addresses no registry may approve: loopback, link-local, metadata, unspecified, ..."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (address in METADATA_ADDRESSES or address.is_loopback or address.is_link_local
            or address.is_unspecified or address.is_multicast or address.is_reserved)
