"""Prometheus metrics for the webhook, on a registry owned by one app (no module globals).

Owns metric names, labels and buckets, and the few helpers that record a decision. It does
not decide anything and does not serve HTTP: the server exposes ``render()`` at /metrics.
Every metric is listed in README.md ("Metrics").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Decisions take tens of microseconds in process; the buckets resolve that and still cover
# the API server's timeout (at most 30 s, 5 s in our configurations).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0)

PREFIX = "agent_sandbox"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # Label values come from a handful of kinds, operations and rule ids (the server maps
        # kinds it has no policy for to "other"), so this cache stays small.
        self._children: dict[Any, Any] = {}
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
        self.reload_ok = Gauge(
            f"{PREFIX}_config_last_reload_success", "1 if the last load of the file succeeded.",
            ["file"], registry=r)
        self.reload_time = Gauge(
            f"{PREFIX}_config_last_success_timestamp_seconds",
            "Unix time of the last successful load.", ["file"], registry=r)
        self.registry_entries = Gauge(
            f"{PREFIX}_registry_entries", "Approved hosts in the egress registry in force.",
            registry=r)
        self.policy_info = Gauge(
            f"{PREFIX}_policy_info", "The policy in force, by digest (value is always 1).",
            ["digest"], registry=r)
        self.cert_expiry = Gauge(
            f"{PREFIX}_certificate_expiry_seconds",
            "Seconds until the serving certificate expires.", registry=r)
        self.connections_open = Gauge(
            f"{PREFIX}_connections_open", "TCP connections open (TLS handshake included).",
            registry=r)
        self.connections_refused = Counter(
            f"{PREFIX}_connections_refused", "Connections closed at once because "
            "max_connections were open.", registry=r)
        self.audit_violations = Gauge(
            f"{PREFIX}_audit_violations", "Objects in the cluster the current policy would "
            "refuse, by rule (periodic audit).", ["rule"], registry=r)

    def record_decision(self, *, stage: str, kind: str, operation: str, decision: str,
                        dry_run: bool, elapsed: float, rules: tuple[str, ...],
                        mutated: tuple[str, ...], failed: bool) -> None:
        """Count one decision. Children are cached: ``labels()`` costs ~3.5 µs a call."""
        cache = self._children
        key = (stage, kind, operation, decision, dry_run)
        children = cache.get(key)
        if children is None:
            children = cache[key] = (
                self.requests.labels(stage=stage, kind=kind, operation=operation,
                                     decision=decision, dry_run="true" if dry_run else "false"),
                self.latency.labels(stage=stage, kind=kind))
        children[0].inc()
        children[1].observe(elapsed)
        effect = "refused" if decision == "denied" else "warned"
        for rule in rules:
            self._child(self.rule_hits, (rule, effect)).inc()
        for name in mutated:
            self._child(self.mutations, (name,)).inc()
        if failed:
            self._child(self.fail_closed, (kind,)).inc()

    def _child(self, metric: Any, values: tuple[str, ...]) -> Any:
        key = (id(metric), values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def watch_file(self, name: str, *, ok: Callable[[], float],
                   last_success: Callable[[], float]) -> None:
        """Report a reloaded file's state at scrape time (1/0, and its last good load)."""
        self.reload_ok.labels(file=name).set_function(ok)
        self.reload_time.labels(file=name).set_function(last_success)

    def watch_certificate(self, seconds_left: Callable[[], float]) -> None:
        self.cert_expiry.set_function(seconds_left)

    def connection_event(self, event: str, open_now: int) -> None:
        self.connections_open.set(open_now)
        if event == "refused":
            self.connections_refused.inc()

    def set_policy(self, digest: str) -> None:
        self.policy_info.clear()
        self.policy_info.labels(digest=digest).set(1)

    def set_audit_counts(self, counts: Mapping[str, int]) -> None:
        self.audit_violations.clear()
        for rule, count in counts.items():
            self.audit_violations.labels(rule=rule).set(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
