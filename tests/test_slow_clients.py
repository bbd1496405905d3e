"""Slow and abusive clients against the real server: bounded time, bounded memory, and a
well-behaved client is answered throughout."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import orjson
import pytest

from tests.conftest import load_review
from tests.served import Server, running

pytestmark = pytest.mark.slow

LIMITS = ("--header-timeout", "1.5", "--body-timeout", "1.5", "--handshake-timeout", "1.5")
REVIEW = orjson.dumps(load_review("pod-delete.json"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(tmp_path_factory.mktemp("slow"), *LIMITS, "--max-connections", "700") as s:
        yield s


def tls_socket(server: Server, timeout: float = 5.0) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)
    try:
        return server.ssl_context().wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise


def well_behaved(server: Server) -> int:
    response = server.pool(timeout=3).request(
        "POST", "/validate", body=REVIEW, headers={"Content-Type": "application/json"})
    return int(response.status)


def closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (reads and drops whatever it answers)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    return time.monotonic() - started


def test_headers_trickled_byte_by_byte_are_cut_off_at_the_header_deadline(
        server: Server) -> None:
    with tls_socket(server) as slow:
        slow.sendall(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n")
        started = time.monotonic()
        closed = False
        for _ in range(40):  # at most 40 x 0.1 s of trickling
            try:
                slow.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed = True
                break
            assert well_behaved(server) == 200  # everyone else is still served
            time.sleep(0.1)
        if not closed:
            closed_within(slow, 3)
        assert time.monotonic() - started < 4.0


def test_a_body_sent_slowly_gets_408_at_the_body_deadline(server: Server) -> None:
    with tls_socket(server) as slow:
        slow.sendall(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        started = time.monotonic()
        slow.settimeout(5)
        answer = b""
        for _ in range(40):
            try:
                slow.sendall(b" ")
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            slow.settimeout(0.1)
            try:
                chunk = slow.recv(4096)
            except (TimeoutError, ssl.SSLError):
                continue
            answer += chunk
            if not chunk or b"\r\n\r\n" in answer:
                break
        assert answer.startswith(b"HTTP/1.1 408"), answer
        assert time.monotonic() - started < 4.0


def test_an_announced_oversized_body_gets_413_without_being_read(server: Server) -> None:
    with tls_socket(server) as big:
        big.sendall(b"POST /validate HTTP/1.1\r\nHost: localhost\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
                    + b"[" * 65536)
        big.settimeout(5)
        answer = big.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer
        assert b"Connection: close" in answer
        # The connection goes away in bounded time even though 100 MB were announced.
        assert closed_within(big, 5) < 4.0
    assert well_behaved(server) == 200


def test_a_wrong_content_type_gets_415(server: Server) -> None:
    response = server.pool().request("POST", "/validate", body=REVIEW,
                                     headers={"Content-Type": "text/plain"})
    assert response.status == 415


def test_500_idle_sockets_cost_bounded_memory_and_are_dropped(server: Server) -> None:
    before = server.rss_kib()
    with ExitStack() as stack:
        # 250 that never start TLS, 250 that finish the handshake and then say nothing.
        for _ in range(250):
            stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=5))
        handshaken = [stack.enter_context(tls_socket(server)) for _ in range(250)]
        during = server.rss_kib()
        assert well_behaved(server) == 200
        for sock in handshaken[:20]:  # idle past the header deadline: closed by the server
            assert closed_within(sock, 5) < 4.0
    time.sleep(2.0)
    after = server.rss_kib()
    print(f"VmRSS before {before} KiB, with 500 idle sockets {during} KiB, after {after} KiB")
    assert during - before < 200 * 1024
    assert well_behaved(server) == 200


def test_connections_beyond_the_cap_are_refused_and_service_resumes(tmp_path: Path) -> None:
    with running(tmp_path, *LIMITS, "--max-connections", "20") as capped, ExitStack() as stack:
        for _ in range(20):
            stack.enter_context(socket.create_connection(("127.0.0.1", capped.port),
                                                         timeout=5))
        time.sleep(0.3)
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            tls_socket(capped, timeout=3).close()
        stack.close()  # the abuser goes away
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                if well_behaved(capped) == 200:
                    break
            except Exception:
                time.sleep(0.1)
        else:
            raise AssertionError("service did not resume after the idle sockets closed")
        metrics = capped.pool().request("GET", "/metrics").data.decode()
        assert "agent_sandbox_connections_refused_total 1.0" in metrics
