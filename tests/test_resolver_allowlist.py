"""The rendered RPZ zone, loaded by a real Unbound: approved names resolve, everything else is
NXDOMAIN and never forwarded. The Corefile is checked against the same decisions.

Unbound (Debian package ``unbound``, installed by CI) runs on loopback with the rendered
``allowlist.rpz`` and a forward-zone to a dnslib stub that records every name it is asked
(tests/resolverkit.py): "not forwarded" means the stub never saw the name. CoreDNS is not
available here, so the Corefile is read by a small interpreter of the three directives it
uses (server block zones, ``template`` with ``match``/``rcode``/``fallthrough``, ``forward``)
and compared name for name with the RPZ answers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from dnslib import RCODE
from resolverkit import ForwarderStub, query, running_unbound, unbound_binary

from webhook.config.policy import load_policy
from webhook.egress.registry import load_registry, parse_registry
from webhook.egress.render import render_layers

ROOT = Path(__file__).resolve().parent.parent
REGISTRY = load_registry(ROOT / "examples" / "registry.yaml")
EXTRA = parse_registry("""
entries:
- {host: "*.example.com", namespaces: [agents]}
- {host: exact.example.net, namespaces: [agents]}
deny:
- "*.bad.example.com"
- exact-denied.example.com
""", source="test")

# name -> resolves? (examples/registry.yaml, agents + data-pipeline)
EXAMPLES = {
    "api.frankfurter.app": True,
    "API.Frankfurter.App": True,
    "x.api.frankfurter.app": False,  # an exact entry approves that name only
    "bigquery.googleapis.com": True,  # under *.googleapis.com
    "a.b.googleapis.com": True,
    "googleapis.com": False,  # a suffix entry does not approve the suffix itself
    "storage.googleapis.com": True,  # approved for data-pipeline
    # Under an exact entry, as the registry decides: its Cloud Storage buckets stay out.
    "attacker-bucket.storage.googleapis.com": False,
    "firebasestorage.googleapis.com": False,  # denied: shared storage
    "x.firebasestorage.googleapis.com": False,  # an exact deny entry covers names under it
    "www.attacker-bucket.googleapis.com": False,
    "attacker-bucket.googleapis.com": False,  # denied, although under an approved suffix
    "paste.example.com": False,  # denied
    "x.storage-sharing.example": False,  # under a denied suffix
    "partner-api.example.net": True,
    "telemetry.example.org": True,
    "exfil.attacker.example": False,  # not listed at all
    "aGVsbG8.tunnel.attacker.example": False,
    "kubernetes.default.svc.cluster.local": True,  # the cluster domain passes
    "cluster.local": True,
    "localhost.localdomain": False,
}
EXTRA_CASES = {
    "www.example.com": True,
    "example.com": False,
    "x.bad.example.com": False,  # a longer denied suffix inside an approved one
    "bad.example.com": True,  # the denied suffix covers names under it, not itself
    "exact-denied.example.com": False,
    "x.exact-denied.example.com": False,  # and the names under an exact deny entry
    "a.b.exact-denied.example.com": False,
    "exact.example.net": True,
    "x.exact.example.net": False,
}

pytestmark = pytest.mark.skipif(unbound_binary() is None,
                                reason="unbound is not installed (CI installs the Debian "
                                "package)")


def _allowlist(registry: object, namespaces: list[str]) -> dict[str, str]:
    (configmap,) = [o for o in render_layers(registry, load_policy(None), namespaces)  # type: ignore[arg-type]
                    if o["kind"] == "ConfigMap"]
    data: dict[str, str] = configmap["data"]
    return data


@pytest.fixture(scope="module")
def examples(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ForwarderStub]]:
    zone = _allowlist(REGISTRY, ["agents", "data-pipeline"])["allowlist.rpz"]
    binary = unbound_binary()
    assert binary is not None
    with ForwarderStub() as stub, running_unbound(binary, zone, tmp_path_factory.mktemp("ub"),
                                                 stub.port) as port:
        yield port, stub


@pytest.fixture(scope="module")
def extra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, ForwarderStub]]:
    zone = _allowlist(EXTRA, ["agents"])["allowlist.rpz"]
    binary = unbound_binary()
    assert binary is not None
    with ForwarderStub() as stub, running_unbound(binary, zone, tmp_path_factory.mktemp("ub"),
                                                 stub.port) as port:
        yield port, stub


def _check(port: int, stub: ForwarderStub, name: str, resolves: bool) -> None:
    answer = query(port, name)
    if resolves:
        assert RCODE[answer.header.rcode] == "NOERROR", name
        assert [str(rr.rdata) for rr in answer.rr] == ["192.0.2.1"], name
        assert stub.seen(name), f"{name} was approved but never forwarded"
    else:
        assert RCODE[answer.header.rcode] == "NXDOMAIN", name
        assert not answer.rr, name
        assert not stub.seen(name), f"{name} reached the upstream stub"


@pytest.mark.parametrize(("name", "resolves"), EXAMPLES.items())
def test_unbound_answers_the_example_registry_as_the_allowlist_says(
        examples: tuple[int, ForwarderStub], name: str, resolves: bool) -> None:
    _check(*examples, name, resolves)


@pytest.mark.parametrize(("name", "resolves"), EXTRA_CASES.items())
def test_unbound_honours_nested_suffixes_and_denials(
        extra: tuple[int, ForwarderStub], name: str, resolves: bool) -> None:
    _check(*extra, name, resolves)


def test_other_record_types_of_unlisted_names_are_refused_too(
        examples: tuple[int, ForwarderStub]) -> None:
    port, stub = examples
    for qtype in ("TXT", "AAAA", "MX"):
        answer = query(port, "data.exfil.attacker.example", qtype)
        assert RCODE[answer.header.rcode] == "NXDOMAIN", qtype
    assert not stub.seen("data.exfil.attacker.example")


# --- the Corefile, read by the rules CoreDNS applies ---------------------------------------

_BLOCK = re.compile(r"^(\S+):53 \{\n(.*?)\n\}", re.S | re.M)


def corefile_allows(corefile: str, name: str) -> bool:
    """Which block CoreDNS picks (longest zone), then template (match → NXDOMAIN) or forward."""
    fqdn = name.lower().rstrip(".") + "."
    blocks = dict(_BLOCK.findall(corefile))
    zone = max((z for z in blocks
                if z == "." or fqdn == z + "." or fqdn.endswith("." + z + ".")),
               key=lambda z: 0 if z == "." else z.count(".") + 1)
    body = blocks[zone]
    if "template" in body:
        match = re.search(r'match "([^"]+)"', body)
        if match is None or re.search(match.group(1), fqdn):
            return False
        assert "fallthrough" in body
    return "forward . /etc/resolv.conf" in body


@pytest.mark.parametrize(("registry", "namespaces", "cases"), [
    (REGISTRY, ["agents", "data-pipeline"], EXAMPLES), (EXTRA, ["agents"], EXTRA_CASES)])
def test_the_corefile_allows_exactly_the_names_the_rpz_zone_allows(
        registry: object, namespaces: list[str], cases: dict[str, bool]) -> None:
    corefile = _allowlist(registry, namespaces)["Corefile"]
    assert corefile_allows(corefile, "nothing-listed.example") is False
    for name, resolves in cases.items():
        assert corefile_allows(corefile, name) is resolves, name
