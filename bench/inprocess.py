"""The in-process cost of one review: parse + decide + patch + encode, with no network.

Times exactly what the transport does between reading the body and writing the response:
``parse_review(body)``, ``admit(...)`` (the policy, the patch and the response dict) and
``orjson.dumps`` of the review, in a loop of ``number`` reviews, ``repeat`` times. Reports the
minimum (the cost on a quiet core) and the median (what a noisy machine gives) per review.
"""

from __future__ import annotations

import statistics
import timeit
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.cases import Case
from webhook.admission.engine import Engine
from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy
from webhook.core.review import parse_review
from webhook.egress.registry import load_registry
from webhook.policies.context import Context


@dataclass(frozen=True, slots=True)
class Cost:
    case: str
    min_us: float
    median_us: float


def context_for(registry: Path) -> Context:
    """The enforcing context the server builds at start-up for this registry."""
    return Engine(policy=load_policy(None), registry=load_registry(registry)).contexts.enforce


def review_once(case: Case, context: Context) -> bytes:
    request = parse_review(case.body)
    outcome = admit(request, stage=Stage(case.stage), context=context)
    if outcome.allowed is not case.allowed:
        raise AssertionError(f"{case.name}: expected allowed={case.allowed}, got "
                             f"{outcome.review['response']}")
    return orjson.dumps(outcome.review)


def measure(case: Case, context: Context, *, budget: float) -> Cost:
    """Time one case for about ``budget`` seconds in total."""
    review_once(case, context)
    stage = Stage(case.stage)
    body = case.body

    def one() -> None:
        orjson.dumps(admit(parse_review(body), stage=stage, context=context).review)

    timer = timeit.Timer(one)
    number, took = timer.autorange()
    repeat = max(3, min(25, int(budget / max(took, 1e-9))))
    runs = [t / number * 1e6 for t in timer.repeat(repeat=repeat, number=number)]
    return Cost(case=case.name, min_us=min(runs), median_us=statistics.median(runs))


def measure_all(cases: list[Case], registry: Path, *, budget: float) -> list[Cost]:
    context = context_for(registry)
    return [measure(case, context, budget=budget) for case in cases]
