"""Fuzz the HTTP transport: mutated reviews, raw bytes, deep nesting and bad UTF-8 never get
a 5xx, and every 200 carries a well-formed AdmissionReview answer."""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzkit import json_values, mutated_reviews
from tests.test_fuzz_policies import RULE
from webhook.admission.engine import Engine
from webhook.config.policy import load_policy
from webhook.egress.registry import load_registry
from webhook.server.app import create_app

ClientFactory = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
PATHS = ["/mutate", "/validate", "/mutate/warn", "/validate/warn"]
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture
async def client(aiohttp_client: ClientFactory) -> TestClient[Any, Any]:
    engine = Engine(policy=load_policy(None), registry=load_registry(None))
    return await aiohttp_client(create_app(engine=engine, max_body=1024 * 1024))


async def post(client: TestClient[Any, Any], path: str, body: bytes) -> tuple[int, Any]:
    response = await client.post(path, data=io.BytesIO(body),
                                 headers={"Content-Type": "application/json"})
    payload = await response.read()
    assert response.status < 500, (response.status, payload[:500])
    if response.status == 200:
        answer = orjson.loads(payload)["response"]
        if not answer["allowed"]:
            code = answer["status"]["code"]
            assert code == 500 or RULE.search(answer["status"]["message"]), answer
    else:
        assert response.status in (400, 413), response.status
        assert orjson.loads(payload)["error"]
    return response.status, payload


@FUZZ
@given(data=st.data())
async def test_mutated_reviews_never_get_a_5xx(client: TestClient[Any, Any],
                                               data: st.DataObject) -> None:
    document = data.draw(mutated_reviews())
    # json, not orjson: orjson refuses to encode the deepest documents the fuzz makes.
    await post(client, data.draw(st.sampled_from(PATHS)), json.dumps(document).encode())


@FUZZ
@given(data=st.data())
async def test_arbitrary_json_and_bytes_never_get_a_5xx(client: TestClient[Any, Any],
                                                        data: st.DataObject) -> None:
    body = data.draw(st.one_of(json_values.map(lambda v: json.dumps(v).encode()),
                               st.binary(max_size=200)))
    status, _ = await post(client, data.draw(st.sampled_from(PATHS)), body)
    assert status in (200, 400)


@pytest.mark.parametrize("body", [
    b"[" * 5000 + b"]" * 5000,                      # beyond orjson's depth limit
    b"{\"a\":" * 900 + b"1" + b"}" * 900,          # within it, still no review
    b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": "\xff"}',
    b'{"kind": "AdmissionReview", "apiVersion": ["admission.k8s.io/v1"]}',
    b'{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", '
    b'"request": {"uid": "u", "kind": {}, "resource": {}, "operation": {"a": 1}}}',
    b"\xef\xbb\xbf{}", b"", b"null", b"1e999999",
])
async def test_pathological_bodies_get_400(client: TestClient[Any, Any], body: bytes) -> None:
    for path in PATHS:
        status, _ = await post(client, path, body)
        assert status == 400


async def test_a_body_over_the_limit_gets_413(client: TestClient[Any, Any]) -> None:
    status, _ = await post(client, "/validate", b" " * (1024 * 1024 + 1))
    assert status == 413
