"""The controller's metrics, on a registry of its own (served on --metrics-port).

Owns the names and labels. Drift and errors are what an operator alerts on: a repaired
object means someone changed a rendered layer by hand; an error means a layer may be stale.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter("agent_sandbox_controller_reconciles", "Reconcile passes, "
                                  "by result (ok, error)", ["result"], registry=self.registry)
        self.applied = Counter("agent_sandbox_controller_applied", "Objects created or "
                               "repaired by server-side apply", ["kind", "reason"],
                               registry=self.registry)
        self.deleted = Counter("agent_sandbox_controller_deleted", "Owned objects deleted "
                               "because they are no longer rendered", ["kind"],
                               registry=self.registry)
        self.drift = Counter("agent_sandbox_controller_drift", "Owned objects found changed "
                             "from what is rendered (then repaired)", ["kind"],
                             registry=self.registry)
        self.errors = Counter("agent_sandbox_controller_errors", "Problems, by reason "
                              "(registry, policy, api, not-owned)", ["reason"],
                              registry=self.registry)
        self.objects = Gauge("agent_sandbox_controller_rendered_objects", "Objects the last "
                             "good pass rendered", registry=self.registry)
        self.leader = Gauge("agent_sandbox_controller_leader", "1 while this replica holds "
                            "the Lease", registry=self.registry)
        self.last_success = Gauge("agent_sandbox_controller_last_success_timestamp_seconds",
                                  "End of the last pass without errors", registry=self.registry)
