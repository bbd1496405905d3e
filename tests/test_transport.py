"""The HTTP transport, one test per HTTP rule, through a real aiohttp server."""

from __future__ import annotations

import asyncio
import copy
import io
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from webhook.admission.engine import Engine
from webhook.config.policy import load_policy
from webhook.core.review import Request
from webhook.egress.registry import load_registry
from webhook.policies import VALIDATING
from webhook.server.app import HEALTH, create_app
from webhook.server.logs import DecisionLog

REVIEWS = Path(__file__).parent / "fixtures" / "reviews"
ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]


def review(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((REVIEWS / name).read_text())
    return data


def make_app(**kwargs: Any) -> web.Application:
    engine = Engine(policy=load_policy(None), registry=load_registry(None))
    return create_app(engine=engine, **kwargs)


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    return await aiohttp_client(make_app())


async def test_the_response_echoes_uid_api_version_and_kind(client: TestClient[Any, Any]) -> None:
    body = review("pod-create.json")
    response = await client.post("/mutate?timeout=5s", json=body)
    assert response.status == 200
    answer = await response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == body["request"]["uid"]


async def test_the_query_string_the_api_server_appends_is_ignored(
    client: TestClient[Any, Any],
) -> None:
    for path in ("/validate", "/validate?timeout=10s", "/validate?timeout=5s&x=1"):
        response = await client.post(path, json=review("pod-delete.json"))
        assert response.status == 200, path


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}', "no request"),
        (b'{"kind":"Pod","apiVersion":"v1","request":{}}', "kind must be AdmissionReview"),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{}}',
            "not supported",
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":""}}',
            "uid",
        ),
        (b"\xff\xfe\x00garbage", "not valid JSON"),
    ],
)
async def test_a_malformed_review_is_http_400_with_a_reason(
    client: TestClient[Any, Any], body: bytes, reason: str
) -> None:
    response = await client.post("/mutate", data=body, headers={"Content-Type": "application/json"})
    assert response.status == 400
    assert reason in (await response.json())["error"]


async def test_a_review_missing_its_object_on_create_is_http_400(
    client: TestClient[Any, Any],
) -> None:
    body = review("pod-create.json")
    body["request"]["object"] = None
    response = await client.post("/validate", json=body)
    assert response.status == 400
    assert "request.object is required" in (await response.json())["error"]


async def test_a_wrong_content_type_is_http_415(client: TestClient[Any, Any]) -> None:
    response = await client.post(
        "/mutate",
        data=json.dumps(review("pod-create.json")),
        headers={"Content-Type": "text/plain"},
    )
    assert response.status == 415


async def test_a_body_over_the_limit_is_http_413(aiohttp_client: ClientFactory) -> None:
    client = await aiohttp_client(make_app(max_body=4096))
    response = await client.post("/mutate", json=review("pod-create.json"))
    assert response.status == 413


async def test_only_post_is_accepted_on_admission_paths(client: TestClient[Any, Any]) -> None:
    response = await client.get("/mutate")
    assert response.status == 405


async def test_an_unknown_kind_fails_closed_with_code_500(client: TestClient[Any, Any]) -> None:
    body = review("pod-create.json")
    body["request"]["kind"] = {"group": "example.com", "version": "v1", "kind": "Widget"}
    answer = await (await client.post("/validate", json=body)).json()
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert "no validate policy for example.com/Widget" in answer["response"]["status"]["message"]


