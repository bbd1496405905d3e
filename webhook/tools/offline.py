"""The server's admission path, run offline on plain objects: the engine behind check and audit.

Owns which objects the webhook configurations would send to the webhook (agent namespaces
for pods, workloads, Services, endpoints, Istio and Gateway API objects: every kind with a
policy that is not listed below; Istio's root namespace too for Sidecars, EnvoyFilters,
ProxyConfigs and WasmPlugins; every non-system namespace for ServiceEntries and Skills),
the synthetic AdmissionReview built for each object, and the two stages a CREATE goes
through in a cluster: ``admit(stage=MUTATE)``, the JSON Patch applied, then
``admit(stage=VALIDATE)`` on the mutated object. ``final`` objects (already stored in a
cluster) go through the validating stage only.

Deliberately does not own reading files, talking to a cluster or printing: ``webhook.tools.check``,
``webhook.tools.audit`` and ``webhook.tools.report`` do. And it never decides anything itself: every
verdict comes from ``webhook.admission.seam.admit``, exactly as the server would get it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any, Protocol

import jsonpatch

from webhook.admission.seam import Outcome, Stage, admit, handler_for
from webhook.config.policy import Policy
from webhook.core.errors import BadReview
from webhook.core.labels import ENFORCE_LABEL
from webhook.core.review import Request, review_from_document
from webhook.core.rules import Mode
from webhook.policies.context import Context, SkillCatalog

SIDECAR_RULE = "pod.istio-sidecar"
NO_SKILLS_OFFLINE = "no Skill objects were given to check alongside the pod"
CHECK_USER = "agent-sandbox-webhook-check"
# Kinds without a namespace that manifests commonly carry next to agent objects: they are
# never checked, and naming them "default/x" in the report would be wrong.
CLUSTER_SCOPED_KINDS = frozenset({
    "Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition",
    "RuntimeClass", "PriorityClass", "StorageClass", "PersistentVolume", "IngressClass",
    "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "APIService", "Node",
})

# Mirrors manifests/base: egress objects are checked in every namespace but these; the
# registry ConfigMap only under its one name in the webhook's own namespace.
WEBHOOK_NAMESPACE = "agent-sandbox-system"
SYSTEM_NAMESPACES = frozenset({"kube-system", "kube-node-lease", WEBHOOK_NAMESPACE})
EVERY_NAMESPACE_KINDS = frozenset({("networking.istio.io", "ServiceEntry"),
                                   ("agentsandbox.io", "Skill")})
# Also sent from Istio's root namespace (by name), where they are judged as mesh-wide objects.
ROOT_NAMESPACE_KINDS = frozenset({("networking.istio.io", "Sidecar"),
                                  ("networking.istio.io", "EnvoyFilter"),
                                  ("networking.istio.io", "ProxyConfig"),
                                  ("extensions.istio.io", "WasmPlugin")})
REGISTRY_CONFIGMAP = ("", "ConfigMap")
# Kinds whose policy only looks at an UPDATE (old object against new): nothing to say offline.
UPDATE_ONLY_KINDS = frozenset({("", "Namespace")})
REGISTRY_CONFIGMAP_NAME = "egress-registry"


class Decision(StrEnum):
    ADMITTED = "admitted"
    REFUSED = "refused"
    ERROR = "error"  # the webhook could not decide: refused in a cluster too (fail closed)
    SKIPPED = "skipped"  # not sent to the webhook at all


class SkipReason(StrEnum):
    """Why an object was not sent to the webhook (the summary groups skipped objects by it)."""

    NO_POLICY = "kind without a policy"
    NOT_AGENT_NAMESPACE = "not in an agent namespace"
    SYSTEM_NAMESPACE = "in a system namespace"
    NOT_THE_REGISTRY = "a ConfigMap other than the registry"


class NamespaceMode(StrEnum):
    ENFORCE = "enforce"
    WARN = "warn"


def namespace_mode(labels: Mapping[str, Any] | None) -> NamespaceMode | None:
    """What an ``agentsandbox.io/enforce`` label value means; None for "not an agent ns"."""
    value = (labels or {}).get(ENFORCE_LABEL)
    if value == "true":
        return NamespaceMode.ENFORCE
    if value == "warn":
        return NamespaceMode.WARN
    return None


@dataclass(frozen=True, slots=True)
class Selection:
    """Which namespaces are agent namespaces, and in which mode."""

    enforce: frozenset[str] = frozenset()
    warn: frozenset[str] = frozenset()

    def mode(self, namespace: str) -> NamespaceMode | None:
        if namespace in self.enforce:
            return NamespaceMode.ENFORCE
        if namespace in self.warn:
            return NamespaceMode.WARN
        return None

    @classmethod
    def from_namespaces(cls, namespaces: Iterable[Mapping[str, Any]], *,
                        enforce: Iterable[str] = (), warn: Iterable[str] = ()) -> Selection:
        """From Namespace objects' labels plus explicit names (an explicit name wins)."""
        enforced, warned = set(enforce), set(warn)
        for namespace in namespaces:
            metadata = namespace.get("metadata") or {}
            name = metadata.get("name")
            mode = namespace_mode(metadata.get("labels"))
            if not isinstance(name, str) or name in enforced or name in warned:
                continue
            if mode is NamespaceMode.ENFORCE:
                enforced.add(name)
            elif mode is NamespaceMode.WARN:
                warned.add(name)
        return cls(enforce=frozenset(enforced), warn=frozenset(warned - enforced))


