"""The run-time identity guarantee: unset fields are filled, explicit escapes are refused.

Tables per container kind and per field, explicit-unsafe vs unset, through the mutating
stage and then (after the Istio double injected its sidecar in every mode) the validating one.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import pytest
import yaml

from tests.guarantee import escapes
from tests.istio_injection import MODES, inject
from tests.podkit import (
    HARDENED,
    apply,
    container,
    identity,
    mutated,
    patch_of,
    pod,
    policy,
    review,
    rules_of,
)
from webhook.admission.seam import Stage, admit
from webhook.config.policy import Policy, parse_policy
from webhook.core.errors import ConfigError
from webhook.core.review import review_from_document
from webhook.policies.context import Context
from webhook.policies.pods import check_pod_template, mutate_pod_object, validate_pod_object
from webhook.policies.pods.mutate import mutate_ephemeral
from webhook.policies.pods.validate import check_new_ephemeral

DEFAULT = Policy()
NON_ROOT, GROUP = "pod.run-as-non-root", "pod.run-as-group"
ESCALATION, DROP = "pod.no-privilege-escalation", "pod.drop-capabilities"
IDENTITY_RULES = (NON_ROOT, GROUP, ESCALATION, DROP)
FILL_OFF = policy(identity={"fillUnset": False})

# Where the container under test sits: (spec key, extra fields, display path).
KINDS = {
    "container": ("containers", {}, "spec.containers[tool]"),
    "init container": ("initContainers", {}, "spec.initContainers[tool]"),
    "native sidecar": ("initContainers", {"restartPolicy": "Always"},
                       "spec.initContainers[tool]"),
}

# field -> (an explicit value against the guarantee, the rule that refuses it)
EXPLICIT = {
    "runAsUser": (0, NON_ROOT),
    "runAsNonRoot": (False, NON_ROOT),
    "allowPrivilegeEscalation": (True, ESCALATION),
    "runAsGroup": (1337, "pod.proxy-identity"),
    "capabilities": ({"drop": "ALL"}, DROP),
}
# field -> the rule that fills it when unset (runAsNonRoot alone is no gap: an explicit UID is)
UNSET = {"runAsUser": NON_ROOT, "runAsGroup": GROUP, "allowPrivilegeEscalation": ESCALATION,
         "capabilities": DROP}


def plain_pod(tool: dict[str, Any], kind: str) -> dict[str, Any]:
    """A pod with nothing set but its containers: an agent, and ``tool`` of ``kind``."""
    key, extra, _ = KINDS[kind]
    body = {**tool, **extra}
    agent = container(request="2Gi", limit="2Gi")
    if key == "containers":
        return pod(agent, body, securityContext=None)
    return pod(agent, securityContext=None, initContainers=[body])


def tool_with(field: str, value: Any) -> dict[str, Any]:
    security = {"runAsUser": 20002, "runAsGroup": 20002, **copy.deepcopy(HARDENED)}
    if value is None:
        del security[field]
    else:
        security[field] = value
    return container("tool", securityContext=security)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("field", sorted(UNSET))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_unset_field_is_filled_and_the_final_pod_cannot_become_the_proxy(
        kind: str, field: str, mode: str) -> None:
    obj = plain_pod(tool_with(field, None), kind)
    verdict = mutate_pod_object(obj, namespace="agents", policy=DEFAULT)
    assert verdict.violations == ()
    assert UNSET[field] in {m.rule for m in verdict.mutations}
    final = inject(apply(verdict, obj), mode=mode)
    assert rules_of(validate_pod_object(final, policy=DEFAULT, final=True)) == []
    assert escapes(final) == {}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("field", sorted(EXPLICIT))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_an_explicit_unsafe_field_is_refused_before_and_after_injection(
        kind: str, field: str, mode: str) -> None:
    value, rule = EXPLICIT[field]
    obj = plain_pod(tool_with(field, value), kind)
    where = f"{KINDS[kind][2]}.securityContext.{field}"
    assert (rule, where) in rules_of(mutate_pod_object(obj, namespace="agents",
                                                       policy=DEFAULT))
    # Had the mutating webhook been skipped, the validating one still refuses the final pod.
    final = inject(_labelled(obj), mode=mode)
    assert (rule, where) in rules_of(validate_pod_object(final, policy=DEFAULT, final=True))


def _labelled(obj: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    result["metadata"]["labels"] = {"sidecar.istio.io/inject": "true"}
    return result


@pytest.mark.parametrize("field", sorted(UNSET))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_with_filling_off_an_unset_field_is_refused_with_the_fix(kind: str, field: str) -> None:
    verdict = mutate_pod_object(plain_pod(tool_with(field, None), kind), namespace="agents",
                                policy=FILL_OFF)
    key = "capabilities.drop" if field == "capabilities" else field
    found = [v for v in verdict.violations if v.path == f"{KINDS[kind][2]}.securityContext.{key}"]
    assert [v.rule for v in found] == [UNSET[field]]
    assert "; set " in found[0].message
    assert not [m for m in verdict.mutations if m.field == "securityContext"]


@pytest.mark.parametrize(("level", "field", "value"), [
    ("pod", "runAsUser", 0), ("pod", "runAsNonRoot", False),
    ("pod", "runAsUser", "10001"), ("pod", "runAsGroup", "10001"),
    ("agent", "runAsUser", "10001"),
])
def test_explicit_root_or_a_non_number_is_refused_at_its_level(level: str, field: str,
                                                               value: Any) -> None:
    obj = pod(container(request="2Gi", limit="2Gi"), securityContext=None)
    owner = obj["spec"] if level == "pod" else obj["spec"]["containers"][0]
    owner["securityContext"] = {field: value}
    verdict = mutate_pod_object(obj, namespace="agents", policy=DEFAULT)
    where = ("spec" if level == "pod" else "spec.containers[agent]") + \
        f".securityContext.{field}"
    assert [path for _, path in rules_of(verdict)] == [where]


def test_the_demo_pod_is_admitted_with_one_warning_per_change() -> None:
    demo = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "currency-agent", "namespace": "agents"},
            "spec": {"runtimeClassName": "kata", "containers": [{
                "name": "agent", "image": "registry.example.com/agents/currency:1.0",
                "resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "2Gi"}}}]}}
    verdict = mutate_pod_object(demo, namespace="agents", policy=DEFAULT)
    assert verdict.violations == ()
    identity_notes = [m.note for m in verdict.mutations if m.field == "securityContext"]
    assert identity_notes == [
        "set securityContext.runAsUser=10001", "set securityContext.runAsGroup=10001",
        "set securityContext.runAsNonRoot=true",
        "set containers[agent].securityContext.allowPrivilegeEscalation=false",
        "set containers[agent].securityContext.capabilities.drop=[ALL]"]
    for mode in MODES:
        final = inject(apply(verdict, demo), mode=mode)
        assert rules_of(validate_pod_object(final, policy=DEFAULT, final=True)) == []
        assert escapes(final) == {}


def replicaset_pod() -> dict[str, Any]:
    """A pod as the ReplicaSet controller creates it from a template with nothing set."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "generateName": "agent-6d4cf56db6-", "namespace": "agents",
        "labels": {"app": "agent", "pod-template-hash": "6d4cf56db6"},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": "agent-6d4cf56db6", "uid": "0b9f7c1e-0000-4000-8000-1",
                             "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"containers": [{"name": "agent", "image": "registry.example.com/agent:1",
                                 "imagePullPolicy": "IfNotPresent"}],
                 "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                 "serviceAccountName": "default", "securityContext": {}}}


