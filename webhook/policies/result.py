"""The values a policy returns: violations, mutations and warnings.

Owns the vocabulary shared by every policy and the admission seam. Policies build these;
``webhook.admission`` turns them into an AdmissionResponse. Nothing here knows HTTP or
Kubernetes clients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

PatchOp = dict[str, Any]


class Violation(NamedTuple):
    """A broken rule: ``path`` is the offending field, ``message`` says what and how to fix.

    NamedTuples (here and ``Mutation``): immutable records built with one C call, several
    per review on the hot path.
    """

    rule: str
    path: str
    message: str

    def render(self) -> str:
        return f"[{self.rule}] {self.path}: {self.message}"


class Mutation(NamedTuple):
    """A change the webhook makes, as JSON Patch operations against the raw request object.

    ``field`` names what changed for metrics (``runtimeClassName``, ``memory``, ``dnsConfig``,
    ``labels``, ``annotations``); ``note`` says it in kubectl's voice for the warning.
    """

    rule: str
    field: str
    ops: tuple[PatchOp, ...]
    note: str


@dataclass(frozen=True, slots=True)
class Verdict:
    """Everything a policy has to say about one object."""

    violations: tuple[Violation, ...] = ()
    mutations: tuple[Mutation, ...] = ()
    warnings: tuple[str, ...] = ()


def merged(first: Verdict, second: Verdict) -> Verdict:
    """Both verdicts' violations, mutations and warnings, in that order."""
    if not (second.violations or second.mutations or second.warnings):
        return first
    return Verdict(first.violations + second.violations, first.mutations + second.mutations,
                   first.warnings + second.warnings)


class VerdictBuilder:
    """Accumulates a Verdict while a policy walks an object.

    A plain slots class rather than a dataclass: one is built per review (and per pod
    template), and three ``default_factory`` calls cost more than the lists they make.
    """

    __slots__ = ("mutations", "violations", "warnings")

    def __init__(self, violations: list[Violation] | None = None,
                 mutations: list[Mutation] | None = None,
                 warnings: list[str] | None = None) -> None:
        self.violations = [] if violations is None else violations
        self.mutations = [] if mutations is None else mutations
        self.warnings = [] if warnings is None else warnings

    def violate(self, rule: str, path: str, message: str) -> None:
        self.violations.append(Violation(rule, path, message))

    def mutate(self, rule: str, field_name: str, ops: tuple[PatchOp, ...], note: str) -> None:
        self.mutations.append(Mutation(rule, field_name, ops, note))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def build(self) -> Verdict:
        return Verdict(tuple(self.violations), tuple(self.mutations), tuple(self.warnings))