class ContextPair(Protocol):
    """The two contexts the server decides with (``webhook.admission.engine.Contexts`` fits)."""

    @property
    def enforce(self) -> Context: ...

    @property
    def warn(self) -> Context: ...


@dataclass(frozen=True, slots=True)
class Contexts:
    enforce: Context
    warn: Context

    @classmethod
    def build(cls, *, policy: Policy, registry: Any, registry_problem: str,
              skills: SkillCatalog | None = None) -> Contexts:
        enforce = Context(policy=policy, registry=registry, registry_problem=registry_problem,
                          skills=skills, skills_problem=NO_SKILLS_OFFLINE)
        return cls(enforce=enforce,
                   warn=Context(policy=policy.downgraded(), registry=registry,
                                registry_problem=registry_problem, exported=enforce,
                                skills=skills, skills_problem=NO_SKILLS_OFFLINE))

    @classmethod
    def with_skills(cls, pair: ContextPair, skills: SkillCatalog) -> Contexts:
        """``pair`` judging pods that name a Skill against ``skills`` (Skills seen offline)."""
        return cls(enforce=replace(pair.enforce, skills=skills),
                   warn=replace(pair.warn, skills=skills))


@dataclass(frozen=True, slots=True)
class ObjectResult:
    """What the webhook would say about one object, ready to be reported."""

    source: str
    api_version: str
    kind: str
    namespace: str
    name: str
    decision: Decision
    rules: tuple[str, ...] = ()
    refusals: tuple[str, ...] = ()  # "[rule] path: message", as the API server shows them
    warnings: tuple[str, ...] = ()  # as kubectl would print them
    notes: tuple[str, ...] = ()  # what this offline run assumed or why it skipped
    changes: tuple[str, ...] = ()  # fields the mutating stage changed
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    skipped_because: SkipReason | None = None

    @property
    def display_name(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


def decide_object(obj: dict[str, Any], *, source: str, default_namespace: str,
                  selection: Selection, contexts: ContextPair, final: bool = False,
                  assume_sidecar: bool = True) -> ObjectResult:
    """Run one object through the stages the server would, or say why it would not."""
    api_version = str(obj.get("apiVersion") or "")
    group, _, version = api_version.rpartition("/")
    kind = str(obj.get("kind") or "")
    raw_metadata = obj.get("metadata")
    metadata: dict[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    # Like the API server: no request name while only generateName is known.
    name = str(metadata.get("name") or "")
    namespace = ("" if kind in CLUSTER_SCOPED_KINDS
                 else str(metadata.get("namespace") or default_namespace))
    facts = ObjectResult(source=source, api_version=api_version, kind=kind,
                         name=name or str(metadata.get("generateName") or ""),
                         namespace=namespace, decision=Decision.SKIPPED, before=obj)
    probe = _request(obj, group=group, version=version, kind=kind, name=name,
                     namespace=namespace, uid="probe")
    mutating = handler_for(probe, Stage.MUTATE) is not None
    validating = handler_for(probe, Stage.VALIDATE) is not None
    if not (mutating or validating) or (group, kind) in UPDATE_ONLY_KINDS:
        return replace(facts, skipped_because=SkipReason.NO_POLICY,
                       notes=(f"agent-sandbox-webhook has no policy for {group or 'core'}/"
                              f"{kind}",))
    mode = selection.mode(namespace)
    if (group, kind) == REGISTRY_CONFIGMAP:
        if (namespace, name) != (WEBHOOK_NAMESPACE, REGISTRY_CONFIGMAP_NAME):
            return replace(facts, skipped_because=SkipReason.NOT_THE_REGISTRY,
                           notes=(f"only the ConfigMap {WEBHOOK_NAMESPACE}/"
                                  f"{REGISTRY_CONFIGMAP_NAME} is checked",))
        mode = NamespaceMode.ENFORCE
    elif (group, kind) in EVERY_NAMESPACE_KINDS:
        if namespace in SYSTEM_NAMESPACES:
            return replace(facts, skipped_because=SkipReason.SYSTEM_NAMESPACE,
                           notes=(f"namespace {namespace} is a system namespace",))
    elif ((group, kind) in ROOT_NAMESPACE_KINDS
          and namespace == contexts.enforce.policy.istio.root_namespace):
        mode = NamespaceMode.ENFORCE
    elif mode is None:
        return replace(facts, skipped_because=SkipReason.NOT_AGENT_NAMESPACE, notes=(
            f"namespace {namespace or '(none)'} is not an agent namespace (no "
            f"{ENFORCE_LABEL}=true|warn label in the input, no --agent-namespace)",))
    context = contexts.warn if mode is NamespaceMode.WARN else contexts.enforce
    notes = [f"namespace {namespace} is in warn mode: rules warn instead of refusing"] \
        if mode is NamespaceMode.WARN else []
    uid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"agent-sandbox-webhook-check:{source}"))
    try:
        return _run_stages(obj, facts=facts, notes=notes, context=context, uid=uid,
                           stages=(mutating and not final, validating),
                           assume_sidecar=assume_sidecar and not final,
                           coords=(group, version, kind, name, namespace))
    except BadReview as exc:
        return replace(facts, decision=Decision.ERROR,
                       refusals=(f"not a usable object: {exc}",))


