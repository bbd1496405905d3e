"""Prometheus metrics for the webhook, on a registry owned by one app (no module globals).

Owns metric names, labels and buckets, the few helpers that record a decision, and how a
scrape is assembled. It does not decide anything and does not serve HTTP: the server
exposes ``render()`` at /metrics. Every metric is listed in README.md ("Metrics").

Two kinds of series. Events (requests, rule hits, mutations, latency, bad requests,
connections, audit counts) are counted as they happen. State (the policy in force, each
file's last load, registry size, certificate expiry) is read from live callbacks when
scraped, by ``StateCollector``, so nothing has to be published when it changes.

With ``serve --workers N`` every worker counts its own events into prometheus_client's
multiprocess files in one directory per run (``PROMETHEUS_MULTIPROC_DIR``, set by the
supervisor before a worker imports prometheus_client), and whichever worker answers a
scrape sums them all: totals, never one worker's share. Counters of a worker that died
stay in the sum; its open-connection gauge does not (``mark_worker_dead``). State series
come from the answering worker: every worker reloads the same files.
"""

from __future__ import annotations

import asyncio
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

# Decisions take tens of microseconds in process; the buckets resolve that and still cover
# the API server's timeout (at most 30 s, 5 s in our configurations).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)

# Decisions are counted in a plain dict and folded into the Prometheus metrics in batches:
# before every scrape, and at most this many seconds after a decision (so that a scrape
# answered by another worker sees it). prometheus_client's inc/observe cost ~50 k
# instructions for a patched pod's seven series, a third of the transport's cost per review.
FOLD_DELAY = 0.5

PREFIX = "agent_sandbox"
CONTENT_TYPE = CONTENT_TYPE_LATEST
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The shared directory when this process is one of several workers, else None."""
    directory = os.environ.get(MULTIPROCESS_ENV)
    if directory and not getattr(values.ValueClass, "_multiprocess", False):
        # prometheus_client chose in-process values at import: our counts would be lost.
        raise RuntimeError(f"{MULTIPROCESS_ENV} was set after prometheus_client was imported")
    return directory or None


def mark_worker_dead(pid: int, directory: str) -> None:
    """Drop a dead worker's live gauges (open connections, audit counts) from the sums."""
    multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


class StateCollector(Collector):
    """Series computed at scrape time from the state the serve lifecycle exposes."""

    def __init__(self) -> None:
        self.files: dict[str, tuple[Callable[[], float], Callable[[], float]]] = {}
        self.policy_digest: Callable[[], str] | None = None
        self.registry_entries: Callable[[], float] = lambda: 0.0
        self.cert_seconds_left: Callable[[], float] | None = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ok = GaugeMetricFamily(f"{PREFIX}_config_last_reload_success",
                               "1 if the last load of the file succeeded.", labels=["file"])
        last = GaugeMetricFamily(f"{PREFIX}_config_last_success_timestamp_seconds",
                                 "Unix time of the last successful load.", labels=["file"])
        for name, (file_ok, last_success) in self.files.items():
            ok.add_metric([name], file_ok())
            last.add_metric([name], last_success())
        yield ok
        yield last
        yield GaugeMetricFamily(f"{PREFIX}_registry_entries",
                                "Approved hosts in the egress registry in force.",
                                value=self.registry_entries())
        info = GaugeMetricFamily(f"{PREFIX}_policy_info",
                                 "The policy in force, by digest (value is always 1).",
                                 labels=["digest"])
        if self.policy_digest is not None:
            info.add_metric([self.policy_digest()], 1.0)
        yield info
        if self.cert_seconds_left is not None:
            yield GaugeMetricFamily(f"{PREFIX}_certificate_expiry_seconds",
                                    "Seconds until the serving certificate expires.",
                                    value=self.cert_seconds_left())


