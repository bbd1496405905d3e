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
from webhook.policies.context import NO_REGISTRY, NO_SKILLS, Context, SkillCatalog


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
        self._skills: SkillCatalog | None = None
        self._skills_problem = NO_SKILLS
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

    def set_skills(self, skills: SkillCatalog | None, problem: str = NO_SKILLS) -> None:
        """The Skill cache's current view (None: not synced, ``problem`` says why)."""
        self._skills = skills
        self._skills_problem = problem or NO_SKILLS
        self.contexts = self._build()

    def _build(self) -> Contexts:
        problem = self._registry_problem
        skills, skills_problem = self._skills, self._skills_problem
        enforce = Context(policy=self._policy, registry=self._registry, registry_problem=problem,
                          skills=skills, skills_problem=skills_problem)
        return Contexts(
            enforce=enforce,
            warn=Context(policy=self._policy.downgraded(), registry=self._registry,
                         registry_problem=problem, exported=enforce, skills=skills,
                         skills_problem=skills_problem),
        )
