"""The decision state in force: policy and registry, swapped whole by background reloads.

Owns the two ``Context`` values the seam is called with (one for enforced namespaces, one
for namespaces in warn-only rollout) and their replacement when a file reloads. Requests read
``engine.contexts`` once, so a reload never mixes two policies within one decision. It does no
I/O: the reload tasks in ``webhook.server.app`` feed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from webhook.config.policy import Policy
from webhook.egress.registry import Registry
from webhook.policies.context import NO_REGISTRY, Context


@dataclass(frozen=True, slots=True)
class Contexts:
    enforce: Context
    warn: Context


class Engine:
    def __init__(self, *, policy: Policy, registry: Registry | None = None,
                 registry_problem: str = NO_REGISTRY) -> None:
        self._policy = policy
        self._registry = registry
        self._registry_problem = registry_problem
        self.contexts = self._build()

    @property
    def policy(self) -> Policy:
        return self._policy

    @property
    def registry(self) -> Registry | None:
        return self._registry

    def set_policy(self, policy: Policy) -> None:
        self._policy = policy
        self.contexts = self._build()

    def set_registry(self, registry: Registry | None) -> None:
        self._registry = registry
        self.contexts = self._build()

    def _build(self) -> Contexts:
        problem = self._registry_problem
        enforce = Context(policy=self._policy, registry=self._registry, registry_problem=problem)
        return Contexts(
            enforce=enforce,
            warn=Context(policy=self._policy.downgraded(), registry=self._registry,
                         registry_problem=problem, exported=enforce),
        )
