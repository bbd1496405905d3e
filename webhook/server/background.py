"""Background work of ``serve`` as aiohttp ``cleanup_ctx`` entries.

Owns the glue that runs file watchers (``webhook.config.watch.WatchedFile``) and the
certificate Secret manager (``webhook.certs.manager.SecretCertificateManager``) for as long as
the application lives. It owns no logic of its own: what to watch and how to reconcile stay
with those modules, which do not import aiohttp.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

from webhook.admission.engine import Engine
from webhook.certs.manager import SecretCertificateManager
from webhook.cluster.connect import connect
from webhook.cluster.skillwatch import SkillWatcher
from webhook.config.watch import WatchedFile
from webhook.policies.context import SkillCatalog


def reload_ctx(*files: WatchedFile[Any],
               interval: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry: load every file once, then watch them until shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        for watched in files:
            watched.poll()
        stop = asyncio.Event()
        tasks = [asyncio.create_task(w.watch(interval=interval, stop=stop),
                                     name=f"reload {w.name}") for w in files]
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)

    return ctx


def secret_manager_ctx(
    manager: SecretCertificateManager,
) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry running :meth:`SecretCertificateManager.run` in the background.

    Call ``await manager.reconcile()`` once before building ``ServingTLS``: the first pass
    creates the files the listener needs. This context only keeps them fresh afterwards.
    """

    async def manage_certificates(app: web.Application) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(manager.run(stop=stop), name="cert-manager")
        try:
            yield
        finally:
            stop.set()
            await task

    return manage_certificates


def skill_cache_ctx(engine: Engine) -> Callable[[web.Application], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry keeping ``engine``'s Skill catalog from a background watch.

    The watcher runs in a thread (the kubernetes client blocks); each view it publishes is
    handed to the event loop, which swaps the engine's contexts whole.
    """

    async def keep_skills(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()

        def publish(skills: list[dict[str, Any]] | None, problem: str) -> None:
            catalog = None if skills is None else SkillCatalog(skills)
            loop.call_soon_threadsafe(engine.set_skills, catalog, problem)

        watcher = SkillWatcher(connect(), publish)
        watcher.start()
        try:
            yield
        finally:
            watcher.stop()

    return keep_skills
