"""A real Unbound loading the rendered RPZ zone, in front of a recording forwarder stub.

``ForwarderStub`` is a dnslib server on loopback that answers every A query with 192.0.2.1
and records each name it is asked: it stands for "the Internet", so a name reaching it was
forwarded. ``running_unbound`` starts ``unbound -d`` on loopback with only the RPZ zone and a
forward-zone to the stub, and waits until it answers.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from dnslib import QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

STUB_ANSWER = "192.0.2.1"
START_ATTEMPTS = 5


class _Recording(BaseResolver):  # type: ignore[misc]
    def __init__(self) -> None:
        self.names: list[str] = []
        self.lock = threading.Lock()

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        name = str(request.q.qname).lower()
        with self.lock:
            self.names.append(name)
        reply = request.reply()
        if request.q.qtype == QTYPE.A:
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(STUB_ANSWER), ttl=60))
        return reply


class ForwarderStub:
    def __init__(self) -> None:
        self.resolver = _Recording()
        self.port = _free_port()
        self.server = DNSServer(self.resolver, address="127.0.0.1", port=self.port,
                                logger=DNSLogger("-request,-reply,-truncated,-error,-recv,"
                                                 "-send,-data"))

    def __enter__(self) -> ForwarderStub:
        self.server.start_thread()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.server.server.server_close()

    def seen(self, name: str) -> bool:
        wanted = name.lower().rstrip(".") + "."
        with self.resolver.lock:
            return wanted in self.resolver.names


def _free_port() -> int:
    """A loopback port free for UDP and for TCP (Unbound listens on both)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port: int = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port


def unbound_binary() -> str | None:
    return shutil.which("unbound") or next(
        (p for p in ("/usr/sbin/unbound", "/usr/local/sbin/unbound") if Path(p).exists()), None)


UNBOUND_CONF = """server:
  interface: 127.0.0.1
  port: {port}
  do-ip6: no
  do-daemonize: no
  use-systemd: no
  username: ""
  chroot: ""
  directory: "{directory}"
  pidfile: ""
  use-syslog: no
  logfile: ""
  verbosity: 0
  module-config: "respip iterator"
  do-not-query-localhost: no
  access-control: 127.0.0.0/8 allow
  qname-minimisation: no
  harden-referral-path: no
  cache-max-ttl: 0
forward-zone:
  name: "."
  forward-addr: 127.0.0.1@{stub_port}
rpz:
  name: rpz.agent-sandbox.
  zonefile: "{zonefile}"
"""


@contextlib.contextmanager
def running_unbound(binary: str, zone: str, directory: Path, stub_port: int) -> Iterator[int]:
    zonefile = directory / "allowlist.rpz"
    zonefile.write_text(zone)
    conf = directory / "unbound.conf"
    log = directory / "unbound.log"
    # A port free now may be taken before Unbound binds it (UDP and TCP, by other processes
    # on a shared machine): try a few ports before calling it a failure.
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        conf.write_text(UNBOUND_CONF.format(port=port, directory=directory,
                                            stub_port=stub_port, zonefile=zonefile))
        if attempt == 0:
            check = subprocess.run([binary.replace("unbound", "unbound-checkconf"), str(conf)],
                                   capture_output=True, text=True, timeout=30, check=False)
            assert check.returncode == 0, check.stdout + check.stderr
        with log.open("w") as out:
            process = subprocess.Popen([binary, "-d", "-c", str(conf)], stdout=out,
                                       stderr=subprocess.STDOUT)
        try:
            if _wait_until_answering(port, process, log):
                yield port
                return
        finally:
            _stop(process)
    raise AssertionError(f"unbound could not bind a port in {START_ATTEMPTS} attempts: "
                         f"{log.read_text()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def query(port: int, name: str, qtype: str = "A") -> DNSRecord:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.sendto(DNSRecord.question(name, qtype).pack(), ("127.0.0.1", port))
        packet, _ = sock.recvfrom(65535)
    return DNSRecord.parse(packet)


def _wait_until_answering(port: int, process: subprocess.Popen[bytes], log: Path) -> bool:
    """True once it answers; False if it exited because its port was taken."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text()
            if "could not open ports" in text:
                return False
            raise AssertionError(f"unbound exited with {process.returncode}: {text}")
        with contextlib.suppress(OSError, socket.timeout):
            query(port, "cluster.local")
            return True
        time.sleep(0.1)
    raise AssertionError("unbound did not answer within 20 s")
