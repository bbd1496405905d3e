"""The real ``serve`` process: the README's first command, TLS, and SIGTERM."""

from __future__ import annotations

import argparse
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

from tests.conftest import free_port, load_review, stop_server
from webhook.cli import build_parser


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
    stop_server(process)
    raise AssertionError("server did not become ready")


@pytest.fixture
def served() -> Iterator[Served]:
    served = start("--shutdown-delay", "0.5")
    yield served
    stop_server(served.process)


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


def test_the_banner_prints_an_export_line_for_the_readme_curl(served: Served) -> None:
    # The first banner line was read by start(); the next ones are the commands to paste.
    assert served.process.stdout is not None
    assert served.process.stdout.readline().strip() == f"export CA={served.ca}"
    assert '--cacert "$CA"' in served.process.stdout.readline()


def test_sigterm_removes_the_throwaway_certificate_directory(served: Served) -> None:
    assert served.ca.exists()
    served.process.send_signal(signal.SIGTERM)
    served.process.communicate(timeout=10)
    assert served.process.returncode == 0
    assert not served.ca.parent.exists()


def test_a_second_ctrl_c_exits_at_once_and_still_cleans_up() -> None:
    served = start("--shutdown-delay", "30")
    try:
        served.process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert served.process.poll() is None  # the first one waits the shutdown delay
        began = time.monotonic()
        served.process.send_signal(signal.SIGINT)
        _, errors = served.process.communicate(timeout=10)
        assert time.monotonic() - began < 5, "the second Ctrl-C did not exit at once"
        assert served.process.returncode == 0
        assert "stopped at once" in errors
        assert not served.ca.parent.exists()
    finally:
        stop_server(served.process)


def test_serve_help_names_the_env_variable_and_default_of_every_flag() -> None:
    parser = build_parser()
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    serve = subcommands.choices["serve"]
    flags = [a for a in serve._actions if a.option_strings and a.dest != "help"]
    assert len(flags) >= 20
    for action in flags:
        variable = "AGENT_SANDBOX_" + action.dest.upper()
        assert f"(env {variable}; default " in (action.help or ""), action.option_strings


def test_serve_flags_fall_back_to_their_env_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_SANDBOX_CERT_SECRET", "other-tls")
    monkeypatch.setenv("AGENT_SANDBOX_SHUTDOWN_DELAY", "1.5")
    monkeypatch.setenv("AGENT_SANDBOX_LISTEN", "0.0.0.0:9443")
    args = build_parser().parse_args(["serve"])
    assert (args.cert_secret, args.shutdown_delay, args.listen) == \
        ("other-tls", 1.5, ("0.0.0.0", 9443))
    assert build_parser().parse_args(["serve", "--cert-secret", "x"]).cert_secret == "x"
