"""Hypothesis strategies for the fuzz tests: captured AdmissionReviews, mutated at random.

A mutation picks any node of the review (envelope, request facts or object) and replaces it
with a value of another type, deletes it, adds an unknown key beside it, or nests it deep.
Values are biased towards the ones policies compare against (1337, NET_ADMIN, kata, *).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from tests.conftest import REVIEWS, load_review

settings.register_profile("ci", max_examples=150, deadline=None)
settings.register_profile("long", max_examples=20000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

FIXTURES = sorted(p.name for p in REVIEWS.glob("*.json"))
DOMAIN_TEXT = ["", "*", "kata", "runc", "1337", "NET_ADMIN", "ALL", "true", "false", "None",
               "CREATE", "UPDATE", "DELETE", "CONNECT", "Pod", "ServiceEntry", "Skill", "v1",
               "istio-proxy", "istio-init", "localhost", "169.254.169.254", "1Gi", "10Mi",
               "-1", "1e309", "\u0000", "\ud7ff", "é" * 3, "a" * 300, "*.svc.cluster.local"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64),
    st.floats(allow_nan=False), st.sampled_from(DOMAIN_TEXT), st.text(max_size=20))
json_values = st.recursive(
    scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                     st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found.extend(paths(value, (*prefix, key)))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found.extend(paths(value, (*prefix, index)))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    for step in path[:-1]:
        document = document[step]
    return document


def nested(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for index in range(depth):
        value = [value] if index % 2 else {"a": value}
    return value


@st.composite
def mutated_reviews(draw: st.DrawFn, names: list[str] | None = None) -> dict[str, Any]:
    review = copy.deepcopy(load_review(draw(st.sampled_from(names or FIXTURES))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        candidates = paths(review)[1:]
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent = _parent(review, path)
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "deep"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=12))] = draw(json_values)
        elif action == "deep":
            parent[path[-1]] = nested(draw(st.integers(min_value=50, max_value=400)))
    return review


operations = st.sampled_from(["CREATE", "UPDATE", "DELETE", "CONNECT"])