def _as_review(obj: dict[str, Any], *, name: str = "pod-create.json") -> dict[str, Any]:
    document = review(name)
    document["request"]["object"] = obj
    document["request"].pop("name", None)
    return document


@pytest.mark.parametrize("mode", MODES)
def test_a_replicaset_made_pod_with_nothing_set_is_admitted_and_safe(mode: str) -> None:
    obj = replicaset_pod()
    context = Context(policy=DEFAULT)
    outcome = admit(review_from_document(_as_review(obj)), stage=Stage.MUTATE, context=context)
    assert outcome.allowed, outcome.review["response"].get("status")
    final = inject(jsonpatch.apply_patch(obj, list(outcome.patch)), mode=mode)
    validated = admit(review_from_document(_as_review(final)), stage=Stage.VALIDATE,
                      context=context)
    assert validated.allowed, validated.review["response"].get("status")
    assert escapes(final) == {}
    assert final["spec"]["securityContext"] == {"runAsUser": 10001, "runAsGroup": 10001,
                                                "runAsNonRoot": True}


def test_what_the_pod_or_platform_set_is_never_overwritten() -> None:
    # As OpenShift's restricted-v2 SCC leaves a pod: a UID on every container, no GID.
    scc = {"runAsUser": 1000650000, "runAsNonRoot": True, "allowPrivilegeEscalation": False,
           "capabilities": {"drop": ["ALL"]}}
    obj = pod(container(request="2Gi", limit="2Gi", securityContext=copy.deepcopy(scc)),
              securityContext={"fsGroup": 1000650000, "seLinuxOptions": {"level": "s0:c26,c5"}})
    result = mutated(obj)
    assert result["spec"]["containers"][0]["securityContext"] == scc
    assert result["spec"]["securityContext"] == {
        "fsGroup": 1000650000, "seLinuxOptions": {"level": "s0:c26,c5"},
        "runAsGroup": 10001, "runAsNonRoot": True}


