"""Certificate generation, PEM helpers, file publishing and the ``certs generate`` command."""

from __future__ import annotations

import argparse
import ipaddress
import ssl
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from webhook.certs.pki import (
    CLOCK_SKEW,
    CertificateError,
    decode_certificate,
    decode_certificates,
    decode_private_key,
    encode_certificate,
    encode_certificates,
    encode_private_key,
    generate_ca,
    issue_serving_certificate,
    key_matches,
    register_certs_command,
    service_dns_names,
    write_dev_bundle,
    write_pair_atomically,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _sans(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_ca_is_a_p256_ca_that_can_sign_leaves_only() -> None:
    ca, key = generate_ca("test CA", valid_for=timedelta(days=10), now=NOW)
    assert isinstance(key.curve, ec.SECP256R1)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical
    assert constraints.value.ca is True
    assert constraints.value.path_length == 0
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    ca.verify_directly_issued_by(ca)
    assert ca.not_valid_before_utc == NOW - CLOCK_SKEW
    assert ca.not_valid_after_utc == NOW + timedelta(days=10)
    assert key_matches(ca, key)


def test_serving_certificate_has_the_sans_and_server_auth_and_is_signed_by_the_ca() -> None:
    ca, ca_key = generate_ca("test CA", valid_for=timedelta(days=10), now=NOW)
    cert, key = issue_serving_certificate(
        ca,
        ca_key,
        dns_names=["svc", "svc.ns.svc"],
        ip_addresses=["127.0.0.1", "::1"],
        valid_for=timedelta(days=2),
        now=NOW,
    )
    cert.verify_directly_issued_by(ca)
    assert key_matches(cert, key)
    assert not key_matches(cert, ca_key)
    sans = _sans(cert)
    assert sans.get_values_for_type(x509.DNSName) == ["svc", "svc.ns.svc"]
    assert sans.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_after_utc == NOW + timedelta(days=2)
    assert cert.serial_number != ca.serial_number


def test_serving_certificate_never_outlives_its_ca() -> None:
    ca, ca_key = generate_ca("short CA", valid_for=timedelta(days=1), now=NOW)
    cert, _ = issue_serving_certificate(
        ca, ca_key, dns_names=["svc"], ip_addresses=[], valid_for=timedelta(days=30), now=NOW
    )
    assert cert.not_valid_after_utc == ca.not_valid_after_utc


def test_serving_certificate_without_any_name_is_refused() -> None:
    ca, ca_key = generate_ca("CA", valid_for=timedelta(days=1), now=NOW)
    with pytest.raises(CertificateError):
        issue_serving_certificate(
            ca, ca_key, dns_names=[], ip_addresses=[], valid_for=timedelta(days=1), now=NOW
        )


def test_pem_round_trips_certificates_bundles_and_keys() -> None:
    first, key = generate_ca("one", valid_for=timedelta(days=1), now=NOW)
    second, _ = generate_ca("two", valid_for=timedelta(days=1), now=NOW)
    assert decode_certificate(encode_certificate(first)) == first
    assert decode_certificates(encode_certificates([first, second])) == [first, second]
    decoded = decode_private_key(encode_private_key(key))
    assert decoded.private_numbers() == key.private_numbers()
    assert encode_private_key(key).startswith(b"-----BEGIN PRIVATE KEY-----")


@pytest.mark.parametrize("blob", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nxx\n"])
def test_unparsable_certificates_raise_certificate_error(blob: bytes) -> None:
    with pytest.raises(CertificateError):
        decode_certificates(blob)


def test_unparsable_key_error_does_not_echo_the_input() -> None:
    secret_looking = b"-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END PRIVATE KEY-----\n"
    with pytest.raises(CertificateError) as raised:
        decode_private_key(secret_looking)
    assert "TOPSECRET" not in str(raised.value)


def test_dev_bundle_writes_a_usable_pair_with_a_private_key_file(tmp_path: Path) -> None:
    bundle = write_dev_bundle(
        tmp_path / "out", dns_names=["localhost"], ip_addresses=["127.0.0.1", "::1"]
    )
    assert stat.S_IMODE(bundle.key.stat().st_mode) == 0o600
    assert stat.S_IMODE(bundle.cert.stat().st_mode) == 0o644
    cert = decode_certificate(bundle.cert.read_bytes())
    cert.verify_directly_issued_by(decode_certificate(bundle.ca_cert.read_bytes()))
    assert key_matches(cert, decode_private_key(bundle.key.read_bytes()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(bundle.cert, bundle.key)  # OpenSSL accepts the pair as written


def test_publishing_a_pair_flips_one_symlink_and_is_idempotent(tmp_path: Path) -> None:
    first = {"tls.crt": b"cert-1", "tls.key": b"key-1"}
    assert write_pair_atomically(tmp_path, files=first) is True
    assert (tmp_path / "..data").is_symlink()
    assert (tmp_path / "tls.crt").resolve().parent == (tmp_path / "..data").resolve()
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    old_version = (tmp_path / "..data").resolve()

    assert write_pair_atomically(tmp_path, files=first) is False
    assert (tmp_path / "..data").resolve() == old_version

    assert write_pair_atomically(tmp_path, files={"tls.crt": b"cert-2", "tls.key": b"key-2"})
    assert (tmp_path / "tls.crt").read_bytes() == b"cert-2"
    assert (tmp_path / "tls.key").read_bytes() == b"key-2"
    assert not old_version.exists(), "the previous version directory is cleaned up"


def test_certs_generate_command_writes_service_sans(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="agent-sandbox-webhook")
    register_certs_command(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        ["certs", "generate", "--service", "hook", "--namespace", "sys", "--out", str(tmp_path)]
    )
    assert args.func(args) == 0
    cert = decode_certificate((tmp_path / "tls.crt").read_bytes())
    assert _sans(cert).get_values_for_type(x509.DNSName) == service_dns_names(
        service="hook", namespace="sys"
    )
    assert service_dns_names(service="hook", namespace="sys") == [
        "hook",
        "hook.sys",
        "hook.sys.svc",
        "hook.sys.svc.cluster.local",
    ]
    assert stat.S_IMODE((tmp_path / "tls.key").stat().st_mode) == 0o600
    out = capsys.readouterr().out
    assert "ca.crt" in out
    assert "tls.key" in out
    assert "PRIVATE KEY" not in out
