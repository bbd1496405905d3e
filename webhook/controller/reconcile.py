"""One reconcile pass: read the inputs, render, and make the cluster hold exactly that.

Owns the order of a pass and its failure behaviour. Inputs: the registry ConfigMap (through the
API, so an edit is seen at once), the policy file, the namespaces labelled
``agentsandbox.io/enforce=true`` (``warn`` namespaces are in a rollout that changes nothing, so
they get no layers), and the Skills (for their Sidecars). A registry or policy that is missing
or does not load stops the pass before anything is changed: the layers in place stay as they
are, and the problem is counted and recorded as an Event. Per object, an API error is counted
and the pass goes on with the others. Every change is recorded as an Event on the object.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from webhook.cluster.kube import KubeError
from webhook.cluster.owned import ClusterObjects, ObjectKey
from webhook.config.policy import Policy
from webhook.controller.metrics import ControllerMetrics
from webhook.controller.plan import Plan, plan
from webhook.core.errors import ConfigError
from webhook.core.labels import ENFORCE_LABEL
from webhook.egress.registry import parse_registry
from webhook.egress.render import render_layers

logger = logging.getLogger(__name__)

COMPONENT = "agent-sandbox-controller"
REGISTRY_KEY = "registry.yaml"


@dataclass(frozen=True, slots=True)
class Settings:
    namespace: str  # the webhook's namespace: registry ConfigMap, allowlist, Lease
    registry_configmap: str = "egress-registry"


@dataclass(frozen=True, slots=True)
class PassResult:
    ok: bool
    plan: Plan | None = None
    problems: tuple[str, ...] = ()


class Reconciler:
    def __init__(self, cluster: ClusterObjects, *, settings: Settings,
                 load_policy: Callable[[], Policy], metrics: ControllerMetrics) -> None:
        self._cluster = cluster
        self._settings = settings
        self._load_policy = load_policy
        self._metrics = metrics

    def reconcile(self) -> PassResult:
        try:
            result = self._pass()
        except KubeError as exc:
            result = self._failed("api", str(exc), None)
        self._metrics.reconciles.labels(result="ok" if result.ok else "error").inc()
        if result.ok:
            self._metrics.last_success.set(time.time())
        return result

    def _pass(self) -> PassResult:
        settings = self._settings
        registry_key = ObjectKey("v1", "ConfigMap", settings.namespace,
                                 settings.registry_configmap)
        text = self._cluster.read_configmap_key(namespace=settings.namespace,
                                                name=settings.registry_configmap,
                                                key=REGISTRY_KEY)
        if text is None:
            return self._failed("registry", f"{registry_key} or its key {REGISTRY_KEY} is "
                                "missing; nothing was changed", registry_key)
        try:
            registry = parse_registry(text, source=str(registry_key))
        except ConfigError as exc:
            return self._failed("registry", f"{exc}; nothing was changed", registry_key)
        try:
            policy = self._load_policy()
        except ConfigError as exc:
            return self._failed("policy", f"{exc}; nothing was changed", None)
        namespaces = self._cluster.namespaces_labelled(ENFORCE_LABEL, "true")
        desired = render_layers(registry, policy, namespaces,
                                webhook_namespace=settings.namespace,
                                skills=self._cluster.list_skills())
        live = {ObjectKey.of(obj): self._cluster.get(ObjectKey.of(obj)) for obj in desired}
        steps = plan(desired, live, self._cluster.list_owned())
        self._metrics.objects.set(len(desired))
        problems = list(steps.problems)
        for key, problem in zip(steps.foreign, steps.problems, strict=True):
            self._metrics.errors.labels(reason="not-owned").inc()
            self._event(key, "NotOwned", problem, warning=True)
        for obj in steps.create:
            problems += self._apply(obj, reason="created")
        for obj in steps.repair:
            self._metrics.drift.labels(kind=obj["kind"]).inc()
            problems += self._apply(obj, reason="repaired")
        for key in steps.delete:
            try:
                self._cluster.delete(key)
            except KubeError as exc:
                problems.append(self._api_error(exc))
                continue
            self._metrics.deleted.labels(kind=key.kind).inc()
            self._event(key, "Deleted", "no longer rendered from the egress registry",
                        warning=False)
        logger.info("reconciled %d namespaces: %d created, %d repaired, %d deleted, "
                    "%d problems", len(namespaces), len(steps.create), len(steps.repair),
                    len(steps.delete), len(problems))
        return PassResult(ok=not problems, plan=steps, problems=tuple(problems))

    def _apply(self, obj: dict[str, Any], *, reason: str) -> list[str]:
        key = ObjectKey.of(obj)
        try:
            self._cluster.apply(obj)
        except KubeError as exc:
            return [self._api_error(exc)]
        self._metrics.applied.labels(kind=key.kind, reason=reason).inc()
        if reason == "repaired":
            self._event(key, "DriftRepaired", "changed from what the egress registry renders; "
                        "the rendered fields were applied again", warning=True)
        else:
            self._event(key, "Created", "rendered from the egress registry", warning=False)
        return []

    def _api_error(self, exc: KubeError) -> str:
        self._metrics.errors.labels(reason="api").inc()
        logger.warning("%s", exc)
        return str(exc)

    def _failed(self, reason: str, message: str, key: ObjectKey | None) -> PassResult:
        self._metrics.errors.labels(reason=reason).inc()
        logger.error("reconcile stopped: %s", message)
        if key is not None:
            self._event(key, "InvalidInput", message, warning=True)
        return PassResult(ok=False, problems=(message,))

    def _event(self, key: ObjectKey, reason: str, message: str, *, warning: bool) -> None:
        try:
            self._cluster.record_event(key, reason=reason, message=message, warning=warning,
                                       component=COMPONENT)
        except KubeError as exc:  # an Event is a report; failing to write one changes nothing
            logger.warning("could not record an Event: %s", exc)
