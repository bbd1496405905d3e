"""The listening socket: a connection cap and a TLS handshake deadline in front of aiohttp.

Owns ``GuardedSite``, an aiohttp site that accepts plain TCP, refuses a connection at once
when ``max_connections`` are already open, and only then upgrades it to TLS with
``loop.start_tls`` under a handshake deadline. Counting at the TCP layer, before the handshake,
is the point: asyncio gives every TLS connection a 256 KiB read buffer as soon as it is
accepted, so a cap applied after the handshake would let idle sockets pin memory unbounded.

Deliberately does not own HTTP deadlines: aiohttp's ``keepalive_timeout`` closes a connection
whose request headers are not complete in time (it starts at ``connection_made`` and after
each response, and is not extended by trickled bytes), and the body deadline lives in
``webhook.server.app``. TLS settings live in ``webhook.server.tls``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable

from aiohttp import web

log = logging.getLogger(__name__)


class ConnectionGuard:
    """Open-connection bookkeeping shared by every accepted socket of one site."""

    def __init__(self, *, max_connections: int, handshake_timeout: float,
                 on_change: Callable[[str, int], None] | None = None) -> None:
        self.max_connections = max_connections
        self.handshake_timeout = handshake_timeout
        self.open = 0
        self._on_change = on_change or (lambda event, open_now: None)
        self._handshakes: set[asyncio.Task[None]] = set()
        self._refusals_logged = 0

    def admit(self) -> bool:
        if self.open >= self.max_connections:
            # Log the first refusal of a burst only: an attacker must not fill the logs too.
            if self._refusals_logged == 0:
                log.warning("connection limit reached; refusing new connections",
                            extra={"fields": {"max_connections": self.max_connections}})
            self._refusals_logged += 1
            self._on_change("refused", self.open)
            return False
        self.open += 1
        self._on_change("opened", self.open)
        return True

    def release(self) -> None:
        self.open -= 1
        if self.open < self.max_connections:
            self._refusals_logged = 0
        self._on_change("closed", self.open)

    def track(self, task: asyncio.Task[None]) -> None:
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def finish_handshakes(self) -> None:
        """Let handshakes under way when the listener closes finish (their requests are then
        served by the drain), and cancel only those still running at the deadline."""
        tasks = list(self._handshakes)
        if tasks:
            await asyncio.wait(tasks, timeout=self.handshake_timeout)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Connection(asyncio.Protocol):
    """One accepted socket: counted, upgraded to TLS, then handed to aiohttp's handler."""

    def __init__(self, guard: ConnectionGuard, tls: ssl.SSLContext,
                 make_handler: Callable[[], asyncio.Protocol]) -> None:
        self._guard = guard
        self._tls = tls
        self._make_handler = make_handler
        self._handler: asyncio.Protocol | None = None
        self._early: list[bytes] = []
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        if not self._guard.admit():
            transport.abort()
            return
        self._counted = True
        # Nothing may be read before start_tls installs its protocol, or the ClientHello is lost.
        transport.pause_reading()
        self._guard.track(asyncio.get_running_loop().create_task(self._upgrade(transport)))

    async def _upgrade(self, transport: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        try:
            tls_transport = await loop.start_tls(
                transport, self, self._tls, server_side=True,
                ssl_handshake_timeout=self._guard.handshake_timeout)
        except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as exc:
            # Bad handshakes are what scanners and slow clients produce: debug, not warning.
            log.debug("TLS handshake failed: %r", exc)
            transport.abort()
            self._release()
            return
        if tls_transport is None or tls_transport.is_closing():
            self._release()
            return
        self._handler = self._make_handler()
        self._handler.connection_made(tls_transport)
        for chunk in self._early:  # application data that arrived with the handshake
            self._handler.data_received(chunk)
        self._early.clear()

    def _release(self) -> None:
        if self._counted:
            self._counted = False
            self._guard.release()

    def data_received(self, data: bytes) -> None:
        if self._handler is None:
            self._early.append(data)
        else:
            self._handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self._handler.eof_received() if self._handler is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if self._handler is not None:
            self._handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._handler is not None:
            self._handler.pause_writing()

    def resume_writing(self) -> None:
        if self._handler is not None:
            self._handler.resume_writing()


class GuardedSite(web.BaseSite):
    """Like ``web.TCPSite`` with TLS, plus the connection cap and handshake deadline."""

    __slots__ = ("_guard", "_host", "_port", "_reuse_port")

    def __init__(self, runner: web.BaseRunner, *, host: str, port: int,
                 ssl_context: ssl.SSLContext, guard: ConnectionGuard,
                 backlog: int = 1024, reuse_port: bool = False) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._host = host
        self._port = port
        self._guard = guard
        # SO_REUSEPORT: several worker processes each listen on the port, and the kernel
        # spreads new connections over them.
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"https://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        tls = self._ssl_context
        assert server is not None
        assert tls is not None
        guard = self._guard

        def accept() -> asyncio.Protocol:
            return _Connection(guard, tls, server)

        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, backlog=self._backlog, reuse_address=True,
            reuse_port=self._reuse_port or None)

    async def stop(self) -> None:
        await super().stop()  # stops listening; the runner then drains open connections
        with contextlib.suppress(Exception):
            await self._guard.finish_handshakes()