def test_a_drop_list_without_all_gets_all_appended() -> None:
    obj = pod(container(request="2Gi", limit="2Gi", securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["NET_RAW"]}}))
    verdict = mutate_pod_object(obj, namespace="agents", policy=DEFAULT)
    (note,) = [m.note for m in verdict.mutations if m.rule == DROP]
    assert note == "add ALL to containers[agent].securityContext.capabilities.drop (was NET_RAW)"
    assert apply(verdict, obj)["spec"]["containers"][0]["securityContext"]["capabilities"] == {
        "drop": ["NET_RAW", "ALL"]}


# drop list -> whether it already keeps the container from changing its UID/GID. The
# runtimes read bare names: containerd prefixes every name but ALL with CAP_, so CAP_ALL and
# CAP_SETUID drop nothing there.
DROP_LISTS: dict[str, tuple[list[str], bool]] = {
    "ALL": (["ALL"], True),
    "all in lower case": (["all"], True),
    "bare SETUID and SETGID": (["SETUID", "setgid"], True),
    "CAP_ALL": (["CAP_ALL"], False),
    "CAP_SETUID and CAP_SETGID": (["CAP_SETUID", "CAP_SETGID"], False),
    "CAP_SETUID and bare SETGID": (["CAP_SETUID", "SETGID"], False),
}


@pytest.mark.parametrize("name", sorted(DROP_LISTS))
def test_only_bare_capability_names_satisfy_the_drop_guarantee(name: str) -> None:
    drop, enough = DROP_LISTS[name]
    obj = pod(container(request="2Gi", limit="2Gi", securityContext={
        "allowPrivilegeEscalation": False, "capabilities": {"drop": list(drop)}}))
    verdict = mutate_pod_object(obj, namespace="agents", policy=DEFAULT)
    filled = [m for m in verdict.mutations if m.rule == DROP]
    assert (not filled) is enough
    result = apply(verdict, obj)["spec"]["containers"][0]["securityContext"]["capabilities"]
    assert result == {"drop": drop if enough else [*drop, "ALL"]}
    # With the fill off, the validating stage refuses what the runtime would not drop.
    off = validate_pod_object(obj, policy=DEFAULT, final=True, namespace="agents")
    assert any(v.rule == DROP for v in off.violations) is not enough


@pytest.mark.parametrize("rule", IDENTITY_RULES)
def test_warn_mode_says_what_it_would_set_and_patches_nothing(rule: str) -> None:
    obj = plain_pod(container("tool"), "container")
    verdict = mutate_pod_object(obj, namespace="agents", policy=policy(rules={rule: "warn"}))
    assert not [m for m in verdict.mutations if m.rule == rule]
    assert any(w.startswith(f"[{rule}] would set ") for w in verdict.warnings)


