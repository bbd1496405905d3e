"""/metrics names every series the README lists, and the logs of a full run carry neither
key material nor object content."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from tests.conftest import load_review
from tests.served import running

pytestmark = pytest.mark.slow

SERIES = [
    'agent_sandbox_admission_requests_total{decision="allowed",dry_run="false",kind="Pod",'
    'operation="CREATE",stage="mutate"}',
    "agent_sandbox_admission_duration_seconds_bucket{kind=\"Pod\",le=\"0.0001\",stage=\"mutate\"}",
    "agent_sandbox_admission_rule_hits_total{",
    "agent_sandbox_admission_mutations_total{field=",
    'agent_sandbox_admission_fail_closed_total{kind="ServiceEntry"}',
    'agent_sandbox_http_bad_requests_total{reason="malformed"}',
    'agent_sandbox_config_last_reload_success{file="registry"} 0.0',
    "agent_sandbox_registry_entries",
    "agent_sandbox_policy_info{digest=",
    "agent_sandbox_certificate_expiry_seconds ",
    "agent_sandbox_connections_open ",
    "agent_sandbox_connections_refused_total ",
]


def test_metrics_and_logs_of_a_full_run(tmp_path: Path) -> None:
    with running(tmp_path, "--registry", str(tmp_path / "absent.yaml")) as server:
        pool = server.pool()
        headers = {"Content-Type": "application/json"}
        for name in ("pod-create.json", "final-pod-wrong-order.json", "serviceentry-v1.json",
                     "skill-create.json", "pod-create-dryrun.json"):
            for path in ("/mutate", "/validate"):
                pool.request("POST", path, body=orjson.dumps(load_review(name)),
                             headers=headers)
        pool.request("POST", "/validate", body=b"{not json", headers=headers)
        metrics = pool.request("GET", "/metrics").data.decode()
        for series in SERIES:
            assert series in metrics, series
        assert server.terminate() == 0
        logs = server.logs()
    assert '"msg":"admission decision"' in logs
    for secret in ("-----BEGIN", "PRIVATE KEY"):
        assert secret not in logs
    for content in ("image", "registry.example.com", "api.frankfurter.app", "containers"):
        assert content not in logs, content


def test_decisions_folded_in_a_batch_render_exactly_as_observing_each_one() -> None:
    """The hot path counts in a dict and folds into prometheus_client later, touching the
    histogram's sum and bucket directly: this holds that to what observe() would give."""
    from webhook.server.metrics import LATENCY_BUCKETS, Metrics

    latencies = [0.00005, 0.0001, 0.00011, 0.0003, 0.002, 0.0025, 7.0, *LATENCY_BUCKETS]
    batched, direct = Metrics(), Metrics()
    for elapsed in latencies:
        batched.record_decision(stage="mutate", kind="Pod", operation="CREATE",
                                decision="denied", dry_run=False, elapsed=elapsed,
                                rules=("pod.host-network",), mutated=("labels",), failed=False)
        direct.requests.labels(stage="mutate", kind="Pod", operation="CREATE",
                               decision="denied", dry_run="false").inc()
        direct.latency.labels(stage="mutate", kind="Pod").observe(elapsed)
        direct.rule_hits.labels(rule="pod.host-network", effect="refused").inc()
        direct.mutations.labels(field="labels").inc()

    def series(metrics: Metrics) -> list[str]:
        return sorted(line for line in metrics.render().decode().splitlines()
                      if line.startswith("agent_sandbox_admission") and "_created" not in line)

    assert series(batched) == series(direct)
    assert any('le="0.0001"' in line and line.endswith(" 3.0") for line in series(batched))
