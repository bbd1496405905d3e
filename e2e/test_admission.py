"""The webhook in a real cluster, driven with kubectl: mutations, refusals, real creates.

Pod refusals are matched on their fixed rule ids (``[pod.host-namespaces] ...``); ServiceEntry
and Skill refusals on their rule-id prefix (``[serviceentry.``, ``[skill.``).
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from e2e.conftest import Cluster, apply, kubectl


def agent_pod(namespace: str, name: str = "currency-agent") -> dict[str, Any]:
    """A pod as people write it: no securityContext at all (the webhook fills the identity)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "containers": [
                {
                    "name": "agent",
                    "image": "registry.example.com/agents/currency:1.0",
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "512Mi"},
                        "limits": {"cpu": "1", "memory": "1Gi"},
                    },
                }
            ],
        },
    }


def demo_pod(namespace: str, name: str = "demo-agent") -> dict[str, Any]:
    """The demo's canonical agent pod: kata, one container, 2Gi, nothing else."""
    pod = agent_pod(namespace, name=name)
    pod["spec"]["runtimeClassName"] = "kata"
    pod["spec"]["containers"][0]["resources"] = {"requests": {"memory": "2Gi"},
                                                 "limits": {"memory": "2Gi"}}
    return pod


def assert_identity_filled(pod: dict[str, Any]) -> None:
    """The run-time identity the webhook gives a pod that set none."""
    assert pod["spec"]["securityContext"]["runAsUser"] == 10001
    assert pod["spec"]["securityContext"]["runAsGroup"] == 10001
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    for container in pod["spec"]["containers"]:
        if container["name"] != "istio-proxy":
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert "ALL" in container["securityContext"]["capabilities"]["drop"]


def _dry_run(obj: dict[str, Any]) -> tuple[int, dict[str, Any] | None, str]:
    result = apply(obj, "--dry-run=server", "-o", "json")
    body = json.loads(result.stdout) if result.returncode == 0 else None
    return result.returncode, body, result.stderr


def test_dry_run_of_a_plain_agent_pod_shows_every_mutation_and_warnings(
    cluster: Cluster,
) -> None:
    code, pod, stderr = _dry_run(agent_pod(cluster.namespace))
    assert code == 0, stderr
    assert pod is not None
    spec = pod["spec"]
    assert spec["runtimeClassName"] == "kata"
    assert spec["dnsPolicy"] == "None"
    assert spec["dnsConfig"]["nameservers"]
    assert pod["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    # The API server's RuntimeClass plugin re-runs after the webhook's patch and copies the
    # class's overhead (the suite's kata, or the cluster's own if it already had one).
    kata = json.loads(kubectl("get", "runtimeclass", "kata", "-o", "json", check=True).stdout)
    expected = (kata.get("overhead") or {}).get("podFixed")
    assert spec.get("overhead") == expected, "kata's overhead applied"
    agent = spec["containers"][0]["resources"]
    assert agent["requests"]["memory"] == agent["limits"]["memory"] == "2Gi", "memory floor"
    assert_identity_filled(pod)
    assert "Warning:" in stderr, "each mutation is explained in a warning"
    assert kubectl("-n", cluster.namespace, "get", "pod", "currency-agent").returncode != 0, (
        "dry-run stored nothing"
    )


def _escape(namespace: str, name: str) -> dict[str, Any]:
    pod = agent_pod(namespace, name=f"escape-{name}")
    return pod


def _variant(change: str, namespace: str) -> dict[str, Any]:
    pod = _escape(namespace, change)
    spec, container = pod["spec"], pod["spec"]["containers"][0]
    meta = pod["metadata"]
    if change == "host-network":
        spec["hostNetwork"] = True
    elif change == "host-pid":
        spec["hostPID"] = True
    elif change == "host-port":
        container["ports"] = [{"containerPort": 8080, "hostPort": 8080}]
    elif change == "host-path":
        spec["volumes"] = [{"name": "root", "hostPath": {"path": "/"}}]
        container["volumeMounts"] = [{"name": "root", "mountPath": "/host"}]
    elif change == "privileged":
        container["securityContext"] = {"privileged": True}
    elif change == "proxy-uid":
        spec["securityContext"] = {"runAsUser": 1337}
    elif change == "root":
        container["securityContext"] = {"runAsUser": 0}
    elif change == "privilege-escalation":
        container["securityContext"] = {"allowPrivilegeEscalation": True}
    elif change == "foreign-runtime-class":
        spec["runtimeClassName"] = "e2e-foreign"
    elif change == "exclude-outbound":
        meta["annotations"] = {"traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0"}
    elif change == "istio-proxy-container":
        container["name"] = "istio-proxy"
    elif change == "host-aliases":
        spec["hostAliases"] = [{"ip": "169.254.169.254", "hostnames": ["api.frankfurter.app"]}]
    elif change == "net-admin":
        container["securityContext"] = {"capabilities": {"add": ["NET_ADMIN"]}}
    elif change == "share-process-namespace":
        spec["shareProcessNamespace"] = True
    elif change == "sysctls":
        spec["securityContext"] = {
            "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": "1024 65000"}]
        }
    elif change == "kata-annotation":
        meta["annotations"] = {"io.katacontainers.config.hypervisor.kernel_params": "x"}
    elif change == "inject-false":
        meta["labels"] = {"sidecar.istio.io/inject": "false"}
    elif change == "proxy-image":
        meta["annotations"] = {"sidecar.istio.io/proxyImage": "evil.example.com/proxy:1"}
    elif change == "nfs-volume":
        spec["volumes"] = [{"name": "remote", "nfs": {"server": "nfs.example.com", "path": "/"}}]
    elif change == "probe-host":
        container["readinessProbe"] = {"tcpSocket": {"port": 443, "host": "evil.example.com"}}
    elif change == "istio-volume-mount":
        container["volumeMounts"] = [{"name": "istio-envoy", "mountPath": "/etc/istio/proxy"}]
    else:
        raise AssertionError(change)
    return pod


