"""The validating pod policy over final pods (after our patch and Istio's injection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.istio_injection import inject
from tests.podkit import container, mutated, pod, policy, rules_of
from webhook.config.policy import Policy
from webhook.policies.pods import validate_pod_object
from webhook.policies.pods.iptables import capture_problems

DEFAULT = Policy()
Edit = Callable[[dict[str, Any]], Any]


def final_pod(mode: str = "classic", **annotations: str) -> dict[str, Any]:
    return inject(mutated(pod(annotations=annotations or None)), mode=mode)


def validate(obj: dict[str, Any], policy_: Policy = DEFAULT) -> list[tuple[str, str]]:
    return rules_of(validate_pod_object(obj, policy=policy_, final=True))


def spec(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = obj["spec"]
    return result


def agent(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = spec(obj)["containers"][0]
    return result


def init(obj: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = spec(obj)["initContainers"][0]
    return result


def annotate(obj: dict[str, Any], key: str, value: str) -> None:
    obj["metadata"]["annotations"][key] = value


# name -> (edit of a valid final pod, rule, path)
BROKEN: dict[str, tuple[Edit, str, str]] = {
    "no runtime class": (lambda p: spec(p).pop("runtimeClassName"), "pod.runtime-class",
                         "spec.runtimeClassName"),
    "a foreign runtime class": (lambda p: spec(p).update(runtimeClassName="runc"),
                                "pod.runtime-class", "spec.runtimeClassName"),
    "a memory request above its limit": (
        lambda p: agent(p)["resources"]["requests"].update(memory="3Gi"), "pod.memory-floor",
        "spec.containers[agent].resources.requests.memory"),
    "a memory limit missing": (lambda p: agent(p)["resources"].pop("limits"), "pod.memory-floor",
                               "spec.containers[agent].resources.limits.memory"),
    "memory below the floor": (lambda p: agent(p)["resources"].update(
        requests={"memory": "1Gi"}, limits={"memory": "1Gi"}), "pod.memory-floor",
        "spec.containers"),
    "a ClusterFirst dnsPolicy": (lambda p: spec(p).update(dnsPolicy="ClusterFirst"), "pod.dns",
                                 "spec.dnsPolicy"),
    "an extra nameserver": (lambda p: spec(p)["dnsConfig"]["nameservers"].append("8.8.8.8"),
                            "pod.dns", "spec.dnsConfig"),
    "another namespace's search list": (
        lambda p: spec(p)["dnsConfig"]["searches"].__setitem__(0, "x.svc.cluster.local"),
        "pod.dns", "spec.dnsConfig"),
    "hostAliases": (lambda p: spec(p).update(hostAliases=[{"ip": "1.2.3.4",
                                                           "hostnames": ["a"]}]),
                    "pod.host-aliases", "spec.hostAliases"),
    "hostNetwork": (lambda p: spec(p).update(hostNetwork=True), "pod.host-namespaces",
                    "spec.hostNetwork"),
    "hostPID": (lambda p: spec(p).update(hostPID=True), "pod.host-namespaces", "spec.hostPID"),
    "hostIPC": (lambda p: spec(p).update(hostIPC=True), "pod.host-namespaces", "spec.hostIPC"),
    "a hostPort": (lambda p: agent(p).update(ports=[{"containerPort": 80, "hostPort": 80}]),
                   "pod.host-ports", "spec.containers[agent].ports[0].hostPort"),
    "a hostPath volume": (lambda p: spec(p)["volumes"].append(
        {"name": "root", "hostPath": {"path": "/"}}), "pod.host-path",
        "spec.volumes[root].hostPath"),
    "a privileged container": (lambda p: agent(p).update(securityContext={"privileged": True}),
                               "pod.privileged", "spec.containers[agent].securityContext"
                               ".privileged"),
    "an unmasked procMount": (lambda p: agent(p).update(securityContext={"procMount": "Unmasked"}),
                              "pod.proc-mount", "spec.containers[agent].securityContext"
                              ".procMount"),
    "pod sysctls": (lambda p: spec(p).update(securityContext={"sysctls": [
        {"name": "net.ipv4.ip_forward", "value": "1"}]}), "pod.sysctls",
        "spec.securityContext.sysctls"),
    "a shared process namespace": (lambda p: spec(p).update(shareProcessNamespace=True),
                                   "pod.share-process-namespace", "spec.shareProcessNamespace"),
    "NET_ADMIN on an app container": (
        lambda p: agent(p).update(securityContext={"capabilities": {"add": ["NET_ADMIN"]}}),
        "pod.capabilities", "spec.containers[agent].securityContext.capabilities.add"),
    "SYS_ADMIN on istio-init": (
        lambda p: init(p)["securityContext"]["capabilities"]["add"].append("SYS_ADMIN"),
        "pod.capabilities", "spec.initContainers[istio-init].securityContext.capabilities.add"),
    "the proxy UID on an app container": (
        lambda p: agent(p).update(securityContext={"runAsUser": 1337}), "pod.proxy-identity",
        "spec.containers[agent].securityContext.runAsUser"),
    "the proxy GID on an init container": (
        lambda p: spec(p)["initContainers"].append(container("setup", securityContext={
            "runAsGroup": 1337})), "pod.proxy-identity",
        "spec.initContainers[setup].securityContext.runAsGroup"),
    "the proxy UID at pod level": (lambda p: spec(p).update(securityContext={"runAsUser": 1337}),
                                   "pod.proxy-identity", "spec.securityContext.runAsUser"),
    "the proxy GID as fsGroup": (lambda p: spec(p).update(securityContext={"fsGroup": 1337}),
                                 "pod.proxy-identity", "spec.securityContext.fsGroup"),
    "the proxy GID in supplementalGroups": (
        lambda p: spec(p).update(securityContext={"supplementalGroups": [5, 1337]}),
        "pod.proxy-identity", "spec.securityContext.supplementalGroups"),
    "a kata annotation": (lambda p: annotate(p, "io.katacontainers.config.agent.debug", "1"),
                          "pod.kata-annotations",
                          "metadata.annotations[io.katacontainers.config.agent.debug]"),
    "a runtime-handler annotation": (lambda p: annotate(p, "io.containerd.cri.runtime-handler",
                                                        "runc"), "pod.kata-annotations",
                                     "metadata.annotations[io.containerd.cri.runtime-handler]"),
    "an excluded outbound range": (
        lambda p: annotate(p, "traffic.sidecar.istio.io/excludeOutboundIPRanges", "0.0.0.0/0"),
        "pod.istio-capture-annotations",
        "metadata.annotations[traffic.sidecar.istio.io/excludeOutboundIPRanges]"),
    "a TPROXY interception mode": (
        lambda p: annotate(p, "sidecar.istio.io/interceptionMode", "TPROXY"),
        "pod.istio-capture-annotations",
        "metadata.annotations[sidecar.istio.io/interceptionMode]"),
    "a proxy image override": (lambda p: annotate(p, "sidecar.istio.io/proxyImage", "evil/p"),
                               "pod.istio-proxy-override",
                               "metadata.annotations[sidecar.istio.io/proxyImage]"),
    "a user volume": (lambda p: annotate(p, "sidecar.istio.io/userVolumeMount", "{}"),
                      "pod.istio-proxy-override",
                      "metadata.annotations[sidecar.istio.io/userVolumeMount]"),
    "the inject label removed": (lambda p: p["metadata"]["labels"].pop("sidecar.istio.io/inject"),
                                 "pod.istio-inject", "metadata.labels[sidecar.istio.io/inject]"),
    "a foreign revision injected it": (lambda p: annotate(p, "istio.io/rev", "canary"),
                                       "pod.istio-inject", "metadata.annotations[istio.io/rev]"),
    "no istio-proxy": (lambda p: spec(p).update(containers=spec(p)["containers"][:1]),
                       "pod.istio-sidecar", "spec.containers"),
    "no istio-init": (lambda p: spec(p).update(initContainers=[]), "pod.istio-sidecar",
                      "spec.initContainers"),
    "istio-init excluding a range": (
        lambda p: init(p)["args"].__setitem__(init(p)["args"].index("-x") + 1, "10.0.0.0/8"),
        "pod.istio-sidecar", "spec.initContainers[istio-init].args"),
    "istio-init with another proxy UID": (
        lambda p: init(p)["args"].__setitem__(init(p)["args"].index("-u") + 1, "1000"),
        "pod.istio-sidecar", "spec.initContainers[istio-init].args"),
    "an ephemeral container named istio-proxy": (
        lambda p: spec(p).update(ephemeralContainers=[container("istio-proxy")]),
        "pod.istio-reserved-names", "spec.ephemeralContainers[istio-proxy].name"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_final_pod_is_refused_by_its_rule(name: str) -> None:
    edit, rule, path = BROKEN[name]
    obj = final_pod()
    assert validate(obj) == []
    edit(obj)
    assert (rule, path) in validate(obj)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_rule_that_is_off_reports_nothing(name: str) -> None:
    edit, rule, _ = BROKEN[name]
    obj = final_pod()
    edit(obj)
    assert rule not in {r for r, _ in validate(obj, policy(rules={rule: "off"}))}


@pytest.mark.parametrize("mode", ["classic", "native", "cni"])
def test_istio_written_annotations_and_containers_pass(mode: str) -> None:
    obj = final_pod(mode)
    assert "sidecar.istio.io/status" in obj["metadata"]["annotations"]
    assert validate(obj) == []


def test_a_capture_annotation_that_bypassed_the_mutating_stage_is_caught_twice() -> None:
    # The injector renders the user's annotation into -o; the final check sees both.
    obj = mutated(pod())
    obj["metadata"]["annotations"]["traffic.sidecar.istio.io/excludeOutboundPorts"] = "443"
    rules = validate(inject(obj))
    assert ("pod.istio-capture-annotations",
            "metadata.annotations[traffic.sidecar.istio.io/excludeOutboundPorts]") in rules
    assert ("pod.istio-sidecar", "spec.initContainers[istio-init].args") in rules


def test_a_proxy_that_is_not_a_native_sidecar_does_not_count() -> None:
    obj = final_pod("native")
    proxy = next(c for c in spec(obj)["initContainers"] if c["name"] == "istio-proxy")
    del proxy["restartPolicy"]
    rules = validate(obj)
    assert ("pod.istio-sidecar", "spec.containers") in rules
    assert ("pod.proxy-identity", "spec.initContainers[istio-proxy].securityContext.runAsUser") \
        in rules


def test_istio_init_is_recognised_by_its_args_not_only_its_name() -> None:
    obj = final_pod()
    init(obj)["args"] = ["sh", "-c", "sleep 1"]
    rules = validate(obj)
    assert ("pod.capabilities", "spec.initContainers[istio-init].securityContext"
            ".capabilities.add") in rules
    assert ("pod.istio-sidecar", "spec.initContainers[istio-init].args") in rules


def test_no_sidecar_is_required_when_the_policy_says_so() -> None:
    obj = mutated(pod())
    assert validate(obj, policy(istio={"requireSidecar": False})) == []


ARGS = ["-p", "15001", "-z", "15006", "-u", "1337", "-m", "REDIRECT", "-i", "*", "-x", "",
        "-b", "*", "-d", "15090,15021,15020"]


@pytest.mark.parametrize(("args", "captured"), [
    (ARGS, True),
    ([*ARGS, "--log_output_level=default:info"], True),
    (["--proxy-uid=1337", "--istio-service-cidr=*", "--istio-service-exclude-cidr="], True),
    (["-u1337", "-i*"], True),
    (["-u=1337", "-i=*"], True),
    ([*ARGS, "-i", "10.0.0.0/8"], False),  # the last occurrence wins
    ([*ARGS, "-o", "443"], False),
    ([*ARGS, "-k", "eth1"], False),
    ([*ARGS, "-c", "eth1"], False),
    ([*ARGS, "--reroute-virtual-interfaces=tap0"], False),
    ([*ARGS, "--istio-service-exclude-cidr", "169.254.169.254/32"], False),
    ([*ARGS, "--dry-run"], False),
    ([*ARGS, "--skip-rule-apply=true"], False),
    ([*ARGS, "-g", "0"], False),
    (["-i", "*"], False),  # no -u: the proxy UID is not the one we expect
    (["-u", "1337"], False),  # no -i: nothing captured
    ([*ARGS[:9], "-i", "*,10.0.0.0/8", *ARGS[10:]], False),
    ([*ARGS[:7], "TPROXY", *ARGS[8:]], False),
])
def test_iptables_arguments_capture_everything_only_when_nothing_is_narrowed(
        args: list[str], captured: bool) -> None:
    assert (capture_problems(args, proxy_uid=1337, proxy_gid=1337, cni=False) == []) is captured


def test_the_cni_validation_container_may_skip_rule_apply() -> None:
    assert capture_problems([*ARGS, "--run-validation", "--skip-rule-apply"], proxy_uid=1337,
                            proxy_gid=1337, cni=True) == []


def test_a_configured_revision_must_label_the_final_pod() -> None:
    stable = policy(istio={"revision": "stable"})
    obj = inject(mutated(pod(), policy_=stable), revision="stable")
    assert validate(obj, stable) == []
    obj["metadata"]["labels"].pop("istio.io/rev")
    assert ("pod.istio-inject", "metadata.labels[istio.io/rev]") in validate(obj, stable)


def test_a_custom_proxy_uid_is_the_one_exempted_and_expected() -> None:
    custom = policy(istio={"proxyUID": 2000, "proxyGID": 2000})
    obj = inject(mutated(pod(), policy_=custom), proxy_uid=2000)
    assert validate(obj, custom) == []
    # The injected proxy says what it runs as, and the iptables arguments agree: that wins
    # over the configured default, which stays refused for every other container too.
    assert validate(inject(mutated(pod(), policy_=custom)), custom) == []
    for uid in (1337, 2000):
        app = inject(mutated(pod(), policy_=custom))
        app["spec"]["securityContext"]["runAsUser"] = uid
        assert ("pod.proxy-identity", "spec.securityContext.runAsUser") in validate(app, custom)
