"""The host normaliser: one canonical form, and the names that never count as egress."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webhook.egress.hosts import (
    Host,
    HostError,
    HostProblem,
    is_forbidden_address,
    parse_host,
    parse_ip,
)


@pytest.mark.parametrize(("raw", "expected"), [
    ("api.frankfurter.app", "api.frankfurter.app"),
    ("API.Frankfurter.APP", "api.frankfurter.app"),
    ("api.frankfurter.app.", "api.frankfurter.app"),
    ("bücher.de", "xn--bcher-kva.de"),
    ("BÜCHER.de.", "xn--bcher-kva.de"),
    ("xn--bcher-kva.de", "xn--bcher-kva.de"),
    # full-width letters and an ideographic full stop
    ("\uff21\uff30\uff29\u3002example\uff0ecom", "api.example.com"),
    ("a-b.example.com", "a-b.example.com"),
    ("1password.com", "1password.com"),
])
def test_names_are_normalised_to_one_form(raw: str, expected: str) -> None:
    assert parse_host(raw) == Host(expected)


@pytest.mark.parametrize("raw", [
    "127.0.0.1", "10.0.0.1", "169.254.169.254", "2130706433", "0x7f.1", "127.1", "0x7f000001",
    "017700000001", "0177.0.0.1", "1.2.3.4.", "\uff11\uff12\uff17.\uff10.\uff10.\uff11", "::1",
    "[::1]", "fd00:ec2::254",
    "[fd00:ec2::254]", "::ffff:127.0.0.1", "fe80::1%eth0", "example.0x10",
])
def test_ip_literals_are_refused_in_every_spelling(raw: str) -> None:
    with pytest.raises(HostError) as info:
        parse_host(raw)
    assert info.value.reason is HostProblem.IP_LITERAL


@pytest.mark.parametrize(("raw", "reason"), [
    ("localhost", HostProblem.LOCALHOST),
    ("LOCALHOST.", HostProblem.LOCALHOST),
    ("evil.localhost", HostProblem.LOCALHOST),
    ("metadata.google.internal", HostProblem.METADATA),
    ("metadata", HostProblem.METADATA),
    ("metadata.tencentyun.com", HostProblem.METADATA),
    ("instance-data.ec2.internal", HostProblem.METADATA),
    ("ip-10-0-0-1.ec2.internal", HostProblem.PRIVATE),
    ("printer.local", HostProblem.PRIVATE),
    ("kubernetes.default.svc", HostProblem.CLUSTER),
    ("kubernetes.default.svc.cluster.local", HostProblem.CLUSTER),
    ("cluster.local", HostProblem.CLUSTER),
    ("redis", HostProblem.CLUSTER),  # a single label goes through the search path
    ("*.example.com", HostProblem.WILDCARD),
    ("*", HostProblem.WILDCARD),
    ("api.*.example.com", HostProblem.WILDCARD),
    ("", HostProblem.SYNTAX),
    ("a..b", HostProblem.SYNTAX),
    ("a.b..", HostProblem.SYNTAX),
    ("-a.example.com", HostProblem.SYNTAX),
    ("a_b.example.com", HostProblem.SYNTAX),
    ("a b.example.com", HostProblem.SYNTAX),
    ("a/b.example.com", HostProblem.SYNTAX),
    ("x" * 64 + ".com", HostProblem.SYNTAX),
    (".".join(["a" * 60] * 5), HostProblem.SYNTAX),
    ("faß.de", HostProblem.SYNTAX),  # IDNA 2003 and 2008 disagree
    ("xn--zz.com", HostProblem.SYNTAX),  # punycode that does not decode
])
def test_names_that_never_count_as_egress_are_refused(raw: str, reason: HostProblem) -> None:
    with pytest.raises(HostError) as info:
        parse_host(raw)
    assert info.value.reason is reason


def test_the_configured_cluster_domain_is_a_cluster_name() -> None:
    assert parse_host("api.corp.example") == Host("api.corp.example")
    with pytest.raises(HostError) as info:
        parse_host("db.prod.svc.corp.example", cluster_domains=("corp.example.",))
    assert info.value.reason is HostProblem.CLUSTER


def test_non_strings_are_refused() -> None:
    for raw in (None, 443, ["a.com"]):
        with pytest.raises(HostError):
            parse_host(raw)


@pytest.mark.parametrize(("raw", "expected"), [
    ("*.googleapis.com", Host("googleapis.com", wildcard=True)),
    ("*.GoogleAPIs.com.", Host("googleapis.com", wildcard=True)),
    ("api.example.com", Host("api.example.com")),
])
def test_registry_wildcards_are_explicit(raw: str, expected: Host) -> None:
    host = parse_host(raw, allow_wildcard=True)
    assert host == expected
    assert parse_host(str(host), allow_wildcard=True) == host


@pytest.mark.parametrize("raw", ["*.com", "*example.com", "*.*.example.com", "*.svc",
                                 "*.cluster.local", "*.localhost", "*.internal"])
def test_wildcards_over_tlds_or_special_names_are_refused(raw: str) -> None:
    with pytest.raises(HostError):
        parse_host(raw, allow_wildcard=True)


def test_ip_parsing_and_forbidden_addresses() -> None:
    assert parse_ip("203.0.113.7") == ipaddress.ip_address("203.0.113.7")
    assert parse_ip("203.0.113.7/32") == ipaddress.ip_address("203.0.113.7")
    assert parse_ip("[2001:db8::1]") == ipaddress.ip_address("2001:db8::1")
    assert parse_ip("203.0.113.0/24") is None
    assert parse_ip("api.example.com") is None
    for forbidden in ("169.254.169.254", "127.0.0.1", "::1", "0.0.0.0", "fd00:ec2::254",
                      "::ffff:169.254.169.254", "100.100.100.200"):
        assert is_forbidden_address(ipaddress.ip_address(forbidden)), forbidden
    assert not is_forbidden_address(ipaddress.ip_address("203.0.113.7"))


# Property tests -------------------------------------------------------------------------

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-üéжß"
labels = st.text(alphabet=_ALPHABET, min_size=1, max_size=20)
names = st.lists(labels, min_size=1, max_size=5).map(".".join)


def _outcome(raw: str) -> Host | HostProblem:
    try:
        return parse_host(raw)
    except HostError as exc:
        return exc.reason


@given(names)
def test_normalising_is_idempotent(raw: str) -> None:
    result = _outcome(raw)
    if isinstance(result, Host):
        assert parse_host(str(result)) == result
        assert str(result).isascii()
        assert str(result) == str(result).lower()


@given(names, st.booleans())
def test_case_and_one_trailing_dot_do_not_matter(raw: str, dot: bool) -> None:
    variant = raw.upper() if "ß" not in raw else raw  # "ß".upper() is "SS", another name
    assert _outcome(variant + ("." if dot else "")) == _outcome(raw)


ipv4 = st.integers(min_value=0, max_value=2**32 - 1)


def _spellings(value: int) -> list[str]:
    a, b, c, d = value.to_bytes(4, "big")
    return [f"{a}.{b}.{c}.{d}", str(value), hex(value), f"0{value:o}", f"{a}.{value & 0xFFFFFF}",
            f"{a}.{b}.{value & 0xFFFF}", f"{hex(a)}.{hex(b)}.{c}.{d}", f"{a}.{b}.{c}.{d}.",
            f"0{a:o}.{b}.{c}.{d}"]


@given(ipv4)
def test_no_ipv4_spelling_gets_through(value: int) -> None:
    for spelling in _spellings(value):
        with pytest.raises(HostError) as info:
            parse_host(spelling)
        assert info.value.reason is HostProblem.IP_LITERAL, spelling


@given(st.ip_addresses(v=6))
def test_no_ipv6_literal_gets_through(address: ipaddress.IPv6Address) -> None:
    for spelling in (str(address), f"[{address}]", address.exploded.upper()):
        with pytest.raises(HostError) as info:
            parse_host(spelling)
        assert info.value.reason is HostProblem.IP_LITERAL


@given(names, st.sampled_from(["svc", "cluster.local", "corp.internal", "localhost"]))
def test_no_cluster_or_private_name_gets_through(prefix: str, suffix: str) -> None:
    with pytest.raises(HostError):
        parse_host(f"{prefix}.{suffix}", cluster_domains=("corp.internal",))
