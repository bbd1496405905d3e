"""Pod templates of workloads: refused for escapes, warned about what pods will get."""

from __future__ import annotations

from typing import Any

import pytest

from tests.podkit import HARDENED, container, identity, pod, policy, review
from webhook.config.policy import Policy
from webhook.policies.pods import check_pod_template

DEFAULT = Policy()


def check(template: dict[str, Any], policy_: Policy = DEFAULT) -> Any:
    return check_pod_template(template, namespace="agents", policy=policy_, path="spec.template")


def deployment_template() -> dict[str, Any]:
    result: dict[str, Any] = review("deployment-create.json")["request"]["object"]["spec"][
        "template"]
    return result


def test_the_recorded_deployment_template_is_not_refused_for_what_pods_will_get() -> None:
    template = deployment_template()
    assert "serviceAccountName" not in template["spec"]
    verdict = check(template)
    assert verdict.violations == ()
    assert verdict.mutations == ()
    assert ("[pod.runtime-class] spec.template: will set runtimeClassName=kata at pod creation"
            in verdict.warnings)
    assert any(w.startswith("[pod.memory-floor] spec.template: will set containers[agent]")
               for w in verdict.warnings)
    assert any(w.startswith("[pod.dns] spec.template: will set dnsPolicy=None")
               for w in verdict.warnings)
    assert ("[pod.istio-inject] spec.template: will add label sidecar.istio.io/inject=true at "
            "pod creation" in verdict.warnings)
    assert not any("agentsandbox.io/enforced" in w for w in verdict.warnings)


# template -> (rule, path) it is refused for
ESCAPES = {
    "a foreign runtime class": (pod(runtimeClassName="gvisor"), "pod.runtime-class",
                                "spec.template.spec.runtimeClassName"),
    "hostNetwork": (pod(hostNetwork=True), "pod.host-namespaces", "spec.template.spec.hostNetwork"),
    "the proxy UID": (pod(container(securityContext={"runAsUser": 1337})), "pod.proxy-identity",
                      "spec.template.spec.containers[agent].securityContext.runAsUser"),
    "a capture annotation": (
        pod(annotations={"traffic.sidecar.istio.io/excludeOutboundIPRanges": "10.0.0.0/8"}),
        "pod.istio-capture-annotations",
        "spec.template.metadata.annotations[traffic.sidecar.istio.io/excludeOutboundIPRanges]"),
    "a reserved container name": (pod(container("istio-init")), "pod.istio-reserved-names",
                                  "spec.template.spec.containers[istio-init].name"),
    "an unparsable quantity": (pod(container(request="2 gigs")), "pod.memory-floor",
                               "spec.template.spec.containers[agent].resources.requests.memory"),
    "a pre-set sidecar status": (pod(annotations={"sidecar.istio.io/status": "{}"}),
                                 "pod.istio-proxy-override",
                                 "spec.template.metadata.annotations[sidecar.istio.io/status]"),
    "injection turned off": (pod(labels={"sidecar.istio.io/inject": "false"}), "pod.istio-inject",
                             "spec.template.metadata.labels[sidecar.istio.io/inject]"),
}


@pytest.mark.parametrize("name", sorted(ESCAPES))
def test_a_template_with_an_escape_is_refused(name: str) -> None:
    template, rule, path = ESCAPES[name]
    assert (rule, path) in [(v.rule, v.path) for v in check(template).violations]


def test_a_compliant_template_gets_no_warnings() -> None:
    template = pod(container(request="2Gi", limit="2Gi", securityContext=HARDENED),
                   runtimeClassName="kata", labels={"sidecar.istio.io/inject": "true"},
                   dnsPolicy="None", dnsConfig=DEFAULT_DNS,
                   securityContext=identity(runAsNonRoot=True))
    verdict = check(template)
    assert verdict.violations == ()
    assert verdict.warnings == ()


DEFAULT_DNS = {"nameservers": ["10.96.0.53"],
               "searches": ["agents.svc.cluster.local", "svc.cluster.local", "cluster.local"],
               "options": [{"name": "ndots", "value": "5"}]}


def test_in_warn_mode_the_template_warning_says_the_pod_will_not_be_changed() -> None:
    verdict = check(pod(), policy(rules={"pod.runtime-class": "warn"}))
    assert any(w.startswith("[pod.runtime-class] spec.template: would (in warn mode, will not)")
               for w in verdict.warnings)
