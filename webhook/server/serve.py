"""The ``serve`` lifecycle: load configuration, set up TLS, run, and shut down gracefully.

Owns start-up order (a bad policy file stops start-up with a message naming the file and
field; a bad registry does not, egress objects then fail closed), the background reloads,
and the SIGTERM sequence: readiness turns false, the server keeps answering for
``shutdown_delay`` seconds while endpoints drop it, then stops listening and lets in-flight
requests finish within ``drain_timeout``; a second SIGTERM/SIGINT (Ctrl-C twice) exits at
once. It also sets the abuse limits on the listener: at
most ``max_connections`` open sockets, ``handshake_timeout`` for TLS, ``header_timeout`` for
request headers (and idle keep-alive), ``body_timeout`` for the body. HTTP handling itself
lives in ``webhook.server.app``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from webhook.admission.engine import Engine
from webhook.certs import pki as certs
from webhook.certs.manager import (
    CertManagerSettings,
    SecretCertificateManager,
    resolve_mode,
)
from webhook.config.policy import Policy, load_policy
from webhook.config.watch import WatchedFile
from webhook.core.errors import ConfigError
from webhook.egress.registry import Registry, load_registry
from webhook.policies.context import NO_REGISTRY
from webhook.server.app import Health, create_app
from webhook.server.background import reload_ctx, secret_manager_ctx, skill_cache_ctx
from webhook.server.connections import ConnectionGuard, GuardedSite
from webhook.server.metrics import Metrics
from webhook.server.tls import ServingTLS, tls_reload_ctx
from webhook.tools.audit import periodic_audit_ctx

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8443
    policy_path: Path | None = None
    registry_path: Path | None = None
    cert_path: Path | None = None
    key_path: Path | None = None
    client_ca_path: Path | None = None
    reload_interval: float = 2.0
    shutdown_delay: float = 5.0
    drain_timeout: float = 10.0
    max_connections: int = 256
    handshake_timeout: float = 10.0
    header_timeout: float = 10.0
    body_timeout: float = 10.0
    audit_interval: float = 0.0  # seconds between periodic audits; 0 turns them off
    workers: int = 1  # serving processes; more than one: webhook.server.workers supervises
    reuse_port: bool = False  # set for each of several workers sharing the port
    watch_skills: bool = False  # keep a cache of Skills (pods naming a Skill need it)
    certificates: CertManagerSettings = field(
        default_factory=lambda: CertManagerSettings(mode=None))


def load_engine(settings: ServeSettings) -> tuple[Engine, list[WatchedFile[Any]]]:
    """Load policy and registry once. A bad policy raises ConfigError; a bad registry does not."""
    watched: list[WatchedFile[Any]] = []
    if settings.policy_path is None:
        policy = load_policy(None)
    else:
        policy_file: WatchedFile[Policy] = WatchedFile(settings.policy_path, load_policy,
                                                       name="policy")
        policy_file.poll()
        if policy_file.current is None:
            raise ConfigError(policy_file.problem or f"{settings.policy_path}: cannot load")
        policy = policy_file.current
        watched.append(policy_file)
    if settings.registry_path is None:
        engine = Engine(policy=policy, registry=load_registry(None))
    else:
        registry_file: WatchedFile[Registry] = WatchedFile(settings.registry_path, load_registry,
                                                           name="registry")
        registry_file.poll()
        engine = Engine(policy=policy, registry=registry_file.current,
                        registry_problem=_registry_problem(registry_file))
        watched.append(registry_file)
    return engine, watched


def _registry_problem(registry_file: WatchedFile[Registry]) -> str:
    if registry_file.problem:
        return (f"no valid egress registry has been loaded ({registry_file.problem}), so egress "
                "objects are refused until an operator fixes the registry file")
    return NO_REGISTRY


def follow_files(engine: Engine, files: list[WatchedFile[Any]], *, metrics: Metrics,
                 health: Health) -> None:
    """Swap every new good version into the engine, and expose each file's state.

    Metrics and /readyz read the files' state when asked, so nothing needs publishing.
    """
    for watched in files:
        if watched.name == "policy":
            def use_policy(policy: Policy) -> None:
                engine.set_policy(policy)
                metrics.set_policy(policy.digest)

            watched.on_change = use_policy
        else:
            watched.on_change = engine.set_registry
        metrics.watch_file(watched.name, ok=_ok(watched), last_success=_last(watched))
        health.details[watched.name] = _detail(watched)
    metrics.watch_registry_entries(
        lambda: float(len(engine.registry.entries)) if engine.registry is not None else 0.0)


def _ok(watched: WatchedFile[Any]) -> Callable[[], float]:
    return lambda: 0.0 if watched.problem else 1.0


def _last(watched: WatchedFile[Any]) -> Callable[[], float]:
    return lambda: watched.last_success or 0.0


def _detail(watched: WatchedFile[Any]) -> Callable[[], dict[str, Any]]:
    def detail() -> dict[str, Any]:
        return {"path": str(watched.path), "loaded": watched.current is not None,
                "problem": watched.problem, "lastSuccess": watched.last_success}

    return detail


async def prepare_tls(settings: ServeSettings, scratch: Path) -> tuple[
        ServingTLS, SecretCertificateManager | None]:
    """The serving certificate for the chosen mode, plus its keeper in secret mode.

    The keeper has reconciled once (the files exist); run it in the background to keep them
    fresh. With several workers only the supervisor calls this: one keeper per pod.
    """
    mode = resolve_mode(settings.certificates, tls_cert_given=settings.cert_path is not None)
    if mode == "files":
        if settings.cert_path is None or settings.key_path is None:
            raise ConfigError("--cert-mode files needs --tls-cert and --tls-key")
        return ServingTLS(cert_path=settings.cert_path, key_path=settings.key_path,
                          client_ca_path=settings.client_ca_path), None
    if mode == "secret":
        # Imported here so that only secret mode needs cluster credentials and the client.
        from webhook.cluster.kube import KubernetesApi

        cm = settings.certificates
        api = await asyncio.to_thread(KubernetesApi.from_environment)
        manager = SecretCertificateManager(api=api, settings=cm)
        await manager.reconcile()  # creates or adopts the Secret and writes the serving pair
        return ServingTLS(cert_path=cm.cert_path, key_path=cm.key_path,
                          client_ca_path=settings.client_ca_path), manager
    bundle = certs.write_dev_bundle(scratch, dns_names=["localhost"],
                                    ip_addresses=["127.0.0.1", "::1"])
    print(f"no certificate given: serving a throwaway self-signed certificate for "
          f"localhost/127.0.0.1; its CA is {bundle.ca_cert} (removed when the server stops)\n"
          f"export CA={bundle.ca_cert}\n"
          f"curl --cacert \"$CA\" https://{settings.host}:{settings.port}/healthz",
          flush=True)
    return ServingTLS(cert_path=bundle.cert, key_path=bundle.key,
                      client_ca_path=settings.client_ca_path), None


async def run(settings: ServeSettings, *, started: asyncio.Event | None = None,
              stop: asyncio.Event | None = None, restarted: bool = False) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop`` is set): the first stops gracefully, a second
    one at once. ``restarted``: this worker replaces one that died (it is counted).

    The signal handlers are installed before anything is written, so even a signal during
    start-up removes the throwaway certificate directory on the way out.
    """
    engine, watched = load_engine(settings)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stop.is_set() and main is not None:
            main.cancel()  # the second signal: skip the delay and the drain
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        with tempfile.TemporaryDirectory(prefix="agent-sandbox-webhook-") as scratch:
            await _serve(settings, engine=engine, watched=watched, scratch=Path(scratch),
                         stop=stop, started=started, restarted=restarted)
    except asyncio.CancelledError:
        if not stop.is_set():
            raise  # cancelled by a caller, not by a second signal
        log.warning("second signal: stopped at once, without waiting for the shutdown delay "
                    "or in-flight requests")
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _serve(settings: ServeSettings, *, engine: Engine, watched: list[WatchedFile[Any]],
                 scratch: Path, stop: asyncio.Event, started: asyncio.Event | None,
                 restarted: bool) -> None:
    tls, keeper = await prepare_tls(settings, scratch)
    health = Health(ready=False)
    metrics = Metrics()
    if restarted:
        metrics.worker_restarts.inc()
    metrics.watch_certificate(lambda: tls.seconds_to_expiry(now=datetime.now(UTC)))
    app = create_app(engine=engine, metrics=metrics, health=health,
                     body_timeout=settings.body_timeout)
    follow_files(engine, watched, metrics=metrics, health=health)
    app.cleanup_ctx.append(reload_ctx(*watched, interval=settings.reload_interval))
    app.cleanup_ctx.append(tls_reload_ctx(tls, interval=settings.reload_interval))
    if keeper is not None:
        app.cleanup_ctx.append(secret_manager_ctx(keeper))
    if settings.watch_skills:
        app.cleanup_ctx.append(skill_cache_ctx(engine))
    if settings.audit_interval > 0:
        app.cleanup_ctx.append(periodic_audit_ctx(
            contexts=lambda: engine.contexts, interval=settings.audit_interval,
            publish=metrics.set_audit_counts))
    # aiohttp's keepalive timer runs from connection_made (and from each response) and is
    # not extended by trickled bytes: it is the header deadline that stops slowloris.
    # Lingering (reading the rest of a refused body) is kept short: it is only a courtesy.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=settings.drain_timeout,
                           keepalive_timeout=settings.header_timeout, lingering_time=2.0)
    await runner.setup()
    guard = ConnectionGuard(max_connections=settings.max_connections,
                            handshake_timeout=settings.handshake_timeout,
                            on_change=metrics.connection_event)
    site = GuardedSite(runner, host=settings.host, port=settings.port,
                       ssl_context=tls.context, guard=guard, reuse_port=settings.reuse_port)
    await site.start()
    health.ready = True
    log.info("serving", extra={"fields": {"listen": f"{settings.host}:{settings.port}",
                                          "policy": engine.policy.digest}})
    if started is not None:
        started.set()
    await stop.wait()
    health.shutting_down = True
    log.info("shutting down: readiness is false, draining (a second signal exits at once)",
             extra={"fields": {"delay_s": settings.shutdown_delay}})
    await asyncio.sleep(settings.shutdown_delay)
    await runner.cleanup()
    log.info("stopped")
