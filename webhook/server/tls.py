"""The server-side TLS context and its hot reload.

Owns: one ``ssl.SSLContext`` for the webhook's listener (TLS 1.2 minimum, forward-secret AEAD
ciphers only, no compression, optionally requiring the API server's client certificate), and
reloading the serving pair into that SAME context when the files change, so listeners pick the
new pair up on the next handshake and open connections are not dropped.

Deliberately does not own: making certificates (``webhook.certs.pki``), deciding when to renew
them (``webhook.certs.manager``), or the metric (the server reads :attr:`ServingTLS.not_after`).

Why a private temporary copy: ``SSLContext.load_cert_chain`` only reads paths, and a kubelet
Secret volume or a renewal can swap the files between two reads. We read both files once,
validate the pair with ``cryptography`` (OpenSSL would install a new certificate before
discovering that the key does not match it), then hand OpenSSL exactly those bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web

from webhook.certs.pki import CertificateError, decode_certificates, decode_private_key, key_matches

logger = logging.getLogger(__name__)

# TLS 1.2 only: ECDHE key exchange with AES-GCM or ChaCha20-Poly1305. TLS 1.3 suites are all
# AEAD and are not affected by set_ciphers.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class _FileStamp:
    """What identifies one version of a file: a kubelet ``..data`` flip changes the inode."""

    device: int
    inode: int
    mtime_ns: int
    size: int


def _stamp(path: Path) -> _FileStamp | None:
    try:
        st = os.stat(path)  # follows symlinks: the stamp is of the resolved target
    except OSError:
        return None
    return _FileStamp(st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(frozen=True)
class _LoadedPair:
    serial: int
    not_after: datetime
    stamps: tuple[_FileStamp | None, _FileStamp | None]


class ServingTLS:
    """A server ``SSLContext`` whose certificate can be replaced while the server runs."""

    def __init__(
        self,
        *,
        cert_path: Path,
        key_path: Path,
        client_ca_path: Path | None = None,
        scratch_dir: Path | None = None,
    ) -> None:
        self.cert_path = cert_path
        self.key_path = key_path
        self._scratch_dir = scratch_dir
        self.context = self._new_context(client_ca_path)
        loaded = self._load()
        if loaded is None:
            raise CertificateError(f"cannot load serving certificate {cert_path} / key {key_path}")
        self._loaded = loaded

    @staticmethod
    def _new_context(client_ca_path: Path | None) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(TLS12_CIPHERS)
        context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
        context.options |= ssl.OP_NO_RENEGOTIATION
        if client_ca_path is not None:
            # The API server presents a client certificate only if its admission config says
            # so; when the operator gives us the CA, anything else is refused at the handshake.
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(cafile=str(client_ca_path))
        return context

    @property
    def not_after(self) -> datetime:
        """Expiry of the certificate new handshakes present (read by the expiry gauge)."""
        return self._loaded.not_after

    @property
    def serial(self) -> int:
        return self._loaded.serial

    def seconds_to_expiry(self, *, now: datetime) -> float:
        return (self._loaded.not_after - now).total_seconds()

    def _current_stamps(self) -> tuple[_FileStamp | None, _FileStamp | None]:
        return (_stamp(self.cert_path), _stamp(self.key_path))

    def changed_on_disk(self) -> bool:
        return self._current_stamps() != self._loaded.stamps

    def reload(self) -> bool:
        """Load the files into the existing context; True if a different pair is now served.

        A missing, unparsable, expired or mismatched pair is logged and the old one is kept.
        """
        loaded = self._load()
        if loaded is None:
            # Remember the stamps so a bad pair is reported once, not on every poll; the next
            # write to either file changes them again and triggers another attempt.
            self._loaded = _LoadedPair(
                self._loaded.serial, self._loaded.not_after, self._current_stamps()
            )
            return False
        changed = loaded.serial != self._loaded.serial
        self._loaded = loaded
        if changed:
            logger.info(
                "serving certificate reloaded",
                extra={"serial": f"{loaded.serial:x}", "not_after": loaded.not_after.isoformat()},
            )
        return changed

    def _load(self) -> _LoadedPair | None:
        stamps = self._current_stamps()
        try:
            cert_pem = self.cert_path.read_bytes()
            key_pem = self.key_path.read_bytes()
        except OSError as exc:
            logger.error("serving certificate files unreadable, keeping the old pair: %s", exc)
            return None
        try:
            chain = decode_certificates(cert_pem)
            key = decode_private_key(key_pem)
        except CertificateError as exc:
            logger.error("serving certificate files invalid, keeping the old pair: %s", exc)
            return None
        leaf = chain[0]
        if not key_matches(leaf, key):
            logger.error(
                "serving key does not match certificate %x, keeping the old pair",
                leaf.serial_number,
            )
            return None
        if leaf.not_valid_after_utc <= datetime.now(UTC):
            logger.error(
                "serving certificate %x has expired, keeping the old pair", leaf.serial_number
            )
            return None
        self._install(cert_pem, key_pem)
        return _LoadedPair(leaf.serial_number, leaf.not_valid_after_utc, stamps)

    def _install(self, cert_pem: bytes, key_pem: bytes) -> None:
        scratch = str(self._scratch_dir) if self._scratch_dir else None
        fd, name = tempfile.mkstemp(prefix=".serving-", suffix=".pem", dir=scratch)  # 0600
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(cert_pem.rstrip(b"\n") + b"\n" + key_pem)
            self.context.load_cert_chain(certfile=name)
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    async def watch(self, *, interval: float, stop: asyncio.Event) -> None:
        """Poll the files every ``interval`` seconds until ``stop`` is set; reload on change."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
            if stop.is_set():
                return
            if self.changed_on_disk():
                try:
                    self.reload()
                except (OSError, ssl.SSLError):
                    logger.exception("serving certificate reload failed, keeping the old pair")


def tls_reload_ctx(
    tls: ServingTLS, *, interval: float
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry that runs :meth:`ServingTLS.watch` for the app's lifetime."""

    async def reload_certificates(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(tls.watch(interval=interval, stop=stop), name="tls-reload")
        try:
            yield
        finally:
            stop.set()
            await task

    return reload_certificates
