"""Run the real ``serve`` process for fault and abuse tests, with its logs in a file.

Unlike the helper in test_serve_process, stderr goes to a file: under load the decision log
would fill a pipe nobody reads and block the server.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import urllib3

from tests.conftest import free_port, stop_server


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    ca: Path
    log: Path

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))

    def pool(self, timeout: float = 5.0) -> urllib3.HTTPSConnectionPool:
        return urllib3.HTTPSConnectionPool("127.0.0.1", self.port, ca_certs=str(self.ca),
                                           cert_reqs="CERT_REQUIRED", retries=False,
                                           timeout=timeout, assert_hostname="localhost")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def logs(self) -> str:
        return self.log.read_text()

    def terminate(self, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close()

    def close(self) -> None:
        stop_server(self.process)


def start_server(workdir: Path, *args: str, ca_from_banner: bool = True,
                 ca: Path | None = None) -> Server:
    port = free_port()
    log = workdir / f"serve-{port}.log"
    with log.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook", "serve", "--listen", f"127.0.0.1:{port}",
             "--reload-interval", "0.2", *args],
            stdout=subprocess.PIPE, stderr=errors, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    if ca_from_banner:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"its CA is (\S+)", line)
        assert match, f"no CA path in the banner: {line!r}"
        ca = Path(match.group(1))
    assert ca is not None
    server = Server(process=process, port=port, ca=ca, log=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            server.close()
            raise AssertionError(f"server exited: {log.read_text()}")
        try:
            if "--client-ca" in args:  # no client certificate here: a TCP accept will do
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                time.sleep(0.3)
                return server
            if server.pool(timeout=1).request("GET", "/readyz").status in (200, 503):
                return server
        except (urllib3.exceptions.HTTPError, OSError):
            time.sleep(0.05)
    server.close()
    raise AssertionError(f"server did not come up: {log.read_text()}")


@contextmanager
def running(workdir: Path, *args: str, ca: Path | None = None) -> Iterator[Server]:
    server = start_server(workdir, *args, ca_from_banner=ca is None, ca=ca)
    try:
        yield server
    finally:
        server.close()