async def test_an_internal_error_fails_closed_and_is_counted_and_logged(
    client: TestClient[Any, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Fault injection at the policy table: the only way to make a correct policy raise.
    def broken(request: Request, context: object) -> object:
        raise RuntimeError("boom")

    table = dict(VALIDATING)
    table[("", "Pod")] = broken  # type: ignore[assignment]
    monkeypatch.setattr("webhook.admission.seam.VALIDATING", table)
    body = review("pod-create.json")
    with caplog.at_level(logging.INFO):
        answer = await (await client.post("/validate", json=body)).json()
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 500
    assert answer["response"]["uid"] == body["request"]["uid"]
    assert "boom" not in answer["response"]["status"]["message"]
    failures = [r for r in caplog.records if r.exc_info and getattr(r, "uid", None)]
    assert failures
    assert failures[0].uid == body["request"]["uid"]
    metrics = await (await client.get("/metrics")).text()
    assert 'agent_sandbox_admission_fail_closed_total{kind="Pod"} 1.0' in metrics


async def test_one_decision_log_line_carries_facts_not_the_object(
    aiohttp_client: ClientFactory,
) -> None:
    stream = io.BytesIO()
    decisions = DecisionLog(stream, level=logging.INFO, flush_delay=0)
    client = await aiohttp_client(make_app(decisions=decisions))
    body = review("pod-create.json")
    await client.post("/mutate", json=body)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    fields = json.loads(lines[0])
    assert fields["logger"] == "webhook.decision"
    assert fields["level"] == "info"
    assert fields["uid"] == body["request"]["uid"]
    assert fields["kind"] == "Pod"
    assert fields["namespace"] == "agents"
    assert fields["name"] == "currency-agent"
    assert fields["operation"] == "CREATE"
    assert fields["user"] == "lab-admin"
    assert fields["mutations"]
    assert {"ts", "allowed", "rules", "latency_ms", "dry_run"} <= set(fields)
    assert "registry.example.com" not in lines[0].decode()


async def test_at_log_level_warning_only_fail_closed_decisions_are_logged(
    aiohttp_client: ClientFactory,
) -> None:
    stream = io.BytesIO()
    decisions = DecisionLog(stream, level=logging.WARNING, flush_delay=0)
    client = await aiohttp_client(make_app(decisions=decisions))
    await client.post("/mutate", json=review("pod-create.json"))
    assert stream.getvalue() == b""
    unknown = review("pod-create.json")
    unknown["request"]["kind"] = {"group": "example.com", "version": "v1", "kind": "Widget"}
    await client.post("/validate", json=unknown)
    line = json.loads(stream.getvalue())
    assert line["level"] == "warning"
    assert "no validate policy" in line["failure"]


async def test_kinds_without_a_policy_share_one_metrics_label(
    client: TestClient[Any, Any],
) -> None:
    for invented in ("Widget", "Gadget", "Gizmo"):
        body = review("pod-create.json")
        body["request"]["kind"] = {"group": "example.com", "version": "v1", "kind": invented}
        await client.post("/validate", json=body)
    text = await (await client.get("/metrics")).text()
    assert 'agent_sandbox_admission_fail_closed_total{kind="other"} 3.0' in text
    assert "Widget" not in text


async def test_healthz_and_readyz_report_and_readyz_turns_false_on_shutdown(
    aiohttp_client: ClientFactory,
) -> None:
    app = make_app()
    client = await aiohttp_client(app)
    assert (await client.get("/healthz")).status == 200
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["policy"].startswith("sha256:")
    app[HEALTH].shutting_down = True
    assert (await client.get("/readyz")).status == 503
    assert (await client.get("/healthz")).status == 200


async def test_metrics_count_decisions_by_kind_operation_and_outcome(
    client: TestClient[Any, Any],
) -> None:
    await client.post("/validate", json=review("pod-delete.json"))
    text = await (await client.get("/metrics")).text()
    assert (
        'agent_sandbox_admission_requests_total{decision="allowed",dry_run="false",'
        'kind="Pod",operation="DELETE",stage="validate"} 1.0'
    ) in text
    assert "agent_sandbox_admission_duration_seconds_bucket" in text
    assert "agent_sandbox_policy_info{digest=" in text


async def test_dry_run_gets_the_same_answer_as_a_real_request(client: TestClient[Any, Any]) -> None:
    real = review("pod-create.json")
    dry = copy.deepcopy(real)
    dry["request"]["dryRun"] = True
    a = (await (await client.post("/mutate", json=real)).json())["response"]
    b = (await (await client.post("/mutate", json=dry)).json())["response"]
    assert a == b


async def test_decision_lines_are_batched_and_flushed_within_the_delay_and_at_cleanup(
    aiohttp_client: ClientFactory,
) -> None:
    stream = io.BytesIO()
    decisions = DecisionLog(stream, level=logging.INFO, flush_delay=0.2)
    app = make_app(decisions=decisions)
    client = await aiohttp_client(app)
    for _ in range(3):
        await client.post("/validate", json=review("pod-delete.json"))
    assert stream.getvalue() == b""  # still batched
    await asyncio.sleep(0.4)
    assert len(stream.getvalue().splitlines()) == 3
    await client.post("/validate", json=review("pod-delete.json"))
    await client.close()  # app cleanup flushes what is pending
    assert len(stream.getvalue().splitlines()) == 4
