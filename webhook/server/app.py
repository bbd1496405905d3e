"""The HTTP transport: routes, defensive request handling, metrics and one log line per decision.

Owns ``create_app`` (the only place shared state is put on the ``web.Application``), the
admission routes (``/mutate``, ``/validate`` and their ``/warn`` twins for namespaces in
warn-only rollout), ``/healthz``, ``/readyz`` and ``/metrics``. Everything it decides is
delegated to ``webhook.admission.seam.admit``; it never looks inside an object. Starting, TLS and
shutdown live in ``webhook.server.serve``.

HTTP rules: a body that is not an AdmissionReview gets 400 with a reason (bad UTF-8 and JSON
nested deeper than orjson's limit included); a wrong content type 415; a body over the limit
413, at once when Content-Length announces it and without reading it; a body that does not
arrive within ``body_timeout`` 408. Those answers close the connection. Anything that goes
wrong after the review was read is answered inside the review, fail closed (code 500).
Connection limits and the header deadline are set where the listener is made
(``webhook.server.serve``, ``webhook.server.connections``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from webhook.admission.engine import Engine
from webhook.admission.seam import Outcome, Stage, admit
from webhook.core import responses
from webhook.core.errors import BadReview
from webhook.core.review import Request, parse_review
from webhook.policies import MUTATING, VALIDATING
from webhook.server.logs import DecisionLog
from webhook.server.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger(__name__)

# An AdmissionReview carries the object and, on UPDATE, the old object; etcd caps one object
# at 1.5 MiB and the API server's request body at 3 MiB, so 8 MiB leaves room for both plus
# JSON overhead without letting a client park unbounded memory.
DEFAULT_MAX_BODY = 8 * 1024 * 1024
# The API server gives a webhook at most 30 s (our configurations: 5 s) for the whole call, so
# a body still trickling in after 10 s is from someone else, holding a handler open.
DEFAULT_BODY_TIMEOUT = 10.0
JSON = "application/json"


@dataclass(slots=True)
class Health:
    """Readiness and the details /readyz reports. Mutated only by the serve lifecycle."""

    ready: bool = False
    shutting_down: bool = False
    details: dict[str, Callable[[], Any]] = field(default_factory=dict)


ENGINE = web.AppKey("engine", Engine)
METRICS = web.AppKey("metrics", Metrics)
HEALTH = web.AppKey("health", Health)
DECISIONS = web.AppKey("decisions", DecisionLog)
KNOWN_KINDS = frozenset(MUTATING) | frozenset(VALIDATING)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(*, engine: Engine, metrics: Metrics | None = None, health: Health | None = None,
               decisions: DecisionLog | None = None, max_body: int = DEFAULT_MAX_BODY,
               body_timeout: float = DEFAULT_BODY_TIMEOUT) -> web.Application:
    app = web.Application(client_max_size=max_body)
    app[ENGINE] = engine
    app[METRICS] = metrics or Metrics()
    app[HEALTH] = health or Health(ready=True)
    app[DECISIONS] = decisions or DecisionLog()
    app.on_cleanup.append(_flush_decisions)
    app[METRICS].set_policy(engine.policy.digest)
    for path, stage, warn_only in (("/mutate", Stage.MUTATE, False),
                                   ("/validate", Stage.VALIDATE, False),
                                   ("/mutate/warn", Stage.MUTATE, True),
                                   ("/validate/warn", Stage.VALIDATE, True)):
        app.router.add_post(path, _admission_route(stage, warn_only=warn_only,
                                                   max_body=max_body, body_timeout=body_timeout))
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_get("/metrics", _metrics)
    return app


def _admission_route(stage: Stage, *, warn_only: bool, max_body: int,
                     body_timeout: float) -> Handler:
    async def handle(http: web.Request) -> web.StreamResponse:
        return await _admit_http(http, stage=stage, warn_only=warn_only, max_body=max_body,
                                 body_timeout=body_timeout)

    return handle


async def _admit_http(http: web.Request, *, stage: Stage, warn_only: bool, max_body: int,
                      body_timeout: float) -> web.Response:
    metrics = http.app[METRICS]
    if http.content_type != JSON:
        metrics.bad_requests.labels(reason="content-type").inc()
        return _http_error(415, f"Content-Type must be {JSON}, got {http.content_type!r}",
                           close=True)
    if http.content_length is not None and http.content_length > max_body:
        # Refuse on the announcement: reading megabytes only to throw them away is the attack.
        metrics.bad_requests.labels(reason="too-large").inc()
        return _http_error(413, f"body of {http.content_length} bytes is over the limit of "
                           f"{max_body}", close=True)
    try:
        if http.content.is_eof():
            # The parser has already buffered the whole body (the usual case: a review fits in
            # the first reads). Arming a timer anyway cost ~18 µs a request under load.
            body = await http.read()
        else:
            async with asyncio.timeout(body_timeout):
                body = await http.read()
    except web.HTTPRequestEntityTooLarge:  # chunked bodies have no Content-Length to check
        metrics.bad_requests.labels(reason="too-large").inc()
        return _http_error(413, f"body is over the limit of {max_body} bytes", close=True)
    except TimeoutError:
        metrics.bad_requests.labels(reason="body-timeout").inc()
        return _http_error(408, f"the body did not arrive within {body_timeout:g} s",
                           close=True)
    started = time.perf_counter()
    try:
        request = parse_review(body)
    except BadReview as exc:
        metrics.bad_requests.labels(reason="malformed").inc()
        return _http_error(400, str(exc))
    except Exception:  # a parsing bug must not become a 5xx: the body is still the client's
        log.exception("an AdmissionReview could not be parsed")
        metrics.bad_requests.labels(reason="malformed").inc()
        return _http_error(400, "the body could not be read as an AdmissionReview")
    contexts = http.app[ENGINE].contexts
    try:
        outcome = admit(request, stage=stage,
                        context=contexts.warn if warn_only else contexts.enforce)
        payload = orjson.dumps(outcome.review)
    except Exception:  # admit never raises; this guards encoding and bugs in the seam itself
        log.exception("admission failed outside the policy; refusing", extra={"uid": request.uid})
        outcome = Outcome(review=responses.errored(
            uid=request.uid, api_version=request.api_version,
            message="internal error in agent-sandbox-webhook; refused (fail closed)"),
            allowed=False, code=500, failure="internal error outside the policy")
        payload = orjson.dumps(outcome.review)
    elapsed = time.perf_counter() - started
    _record(http, request, outcome, stage=stage, warn_only=warn_only, elapsed=elapsed)
    return web.Response(body=payload, content_type=JSON)


def _record(http: web.Request, request: Request, outcome: Outcome, *, stage: Stage,
            warn_only: bool, elapsed: float) -> None:
    decision = "allowed" if outcome.allowed else ("error" if outcome.code == 500 else "denied")
    # Only kinds with a policy become label values: anything else a client invents is "other",
    # so a hostile body cannot grow the metrics without bound.
    kind = request.kind if (request.group, request.kind) in KNOWN_KINDS else "other"
    http.app[METRICS].record_decision(
        stage=stage.value, kind=kind, operation=request.operation, decision=decision,
        dry_run=request.dry_run, elapsed=elapsed, rules=outcome.rules,
        mutated=outcome.mutated, failed=outcome.failure is not None)
    level = logging.WARNING if outcome.failure is not None else logging.INFO
    decisions = http.app[DECISIONS]
    if not decisions.enabled(level):
        return
    fields: dict[str, Any] = {
        "uid": request.uid, "stage": stage.value, "warn_only": warn_only,
        "kind": request.kind, "namespace": request.namespace, "name": request.name,
        "operation": request.operation, "sub_resource": request.sub_resource,
        "dry_run": request.dry_run, "user": request.username, "allowed": outcome.allowed,
        "code": outcome.code, "rules": outcome.rules, "mutations": outcome.mutated,
        "latency_ms": round(elapsed * 1000, 3),
    }
    if outcome.failure is not None:
        fields["failure"] = outcome.failure
    decisions.write(level, fields)


def _http_error(status: int, reason: str, *, close: bool = False) -> web.Response:
    response = web.Response(status=status, body=orjson.dumps({"error": reason}),
                            content_type=JSON)
    if close:
        # The rest of the body (if any) is not worth reading: close after answering.
        response.force_close()
    return response


async def _flush_decisions(app: web.Application) -> None:
    app[DECISIONS].flush()
    app[METRICS].fold()  # a worker's files outlive it: leave nothing unfolded


async def _healthz(http: web.Request) -> web.Response:
    return web.Response(text="ok\n")


async def _readyz(http: web.Request) -> web.Response:
    health = http.app[HEALTH]
    engine = http.app[ENGINE]
    body: dict[str, Any] = {
        "ready": health.ready and not health.shutting_down,
        "shuttingDown": health.shutting_down,
        "policy": engine.policy.digest,
        "registryLoaded": engine.registry is not None,
    }
    for name, detail in health.details.items():
        body[name] = detail()
    status = 200 if body["ready"] else 503
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON)


async def _metrics(http: web.Request) -> web.Response:
    response = web.Response(body=http.app[METRICS].render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response