class Metrics:
    def __init__(self) -> None:
        # The event metrics live on their own registry; in a worker their values go to the
        # shared files and a scrape reads those instead (``render``).
        self.registry = CollectorRegistry(auto_describe=True)
        self.state = StateCollector()
        self._multiprocess_dir = multiprocess_dir()
        # Label values come from a handful of kinds, operations and rule ids (the server maps
        # kinds it has no policy for to "other"), so this cache stays small.
        self._children: dict[Any, Any] = {}
        # (decision key, latency bucket) -> [count, sum of latencies], waiting to be folded.
        self._pending: dict[tuple[Any, ...], list[float]] = {}
        self._fold_timer: asyncio.TimerHandle | None = None
        self._audit_rules: set[str] = set()
        r = self.registry
        self.requests = Counter(
            f"{PREFIX}_admission_requests", "Admission reviews answered, by outcome.",
            ["stage", "kind", "operation", "decision", "dry_run"], registry=r)
        self.rule_hits = Counter(
            f"{PREFIX}_admission_rule_hits", "Rules broken by admitted or refused objects.",
            ["rule", "effect"], registry=r)
        self.mutations = Counter(
            f"{PREFIX}_admission_mutations", "Mutations made, by field.", ["field"], registry=r)
        self.fail_closed = Counter(
            f"{PREFIX}_admission_fail_closed", "Requests refused because the webhook could "
            "not decide (code 500).", ["kind"], registry=r)
        self.bad_requests = Counter(
            f"{PREFIX}_http_bad_requests", "HTTP requests rejected before admission.",
            ["reason"], registry=r)
        self.latency = Histogram(
            f"{PREFIX}_admission_duration_seconds", "Time from body read to response encoded.",
            ["stage", "kind"], buckets=LATENCY_BUCKETS, registry=r)
        self.connections_open = Gauge(
            f"{PREFIX}_connections_open", "TCP connections open (TLS handshake included).",
            registry=r, multiprocess_mode="livesum")
        self.connections_refused = Counter(
            f"{PREFIX}_connections_refused", "Connections closed at once because "
            "max_connections were open.", registry=r)
        self.worker_restarts = Counter(
            f"{PREFIX}_worker_restarts", "Workers started again after one died "
            "(serve --workers).", registry=r)
        self.audit_violations = Gauge(
            f"{PREFIX}_audit_violations", "Objects in the cluster the current policy would "
            "refuse, by rule (periodic audit).", ["rule"], registry=r,
            multiprocess_mode="livemax")
        # What a scrape reads: the event metrics (this process's, or every worker's files)
        # and the state, computed now.
        self._scrape = CollectorRegistry(auto_describe=False)
        if self._multiprocess_dir is not None:
            multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
                self._scrape, path=self._multiprocess_dir)
        else:
            self._scrape.register(_Forward(self.registry))
        self._scrape.register(self.state)

    def record_decision(self, *, stage: str, kind: str, operation: str, decision: str,
                        dry_run: bool, elapsed: float, rules: tuple[str, ...],
                        mutated: tuple[str, ...], failed: bool) -> None:
        """Count one decision: a dict update now, the Prometheus series at the next fold."""
        key = (stage, kind, operation, decision, dry_run, rules, mutated, failed,
               bisect_left(LATENCY_BUCKETS, elapsed))
        slot = self._pending.get(key)
        if slot is None:
            self._pending[key] = [1, elapsed]
            if self._fold_timer is None:
                self._schedule_fold()
        else:
            slot[0] += 1
            slot[1] += elapsed

    def _schedule_fold(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (offline use): fold at once
            self.fold()
            return
        self._fold_timer = loop.call_later(FOLD_DELAY, self.fold)

    def fold(self) -> None:
        """Add every pending decision to the Prometheus series (exactly what observing each
        one would have added: counts per series, latency per bucket and summed)."""
        if self._fold_timer is not None:
            self._fold_timer.cancel()
            self._fold_timer = None
        pending, self._pending = self._pending, {}
        for key, (count, total) in pending.items():
            stage, kind, operation, decision, dry_run, rules, mutated, failed, bucket = key
            self._child(self.requests, (stage, kind, operation, decision,
                                        "true" if dry_run else "false")).inc(count)
            latency = self._child(self.latency, (stage, kind))
            # Histogram.observe adds to the sum and to the first bucket whose bound is not
            # below the value; a batch does both at once (tests/test_metrics.py holds the
            # rendering equal to observe()'s).
            latency._sum.inc(total)
            latency._buckets[bucket].inc(count)
            effect = "refused" if decision == "denied" else "warned"
            for rule in rules:
                self._child(self.rule_hits, (rule, effect)).inc(count)
            for name in mutated:
                self._child(self.mutations, (name,)).inc(count)
            if failed:
                self._child(self.fail_closed, (kind,)).inc(count)

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def watch_file(self, name: str, *, ok: Callable[[], float],
                   last_success: Callable[[], float]) -> None:
        """Report a reloaded file's state at scrape time (1/0, and its last good load)."""
        self.state.files[name] = (ok, last_success)

    def watch_certificate(self, seconds_left: Callable[[], float]) -> None:
        self.state.cert_seconds_left = seconds_left

    def watch_registry_entries(self, entries: Callable[[], float]) -> None:
        self.state.registry_entries = entries

    def connection_event(self, event: str, open_now: int) -> None:
        self.connections_open.set(open_now)
        if event == "refused":
            self.connections_refused.inc()

    def set_policy(self, digest: str) -> None:
        self.state.policy_digest = lambda: digest

    def set_audit_counts(self, counts: Mapping[str, int]) -> None:
        # Rules no longer found drop to 0 rather than vanishing: a worker's multiprocess file
        # cannot forget a series, and 0 is what an alert should see anyway.
        for rule in self._audit_rules - counts.keys():
            self.audit_violations.labels(rule=rule).set(0)
        for rule, count in counts.items():
            self.audit_violations.labels(rule=rule).set(count)
        self._audit_rules |= counts.keys()

    def render(self) -> bytes:
        self.fold()
        return generate_latest(self._scrape)


class _Forward(Collector):
    """Every metric of another registry, so one scrape can combine it with the state."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        return self._registry.collect()
