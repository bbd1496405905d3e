"""The egress registry file: strict parsing, and lookups that mean what the docs say."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from webhook.core.errors import ConfigError
from webhook.egress.hosts import Host
from webhook.egress.registry import (
    Approval,
    Refusal,
    Refused,
    Registry,
    load_registry,
    parse_registry,
)

EXAMPLE = Path(__file__).parent.parent / "examples" / "registry.yaml"

REGISTRY = """
apiVersion: agentsandbox.io/v1alpha1
kind: EgressRegistry
entries:
- host: api.frankfurter.app
  ports: [{number: 443, protocols: [TLS, HTTPS]}]
  namespaces: [agents]
  owner: team-fx
- host: "*.googleapis.com"
  ports: [443]
  protocol: https
- host: storage.googleapis.com
  ports: [443]
  namespaces: [data]
- host: api.exchangerate.host
  ports: [8443, {number: 443, protocol: HTTPS}]
  protocol: TLS
  addresses: [203.0.113.10, "2001:db8::10"]
  allowMeshWideExport: true
deny:
- evil.googleapis.com
- host: "*.bad.example"
  reason: threat intelligence feed 2026-11
"""


@pytest.fixture(scope="module")
def registry() -> Registry:
    return parse_registry(REGISTRY, source="test")


def test_an_exact_entry_approves_its_namespaces_ports_and_protocols(registry: Registry) -> None:
    for protocol in ("TLS", "HTTPS", "tls"):
        result = registry.approve(host="api.frankfurter.app", namespace="agents", port=443,
                                  protocol=protocol)
        assert result == Approval("api.frankfurter.app", Host("api.frankfurter.app"))


def test_other_namespaces_ports_and_protocols_are_refused_with_a_reason(
        registry: Registry) -> None:
    other_ns = registry.approve(host="api.frankfurter.app", namespace="other", port=443,
                                protocol="TLS")
    assert isinstance(other_ns, Refusal)
    assert other_ns.reason is Refused.NAMESPACE
    wrong_port = registry.approve(host="api.frankfurter.app", namespace="agents", port=8443,
                                  protocol="TLS")
    assert isinstance(wrong_port, Refusal)
    assert wrong_port.reason is Refused.PORT
    assert wrong_port.approved == {(443, "TLS"), (443, "HTTPS")}
    wrong_protocol = registry.approve(host="api.frankfurter.app", namespace="agents", port=443,
                                      protocol="HTTP")
    assert isinstance(wrong_protocol, Refusal)
    assert wrong_protocol.reason is Refused.PORT


def test_a_suffix_entry_covers_names_under_it_but_not_itself(registry: Registry) -> None:
    assert isinstance(registry.approve(host="pubsub.googleapis.com", namespace="any", port=443,
                                       protocol="HTTPS"), Approval)
    assert isinstance(registry.approve(host="a.b.googleapis.com", namespace="any"), Approval)
    bare = registry.approve(host="googleapis.com", namespace="any")
    assert isinstance(bare, Refusal)
    assert bare.reason is Refused.NOT_LISTED
    lookalike = registry.approve(host="evilgoogleapis.com", namespace="any")
    assert isinstance(lookalike, Refusal)


def test_an_exact_entry_narrows_a_suffix_entry(registry: Registry) -> None:
    narrowed = registry.approve(host="storage.googleapis.com", namespace="agents")
    assert isinstance(narrowed, Refusal)
    assert narrowed.reason is Refused.NAMESPACE
    assert isinstance(registry.approve(host="storage.googleapis.com", namespace="data", port=443,
                                       protocol="HTTPS"), Approval)


def test_the_deny_list_wins_over_every_approval(registry: Registry) -> None:
    denied = registry.approve(host="evil.googleapis.com", namespace="agents", port=443,
                              protocol="HTTPS")
    assert isinstance(denied, Refusal)
    assert denied.reason is Refused.DENIED
    under = registry.approve(host="x.y.bad.example", namespace="agents")
    assert isinstance(under, Refusal)
    assert under.deny is not None
    assert under.deny.reason == "threat intelligence feed 2026-11"
    assert registry.denied("bad.example") is None  # *.suffix means names under it
    assert registry.addresses(host="evil.googleapis.com", namespace="agents") == frozenset()


# host -> denied? (*.googleapis.com approved; evil.googleapis.com and *.bad.example denied)
DENIED_NAMES = {
    "evil.googleapis.com": True,
    "x.evil.googleapis.com": True,  # an exact deny entry covers the names under it
    "a.b.evil.googleapis.com": True,
    "notevil.googleapis.com": False,  # a sibling, not under it
    "good.googleapis.com": False,
    "x.bad.example": True,
    "bad.example": False,  # *.suffix: only the names under it
}


@pytest.mark.parametrize(("host", "denied"), DENIED_NAMES.items())
def test_a_deny_entry_covers_what_it_names(registry: Registry, host: str, denied: bool) -> None:
    result = registry.approve(host=host, namespace="agents", port=443, protocol="HTTPS")
    assert (isinstance(result, Refusal) and result.reason is Refused.DENIED) is denied
    assert (registry.denied(host) is not None) is denied


def test_an_approval_under_an_exact_deny_entry_is_never_granted_or_rendered() -> None:
    under = parse_registry("entries:\n- host: api.evil.example\n  ports: [443]\n"
                           "- host: '*.evil.example'\n  ports: [443]\n"
                           "deny: [evil.example]\n", source="test")
    assert isinstance(under.approve(host="api.evil.example", namespace="agents"), Refusal)
    assert under.granted_keys("agents") == []


def test_bare_port_numbers_take_the_entry_protocol(registry: Registry) -> None:
    approvals = {(port, protocol): registry.approve(host="api.exchangerate.host", namespace="x",
                                                    port=port, protocol=protocol)
                 for port, protocol in [(8443, "TLS"), (443, "HTTPS"), (443, "TLS")]}
    assert isinstance(approvals[(8443, "TLS")], Approval)
    assert isinstance(approvals[(443, "HTTPS")], Approval)
    assert isinstance(approvals[(443, "TLS")], Refusal)


def test_addresses_and_mesh_wide_export_come_from_the_matching_entry(registry: Registry) -> None:
    assert registry.addresses(host="api.exchangerate.host", namespace="x") == {
        ipaddress.ip_address("203.0.113.10"), ipaddress.ip_address("2001:db8::10")}
    assert registry.mesh_wide_export(host="api.exchangerate.host", namespace="x")
    assert not registry.mesh_wide_export(host="api.frankfurter.app", namespace="agents")
    assert registry.addresses(host="unknown.example", namespace="x") == frozenset()


def test_entries_for_the_same_host_add_up() -> None:
    registry = parse_registry("""
