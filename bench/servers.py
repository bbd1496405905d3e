"""Starting, checking and stopping the servers under test, each pinned to one core.

Owns the two processes the benchmark compares: the real ``python -m webhook serve`` (TLS,
registry, default log level, so one decision line per review goes to a log file as in a
cluster) and ``bench.baseline_server``. Also one-off HTTPS requests for readiness and for
checking that a case gets the verdict it expects before it is measured, and the peak RSS
(``VmHWM``) read from ``/proc``.
"""

from __future__ import annotations

import http.client
import os
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

HOST = "127.0.0.1"


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    ca: Path
    log: IO[bytes]

    @property
    def base_url(self) -> str:
        return f"https://{HOST}:{self.port}"

    def peak_rss_mib(self) -> float:
        """Peak resident set size of the server process so far (VmHWM), in MiB."""
        return _peak_rss_mib(self.process.pid)

    def worker_pids(self) -> list[int]:
        """The worker processes of a ``serve --workers N`` supervisor (none otherwise)."""
        pid = self.process.pid
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(p) for p in children.read().split()]

    def worker_peak_rss_mib(self) -> list[float]:
        return [_peak_rss_mib(pid) for pid in self.worker_pids()]

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        context = ssl.create_default_context(cafile=str(self.ca))
        connection = http.client.HTTPSConnection(HOST, self.port, context=context, timeout=5)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def verdict(self, path: str, body: bytes) -> dict[str, Any]:
        status, payload = self.request("POST", path, body)
        if status != 200:
            raise RuntimeError(f"{self.name}: POST {path} answered HTTP {status}: {payload!r}")
        response: dict[str, Any] = orjson.loads(payload)["response"]
        return response

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.log.close()


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _pinned(core: int | None) -> Any:
    def pin() -> None:
        if core is not None:
            os.sched_setaffinity(0, {core})

    return pin


def start(name: str, args: list[str], *, ca: Path, scratch: Path, core: int | None,
          ready_path: str, env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = (scratch / f"{name}.log").open("wb")
    process = subprocess.Popen([sys.executable, "-m", *args, "--listen", f"{HOST}:{port}"],
                               stdout=log, stderr=subprocess.STDOUT,
                               preexec_fn=_pinned(core),
                               env=None if env is None else {**os.environ, **env})
    server = Server(name=name, process=process, port=port, ca=ca, log=log)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            if server.request("GET", ready_path)[0] == 200:
                return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"{name} did not become ready; see {log.name}")


def start_webhook(*, cert: Path, key: Path, ca: Path, registry: Path, scratch: Path,
                  core: int | None, log_level: str = "info", workers: int = 1,
                  ablate: tuple[str, ...] | None = None) -> Server:
    """The real server; with ``ablate``, ``bench.ablated`` with those parts removed."""
    name = f"webhook-{workers}w" if workers > 1 else "webhook"
    module, env = "webhook", None
    if ablate is not None:
        name = "ablated-" + ("-".join(ablate) or "none")
        module, env = "bench.ablated", {"BENCH_ABLATE": ",".join(ablate)}
    server = start(name, [module, "serve", "--tls-cert", str(cert), "--tls-key", str(key),
                          "--registry", str(registry), "--shutdown-delay", "0",
                          "--log-level", log_level, "--workers", str(workers)],
                   ca=ca, scratch=scratch, core=core, ready_path="/readyz", env=env)
    deadline = time.monotonic() + 20
    while workers > 1 and time.monotonic() < deadline:  # every worker listening, not one
        if server.log.name and Path(server.log.name).read_text().count('"msg":"serving"') >= \
                workers:
            break
        time.sleep(0.05)
    return server


def start_baseline(*, cert: Path, key: Path, ca: Path, scratch: Path,
                   core: int | None) -> Server:
    return start("baseline", ["bench.baseline_server", "--tls-cert", str(cert),
                              "--tls-key", str(key)],
                 ca=ca, scratch=scratch, core=core, ready_path="/healthz")
