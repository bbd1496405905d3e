"""Properties of the memory mutation over generated pods: it applies, it satisfies the floors
exactly, it never lowers anything, and mutating its output changes nothing."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.istio_injection import inject
from tests.podkit import apply, patch_of
from webhook.config.policy import Policy
from webhook.config.quantity import parse_quantity
from webhook.policies.pods import mutate_pod_object, validate_pod_object

POLICY = Policy()
FLOOR = parse_quantity(POLICY.memory.pod_floor)

MEBI = 2**20


def _forms(mebibytes: int) -> st.SearchStrategy[str]:
    """The same amount written in several Kubernetes forms."""
    exact = mebibytes * MEBI
    forms = [f"{mebibytes}Mi", str(exact), f"{exact}e0", f"{exact * 1000}m"]
    if mebibytes % 1024 == 0:
        forms.append(f"{mebibytes // 1024}Gi")
    if exact % 1000 == 0:
        forms.append(f"{exact // 1000}k")
    return st.sampled_from(forms)


quantities = st.integers(min_value=0, max_value=5000).flatmap(_forms)
decimal_quantities = st.sampled_from(["1G", "500M", "1.5G", "2e9", "0.5Gi", "100m", "0"])


@st.composite
def containers(draw: st.DrawFn, index: int) -> dict[str, Any]:
    body: dict[str, Any] = {"name": f"c{index}", "image": "registry.example.com/a:1"}
    resources: dict[str, Any] = {}
    for section in ("requests", "limits"):
        if draw(st.booleans()):
            values = {"cpu": "100m"} if draw(st.booleans()) else {}
            if draw(st.booleans()):
                values["memory"] = draw(st.one_of(quantities, decimal_quantities))
            resources[section] = values
    if resources or draw(st.booleans()):
        body["resources"] = resources
    return body


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(min_value=1, max_value=4))
    metadata: dict[str, Any] = {"namespace": "agents"}
    if draw(st.booleans()):
        metadata["labels"] = draw(st.dictionaries(st.sampled_from(["app", "tier"]),
                                                  st.sampled_from(["a", "b"])))
    if draw(st.booleans()):
        annotations = {}
        if draw(st.booleans()):
            annotations["kubectl.kubernetes.io/default-container"] = f"c{draw(st.integers(0, 5))}"
        metadata["annotations"] = annotations
    return {"metadata": metadata,
            "spec": {"containers": [draw(containers(i)) for i in range(count)],
                     "securityContext": {"runAsUser": 10001, "runAsGroup": 10001}}}


def _memory(obj: dict[str, Any]) -> list[tuple[Fraction | None, Fraction | None]]:
    result = []
    for body in obj["spec"]["containers"]:
        resources = body.get("resources") or {}
        values = []
        for section in ("requests", "limits"):
            text = (resources.get(section) or {}).get("memory")
            values.append(None if text is None else parse_quantity(text))
        result.append((values[0], values[1]))
    return result


@settings(max_examples=300, deadline=None)
@given(pods())
def test_the_memory_patch_applies_and_satisfies_the_floors_exactly(pod: dict[str, Any]) -> None:
    verdict = mutate_pod_object(pod, namespace="agents", policy=POLICY)
    assert verdict.violations == ()
    result = apply(verdict, pod)
    before, after = _memory(pod), _memory(result)
    for (old_request, old_limit), (request, limit) in zip(before, after, strict=True):
        assert request is not None
        assert limit is not None
        assert request <= limit
        assert old_request is None or request >= old_request
        assert old_limit is None or limit >= old_limit
    assert sum(r for r, _ in after if r is not None) >= FLOOR
    assert sum(lim for _, lim in after if lim is not None) >= FLOOR
    again = mutate_pod_object(result, namespace="agents", policy=POLICY)
    assert patch_of(again) == []
    assert validate_pod_object(inject(result), policy=POLICY, final=True).violations == ()


@settings(max_examples=100, deadline=None)
@given(pods())
def test_the_patch_is_deterministic(pod: dict[str, Any]) -> None:
    first = patch_of(mutate_pod_object(pod, namespace="agents", policy=POLICY))
    assert first == patch_of(mutate_pod_object(pod, namespace="agents", policy=POLICY))