entries:
- {host: api.example.com, namespaces: [a]}
- {host: api.example.com, namespaces: [b], ports: [{number: 8443, protocol: TLS}]}
- {host: api.example.com, ports: [{number: 80, protocol: HTTP}]}
""", source="t")
    assert isinstance(registry.approve(host="api.example.com", namespace="a", port=443,
                                       protocol="HTTPS"), Approval)
    assert isinstance(registry.approve(host="api.example.com", namespace="a", port=80,
                                       protocol="HTTP"), Approval)
    assert isinstance(registry.approve(host="api.example.com", namespace="b", port=443,
                                       protocol="HTTPS"), Refusal)
    assert isinstance(registry.approve(host="api.example.com", namespace="c", port=80,
                                       protocol="HTTP"), Approval)


def test_hosts_in_the_file_are_normalised_like_every_other_host() -> None:
    registry = parse_registry("entries: [{host: API.Example.COM.}, {host: bücher.de}]",
                              source="t")
    assert isinstance(registry.approve(host="api.example.com", namespace="x"), Approval)
    assert isinstance(registry.approve(host="xn--bcher-kva.de", namespace="x"), Approval)


@pytest.mark.parametrize(("text", "field", "words"), [
    ("entries: [{host: api.example.com, prots: [443]}]", "entries.0.prots", "Extra inputs"),
    ("entries: [{host: 169.254.169.254}]", "entries.0.host", "IPv4"),
    ("entries: [{host: metadata.google.internal}]", "entries.0.host", "metadata"),
    ("entries: [{host: kubernetes.default.svc}]", "entries.0.host", "cluster"),
    ("entries: [{host: '*.com'}]", "entries.0.host", "top-level"),
    ("entries: [{host: a.example.com, ports: [0]}]", "entries.0.ports.0.number", "greater"),
    ("entries: [{host: a.example.com, ports: [{number: 443, protocol: TCP}]}]",
     "entries.0.ports.0.protocol", "HTTPS"),
    ("entries: [{host: a.example.com, protocol: TLS, protocols: [TLS]}]", "entries.0",
     "not both"),
    ("entries: [{host: a.example.com, namespaces: []}]", "entries.0.namespaces", "at least"),
    ("entries: [{host: a.example.com, namespaces: [Agents]}]", "entries.0.namespaces",
     "namespace"),
    ("entries: [{host: a.example.com, addresses: [10.0.0.0/8]}]", "entries.0.addresses",
     "CIDR"),
    ("entries: [{host: a.example.com, addresses: [169.254.169.254]}]", "entries.0.addresses",
     "metadata"),
    ("entries: [{host: a.example.com, addresses: [not-an-ip]}]", "entries.0.addresses",
     "not an IP address"),
    ("entries: [{host: a.example.com, ports: []}]", "entries.0.ports", "at least one port"),
    ("deny: [127.0.0.1]", "deny.0.host", "IPv4"),
    ("kind: Registry", "kind", "EgressRegistry"),
    ("entries: {host: a.example.com}", "entries", "tuple"),
    ("- a\n- b", "", "must be a mapping"),
    ("entries: [", "", "not valid YAML"),
])
def test_a_bad_registry_names_source_field_and_reason(text: str, field: str,
                                                      words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_registry(text, source="registry.yaml")
    message = str(info.value)
    assert message.startswith("registry.yaml: ")
    assert field in message
    assert words.lower() in message.lower(), message


def test_the_embedded_default_is_empty_and_approves_nothing() -> None:
    registry = load_registry(None)
    assert registry.entries == ()
    assert registry.deny == ()
    assert isinstance(registry.approve(host="api.frankfurter.app", namespace="agents"),
                      Refusal)


def test_an_empty_file_is_an_empty_registry() -> None:
    assert parse_registry("", source="t").entries == ()


def test_load_registry_reads_a_file_and_names_it_in_errors(tmp_path: Path) -> None:
    good = tmp_path / "registry.yaml"
    good.write_text(REGISTRY)
    assert len(load_registry(good).entries) == 4
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_registry(tmp_path / "missing.yaml")


def test_the_example_registry_loads() -> None:
    registry = load_registry(EXAMPLE)
    assert isinstance(registry.approve(host="api.frankfurter.app", namespace="agents", port=443,
                                       protocol="TLS"), Approval)


def test_the_digest_changes_with_the_content(registry: Registry) -> None:
    assert registry.digest == parse_registry(REGISTRY, source="again").digest
    assert registry.digest != load_registry(None).digest


@pytest.mark.parametrize(("text", "suggestion"), [
    ("entries: [{host: api.example.com, port: 443}]",
     "entries.0.port: Extra inputs are not permitted (did you mean 'ports'?)"),
    ("entries: [{host: api.example.com, ports: [{numbr: 443}]}]",
     "entries.0.ports.0.numbr: Extra inputs are not permitted (did you mean 'number'?)"),
    ("deny: [{host: x.example.com, reson: leaks}]", "(did you mean 'reason'?)"),
    ("entrys: []", "entrys: Extra inputs are not permitted (did you mean 'entries'?)"),
])
def test_an_unknown_registry_field_names_the_nearest_known_one(text: str,
                                                               suggestion: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_registry(text, source="registry.yaml")
    assert suggestion in str(caught.value)


def test_an_exact_entry_also_governs_the_names_under_it(registry: Registry) -> None:
    # Cloud Storage serves virtual-hosted buckets as <bucket>.storage.googleapis.com: the
    # exact entry for storage.googleapis.com keeps *.googleapis.com from approving them.
    for namespace in ("agents", "data"):
        bucket = registry.approve(host="attacker-bucket.storage.googleapis.com",
                                  namespace=namespace, port=443, protocol="HTTPS")
        assert isinstance(bucket, Refusal)
        assert (bucket.reason, bucket.key) == (Refused.UNDER_EXACT,
                                               Host("storage.googleapis.com"))
    assert isinstance(registry.approve(host="bigquery.googleapis.com", namespace="agents",
                                       port=443, protocol="HTTPS"), Approval)
    # Without a suffix above it, a name under an exact entry is simply not listed.
    below = registry.approve(host="v2.api.frankfurter.app", namespace="agents")
    assert isinstance(below, Refusal)
    assert below.reason is Refused.NOT_LISTED


def test_subdomains_inherit_and_a_nearer_suffix_say_otherwise_explicitly() -> None:
    base = ("entries:\n- host: '*.googleapis.com'\n- host: storage.googleapis.com\n"
            "  namespaces: [data]\n")
    inherit = parse_registry(base + "  subdomains: inherit\n", source="inherit")
    assert isinstance(inherit.approve(host="b.storage.googleapis.com", namespace="agents"),
                      Approval)
    nearer = parse_registry(base + "- host: '*.storage.googleapis.com'\n  namespaces: [data]\n",
                            source="nearer")
    assert isinstance(nearer.approve(host="b.storage.googleapis.com", namespace="data"),
                      Approval)
    refused = nearer.approve(host="b.storage.googleapis.com", namespace="agents")
    assert isinstance(refused, Refusal)
    assert refused.reason is Refused.NAMESPACE
    # Several entries for one name: only if every one says inherit.
    mixed = parse_registry(base + "  subdomains: inherit\n- host: storage.googleapis.com\n"
                           "  namespaces: [other]\n", source="mixed")
    assert isinstance(mixed.approve(host="b.storage.googleapis.com", namespace="agents"),
                      Refusal)
    with pytest.raises(ConfigError, match="subdomains applies to exact hosts"):
        parse_registry("entries:\n- host: '*.example.com'\n  subdomains: inherit\n", source="x")


def test_suffix_entries_covering_shared_storage_warn_at_load(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "registry.yaml"
    path.write_text("entries:\n- host: '*.amazonaws.com'\n- host: '*.googleapis.com'\n"
                    "- host: storage.googleapis.com\n- host: firebasestorage.googleapis.com\n"
                    "- host: api.frankfurter.app\n")
    with caplog.at_level("WARNING", logger="webhook.egress.registry"):
        registry = load_registry(path)
    (warning,) = registry.warnings  # googleapis is narrowed for every shared name it covers
    assert warning.startswith("entry *.amazonaws.com ")
    assert "any-bucket.s3.amazonaws.com" in warning
    assert "Amazon S3" in warning
    assert warning in caplog.text
    assert str(path) in caplog.text
    denied = parse_registry("entries:\n- host: '*.githubusercontent.com'\ndeny:\n"
                            "- '*.githubusercontent.com'\n", source="denied")
    assert denied.warnings == ()
    assert parse_registry("entries:\n- host: '*.example.com'\n", source="x").warnings == ()


def test_pins_name_the_approved_hosts_an_address_belongs_to(registry: Registry) -> None:
    (pin,) = registry.pins(address=ipaddress.ip_address("203.0.113.10"), namespace="agents")
    assert pin.key == Host("api.exchangerate.host")
    assert (8443, "TLS") in pin.pairs
    assert registry.pins(address=ipaddress.ip_address("198.51.100.1"), namespace="agents") == []
