"""The run-time identity guarantee as a property over generated pods.

mutate -> apply the patch -> Istio-style injection (every mode) -> validate: either a stage
refuses the pod, or no non-Istio container of the final pod can gain the proxy's UID or GID
at run time (``tests.guarantee``, which restates the definition without the webhook's code).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.guarantee import escapes
from tests.istio_injection import MODES, inject
from tests.podkit import apply
from webhook.config.policy import Policy
from webhook.policies.pods import mutate_pod_object, validate_pod_object

POLICIES = {"default": Policy(), "fill off": Policy.model_validate(
    {"identity": {"fillUnset": False}}), "other default": Policy.model_validate(
    {"identity": {"runAsUser": 4000, "runAsGroup": 4000}})}

maybe = st.none().__or__
uids = maybe(st.sampled_from([0, 1, 1337, 10001, 65532]))
capabilities = maybe(st.sampled_from([
    {}, {"drop": ["ALL"]}, {"drop": ["NET_RAW"]}, {"drop": ["SETUID", "SETGID"]},
    {"drop": ["SETUID"]}, {"add": ["SETUID"]}, {"add": ["NET_ADMIN"], "drop": ["ALL"]},
    {"drop": []}]))


@st.composite
def security_contexts(draw: st.DrawFn, *, pod_level: bool) -> dict[str, Any] | None:
    if draw(st.integers(0, 4)) == 0:
        return None
    fields: dict[str, Any] = {"runAsUser": draw(uids), "runAsGroup": draw(uids),
                              "runAsNonRoot": draw(maybe(st.booleans()))}
    if pod_level:
        fields["fsGroup"] = draw(maybe(st.sampled_from([1337, 2000])))
        fields["supplementalGroups"] = draw(maybe(st.sampled_from([[1337], [2000]])))
    else:
        fields["allowPrivilegeEscalation"] = draw(maybe(st.booleans()))
        fields["privileged"] = draw(maybe(st.booleans()))
        fields["capabilities"] = draw(capabilities)
    return {key: value for key, value in fields.items() if value is not None}


@st.composite
def bodies(draw: st.DrawFn, name: str, *, native: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "image": "registry.example.com/a:1"}
    security = draw(security_contexts(pod_level=False))
    if security is not None:
        body["securityContext"] = security
    if native:
        body["restartPolicy"] = "Always"
    return body


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [draw(bodies(f"app{i}")) for i in
                                           range(draw(st.integers(1, 3)))]}
    inits = [draw(bodies(f"init{i}", native=draw(st.booleans())))
             for i in range(draw(st.integers(0, 2)))]
    if inits:
        spec["initContainers"] = inits
    security = draw(security_contexts(pod_level=True))
    if security is not None:
        spec["securityContext"] = security
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "agents"}, "spec": spec}


@settings(max_examples=400, deadline=None)
@given(pods(), st.sampled_from(sorted(POLICIES)), st.sampled_from(MODES))
def test_a_pod_is_refused_or_cannot_become_the_proxy(pod: dict[str, Any], which: str,
                                                     mode: str) -> None:
    policy = POLICIES[which]
    verdict = mutate_pod_object(pod, namespace="agents", policy=policy)
    if verdict.violations:
        return  # refused at the mutating stage
    final = inject(apply(verdict, pod), mode=mode)
    if validate_pod_object(final, policy=policy, final=True).violations:
        return  # refused at the validating stage
    assert escapes(final) == {}


UNSAFE = {"runAsNonRoot": False, "allowPrivilegeEscalation": True, "privileged": True}


@settings(max_examples=200, deadline=None)
@given(pods())
def test_filling_never_refuses_what_only_leaves_fields_unset(pod: dict[str, Any]) -> None:
    # Keep only what is safe or unset: such a pod must be admitted on the defaults.
    for body in [*pod["spec"]["containers"], *pod["spec"].get("initContainers", [])]:
        security = body.get("securityContext") or {}
        for key in ("runAsUser", "runAsGroup"):
            if security.get(key) in (0, 1337):
                del security[key]
        for key, unsafe in UNSAFE.items():
            if security.get(key) is unsafe:
                del security[key]
        security.pop("capabilities", None)
    pod["spec"].pop("securityContext", None)
    verdict = mutate_pod_object(pod, namespace="agents", policy=POLICIES["default"])
    assert verdict.violations == ()
    final = inject(apply(verdict, pod))
    assert validate_pod_object(final, policy=POLICIES["default"], final=True).violations == ()
    assert escapes(final) == {}