ESCAPES = {
    "host-network": "pod.host-namespaces",
    "host-pid": "pod.host-namespaces",
    "host-port": "pod.host-ports",
    "host-path": "pod.host-path",
    "privileged": "pod.privileged",
    "proxy-uid": "pod.proxy-identity",
    "root": "pod.run-as-non-root",
    "privilege-escalation": "pod.no-privilege-escalation",
    "foreign-runtime-class": "pod.runtime-class",
    "exclude-outbound": "pod.istio-capture-annotations",
    "istio-proxy-container": "pod.istio-reserved-names",
    "host-aliases": "pod.host-aliases",
    "net-admin": "pod.capabilities",
    "share-process-namespace": "pod.share-process-namespace",
    "sysctls": "pod.sysctls",
    "kata-annotation": "pod.kata-annotations",
    "inject-false": "pod.istio-inject",
    "proxy-image": "pod.istio-proxy-override",
    "nfs-volume": "pod.network-volumes",
    "probe-host": "pod.probe-host",
    "istio-volume-mount": "pod.istio-volumes",
}


@pytest.mark.parametrize(("change", "rule"), sorted(ESCAPES.items()))
def test_escape_pod_is_refused_with_its_rule_id(cluster: Cluster, change: str, rule: str) -> None:
    code, _, stderr = _dry_run(_variant(change, cluster.namespace))
    assert code != 0, f"{change} was admitted"
    assert f"[{rule}]" in stderr, stderr


def _service_entry(namespace: str, host: str, name: str) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "ServiceEntry",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "hosts": [host],
            "location": "MESH_EXTERNAL",
            "resolution": "DNS",
            "exportTo": ["."],
            "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}],
        },
    }


def test_service_entries_approved_and_not(cluster: Cluster) -> None:
    if not cluster.istio_crds:
        pytest.skip("Istio's ServiceEntry CRD is not installed in this cluster")
    ok = _dry_run(_service_entry(cluster.namespace, "api.frankfurter.app", "frankfurter"))
    assert ok[0] == 0, ok[2]
    refused = _dry_run(_service_entry(cluster.namespace, "exfil.example.com", "exfil"))
    assert refused[0] != 0
    assert "[serviceentry." in refused[2], refused[2]


def _skill(namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "agentsandbox.io/v1alpha1",
        "kind": "Skill",
        "metadata": {"name": "currency-rates", "namespace": namespace},
        "spec": spec,
    }


