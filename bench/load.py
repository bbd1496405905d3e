"""Load generators: wrk (preferred) and a small asyncio client (fallback), same result shape.

Both keep N connections alive over TLS and POST one body back to back, or with a pause per
connection (``delay_ms``) to hold a rate below capacity. wrk is C and multiplexes every
connection on one thread, so on the core it is pinned to it outruns a single Python server;
the asyncio client is kept for machines without wrk and is itself the bottleneck above a
few thousand reviews/s (the report says which generator ran).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import statistics
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

WRK_SCRIPT = """\
function init(args)
  local fh = io.open(args[1], "rb")
  wrk.body = fh:read("*a")
  fh:close()
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end
%(delay)s
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH {"requests":%%d,"duration_us":%%d,"errors":%%d,"p50":%%d,"p90":%%d,"p99":%%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""
DELAY = "function delay() return %d end"


@dataclass(frozen=True, slots=True)
class Load:
    """What one run measured. Latencies are milliseconds."""

    requests: int
    seconds: float
    errors: int
    p50: float
    p90: float
    p99: float

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def wrk_available() -> bool:
    return shutil.which("wrk") is not None


def _pin(core: int | None) -> None:
    if core is not None:
        os.sched_setaffinity(0, {core})


def run_wrk(*, url: str, body_file: Path, connections: int, seconds: float,
            scratch: Path, core: int | None, delay_ms: int = 0) -> Load:
    script = scratch / f"post-{delay_ms}.lua"
    script.write_text(WRK_SCRIPT % {"delay": DELAY % delay_ms if delay_ms else ""})
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s",
               "--timeout", "5s", "-s", str(script), url, "--", str(body_file)]
    done = subprocess.run(command, capture_output=True, text=True, check=False,
                          preexec_fn=lambda: _pin(core), timeout=seconds + 30)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH "):
            data = orjson.loads(line[6:])
            return Load(requests=data["requests"], seconds=data["duration_us"] / 1e6,
                        errors=data["errors"], p50=data["p50"] / 1000,
                        p90=data["p90"] / 1000, p99=data["p99"] / 1000)
    raise RuntimeError(f"wrk printed no result: {done.stdout}\n{done.stderr}")


def run_asyncio(*, host: str, port: int, path: str, body: bytes, connections: int,
                seconds: float, ca: Path, delay_ms: int = 0) -> Load:
    """The fallback generator, run in this process (pin the process to the load core)."""
    return asyncio.run(_drive(host, port, path, body, connections, seconds, ca, delay_ms))


async def _drive(host: str, port: int, path: str, body: bytes, connections: int,
                 seconds: float, ca: Path, delay_ms: int) -> Load:
    context = ssl.create_default_context(cafile=str(ca))
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    request = head + body
    latencies: list[float] = []
    errors = [0]
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        try:
            reader, writer = await asyncio.open_connection(host, port, ssl=context)
        except OSError:
            errors[0] += 1
            return
        try:
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                writer.write(request)
                header = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in header.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                if not header.startswith(b"HTTP/1.1 200"):
                    errors[0] += 1
                latencies.append(time.perf_counter() - sent)
                if delay_ms:
                    await asyncio.sleep(delay_ms / 1000)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            errors[0] += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    if not latencies:
        return Load(0, elapsed, errors[0], 0.0, 0.0, 0.0)
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return Load(requests=len(latencies), seconds=elapsed, errors=errors[0],
                p50=cuts[49] * 1000, p90=cuts[89] * 1000, p99=cuts[98] * 1000)
