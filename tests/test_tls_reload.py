"""Hot reload of the serving certificate on a real aiohttp TLS listener.

No mocks: a real server on 127.0.0.1, real handshakes, certificates rotated on disk the way a
kubelet rotates a Secret volume (a ``..data`` symlink flip) or the way a tool does (rename).
"""

from __future__ import annotations

import asyncio
import os
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from webhook.certs.pki import (
    CertificateError,
    encode_certificate,
    encode_private_key,
    generate_ca,
    issue_serving_certificate,
    write_pair_atomically,
)
from webhook.server.tls import ServingTLS, tls_reload_ctx

CA_CERT, CA_KEY = generate_ca("reload test CA", valid_for=timedelta(days=30), now=datetime.now(UTC))


def _pair(
    *, valid_for: timedelta = timedelta(days=1), now: datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    return issue_serving_certificate(
        CA_CERT,
        CA_KEY,
        dns_names=["localhost"],
        ip_addresses=["127.0.0.1"],
        valid_for=valid_for,
        now=now or datetime.now(UTC),
    )


def _client_pair() -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A clientAuth certificate like the one an API server presents (serverAuth ones fail)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(CA_CERT.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(CA_KEY, hashes.SHA256())
    )
    return cert, key


def _files(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> dict[str, bytes]:
    return {"tls.crt": encode_certificate(cert), "tls.key": encode_private_key(key)}


def _client_context(ca_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    return context


@dataclass(frozen=True)
class Served:
    tls: ServingTLS
    port: int
    directory: Path
    client: ssl.SSLContext


async def _hello(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    certs = tmp_path / "certs"
    cert, key = _pair()
    write_pair_atomically(certs, files=_files(cert, key))
    (tmp_path / "ca.crt").write_bytes(encode_certificate(CA_CERT))
    tls = ServingTLS(cert_path=certs / "tls.crt", key_path=certs / "tls.key")
    app = web.Application()
    app.router.add_get("/", _hello)
    app.cleanup_ctx.append(tls_reload_ctx(tls, interval=0.02))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls.context)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    port = server.sockets[0].getsockname()[1]
    try:
        yield Served(tls, port, certs, _client_context(tmp_path / "ca.crt"))
    finally:
        await runner.cleanup()


async def _connect(served: Served) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", served.port, ssl=served.client, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    return reader, writer, x509.load_der_x509_certificate(der).serial_number


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes:
    writer.write(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    return head.split(b"\r\n")[0] + b" " + await reader.readexactly(length)


async def _wait_for_serial(tls: ServingTLS, serial: int) -> None:
    for _ in range(250):
        if tls.serial == serial:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"serial {serial:x} never loaded; still {tls.serial:x}")


async def test_symlink_flip_is_served_on_the_next_handshake_and_old_connections_survive(
    served: Served,
) -> None:
    reader, writer, first_serial = await _connect(served)
    assert first_serial == served.tls.serial
    assert await _get(reader, writer) == b"HTTP/1.1 200 OK ok"

    cert, key = _pair()
    write_pair_atomically(served.directory, files=_files(cert, key))  # kubelet-style flip
    await _wait_for_serial(served.tls, cert.serial_number)

    _, new_writer, new_serial = await _connect(served)
    assert new_serial == cert.serial_number != first_serial
    assert served.tls.not_after == cert.not_valid_after_utc
    # The connection opened before the rotation is still the same TLS session and still works.
    assert await _get(reader, writer) == b"HTTP/1.1 200 OK ok"
    for w in (writer, new_writer):
        w.close()


async def test_rename_rotation_is_picked_up(served: Served, tmp_path: Path) -> None:
    cert, key = _pair()
    # Replace the symlinks themselves with regular files written next to them and renamed in.
    for name, data in _files(cert, key).items():
        staged = tmp_path / f"staged-{name}"
        staged.write_bytes(data)
        os.replace(staged, served.directory / name)
    await _wait_for_serial(served.tls, cert.serial_number)
    _, writer, serial = await _connect(served)
    assert serial == cert.serial_number
    writer.close()


async def test_mismatched_pair_keeps_the_old_certificate(served: Served) -> None:
    old_serial = served.tls.serial
    cert, _ = _pair()
    _, other_key = _pair()
    write_pair_atomically(served.directory, files=_files(cert, other_key))
    assert served.tls.reload() is False
    assert served.tls.serial == old_serial
    _, writer, serial = await _connect(served)
    assert serial == old_serial, "the listener still presents the old, valid pair"
    writer.close()


async def test_expired_or_garbage_files_keep_the_old_certificate(served: Served) -> None:
    old_serial = served.tls.serial
    expired, key = _pair(valid_for=timedelta(hours=1), now=datetime.now(UTC) - timedelta(days=1))
    write_pair_atomically(served.directory, files=_files(expired, key))
    assert served.tls.reload() is False
    write_pair_atomically(served.directory, files={"tls.crt": b"junk", "tls.key": b"junk"})
    assert served.tls.reload() is False
    assert served.tls.serial == old_serial
    _, writer, serial = await _connect(served)
    assert serial == old_serial
    writer.close()


def test_start_up_with_unusable_files_fails_loudly(tmp_path: Path) -> None:
    (tmp_path / "tls.crt").write_bytes(b"junk")
    (tmp_path / "tls.key").write_bytes(b"junk")
    with pytest.raises(CertificateError):
        ServingTLS(cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key")


def test_context_refuses_old_protocols_and_compression(tmp_path: Path) -> None:
    cert, key = _pair()
    write_pair_atomically(tmp_path, files=_files(cert, key))
    context = ServingTLS(cert_path=tmp_path / "tls.crt", key_path=tmp_path / "tls.key").context
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert tls12, "some TLS 1.2 suites remain"
    assert all(name.startswith("ECDHE-") for name in tls12)
    assert all("GCM" in name or "CHACHA20" in name for name in tls12)
    assert context.verify_mode == ssl.CERT_NONE


async def test_client_ca_requires_a_client_certificate(tmp_path: Path) -> None:
    cert, key = _pair()
    write_pair_atomically(tmp_path / "certs", files=_files(cert, key))
    (tmp_path / "ca.crt").write_bytes(encode_certificate(CA_CERT))
    tls = ServingTLS(
        cert_path=tmp_path / "certs" / "tls.crt",
        key_path=tmp_path / "certs" / "tls.key",
        client_ca_path=tmp_path / "ca.crt",
    )
    assert tls.context.verify_mode == ssl.CERT_REQUIRED
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=tls.context)
    port = server.sockets[0].getsockname()[1]
    anonymous = _client_context(tmp_path / "ca.crt")
    anonymous.maximum_version = ssl.TLSVersion.TLSv1_2  # the handshake error surfaces on connect
    try:
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await asyncio.open_connection(
                "127.0.0.1", port, ssl=anonymous, server_hostname="localhost"
            )
        authenticated = _client_context(tmp_path / "ca.crt")
        authenticated.maximum_version = ssl.TLSVersion.TLSv1_2
        client_cert, client_key = _client_pair()
        write_pair_atomically(tmp_path / "client", files=_files(client_cert, client_key))
        authenticated.load_cert_chain(
            tmp_path / "client" / "tls.crt", tmp_path / "client" / "tls.key"
        )
        _, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=authenticated, server_hostname="localhost"
        )
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