@pytest.mark.parametrize("rule", IDENTITY_RULES)
def test_a_rule_that_is_off_neither_fills_nor_refuses(rule: str) -> None:
    off = policy(rules={rule: "off"})
    obj = plain_pod(container("tool"), "container")
    verdict = mutate_pod_object(obj, namespace="agents", policy=off)
    assert not [m for m in verdict.mutations if m.rule == rule]
    final = inject(apply(verdict, obj))
    assert rule not in {r for r, _ in rules_of(validate_pod_object(final, policy=off,
                                                                   final=True))}
    # ...while with it on, the same unfilled final pod is refused under that rule.
    assert rule in {r for r, _ in rules_of(validate_pod_object(final, policy=DEFAULT,
                                                               final=True))}


def test_warn_mode_admits_an_explicit_root_with_a_warning() -> None:
    document = review("pod-create.json")
    document["request"]["object"]["spec"]["securityContext"]["runAsUser"] = 0
    request = review_from_document(document)
    context = Context(policy=DEFAULT)
    assert NON_ROOT in admit(request, stage=Stage.MUTATE, context=context).rules
    outcome = admit(request, stage=Stage.MUTATE,
                    context=Context(policy=policy(rules={NON_ROOT: "warn"})))
    assert outcome.allowed
    assert any(w.startswith(f"[{NON_ROOT}] spec.securityContext.runAsUser") for w in
               outcome.warnings)


def test_the_mutation_is_idempotent_and_applies_to_the_raw_object() -> None:
    obj = plain_pod(container("tool", securityContext={"capabilities": None}), "native sidecar")
    once = mutated(obj)
    again = mutate_pod_object(once, namespace="agents", policy=DEFAULT)
    assert patch_of(again) == []
    assert again.warnings == ()


def test_istios_own_containers_keep_their_identity() -> None:
    final = inject(mutated(pod(securityContext=None)), mode="classic")
    init = final["spec"]["initContainers"][0]
    assert init["securityContext"]["runAsUser"] == 0  # istio-init runs as root, by design
    assert rules_of(validate_pod_object(final, policy=DEFAULT, final=True)) == []


def test_a_windows_pod_is_out_of_scope() -> None:
    obj = pod(container(request="2Gi", limit="2Gi"), securityContext=None,
              os={"name": "windows"})
    verdict = mutate_pod_object(obj, namespace="agents", policy=FILL_OFF)
    assert not set(IDENTITY_RULES) & {v.rule for v in verdict.violations}
    assert not [m for m in mutate_pod_object(obj, namespace="agents", policy=DEFAULT).mutations
                if m.field == "securityContext"]


def test_a_template_is_told_what_pod_creation_will_set() -> None:
    template = review("deployment-create.json")["request"]["object"]["spec"]["template"]
    del template["spec"]["securityContext"]["runAsUser"]
    verdict = check_pod_template(template, namespace="agents", policy=DEFAULT,
                                 path="spec.template")
    assert verdict.violations == ()
    assert ("[pod.run-as-non-root] spec.template: will set securityContext.runAsUser=10001 at "
            "pod creation") in verdict.warnings


# --- kubectl debug: pods/ephemeralcontainers -------------------------------------------------

def _debugged(pod_level: dict[str, Any] | None, security: dict[str, Any] | None
              ) -> tuple[dict[str, Any], dict[str, Any]]:
    old = inject(mutated(pod()))
    old["spec"]["securityContext"] = pod_level
    new = copy.deepcopy(old)
    debugger: dict[str, Any] = {"name": "debugger", "image": "registry.example.com/debug:1"}
    if security is not None:
        debugger["securityContext"] = security
    new["spec"]["ephemeralContainers"] = [debugger]
    return new, old


RESTRICTED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False,
              "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


# What kubectl debug's --profile gives an ephemeral container (kubectl's profiles.go).
@pytest.mark.parametrize(("profile", "security"), [
    ("restricted", RESTRICTED), ("legacy", None), ("baseline", None)])
