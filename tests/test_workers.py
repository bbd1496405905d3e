"""``serve --workers N``: real worker processes sharing one port behind a supervisor.

Every test runs the real command (TLS, real handshakes, real signals): metrics summed over
workers, a killed worker replaced and counted, a crash loop stopping the pod, SIGTERM
draining every worker, and policy and certificate reloads reaching every worker.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
import urllib3

from tests.conftest import load_review
from tests.served import Server, running
from webhook.certs.manager import CertManagerSettings
from webhook.certs.pki import write_dev_bundle
from webhook.server.logs import ATOMIC_WRITE, _whole_lines
from webhook.server.metrics import FOLD_DELAY
from webhook.server.serve import ServeSettings
from webhook.server.workers import worker_settings

pytestmark = pytest.mark.slow

POD = orjson.dumps(load_review("pod-create.json"))
JSON = {"Content-Type": "application/json"}
FRESH_CONNECTIONS = 24  # the kernel hashes each to a worker: all on one is ~2**-23 likely


def fresh(server: Server, method: str, path: str, body: bytes | None = None,
          ) -> urllib3.BaseHTTPResponse:
    """One request on a new connection, so that SO_REUSEPORT may pick another worker."""
    pool = server.pool()
    try:
        return pool.request(method, path, body=body, headers=JSON if body else None)
    finally:
        pool.close()


def worker_pids(server: Server) -> list[int]:
    return [int(p) for p in Path(f"/proc/{server.process.pid}/task/{server.process.pid}/"
                                 "children").read_text().split()]


def serving(server: Server, count: int = 2) -> Callable[[], bool]:
    """True once ``count`` workers have logged that they listen (each listens on its own)."""
    return lambda: server.logs().count('"msg":"serving"') >= count


def metric(text: str, series: str) -> float:
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.MULTILINE)
    assert match, f"{series} not in /metrics"
    return float(match.group(1))


def eventually(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "did not happen in time"
        time.sleep(0.1)


def requests_total(text: str) -> float:
    return metric(text, 'agent_sandbox_admission_requests_total{decision="allowed",'
                  'dry_run="false",kind="Pod",operation="CREATE",stage="mutate"}')


def test_any_worker_answers_metrics_with_the_totals_of_every_worker(tmp_path: Path) -> None:
    with running(tmp_path, "--workers", "2") as server:
        eventually(serving(server))
        for _ in range(FRESH_CONNECTIONS):
            assert fresh(server, "POST", "/mutate", POD).status == 200
        # Both workers counted some of them (each writes its own file in the run's directory).
        counted = {p.name for p in (server.ca.parent / "metrics").glob("counter_*.db")}
        assert counted == {f"counter_{pid}.db" for pid in worker_pids(server)}
        # Another worker folds its counts into the shared files within a second.
        time.sleep(FOLD_DELAY + 0.5)
        for _ in range(6):
            assert requests_total(fresh(server, "GET", "/metrics").data.decode()) == \
                FRESH_CONNECTIONS


def test_a_killed_worker_is_started_again_counted_and_its_counts_kept(tmp_path: Path) -> None:
    with running(tmp_path, "--workers", "2") as server:
        eventually(serving(server))
        for _ in range(FRESH_CONNECTIONS):
            assert fresh(server, "POST", "/mutate", POD).status == 200
        time.sleep(FOLD_DELAY + 0.5)  # counts not yet folded would die with the worker
        victim = worker_pids(server)[0]
        os.kill(victim, signal.SIGKILL)
        eventually(serving(server, 3))
        assert victim not in worker_pids(server)
        assert len(worker_pids(server)) == 2
        eventually(lambda: "agent_sandbox_worker_restarts_total 1.0" in
                   fresh(server, "GET", "/metrics").data.decode())
        text = fresh(server, "GET", "/metrics").data.decode()
        assert requests_total(text) == FRESH_CONNECTIONS
        assert '"msg":"worker died; starting it again"' in server.logs()
        assert server.terminate() == 0


def test_workers_that_keep_dying_stop_the_pod_with_exit_code_1(tmp_path: Path) -> None:
    with running(tmp_path, "--workers", "2") as server:
        for _ in range(4):  # one more death than the budget allows within a minute
            eventually(lambda: len(worker_pids(server)) == 2)
            os.kill(worker_pids(server)[0], signal.SIGKILL)
            time.sleep(0.3)
        assert server.process.wait(timeout=30) == 1
        assert '"msg":"workers keep dying' in server.logs()


def test_sigterm_to_the_supervisor_turns_every_worker_unready_then_all_exit(
        tmp_path: Path) -> None:
    with running(tmp_path, "--workers", "2", "--shutdown-delay", "2") as server:
        eventually(serving(server))
        workers = worker_pids(server)
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # Within the delay every worker still answers, and none is ready.
        statuses = {fresh(server, "GET", "/readyz").status for _ in range(FRESH_CONNECTIONS)}
        assert statuses == {503}
        assert fresh(server, "POST", "/mutate", POD).status == 200
        assert server.process.wait(timeout=30) == 0
        for pid in workers:
            assert not Path(f"/proc/{pid}").exists() or \
                "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_policy_and_certificate_changes_reach_every_worker(tmp_path: Path) -> None:
    first = write_dev_bundle(tmp_path / "first", dns_names=["localhost"],
                             ip_addresses=["127.0.0.1"])
    second = write_dev_bundle(tmp_path / "second", dns_names=["localhost"],
                              ip_addresses=["127.0.0.1"])
    pair = tmp_path / "serving"
    pair.mkdir()
    for name in ("tls.crt", "tls.key"):
        shutil.copy(first.cert.parent / name, pair / name)
    policy = tmp_path / "policy.yaml"
    policy.write_text("")
    with running(tmp_path, "--workers", "2", "--policy", str(policy),
                 "--tls-cert", str(pair / "tls.crt"), "--tls-key", str(pair / "tls.key"),
                 ca=first.ca_cert) as server:
        eventually(serving(server))
        before = orjson.loads(fresh(server, "GET", "/readyz").data)["policy"]
        policy.write_text("dns:\n  nameservers: [\"10.96.0.99\"]\n")
        for name in ("tls.key", "tls.crt"):  # each file replaced whole, as a renewal does
            shutil.copy(second.cert.parent / name, pair / f".{name}")
            os.replace(pair / f".{name}", pair / name)

        def everyone_changed() -> bool:
            context = ssl.create_default_context(cafile=str(second.ca_cert))
            for _ in range(FRESH_CONNECTIONS):
                pool = urllib3.HTTPSConnectionPool("127.0.0.1", server.port,
                                                   ssl_context=context, retries=False,
                                                   timeout=5, assert_hostname="localhost")
                try:
                    digest = orjson.loads(pool.request("GET", "/readyz").data)["policy"]
                except urllib3.exceptions.SSLError:
                    return False  # this worker still presents the first certificate
                finally:
                    pool.close()
                if digest == before:
                    return False
            return True

        eventually(everyone_changed)


def test_each_worker_gets_files_a_share_of_the_connection_cap_and_the_audit_once() -> None:
    settings = ServeSettings(workers=3, max_connections=256, audit_interval=300.0,
                             certificates=CertManagerSettings(mode="secret"))
    cert, key = Path("/run/certs/tls.crt"), Path("/run/certs/tls.key")
    workers = [worker_settings(settings, cert=cert, key=key, index=i) for i in range(3)]
    assert {w.certificates.mode for w in workers} == {"files"}  # the Secret manager: never
    assert {(w.cert_path, w.key_path) for w in workers} == {(cert, key)}
    assert [w.max_connections for w in workers] == [86, 86, 86]
    assert [w.audit_interval for w in workers] == [300.0, 0.0, 0.0]
    assert all(w.reuse_port and w.workers == 1 for w in workers)


def test_decision_log_batches_are_written_in_whole_lines_small_enough_to_be_atomic() -> None:
    lines = [b"x" * 399 + b"\n" for _ in range(30)] + [b"y" * 5000 + b"\n"]
    chunks = _whole_lines(lines)
    assert b"".join(chunks) == b"".join(lines)
    assert all(len(c) <= ATOMIC_WRITE or c.count(b"\n") == 1 for c in chunks)
    assert all(c.endswith(b"\n") for c in chunks)
    assert len(chunks) == 4