def _run_stages(obj: dict[str, Any], *, facts: ObjectResult, notes: list[str],
                context: Context, uid: str, stages: tuple[bool, bool], assume_sidecar: bool,
                coords: tuple[str, str, str, str, str]) -> ObjectResult:
    group, version, kind, name, namespace = coords
    run_mutate, run_validate = stages
    warnings: list[str] = []
    rules: list[str] = []  # rules in warn mode that were hit, on an admitted object
    changes: tuple[str, ...] = ()
    current = obj
    if run_mutate or not run_validate:
        request = _request(current, group=group, version=version, kind=kind, name=name,
                           namespace=namespace, uid=uid)
        outcome = admit(request, stage=Stage.MUTATE, context=context)
        warnings.extend(_warnings(outcome))
        if not outcome.allowed:
            return _refused(outcome, facts=facts, warnings=warnings, notes=notes)
        rules.extend(outcome.rules)
        changes = outcome.mutated
        if outcome.patch and run_mutate:
            try:
                current = jsonpatch.apply_patch(obj, list(outcome.patch), in_place=False)
            except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
                return replace(facts, decision=Decision.ERROR, warnings=tuple(warnings),
                               refusals=(f"the webhook's patch does not apply: {exc}",))
    if run_validate:
        if kind == "Pod" and not group and assume_sidecar and _checks_sidecar(context.policy):
            context = _without_sidecar_rule(context)
            notes.append(f"{SIDECAR_RULE} not checked: no Istio injector runs offline, and the "
                         "validating webhook checks the final pod in the cluster "
                         "(--no-assume-sidecar checks it)")
        request = _request(current, group=group, version=version, kind=kind, name=name,
                           namespace=namespace, uid=uid)
        outcome = admit(request, stage=Stage.VALIDATE, context=context)
        warnings.extend(w for w in _warnings(outcome) if w not in warnings)
        if not outcome.allowed:
            return _refused(outcome, facts=facts, warnings=warnings, notes=notes)
        rules.extend(outcome.rules)
    return replace(facts, decision=Decision.ADMITTED, rules=tuple(dict.fromkeys(rules)),
                   warnings=tuple(warnings), notes=tuple(notes), changes=changes, after=current)


def _refused(outcome: Outcome, *, facts: ObjectResult, warnings: list[str],
             notes: list[str]) -> ObjectResult:
    status = outcome.review["response"].get("status") or {}
    message = str(status.get("message") or outcome.failure or "")
    if outcome.code == 500:
        return replace(facts, decision=Decision.ERROR, refusals=(message,),
                       warnings=tuple(warnings), notes=tuple(notes))
    # The first line is the "refused by ... (N rules):" header; the rest is one rule a line.
    lines = tuple(line for line in message.splitlines()[1:] if line.strip())
    return replace(facts, decision=Decision.REFUSED, rules=outcome.rules, refusals=lines,
                   warnings=tuple(warnings), notes=tuple(notes))


def _warnings(outcome: Outcome) -> list[str]:
    return [str(w) for w in outcome.review["response"].get("warnings", ())]


def _checks_sidecar(policy: Policy) -> bool:
    return policy.mode(SIDECAR_RULE) is not Mode.OFF and policy.istio.require_sidecar


def _without_sidecar_rule(context: Context) -> Context:
    # Rebuilt through validation rather than model_copy, so no cached digest carries over.
    data = context.policy.model_dump(mode="json", by_alias=True)
    data["rules"] = {**data.get("rules", {}), SIDECAR_RULE: Mode.OFF.value}
    return replace(context, policy=Policy.model_validate(data))


def _request(obj: dict[str, Any], *, group: str, version: str, kind: str, name: str,
             namespace: str, uid: str) -> Request:
    gvk = {"group": group, "version": version, "kind": kind}
    gvr = {"group": group, "version": version, "resource": plural(kind)}
    request: dict[str, Any] = {
        "uid": uid, "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "name": name, "namespace": namespace, "operation": "CREATE",
        "userInfo": {"username": CHECK_USER}, "object": obj, "oldObject": None,
        "dryRun": True,
    }
    return review_from_document({"kind": "AdmissionReview",
                                 "apiVersion": "admission.k8s.io/v1", "request": request})


def plural(kind: str) -> str:
    """The resource name Kubernetes derives from a kind (Policy -> policies)."""
    lower = kind.lower()
    if lower.endswith("y") and lower[-2:-1] not in ("a", "e", "i", "o", "u"):
        return lower[:-1] + "ies"
    if lower.endswith(("s", "x", "ch", "sh")):
        return lower + "es"
    return lower + "s"
