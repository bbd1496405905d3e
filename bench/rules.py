"""What each pod rule costs in process: the review with every rule on, less the review with
that one rule off.

Owns one table of ``python -m bench.run``: for one case (the captured pod by default), the
in-process ``admit`` of the default policy, the same with every pod rule off (what the seam,
the walks and the response cost on their own), and for each pod rule the time saved by
turning only it off. A rule that changes the pod is charged with its share of the response
too (its patch operations and its warning). Differences of about 1 µs are noise.
"""

from __future__ import annotations

import timeit
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from bench.cases import Case
from webhook.admission.engine import Engine
from webhook.admission.seam import Stage, admit
from webhook.config.policy import parse_policy
from webhook.core.review import parse_review
from webhook.core.rules import POD_RULES
from webhook.egress.registry import load_registry


@dataclass(frozen=True, slots=True)
class RuleCost:
    rule: str  # a rule id, or "(every rule)" / "(no pod rule)"
    us: float  # the review's cost (the two totals) or what turning the rule off saves


EVERY = "(every rule)"
NONE = "(no pod rule)"


def measure(case: Case, registry: Path, *, budget: float) -> list[RuleCost]:
    """The totals, then each rule's share, most expensive first.

    Each share is timed against its own fresh measurement of every rule on, the two
    interleaved and the fastest of ``rounds`` runs of each kept, so that a slow patch of the
    machine hits both sides; ``budget`` (seconds per timing) sets the rounds.
    """
    base = yaml.safe_load(resources.files("webhook").joinpath("defaults/policy.yaml")
                          .read_text())
    request = parse_review(case.body)
    stage = Stage(case.stage)
    loaded = load_registry(registry)
    rounds = 1 if budget < 0.1 else 3

    def timer(rules: dict[str, str]) -> timeit.Timer:
        document = dict(base)
        document["rules"] = rules
        context = Engine(policy=parse_policy(yaml.safe_dump(document), source="bench"),
                         registry=loaded).contexts.enforce
        admit(request, stage=stage, context=context)
        return timeit.Timer(lambda: admit(request, stage=stage, context=context))

    every = timer({})
    number, took = every.autorange()
    number = max(50, int(number * budget / max(took, 1e-9)))

    def pair(other: timeit.Timer) -> tuple[float, float]:
        every.timeit(1)  # both compiled policies back in their table before timing
        other.timeit(1)
        on, off = [], []
        for _ in range(rounds):
            on.append(every.timeit(number))
            off.append(other.timeit(number))
        return min(on) / number * 1e6, min(off) / number * 1e6

    total, none = pair(timer({r.id: "off" for r in POD_RULES}))
    shares = []
    for rule in POD_RULES:
        on, off = pair(timer({rule.id: "off"}))
        shares.append(RuleCost(rule.id, on - off))
    shares.sort(key=lambda share: share.us, reverse=True)
    return [RuleCost(EVERY, total), RuleCost(NONE, none), *shares]
