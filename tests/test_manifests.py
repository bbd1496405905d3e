"""The rendered install: schema-valid objects and the webhook configurations' safety properties.

Renders ``manifests/`` and its overlays (cert-manager, OpenShift) with ``kubectl kustomize`` and
validates every object offline with ``kubernetes_validate``, against a recent Kubernetes and
against 1.27 (OpenShift 4.14), the oldest supported; kinds without a built-in schema (the CRD's
instances, cert-manager's) are checked structurally. Skipped only if kubectl is missing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from webhook.admission.seam import Stage, admit
from webhook.config.policy import load_policy
from webhook.core.labels import REGISTRY_LABEL
from webhook.core.review import review_from_document
from webhook.egress.registry import load_registry
from webhook.policies.context import Context

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.34.0"  # recent; pods/resize is served from 1.33
OLDEST = "1.27.0"  # OpenShift 4.14; no matchConditions (1.28+) anywhere
SYSTEM_NAMESPACES = {"kube-system", "kube-node-lease", "agent-sandbox-system"}
REGISTRY_ENTRY = "validate.registry.agentsandbox.io"
OVERLAYS = ["manifests", "manifests/overlays/cert-manager", "manifests/overlays/openshift"]


def _render(directory: str) -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: cannot render the kustomization")
    out = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / directory)],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return _render("manifests")


def _one(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    assert len(found) == 1, f"exactly one {kind} {name or ''}"
    return found[0]


def _webhooks(objects: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objects:
        if obj["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            for webhook in obj["webhooks"]:
                yield obj["kind"], webhook


@pytest.mark.parametrize("version", [K8S_VERSION, OLDEST])
@pytest.mark.parametrize("directory", OVERLAYS)
def test_every_object_passes_schema_validation(directory: str, version: str) -> None:
    objects = _render(directory)
    without_schema = set()
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            # Custom kinds: at least the envelope every object needs.
            without_schema.add(obj["kind"])
            assert obj["apiVersion"].count("/") == 1, obj["kind"]
            assert obj["metadata"]["name"]
            assert "spec" in obj
    # Every built-in kind was really validated; only cert-manager's kinds have no schema here.
    assert without_schema <= {"Certificate", "Issuer"}


def test_validation_would_catch_a_broken_object(base: list[dict[str, Any]]) -> None:
    broken = dict(_one(base, "Service"))
    broken["spec"] = {**broken["spec"], "ports": [{"port": "four-four-three"}]}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def _keys(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _keys(item)


@pytest.mark.parametrize("directory", OVERLAYS)
def test_no_install_relies_on_match_conditions(directory: str) -> None:
    # 1.27's schema still lists the alpha field, so validation cannot catch it: an API server
    # without the feature gate drops it silently, and the registry guard would then select
    # every ConfigMap in the webhook's namespace.
    assert "matchConditions" not in {key for obj in _render(directory) for key in _keys(obj)}


def test_install_contains_what_an_admin_needs(base: list[dict[str, Any]]) -> None:
    kinds = {(o["kind"], o["metadata"]["name"]) for o in base}
    assert {
        ("Namespace", "agent-sandbox-system"),
        ("Namespace", "agents"),
        ("ServiceAccount", "agent-sandbox-webhook"),
        ("Service", "agent-sandbox-webhook"),
        ("Deployment", "agent-sandbox-webhook"),
        ("PodDisruptionBudget", "agent-sandbox-webhook"),
        ("ConfigMap", "agent-sandbox-policy"),
        ("ConfigMap", "egress-registry"),
        ("CustomResourceDefinition", "skills.agentsandbox.io"),
        ("RuntimeClass", "kata"),
        ("ClusterRole", "agent-sandbox-auditor"),
        ("MutatingWebhookConfiguration", "agent-sandbox-webhook"),
        ("ValidatingWebhookConfiguration", "agent-sandbox-webhook"),
    } <= kinds
    agents = _one(base, "Namespace", "agents")
    assert agents["metadata"]["labels"]["agentsandbox.io/enforce"] == "true"
    kata = _one(base, "RuntimeClass", "kata")
    assert kata["handler"] == "kata"
    assert kata["overhead"]["podFixed"] == {"memory": "160Mi", "cpu": "250m"}
    assert "policy.yaml" in _one(base, "ConfigMap", "agent-sandbox-policy")["data"]
    registry = yaml.safe_load(_one(base, "ConfigMap", "egress-registry")["data"]["registry.yaml"])
    assert registry["entries"] == []


@pytest.mark.parametrize("directory", OVERLAYS)
def test_every_webhook_fails_closed_without_side_effects(directory: str) -> None:
    webhooks = list(_webhooks(_render(directory)))
    assert len(webhooks) >= 13
    for kind, webhook in webhooks:
        name = webhook["name"]
        assert name.endswith(".agentsandbox.io"), name
        assert name.count(".") >= 2, name
        assert webhook["failurePolicy"] == "Fail", name
        assert webhook["sideEffects"] == "None", name
        assert webhook["timeoutSeconds"] <= 5, name
        assert webhook["matchPolicy"] == "Equivalent", name
        assert webhook["admissionReviewVersions"] == ["v1"], name
        assert webhook["clientConfig"]["service"]["name"] == "agent-sandbox-webhook"
        if kind == "MutatingWebhookConfiguration":
            assert webhook["reinvocationPolicy"] in ("Never", "IfNeeded"), name
    names = [w["name"] for _, w in webhooks]
    assert len(names) == len(set(names)), "entry names are unique"


def _resources(webhook: dict[str, Any]) -> set[str]:
    return {resource for rule in webhook["rules"] for resource in rule["resources"]}


def test_pod_entries_are_never_reinvoked_because_istio_always_changes_the_pod(
    base: list[dict[str, Any]],
) -> None:
    """Reinvocation would send the injected pod through the before-injection checks.

    The mutate stage refuses Istio's status annotation, volumes and containers (a user must not
    pre-set them); Istio's injector always adds them, so an IfNeeded pod entry would refuse
    every agent pod. The validating configuration checks the final pod instead.
    """
    pod_entries = [w for _, w in _webhooks([_one(base, "MutatingWebhookConfiguration")])
                   if _resources(w) & {"pods", "pods/ephemeralcontainers"}]
    assert {w["name"] for w in pod_entries} == {
        "mutate.pods.agentsandbox.io", "mutate.pods-warn.agentsandbox.io"}
    for webhook in pod_entries:
        assert webhook["reinvocationPolicy"] == "Never", webhook["name"]
    validating = [w for _, w in _webhooks([_one(base, "ValidatingWebhookConfiguration")])
                  if "pods" in _resources(w)]
    assert validating, "the final pod is checked by the validating configuration"


def test_the_injected_pod_would_be_refused_by_the_mutate_stage(
    base: list[dict[str, Any]],
) -> None:
    """Why the entries above say Never: the captured injected pod, sent to /mutate, is refused."""
    document = json.loads(
        (ROOT / "tests/fixtures/reviews/final-pod-after-injection.json").read_text("utf-8"))
    context = Context(policy=load_policy(None),
                      registry=load_registry(ROOT / "examples/registry.yaml"))
    outcome = admit(review_from_document(document), stage=Stage.MUTATE, context=context)
    assert not outcome.allowed
    message = outcome.review["response"]["status"]["message"]
    assert "[pod.istio-proxy-override]" in message
    assert "[pod.istio-volumes]" in message


def test_mutating_configuration_runs_before_istio_injection(base: list[dict[str, Any]]) -> None:
    name = _one(base, "MutatingWebhookConfiguration")["metadata"]["name"]
    for istio in ("istio-sidecar-injector", "istio-revision-tag-default"):
        assert name < istio, f"{name} must sort before {istio}"


def _selected_namespaces(webhook: dict[str, Any]) -> tuple[set[str] | None, set[str]]:
    """(only these names, or None for "not restricted by name"; names excluded)."""
    only: set[str] | None = None
    excluded: set[str] = set()
    selector = webhook.get("namespaceSelector") or {}
    labels = selector.get("matchLabels") or {}
    if "kubernetes.io/metadata.name" in labels:
        only = {labels["kubernetes.io/metadata.name"]}
    for expr in selector.get("matchExpressions") or []:
        if expr["key"] != "kubernetes.io/metadata.name":
            continue
        if expr["operator"] == "In":
            only = set(expr["values"])
        elif expr["operator"] == "NotIn":
            excluded |= set(expr["values"])
    return only, excluded


def test_no_entry_reaches_system_namespaces_except_the_registry_guard(
    base: list[dict[str, Any]],
) -> None:
    for _, webhook in _webhooks(base):
        only, excluded = _selected_namespaces(webhook)
        if webhook["name"] == REGISTRY_ENTRY:
            assert only == {"agent-sandbox-system"}
            assert [r["resources"] for r in webhook["rules"]] == [["configmaps"]]
            assert webhook["objectSelector"] == {"matchLabels": {REGISTRY_LABEL: "true"}}
            registry = _one(base, "ConfigMap", "egress-registry")
            assert registry["metadata"]["labels"][REGISTRY_LABEL] == "true"
            others = [o for o in base if o["kind"] == "ConfigMap" and o is not registry]
            assert others, "the policy ConfigMap shares the namespace"
            for other in others:
                assert REGISTRY_LABEL not in other["metadata"].get("labels", {})
            continue
        if only is not None:
            assert not only & SYSTEM_NAMESPACES, webhook["name"]
        else:
            assert excluded >= SYSTEM_NAMESPACES, webhook["name"]


def test_no_entry_matches_leases_or_secrets_or_wildcards(base: list[dict[str, Any]]) -> None:
    for _, webhook in _webhooks(base):
        for rule in webhook["rules"]:
            for resource in rule["resources"]:
                assert resource.split("/")[0] not in {"leases", "secrets", "*"}, webhook["name"]
            assert "*" not in rule["apiGroups"], webhook["name"]
            assert "DELETE" not in rule["operations"]
            assert "*" not in rule["operations"]


def _enforce_values(webhook: dict[str, Any]) -> tuple[str, set[str]]:
    for expr in webhook["namespaceSelector"].get("matchExpressions") or []:
        if expr["key"] == "agentsandbox.io/enforce":
            return expr["operator"], set(expr["values"])
    raise AssertionError(f"{webhook['name']} has no agentsandbox.io/enforce selector")


def test_pod_entries_select_enforced_namespaces_and_warn_twins_use_warn_paths(
    base: list[dict[str, Any]],
) -> None:
    pod_entries = [w for _, w in _webhooks(base) if ".pods" in w["name"]]
    assert {w["name"] for w in pod_entries} == {
        "mutate.pods.agentsandbox.io",
        "mutate.pods-warn.agentsandbox.io",
        "validate.pods.agentsandbox.io",
        "validate.pods-warn.agentsandbox.io",
    }
    for webhook in pod_entries:
        operator, values = _enforce_values(webhook)
        path = webhook["clientConfig"]["service"]["path"]
        assert operator == "In"
        if webhook["name"].split(".")[1].endswith("-warn"):
            assert (values, path.endswith("/warn")) == ({"warn"}, True)
        else:
            assert (values, path) == ({"true"}, "/" + webhook["name"].split(".")[0])
    validate = next(w for w in pod_entries if w["name"] == "validate.pods.agentsandbox.io")
    matched = {
        (r, tuple(rule["operations"])) for rule in validate["rules"] for r in rule["resources"]
    }
    assert matched == {
        ("pods", ("CREATE", "UPDATE")),
        ("pods/ephemeralcontainers", ("UPDATE",)),
        ("pods/resize", ("UPDATE",)),
        ("pods/status", ("UPDATE",)),
        ("pods/exec", ("CONNECT",)),
        ("pods/attach", ("CONNECT",)),
        ("pods/binding", ("CREATE",)),
    }
    # kubectl debug's containers are hardened by the mutating webhook, in both modes.
    for name in ("mutate.pods.agentsandbox.io", "mutate.pods-warn.agentsandbox.io"):
        mutate = next(w for w in pod_entries if w["name"] == name)
        assert {(r, tuple(rule["operations"])) for rule in mutate["rules"]
                for r in rule["resources"]} == {("pods", ("CREATE",)),
                                                ("pods/ephemeralcontainers", ("UPDATE",))}
    warn = next(w for w in pod_entries if w["name"] == "validate.pods-warn.agentsandbox.io")
    assert matched == {
        (r, tuple(rule["operations"])) for rule in warn["rules"] for r in rule["resources"]
    }


def test_every_namespace_with_either_label_value_gets_exactly_one_path(
    base: list[dict[str, Any]],
) -> None:
    stages = [("serviceentries", "validate"), ("skills", "validate"),
              ("serviceentries", "mutate")]
    for resource, stage in stages:
        entries = [w for _, w in _webhooks(base)
                   if f".{resource}" in w["name"] and w["name"].startswith(stage)]
        assert len(entries) == 2
        for label in ("true", "warn", "other"):
            hits = []
            for webhook in entries:
                operator, values = _enforce_values(webhook)
                if (operator == "In") == (label in values):
                    hits.append(webhook["clientConfig"]["service"]["path"])
            assert hits == ([f"/{stage}/warn"] if label == "warn" else [f"/{stage}"]), resource


def test_serviceentries_are_mutated_wherever_they_are_validated(
        base: list[dict[str, Any]]) -> None:
    by_name = {w["name"]: w for _, w in _webhooks(base)}
    for suffix in ("", "-warn"):
        mutate = by_name[f"mutate.serviceentries{suffix}.agentsandbox.io"]
        validate = by_name[f"validate.serviceentries{suffix}.agentsandbox.io"]
        assert mutate["namespaceSelector"] == validate["namespaceSelector"]
        assert mutate["rules"] == validate["rules"]


def test_the_namespace_guard_sees_every_label_update_and_installs_on_kubernetes_1_27(
        base: list[dict[str, Any]]) -> None:
    by_name = {w["name"]: w for _, w in _webhooks(base)}
    guard = by_name["validate.namespaces.agentsandbox.io"]
    (rule,) = guard["rules"]
    # status and finalize keep the old spec or status, not the old labels.
    assert (set(rule["resources"]), rule["operations"], rule["scope"]) == (
        {"namespaces", "namespaces/status", "namespaces/finalize"}, ["UPDATE"], "Cluster")
    # For a Namespace the selector is matched against the NEW object: a selector on the
    # enforce label would miss exactly the update that removes it.
    keys = {e["key"] for e in guard["namespaceSelector"]["matchExpressions"]}
    assert keys == {"kubernetes.io/metadata.name"}
    assert "matchConditions" not in guard  # not served before Kubernetes 1.28


def test_serviceentries_match_all_three_versions(base: list[dict[str, Any]]) -> None:
    entries = [w for _, w in _webhooks(base) if ".serviceentries" in w["name"]]
    for webhook in entries:
        (rule,) = webhook["rules"]
        assert rule["apiGroups"] == ["networking.istio.io"]
        assert set(rule["apiVersions"]) == {"v1", "v1beta1", "v1alpha3"}
        assert set(rule["operations"]) == {"CREATE", "UPDATE"}


ISTIO_OBJECTS = {"envoyfilters": {"v1alpha3"}, "workloadentries": {"v1", "v1beta1", "v1alpha3"},
                 "virtualservices": {"v1", "v1beta1", "v1alpha3"}}


@pytest.mark.parametrize("resource", sorted(ISTIO_OBJECTS))
def test_istio_objects_are_scoped_like_sidecars(base: list[dict[str, Any]],
                                                resource: str) -> None:
    entries = {w["name"]: w for _, w in _webhooks(base) if f".{resource}" in w["name"]}
    assert set(entries) == {f"validate.{resource}.agentsandbox.io",
                            f"validate.{resource}-warn.agentsandbox.io"}
    sidecars = {w["name"].replace("sidecars", resource): w for _, w in _webhooks(base)
                if ".sidecars" in w["name"]}
    for name, webhook in entries.items():
        (rule,) = webhook["rules"]
        assert rule["apiGroups"] == ["networking.istio.io"]
        assert set(rule["apiVersions"]) == ISTIO_OBJECTS[resource]
        assert (rule["resources"], rule["operations"]) == ([resource], ["CREATE", "UPDATE"])
        twin = sidecars[name]
        for key in ("namespaceSelector", "clientConfig", "failurePolicy", "matchPolicy",
                    "sideEffects", "timeoutSeconds"):
            assert webhook[key] == twin[key], (name, key)
    auditor = _one(base, "ClusterRole", "agent-sandbox-auditor")
    assert any(resource in r["resources"] and "list" in r["verbs"] for r in auditor["rules"])


def test_network_policies_are_judged_in_agent_namespaces_like_sidecars(
        base: list[dict[str, Any]]) -> None:
    entries = {w["name"]: w for _, w in _webhooks(base) if ".networkpolicies" in w["name"]}
    assert set(entries) == {"validate.networkpolicies.agentsandbox.io",
                            "validate.networkpolicies-warn.agentsandbox.io"}
    sidecars = {w["name"].replace("sidecars", "networkpolicies"): w for _, w in _webhooks(base)
                if ".sidecars" in w["name"]}
    for name, webhook in entries.items():
        (rule,) = webhook["rules"]
        assert (rule["apiGroups"], rule["apiVersions"]) == (["networking.k8s.io"], ["v1"])
        assert (rule["resources"], rule["operations"]) == (["networkpolicies"],
                                                           ["CREATE", "UPDATE"])
        for key in ("namespaceSelector", "clientConfig"):
            assert webhook[key] == sidecars[name][key], (name, key)


def test_deployment_is_highly_available_and_locked_down(base: list[dict[str, Any]]) -> None:
    deployment = _one(base, "Deployment", "agent-sandbox-webhook")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert pod["topologySpreadConstraints"]
    pdb = _one(base, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= (
        spec["template"]["metadata"]["labels"].items()
    )
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "add" not in security["capabilities"]
    assert container["resources"]["requests"]["memory"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS"
    # Server defaults: 5s shutdown delay + up to 10s drain must fit in the grace period.
    assert pod["terminationGracePeriodSeconds"] > 5 + 10
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/tmp", "/run/agent-sandbox/certs"} <= mounts
    assert "--cert-mode=secret" in container["args"]
    service = _one(base, "Service")
    assert service["spec"]["ports"][0]["port"] == 443
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]


def test_rbac_is_scoped_by_resource_name(base: list[dict[str, Any]]) -> None:
    role = _one(base, "Role", "agent-sandbox-webhook-certificates")
    for rule in role["rules"]:
        assert rule["resources"] == ["secrets"]
        if rule["verbs"] != ["create"]:
            assert rule["resourceNames"] == ["agent-sandbox-webhook-tls"]
    cabundle = _one(base, "ClusterRole", "agent-sandbox-webhook-cabundle")
    (rule,) = cabundle["rules"]
    assert rule["resourceNames"] == ["agent-sandbox-webhook"]
    assert set(rule["verbs"]) == {"get", "patch"}
    auditor = _one(base, "ClusterRole", "agent-sandbox-auditor")
    assert {v for r in auditor["rules"] for v in r["verbs"]} == {"get", "list", "watch"}


def test_cert_manager_overlay_injects_ca_and_serves_files() -> None:
    objects = _render("manifests/overlays/cert-manager")
    for kind in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
        annotations = _one(objects, kind)["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == (
            "agent-sandbox-system/agent-sandbox-webhook"
        )
    certificate = _one(objects, "Certificate", "agent-sandbox-webhook")
    assert "agent-sandbox-webhook.agent-sandbox-system.svc" in certificate["spec"]["dnsNames"]
    pod = _one(objects, "Deployment", "agent-sandbox-webhook")["spec"]["template"]["spec"]
    assert "--cert-mode=files" in pod["containers"][0]["args"]
    certs = next(v for v in pod["volumes"] if v["name"] == "certs")
    assert certs["secret"]["secretName"] == certificate["spec"]["secretName"]
    assert "emptyDir" not in certs
    assert not [o for o in objects if o["kind"] == "Role"
                and any("secrets" in rule["resources"] for rule in o["rules"])], \
        "no Secret rights needed"


# Services, endpoints, Istio and Gateway API kinds that open egress around the registry.
AGENT_KINDS = {
    "services": {"": {"services", "endpoints"}, "discovery.k8s.io": {"endpointslices"}},
    "wasmplugins": {"extensions.istio.io": {"wasmplugins"}},
    "proxyconfigs": {"networking.istio.io": {"proxyconfigs"}},
    "requestauthentications": {"security.istio.io": {"requestauthentications"}},
    "routes": {"gateway.networking.k8s.io": {"httproutes", "grpcroutes", "tcproutes",
                                             "tlsroutes"}},
}


def _matched(webhook: dict[str, Any]) -> dict[str, set[str]]:
    matched: dict[str, set[str]] = {}
    for rule in webhook["rules"]:
        # Every served version, present and future: '*' (matchPolicy Equivalent as well).
        assert rule["apiVersions"] == ["*"], webhook["name"]
        assert rule["operations"] == ["CREATE", "UPDATE"], webhook["name"]
        (group,) = rule["apiGroups"]
        matched.setdefault(group, set()).update(rule["resources"])
    return matched


@pytest.mark.parametrize("entry", sorted(AGENT_KINDS))
def test_egress_kinds_are_selected_in_agent_namespaces_only_in_every_version(
        base: list[dict[str, Any]], entry: str) -> None:
    webhooks = {w["name"]: w for _, w in _webhooks(base)}
    sidecars = webhooks["validate.sidecars.agentsandbox.io"]
    sidecars_warn = webhooks["validate.sidecars-warn.agentsandbox.io"]
    for name, twin in ((f"validate.{entry}.agentsandbox.io", sidecars),
                       (f"validate.{entry}-warn.agentsandbox.io", sidecars_warn)):
        webhook = webhooks[name]
        assert _matched(webhook) == AGENT_KINDS[entry], name
        assert "matchConditions" not in webhook, "Kubernetes 1.27 must install it"
        for key in ("namespaceSelector", "clientConfig", "failurePolicy", "matchPolicy",
                    "sideEffects", "timeoutSeconds"):
            assert webhook[key] == twin[key], (name, key)
    auditor = _one(base, "ClusterRole", "agent-sandbox-auditor")
    for group, resources in AGENT_KINDS[entry].items():
        granted = {r for rule in auditor["rules"] if group in rule["apiGroups"]
                   for r in rule["resources"]}
        assert resources <= granted, (group, resources)


def test_the_root_namespace_is_selected_by_name_for_the_mesh_wide_kinds(
        base: list[dict[str, Any]]) -> None:
    (webhook,) = [w for _, w in _webhooks(base)
                  if w["name"] == "validate.root-namespace.agentsandbox.io"]
    only, _ = _selected_namespaces(webhook)
    assert only == {load_policy(None).istio.root_namespace} == {"istio-system"}
    assert webhook["clientConfig"]["service"]["path"] == "/validate"
    assert "matchConditions" not in webhook
    assert _matched(webhook) == {"networking.istio.io": {"envoyfilters", "sidecars",
                                                         "proxyconfigs"},
                                 "extensions.istio.io": {"wasmplugins"}}


def test_the_controller_is_a_second_highly_available_locked_down_deployment(
        base: list[dict[str, Any]]) -> None:
    deployment = _one(base, "Deployment", "agent-sandbox-controller")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] == 2
    assert pod["serviceAccountName"] == "agent-sandbox-controller"
    (container,) = pod["containers"]
    assert container["args"][0] == "controller"
    assert container["image"] == _one(base, "Deployment", "agent-sandbox-webhook")["spec"][
        "template"]["spec"]["containers"][0]["image"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"


def test_the_controllers_rights_cover_only_what_it_manages(base: list[dict[str, Any]]) -> None:
    cluster = _one(base, "ClusterRole", "agent-sandbox-controller")
    rights = {(group, resource): set(rule["verbs"]) for rule in cluster["rules"]
              for group in rule["apiGroups"] for resource in rule["resources"]}
    writes = {"get", "list", "create", "patch", "delete"}
    assert rights == {
        ("", "namespaces"): {"get", "list", "watch"},
        ("networking.istio.io", "serviceentries"): writes,
        ("networking.istio.io", "sidecars"): writes,
        ("networking.k8s.io", "networkpolicies"): writes,
        ("policy.networking.k8s.io", "adminnetworkpolicies"): writes,
        ("", "events"): {"create"},
        ("agentsandbox.io", "skills"): {"get", "list", "watch"},
    }
    role = _one(base, "Role", "agent-sandbox-controller")
    assert role["metadata"]["namespace"] == "agent-sandbox-system"
    for rule in role["rules"]:
        if rule["verbs"] != ["create"]:
            assert rule["resourceNames"], rule
    named = {name for rule in role["rules"] for name in rule.get("resourceNames", ())}
    assert named == {"egress-registry", "agent-sandbox-dns-allowlist",
                     "agent-sandbox-controller"}
    (binding,) = [o for o in base if o["kind"] == "ClusterRoleBinding"
                  and o["metadata"]["name"] == "agent-sandbox-controller"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "agent-sandbox-controller",
                                    "namespace": "agent-sandbox-system"}]


@pytest.mark.parametrize("directory", OVERLAYS)
def test_the_worker_count_matches_the_cpu_limit_in_every_install(directory: str) -> None:
    """Each worker uses at most one core: fewer CPUs than workers would only add contention,
    more would sit unused. Memory must hold the supervisor and every worker at peak."""
    deployment = _one(_render(directory), "Deployment", "agent-sandbox-webhook")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    workers = [a.split("=", 1)[1] for a in container["args"] if a.startswith("--workers=")]
    assert workers, "the Deployment does not set --workers"
    limits = container["resources"]["limits"]
    assert int(workers[0]) == int(limits["cpu"])
    memory_mib = int(limits["memory"].removesuffix("Mi"))
    assert memory_mib >= 50 + 100 * int(workers[0])


def test_the_webhook_keeps_a_skill_cache_with_read_only_rights(
        base: list[dict[str, Any]]) -> None:
    container = _one(base, "Deployment", "agent-sandbox-webhook")["spec"]["template"]["spec"][
        "containers"][0]
    assert "--watch-skills" in container["args"]
    (rule,) = _one(base, "ClusterRole", "agent-sandbox-webhook-skills")["rules"]
    assert (rule["apiGroups"], rule["resources"], set(rule["verbs"])) == (
        ["agentsandbox.io"], ["skills"], {"get", "list", "watch"})
