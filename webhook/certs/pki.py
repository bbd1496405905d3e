"""Certificate generation: a CA and the webhook's serving certificate, as values and PEM.

Owns: making ECDSA P-256 keys, a self-signed CA, a serving certificate signed by that CA with
the SANs the API server will check, PEM encoding/decoding, writing a development bundle to
disk (private keys 0600), and the ``certs generate`` sub-command.

Deliberately does not own: when to renew or rotate (``webhook.certs.manager``), loading files
into a TLS context (``webhook.server.tls``), or talking to the API server
(``webhook.cluster.kube``). Every function takes ``now`` explicitly so that tests and the
renewal logic control the clock.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = timedelta(days=3650)
SERVING_VALIDITY = timedelta(days=90)
DEV_SERVING_VALIDITY = timedelta(days=365)
# Clocks across nodes drift; a certificate that starts "now" is rejected by a peer whose clock
# is a few seconds behind. Back-date the start a little.
CLOCK_SKEW = timedelta(minutes=5)
CA_FILE = "ca.crt"
CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"


class CertificateError(ValueError):
    """A PEM blob or a certificate/key pair that cannot be used."""


@dataclass(frozen=True)
class DevBundle:
    """Paths of a CA certificate and a serving pair written by :func:`write_dev_bundle`."""

    ca_cert: Path
    cert: Path
    key: Path


def new_private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _serial() -> int:
    # RFC 5280: positive, at most 20 octets. 159 random bits keeps it positive and unique.
    return secrets.randbits(159) | 1


def generate_ca(
    common_name: str, *, valid_for: timedelta, now: datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A self-signed CA that may sign leaf certificates only (path length 0)."""
    key = new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + valid_for)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def issue_serving_certificate(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    valid_for: timedelta,
    now: datetime,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A TLS server certificate for ``dns_names``/``ip_addresses``, signed by the CA.

    The validity never outlasts the CA: a leaf that outlives its issuer fails verification
    after the CA expires anyway, and the renewal logic reasons about the leaf's own dates.
    """
    if not dns_names and not ip_addresses:
        raise CertificateError("a serving certificate needs at least one DNS name or IP address")
    key = new_private_key()
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    common_name = dns_names[0] if dns_names else ip_addresses[0]
    not_after = min(now + valid_for, ca_cert.not_valid_after_utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(_ec_public(ca_cert)),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _ec_public(cert: x509.Certificate) -> ec.EllipticCurvePublicKey:
    public = cert.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        raise CertificateError("only ECDSA certificates are supported")
    return public


def service_dns_names(*, service: str, namespace: str) -> list[str]:
    """The names the API server may use to reach ``service`` in ``namespace``."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
    ]


def encode_certificate(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def encode_certificates(certs: Sequence[x509.Certificate]) -> bytes:
    return b"".join(encode_certificate(cert) for cert in certs)


def encode_private_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    # PKCS#8 unencrypted: what ssl.load_cert_chain and kubernetes.io/tls Secrets expect.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def decode_certificates(pem: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle; an empty or unparsable bundle is an error."""
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise CertificateError(f"not a PEM certificate bundle: {exc}") from None
    return certs


def decode_certificate(pem: bytes) -> x509.Certificate:
    """The first certificate of a PEM blob (the leaf, in a chain)."""
    return decode_certificates(pem)[0]


def decode_private_key(pem: bytes) -> ec.EllipticCurvePrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        # Never echo the input: it is key material.
        raise CertificateError("not an unencrypted PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError("only ECDSA private keys are supported")
    return key


def key_matches(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bool:
    public = cert.public_key()
    return isinstance(public, ec.EllipticCurvePublicKey) and public.public_numbers() == (
        key.public_key().public_numbers()
    )


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` readable by the owner only, atomically (tmp file + rename).

    The mode is set at creation, so there is no window in which the key is world-readable.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def write_pair_atomically(directory: Path, *, files: Mapping[str, bytes]) -> bool:
    """Publish ``files`` together, the way the kubelet updates a Secret volume.

    The files go into a fresh hidden directory, a ``..data`` symlink is flipped to it with one
    rename, and each visible name is a symlink through ``..data``. A reader polling the
    directory therefore never sees a new certificate next to an old key. Every file is 0600.
    Returns False (and touches nothing) when the published content is already ``files``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if all((directory / name).read_bytes() == data for name, data in files.items()):
            return False
    except OSError:
        pass
    version = Path(tempfile.mkdtemp(prefix="..", dir=directory))
    for name, data in files.items():
        write_private(version / name, data)
    data_link = directory / "..data"
    previous = data_link.resolve() if data_link.is_symlink() else None
    staging = directory / "..data_tmp"
    staging.unlink(missing_ok=True)
    staging.symlink_to(version.name)
    os.replace(staging, data_link)
    for name in files:
        visible = directory / name
        if not visible.is_symlink():
            visible.unlink(missing_ok=True)
            visible.symlink_to(Path("..data") / name)
    if previous is not None and previous != version.resolve():
        shutil.rmtree(previous, ignore_errors=True)
    return True


def write_dev_bundle(
    out_dir: Path,
    *,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime | None = None,
) -> DevBundle:
    """A fresh CA and serving pair in ``out_dir`` (created if needed) for local use."""
    moment = now or datetime.now(UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = generate_ca(
        "agent-sandbox-webhook development CA", valid_for=CA_VALIDITY, now=moment
    )
    cert, key = issue_serving_certificate(
        ca_cert,
        ca_key,
        dns_names=dns_names,
        ip_addresses=ip_addresses,
        valid_for=DEV_SERVING_VALIDITY,
        now=moment,
    )
    # The CA key is discarded on purpose: a dev bundle is regenerated, never re-signed.
    bundle = DevBundle(ca_cert=out_dir / CA_FILE, cert=out_dir / CERT_FILE, key=out_dir / KEY_FILE)
    write_public(bundle.ca_cert, encode_certificate(ca_cert))
    write_public(bundle.cert, encode_certificate(cert))
    write_private(bundle.key, encode_private_key(key))
    return bundle


def register_certs_command(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``certs generate --service NAME --namespace NS --out DIR`` to the CLI."""
    certs = subparsers.add_parser("certs", help="development certificates")
    actions = certs.add_subparsers(dest="certs_action", required=True)
    generate = actions.add_parser(
        "generate",
        help="write a development CA and a serving pair for a Service",
        description="Writes ca.crt, tls.crt and tls.key (0600). For local use and tests; in a "
        "cluster the webhook manages its own certificates.",
    )
    generate.add_argument(
        "--service", required=True, help="Service name, e.g. agent-sandbox-webhook"
    )
    generate.add_argument("--namespace", required=True, help="Service namespace")
    generate.add_argument("--out", required=True, type=Path, help="output directory")
    generate.add_argument(
        "--ip", action="append", default=[], help="extra IP SAN (repeatable), e.g. 127.0.0.1"
    )
    generate.add_argument(
        "--dns", action="append", default=[], help="extra DNS SAN (repeatable), e.g. localhost"
    )
    generate.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    dns_names = service_dns_names(service=args.service, namespace=args.namespace) + list(args.dns)
    bundle = write_dev_bundle(args.out, dns_names=dns_names, ip_addresses=list(args.ip))
    sys.stdout.write(
        f"wrote CA certificate   {bundle.ca_cert}\n"
        f"wrote serving cert     {bundle.cert} (SANs: {', '.join(dns_names + list(args.ip))})\n"
        f"wrote serving key      {bundle.key} (mode 0600)\n"
    )
    return 0