@pytest.mark.parametrize("pod_level", [identity(runAsNonRoot=True), None])
def test_a_debug_container_is_hardened_and_then_validates(
        profile: str, security: dict[str, Any] | None, pod_level: dict[str, Any] | None) -> None:
    new, old = _debugged(pod_level, copy.deepcopy(security))
    verdict = mutate_ephemeral(new, old, policy=DEFAULT)
    assert verdict.violations == ()
    assert all(op["path"].startswith("/spec/ephemeralContainers/0/") for op in
               patch_of(verdict)), "only the new container may change through the subresource"
    result = apply(verdict, new)
    assert check_new_ephemeral(result, old, policy=DEFAULT).violations == ()
    assert "ephemeralContainers[debugger]" not in escapes(result)
    if pod_level is None:
        assert result["spec"]["ephemeralContainers"][0]["securityContext"]["runAsUser"] == 10001


@pytest.mark.parametrize(("security", "rule"), [
    ({"runAsUser": 0}, NON_ROOT), ({"runAsNonRoot": False}, NON_ROOT),
    ({"allowPrivilegeEscalation": True}, ESCALATION), ({"runAsGroup": 1337}, "pod.proxy-identity"),
    ({"privileged": True}, "pod.privileged"),  # --profile=sysadmin
    ({"capabilities": {"add": ["NET_ADMIN", "NET_RAW"]}}, "pod.capabilities"),  # netadmin
    ({"capabilities": {"add": ["SYS_PTRACE"]}}, "pod.capabilities"),  # general
])
def test_a_debug_container_that_asks_for_an_escape_is_refused(security: dict[str, Any],
                                                              rule: str) -> None:
    new, old = _debugged(identity(), security)
    assert rule in {v.rule for v in mutate_ephemeral(new, old, policy=DEFAULT).violations}
    assert rule in {v.rule for v in check_new_ephemeral(new, old, policy=DEFAULT).violations}


def test_an_unhardened_debug_container_is_refused_if_the_mutation_was_skipped() -> None:
    new, old = _debugged(None, None)
    rules = {v.rule for v in check_new_ephemeral(new, old, policy=DEFAULT).violations}
    assert rules == set(IDENTITY_RULES)


def test_the_recorded_restricted_debug_container_needs_no_change() -> None:
    document = review("pod-ephemeralcontainers.json")
    context = Context(policy=DEFAULT)
    request = review_from_document(document)
    assert admit(request, stage=Stage.MUTATE, context=context).patch == ()
    assert admit(request, stage=Stage.VALIDATE, context=context).allowed


def test_the_recorded_debug_container_without_pod_level_ids_gets_them_on_itself() -> None:
    document = review("pod-ephemeralcontainers.json")
    pod_security = document["request"]["object"]["spec"]["securityContext"]
    del pod_security["runAsUser"], pod_security["runAsGroup"]
    outcome = admit(review_from_document(document), stage=Stage.MUTATE,
                    context=Context(policy=DEFAULT))
    assert outcome.allowed
    assert [op["path"] for op in outcome.patch] == [
        "/spec/ephemeralContainers/0/securityContext/runAsUser",
        "/spec/ephemeralContainers/0/securityContext/runAsGroup"]


# --- the policy's identity section --------------------------------------------------------------

@pytest.mark.parametrize(("section", "fragment"), [
    ({"identity": {"runAsUser": 0}}, "greater than or equal to 1"),
    ({"identity": {"runAsUser": 1337}}, "is the Istio proxy's UID"),
    ({"identity": {"runAsGroup": 4242}, "istio": {"proxyGID": 4242}}, "is the Istio proxy's GID"),
    ({"rules": {"pod.explicit-identity": "warn"}}, "was replaced by pod.run-as-non-root"),
])
def test_a_default_identity_that_would_escape_is_refused_at_load(section: dict[str, Any],
                                                                 fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        parse_policy(yaml.safe_dump(section), source="policy.yaml")


def test_the_default_identity_is_configurable() -> None:
    chosen = policy(identity={"runAsUser": 2000, "runAsGroup": 3000})
    result = mutated(pod(securityContext=None), policy_=chosen)
    assert result["spec"]["securityContext"] == {"runAsUser": 2000, "runAsGroup": 3000,
                                                 "runAsNonRoot": True}