def test_skills_need_declared_and_approved_egress(cluster: Cluster) -> None:
    approved = _skill(
        cluster.namespace,
        {
            "description": "exchange rates",
            "image": "registry.example.com/skills/fx:1.0",
            "egressRequirements": [{"host": "api.frankfurter.app"}],
        },
    )
    code, _, stderr = _dry_run(approved)
    assert code == 0, stderr
    unapproved = copy.deepcopy(approved)
    unapproved["spec"]["egressRequirements"] = [{"host": "exfil.example.com"}]
    code, _, stderr = _dry_run(unapproved)
    assert code != 0
    assert "[skill." in stderr, stderr
    missing = copy.deepcopy(approved)
    del missing["spec"]["egressRequirements"]
    code, _, stderr = _dry_run(missing)
    # Refused either by the CRD schema (required) or by the webhook; never admitted.
    assert code != 0
    assert "egressRequirements" in stderr, stderr


def test_a_real_create_stores_the_mutated_pod(cluster: Cluster) -> None:
    name = "currency-agent-real"
    created = apply(agent_pod(cluster.namespace, name=name))
    assert created.returncode == 0, created.stderr
    try:
        stored = json.loads(
            kubectl("-n", cluster.namespace, "get", "pod", name, "-o", "json", check=True).stdout
        )
        assert stored["spec"]["runtimeClassName"] == "kata"
        assert stored["spec"]["dnsPolicy"] == "None"
        assert stored["metadata"]["labels"]["sidecar.istio.io/inject"] == "true"
    finally:
        kubectl(
            "-n",
            cluster.namespace,
            "delete",
            "pod",
            name,
            "--grace-period=0",
            "--force",
            "--wait=false",
            "--ignore-not-found",
        )


def test_the_demo_pod_is_admitted_and_given_a_safe_identity(cluster: Cluster) -> None:
    code, pod, stderr = _dry_run(demo_pod(cluster.namespace))
    assert code == 0, stderr
    assert pod is not None
    assert_identity_filled(pod)
    assert "securityContext.runAsUser=10001" in stderr, "the fill is explained in a warning"


def test_a_replicaset_made_pod_with_nothing_set_is_admitted_and_stored_safe(
    cluster: Cluster,
) -> None:
    name = "identity-rs"
    labels = {"app": name}
    replicaset = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": cluster.namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agent", "image": "registry.example.com/a:1"}]},
            },
        },
    }
    created = apply(replicaset)
    assert created.returncode == 0, created.stderr
    try:
        pods: list[dict[str, Any]] = []
        deadline = time.monotonic() + 60
        while not pods and time.monotonic() < deadline:
            listed = kubectl("-n", cluster.namespace, "get", "pods", "-l", f"app={name}",
                             "-o", "json", check=True)
            pods = json.loads(listed.stdout)["items"]
            time.sleep(0 if pods else 1)
        assert pods, "the ReplicaSet controller created no pod (was it refused? see events)"
        assert_identity_filled(pods[0])
        assert pods[0]["spec"]["runtimeClassName"] == "kata"
    finally:
        kubectl("-n", cluster.namespace, "delete", "replicaset", name, "--wait=false",
                "--ignore-not-found")


def test_a_live_pod_can_be_labelled_but_neither_unsealed_nor_exec_ed_into(
    cluster: Cluster,
) -> None:
    name = "currency-agent-live"
    created = apply(agent_pod(cluster.namespace, name=name))
    assert created.returncode == 0, created.stderr
    pod = ("-n", cluster.namespace)
    try:
        labelled = kubectl(*pod, "label", "pod", name, "agentsandbox.io/skill=currency-rates")
        assert labelled.returncode == 0, labelled.stderr
        image = kubectl(*pod, "set", "image", f"pod/{name}",
                        "agent=registry.example.com/agents/currency:1.1")
        assert image.returncode == 0, image.stderr
        narrowed = kubectl(*pod, "annotate", "pod", name,
                           "traffic.sidecar.istio.io/excludeOutboundIPRanges=0.0.0.0/0")
        assert narrowed.returncode != 0, "a capture-narrowing annotation was added"
        assert "[pod.istio-capture-annotations]" in narrowed.stderr, narrowed.stderr
        # CONNECT admission runs before the API server reaches the kubelet, so a raw POST to
        # the exec subresource shows the verdict even where no container runs (no Istio here).
        exec_path = (f"/api/v1/namespaces/{cluster.namespace}/pods/{name}/exec"
                     "?container=istio-proxy&command=true&stdout=true")
        proxied = kubectl("create", "--raw", exec_path, "-f", "-", stdin="{}")
        assert proxied.returncode != 0
        assert "[pod.istio-exec]" in proxied.stderr, proxied.stderr
    finally:
        kubectl(*pod, "delete", "pod", name, "--grace-period=0", "--force", "--wait=false",
                "--ignore-not-found")


