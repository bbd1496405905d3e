"""``agent-sandbox-webhook controller``: watches, a resync timer and leader election around
one ``Reconciler``.

Owns the process: connect, serve metrics, wait for the Lease, then (while leading) watch the
labelled namespaces, the registry ConfigMap and the Skills with the client's ``watch`` module,
and run a reconcile pass after every change (changes arriving within ``DEBOUNCE_SECONDS`` share
one pass) and at least every ``resync`` seconds, which is what finds and repairs drift. A watch
that ends or fails is restarted after a pause. Losing the Lease ends the process (exit 1), so
the Deployment restarts it as a follower and two replicas never reconcile at once.

Why the kubernetes client's ``watch`` and ``leaderelection`` rather than kopf: the controller
reconciles one rendered set as a whole (a registry edit changes every namespace), which is a
level-triggered loop over two watches rather than kopf's per-object handlers; kopf's peering
elects through its own KopfPeering CRD, not a coordination.k8s.io Lease; and the client is
already this project's one dependency on the API, confined to ``webhook.cluster``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import start_http_server

from webhook.cluster.connect import connect
from webhook.cluster.election import run_elected
from webhook.cluster.owned import ClusterObjects
from webhook.config.policy import load_policy
from webhook.controller.metrics import ControllerMetrics
from webhook.controller.reconcile import Reconciler, Settings
from webhook.core.labels import ENFORCE_LABEL

logger = logging.getLogger(__name__)

DEBOUNCE_SECONDS = 1.0
WATCH_RESTART_SECONDS = 5.0
WATCH_TIMEOUT_SECONDS = 300
FIELD_MANAGER = "agent-sandbox-controller"


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    namespace: str
    policy_path: Path | None
    registry_configmap: str
    lease_name: str
    metrics_port: int
    resync_seconds: float
    identity: str = ""


def identity() -> str:
    return os.environ.get("POD_NAME") or socket.gethostname()


def run_controller(settings: ControllerSettings) -> int:
    api_client = connect()
    cluster = ClusterObjects(api_client, field_manager=FIELD_MANAGER,
                             config_namespace=settings.namespace)
    metrics = ControllerMetrics()
    start_http_server(settings.metrics_port, registry=metrics.registry)
    reconciler = Reconciler(cluster, settings=Settings(settings.namespace,
                                                       settings.registry_configmap),
                            load_policy=lambda: load_policy(settings.policy_path),
                            metrics=metrics)
    changed = threading.Event()

    def lead() -> None:
        metrics.leader.set(1)
        for watch in (lambda: cluster.watch_namespaces(label=ENFORCE_LABEL,
                                                       timeout_seconds=WATCH_TIMEOUT_SECONDS),
                      lambda: cluster.watch_configmap(namespace=settings.namespace,
                                                      name=settings.registry_configmap,
                                                      timeout_seconds=WATCH_TIMEOUT_SECONDS),
                      lambda: cluster.watch_skills(timeout_seconds=WATCH_TIMEOUT_SECONDS)):
            threading.Thread(target=_keep_watching, args=(watch, changed), daemon=True).start()
        reconcile_forever(reconciler, changed, resync=settings.resync_seconds)

    def stopped() -> None:
        metrics.leader.set(0)
        logger.error("lost the Lease %s/%s; exiting so that a follower takes over",
                     settings.namespace, settings.lease_name)

    run_elected(lease_name=settings.lease_name, namespace=settings.namespace,
                identity=settings.identity or identity(), lead=lead, stopped=stopped)
    return 1


def reconcile_forever(reconciler: Reconciler, changed: threading.Event, *,
                      resync: float) -> None:
    while True:
        reconciler.reconcile()
        changed.wait(timeout=resync)
        if changed.is_set():
            time.sleep(DEBOUNCE_SECONDS)
            changed.clear()


def _keep_watching(watch: Callable[[], Iterator[str]], changed: threading.Event) -> None:
    while True:
        try:
            for what in watch():
                logger.debug("change: %s", what)
                changed.set()
        except Exception as exc:  # a broken watch is restarted; the resync covers the gap
            logger.warning("watch failed (%s); restarting in %.0f s", exc,
                           WATCH_RESTART_SECONDS)
        time.sleep(WATCH_RESTART_SECONDS)
        changed.set()  # a watch restart may have missed events: reconcile once more
