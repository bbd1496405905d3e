"""The real ``serve`` process: the README's first command, TLS, and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import urllib3

from tests.conftest import free_port, load_review


@dataclass
class Served:
    process: subprocess.Popen[str]
    port: int
    ca: Path

    def pool(self) -> urllib3.HTTPSConnectionPool:
        return urllib3.HTTPSConnectionPool(
            "127.0.0.1",
            self.port,
            ca_certs=str(self.ca),
            cert_reqs="CERT_REQUIRED",
            retries=False,
            timeout=5.0,
        )


def start(*args: str, env: dict[str, str] | None = None) -> Served:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "webhook", "serve", "--listen", f"127.0.0.1:{port}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"its CA is (\S+)", line)
    assert match, f"no CA path in the banner: {line!r}"
    served = Served(process=process, port=port, ca=Path(match.group(1)))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if served.pool().request("GET", "/readyz").status == 200:
                return served
        except urllib3.exceptions.HTTPError:
            time.sleep(0.05)
    process.kill()
    _, errors = process.communicate(timeout=10)
    raise AssertionError(f"server did not become ready: {errors}")


@pytest.fixture
def served() -> Iterator[Served]:
    served = start("--shutdown-delay", "0.5")
    yield served
    if served.process.poll() is None:
        served.process.kill()
    served.process.communicate(timeout=10)  # reaps the process and closes its pipes


def test_serve_with_no_arguments_patches_a_plain_pod_over_tls(served: Served) -> None:
    body = load_review("pod-create.json")
    response = served.pool().request(
        "POST",
        "/mutate?timeout=5s",
        body=orjson.dumps(body),
        headers={"Content-Type": "application/json"},
    )
    assert response.status == 200
    answer = orjson.loads(response.data)["response"]
    assert answer["uid"] == body["request"]["uid"]
    assert answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"


def test_tls_below_1_2_is_refused_and_1_2_is_accepted(served: Served) -> None:
    def handshake(version: ssl.TLSVersion) -> str:
        context = ssl.create_default_context(cafile=str(served.ca))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is the point here
            context.minimum_version = version
            context.maximum_version = version
        context.set_ciphers("DEFAULT:@SECLEVEL=0")
        with socket.create_connection(("127.0.0.1", served.port), timeout=5) as raw, \
                context.wrap_socket(raw, server_hostname="localhost") as tls:
            return str(tls.version())

    assert handshake(ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    with pytest.raises(ssl.SSLError, match=r"(?i)protocol|version"):
        handshake(ssl.TLSVersion.TLSv1_1)


def test_sigterm_turns_readiness_false_then_exits_cleanly(served: Served) -> None:
    served.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    # Within the shutdown delay the server still answers, but is no longer ready.
    assert served.pool().request("GET", "/readyz").status == 503
    assert served.pool().request("GET", "/healthz").status == 200
    served.process.communicate(timeout=10)
    assert served.process.returncode == 0


def test_a_policy_file_with_a_typo_stops_start_up_naming_file_and_field(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("runtimeClass:\n  nmae: kata\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "serve",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--policy",
            str(policy),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert str(policy) in result.stderr
    assert "runtimeClass.nmae" in result.stderr