def _service(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def test_externalname_services_need_an_approved_host(cluster: Cluster) -> None:
    port = {"name": "https", "port": 443, "protocol": "TCP"}
    ok = _dry_run(_service(cluster.namespace, "frankfurter", {
        "type": "ExternalName", "externalName": "api.frankfurter.app", "ports": [port]}))
    assert ok[0] == 0, ok[2]
    # The API server accepts an IP address as a DNS name here; the webhook does not.
    refused = _dry_run(_service(cluster.namespace, "by-ip", {
        "type": "ExternalName", "externalName": "93.184.216.34", "ports": [port]}))
    assert refused[0] != 0
    assert "[service.external-name]" in refused[2], refused[2]


def test_hand_made_endpoints_outside_the_cluster_are_refused(cluster: Cluster) -> None:
    selectorless = _dry_run(_service(cluster.namespace, "hand-made", {
        "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}))
    assert selectorless[0] == 0, selectorless[2]
    endpoints = {"apiVersion": "v1", "kind": "Endpoints",
                 "metadata": {"name": "hand-made", "namespace": cluster.namespace},
                 "subsets": [{"addresses": [{"ip": "203.0.113.99"}],
                              "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}]}
    refused = _dry_run(endpoints)
    assert refused[0] != 0
    assert "[endpoints.address-not-approved]" in refused[2], refused[2]


def test_on_openshift_the_scc_assigned_uid_is_kept(cluster: Cluster) -> None:
    """restricted-v2 assigns the container's UID before webhooks run; the webhook adds none."""
    served = kubectl("api-resources", "--api-group=security.openshift.io", "-o", "name")
    if "securitycontextconstraints" not in served.stdout:
        pytest.skip("not an OpenShift cluster (no security.openshift.io API)")
    code, pod, stderr = _dry_run(demo_pod(cluster.namespace, name="scc-agent"))
    assert code == 0, stderr
    assert pod is not None
    assert "runAsUser" not in pod["spec"]["securityContext"], "the SCC's UID is not overridden"
    assert pod["spec"]["containers"][0]["securityContext"]["runAsUser"] > 0


def test_the_installed_pod_entries_are_never_reinvoked(cluster: Cluster) -> None:
    """As the API server stores them: reinvoked, the injected pod would be refused."""
    stored = json.loads(kubectl("get", "mutatingwebhookconfiguration", "agent-sandbox-webhook",
                                "-o", "json", check=True).stdout)
    pods = [w for w in stored["webhooks"]
            if any("pods" in rule["resources"] for rule in w["rules"])]
    assert pods
    assert {w["reinvocationPolicy"] for w in pods} == {"Never"}


def test_a_status_update_cannot_unseal_a_live_pod(cluster: Cluster) -> None:
    """pods/status keeps the old spec, not the old annotations: judged like a plain UPDATE."""
    name = "currency-agent-status"
    created = apply(agent_pod(cluster.namespace, name=name))
    assert created.returncode == 0, created.stderr
    pod = ("-n", cluster.namespace)
    try:
        patch = json.dumps({"metadata": {"annotations": {
            "traffic.sidecar.istio.io/excludeOutboundIPRanges": "0.0.0.0/0"}}})
        narrowed = kubectl(*pod, "patch", "pod", name, "--subresource=status",
                           "--type=merge", "-p", patch)
        assert narrowed.returncode != 0, "a status update added a capture exclusion"
        assert "[pod.istio-capture-annotations]" in narrowed.stderr, narrowed.stderr
    finally:
        kubectl(*pod, "delete", "pod", name, "--grace-period=0", "--force", "--wait=false",
                "--ignore-not-found")


def test_a_pod_is_stamped_with_its_service_account_and_a_spoofed_label_is_refused(
    cluster: Cluster,
) -> None:
    code, pod, stderr = _dry_run(agent_pod(cluster.namespace, name="stamped-agent"))
    assert code == 0, stderr
    assert pod is not None
    labels = pod["metadata"]["labels"]
    assert labels["agentsandbox.io/service-account"] == pod["spec"]["serviceAccountName"]
    assert labels["agentsandbox.io/skill"] == ""
    spoofed = agent_pod(cluster.namespace, name="spoofed-agent")
    spoofed["metadata"]["labels"] = {"agentsandbox.io/service-account": "someone-else"}
    code, _, stderr = _dry_run(spoofed)
    assert code != 0
    assert "[pod.agent-identity]" in stderr
