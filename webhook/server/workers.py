"""``serve --workers N``: N serving processes on one port, and the process that supervises them.

One Python process serves on one core (asyncio runs one handler at a time and the work is
pure Python), so a pod given more CPUs uses them through worker processes. Each worker is the
ordinary ``serve`` (``webhook.server.serve.run``): its own event loop, its own listening
socket on the shared port (``SO_REUSEPORT``: the kernel spreads new connections over them),
its own reloads of policy, registry and serving certificate.

The supervisor (the process started as ``serve --workers N``) owns everything that must
happen once per pod:

- configuration is checked before any worker starts (a bad policy file stops start-up);
- the serving certificate is prepared once: in ``secret`` mode the Secret manager runs here
  and only here, writing the pair that every worker watches; workers always read files;
- a fresh metrics directory for the run, so that any worker answering /metrics reports
  every worker's counts (``webhook.server.metrics``);
- SIGTERM/SIGINT are passed to every worker, which then runs its own graceful sequence
  (readiness false, keep answering for ``shutdown_delay``, drain); a worker still running
  after the delay, the drain timeout and a margin is killed;
- a worker that dies is logged as an error, counted (``agent_sandbox_worker_restarts``) and
  started again at once. More than ``RESTART_BUDGET`` deaths within ``RESTART_WINDOW``
  seconds is a crash loop: the supervisor stops the rest and exits 1, so the kubelet restarts
  the container and the restart count shows it. The pod never serves with fewer workers
  without saying so.

Workers run in their own session (a terminal's Ctrl-C reaches the supervisor only) and
watch their stdin, a pipe from the supervisor: if the supervisor dies, they stop too.
It does not own serving itself, TLS contexts or metrics: those stay in their modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import os
import pickle
import signal
import sys
import tempfile
import time
from pathlib import Path

from webhook.certs.manager import SecretCertificateManager
from webhook.core.errors import ConfigError
from webhook.server.logs import configure_logging
from webhook.server.metrics import MULTIPROCESS_ENV, mark_worker_dead
from webhook.server.serve import ServeSettings, load_engine, prepare_tls, run

log = logging.getLogger(__name__)

RESTART_BUDGET = 3
RESTART_WINDOW = 60.0
KILL_MARGIN = 5.0  # seconds past shutdown delay + drain before a worker is killed


def worker_settings(settings: ServeSettings, *, cert: Path, key: Path,
                    index: int) -> ServeSettings:
    """What worker ``index`` of ``settings.workers`` runs with."""
    return dataclasses.replace(
        settings, workers=1, reuse_port=True, cert_path=cert, key_path=key,
        certificates=dataclasses.replace(settings.certificates, mode="files"),
        # The connection cap bounds the pod's memory: split it, do not multiply it.
        max_connections=max(1, math.ceil(settings.max_connections / settings.workers)),
        # The audit lists the cluster: once per pod is enough, in the first worker.
        audit_interval=settings.audit_interval if index == 0 else 0.0)


class Supervisor:
    """Starts the workers, restarts one that dies, and stops them all on a signal."""

    def __init__(self, settings: ServeSettings, *, cert: Path, key: Path, log_level: str,
                 metrics_dir: Path) -> None:
        self._settings = settings
        self._cert = cert
        self._key = key
        self._log_level = log_level
        self._metrics_dir = metrics_dir
        self._workers: dict[int, asyncio.subprocess.Process] = {}
        self._deaths: list[float] = []
        self._events: asyncio.Queue[int | None] = asyncio.Queue()  # None: stop
        self._stopping = False

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._workers.values()]

    def on_signal(self) -> None:
        """The first SIGTERM/SIGINT stops every worker gracefully; a second one reaches them
        too, and they exit at once."""
        if self._stopping:
            self._signal_all()
        else:
            self._stopping = True
            self._events.put_nowait(None)

    def _signal_all(self) -> None:
        for process in self._workers.values():
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)

    async def _start(self, index: int, *, restarted: bool) -> None:
        settings = worker_settings(self._settings, cert=self._cert, key=self._key, index=index)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "webhook.server.workers", stdin=asyncio.subprocess.PIPE,
            env={**os.environ, MULTIPROCESS_ENV: str(self._metrics_dir)},
            start_new_session=True)
        assert process.stdin is not None
        # The settings, then the pipe stays open: its end tells the worker we are gone.
        process.stdin.write(pickle.dumps((settings, self._log_level, restarted)))
        await process.stdin.drain()
        self._workers[index] = process
        log.info("worker started", extra={"fields": {"worker": index, "pid": process.pid}})
        asyncio.get_running_loop().create_task(self._watch(index, process))

    async def _watch(self, index: int, process: asyncio.subprocess.Process) -> None:
        await process.wait()
        if self._workers.get(index) is process:
            self._events.put_nowait(index)

    async def run(self) -> int:
        """Serve until stopped (0) or until workers die faster than the budget allows (1)."""
        for index in range(self._settings.workers):
            await self._start(index, restarted=False)
        code = 0
        while (event := await self._events.get()) is not None:
            index = event
            process = self._workers[index]
            mark_worker_dead(process.pid, str(self._metrics_dir))
            now = time.monotonic()
            self._deaths = [t for t in self._deaths if now - t < RESTART_WINDOW] + [now]
            fields = {"worker": index, "pid": process.pid, "exit": process.returncode,
                      "deaths_in_window": len(self._deaths)}
            if len(self._deaths) > RESTART_BUDGET:
                log.error("workers keep dying; stopping the pod so that the kubelet restarts "
                          "it", extra={"fields": fields})
                code = 1
                break
            log.error("worker died; starting it again", extra={"fields": fields})
            await self._start(index, restarted=True)
        await self._stop_all()
        return code

    async def _stop_all(self) -> None:
        self._stopping = True
        workers = list(self._workers.values())
        self._signal_all()
        grace = self._settings.shutdown_delay + self._settings.drain_timeout + KILL_MARGIN
        waits = [asyncio.create_task(process.wait()) for process in workers]
        if waits:
            _, late = await asyncio.wait(waits, timeout=grace)
            for process in workers:
                if process.returncode is None:
                    log.error("worker did not stop in time; killing it",
                              extra={"fields": {"pid": process.pid}})
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            await asyncio.gather(*late)
        for process in workers:
            if process.stdin is not None:
                process.stdin.close()


async def supervise(settings: ServeSettings, *, log_level: str) -> int:
    """The supervisor's whole life: check, prepare TLS, run the workers, stop them."""
    load_engine(settings)  # a bad policy file stops start-up here, before any worker
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    supervisor: Supervisor | None = None

    def on_signal() -> None:
        if supervisor is not None:
            supervisor.on_signal()
        elif main is not None:
            main.cancel()  # still starting: stop, removing the scratch directory

    # Installed before anything is written, as in ``run``.
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    try:
        with tempfile.TemporaryDirectory(prefix="agent-sandbox-webhook-") as scratch:
            metrics_dir = Path(scratch) / "metrics"
            metrics_dir.mkdir()
            tls, keeper = await prepare_tls(settings, Path(scratch))
            supervisor = Supervisor(settings, cert=tls.cert_path, key=tls.key_path,
                                    log_level=log_level, metrics_dir=metrics_dir)
            return await _supervise(supervisor, settings, keeper)
    except asyncio.CancelledError:
        log.warning("stopped by a signal during start-up")
        return 0
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _supervise(supervisor: Supervisor, settings: ServeSettings,
                     keeper: SecretCertificateManager | None) -> int:
    """Run the workers, and the certificate keeper (secret mode) beside them."""
    stop_keeper = asyncio.Event()
    keeping = (asyncio.create_task(keeper.run(stop=stop_keeper), name="cert-manager")
               if keeper is not None else None)
    log.info("supervising workers", extra={"fields": {
        "workers": settings.workers, "listen": f"{settings.host}:{settings.port}"}})
    try:
        code = await supervisor.run()
    finally:
        stop_keeper.set()
        if keeping is not None:
            await keeping
    log.info("stopped", extra={"fields": {"exit": code}})
    return code


async def _serve_worker(settings: ServeSettings, restarted: bool) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def supervisor_gone() -> None:
        if not os.read(sys.stdin.fileno(), 4096):  # end of the pipe: the supervisor exited
            loop.remove_reader(sys.stdin.fileno())
            stop.set()

    loop.add_reader(sys.stdin.fileno(), supervisor_gone)
    await run(settings, stop=stop, restarted=restarted)


def worker_main() -> int:
    """Entry point of one worker process: settings arrive pickled on stdin."""
    settings, log_level, restarted = pickle.load(sys.stdin.buffer)
    configure_logging(log_level)
    try:
        asyncio.run(_serve_worker(settings, restarted))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker_main())
