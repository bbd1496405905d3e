"""With --client-ca, the real server accepts a client certificate issued by that CA and
refuses a handshake without one."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.served import running
from webhook.certs import pki as certs

pytestmark = pytest.mark.slow


def client_pair(tmp_path: Path) -> tuple[Path, Path, Path]:
    now = datetime.now(UTC)
    ca, ca_key = certs.generate_ca("apiserver client CA", valid_for=timedelta(days=1), now=now)
    key = certs.new_private_key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = tmp_path / "client-ca.crt", tmp_path / "client.crt", tmp_path / "client.key"
    paths[0].write_bytes(certs.encode_certificate(ca))
    paths[1].write_bytes(certs.encode_certificate(cert))
    certs.write_private(paths[2], certs.encode_private_key(key))
    return paths


def test_a_client_certificate_from_the_ca_is_required(tmp_path: Path) -> None:
    client_ca, client_cert, client_key = client_pair(tmp_path)
    with running(tmp_path, "--client-ca", str(client_ca)) as server:

        def request(context: ssl.SSLContext) -> bytes:
            with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw, \
                    context.wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"
                            b"Connection: close\r\n\r\n")
                return tls.recv(4096)

        with_cert = server.ssl_context()
        with_cert.load_cert_chain(client_cert, client_key)
        assert request(with_cert).startswith(b"HTTP/1.1 200")
        # TLS 1.3 reports a missing client certificate on the first read, 1.2 in the handshake.
        assert refused(lambda: request(server.ssl_context()))
        (tmp_path / "other").mkdir()
        _, foreign_cert, foreign_key = client_pair(tmp_path / "other")
        foreign = server.ssl_context()
        foreign.load_cert_chain(foreign_cert, foreign_key)
        assert refused(lambda: request(foreign))


def refused(attempt: Callable[[], bytes]) -> bool:
    """True when the handshake (or, with TLS 1.3, the first read) fails or gets no answer."""
    try:
        return not attempt().startswith(b"HTTP/1.1 200")
    except (ssl.SSLError, ConnectionResetError):
        return True
