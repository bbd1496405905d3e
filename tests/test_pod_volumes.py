"""Volumes: Istio's own (names and mounts, before and after injection) and what the node
mounts from the network. Each refused case has its admitted neighbour."""

from __future__ import annotations

from typing import Any

import pytest

from tests.istio_injection import MODES, inject
from tests.podkit import container, mutated, pod, policy, rules_of
from webhook.config.policy import Policy
from webhook.policies.pods import mutate_pod_object, validate_pod_object
from webhook.policies.pods.validate import check_new_ephemeral


def before(obj: dict[str, Any], policy_: Policy | None = None) -> list[tuple[str, str]]:
    return rules_of(mutate_pod_object(obj, namespace="agents", policy=policy_ or Policy()))


def after(obj: dict[str, Any], policy_: Policy | None = None) -> list[tuple[str, str]]:
    return rules_of(validate_pod_object(obj, policy=policy_ or Policy(), final=True))


def with_volume(volume: dict[str, Any], mount: bool = True) -> dict[str, Any]:
    mounts = [{"name": volume["name"], "mountPath": "/data"}] if mount else []
    return pod(container(request="512Mi", limit="1Gi", volumeMounts=mounts),
               volumes=[volume])


LOCAL = [
    {"name": "tmp", "emptyDir": {}},
    {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}},
    {"name": "config", "configMap": {"name": "agent-config"}},
    {"name": "key", "secret": {"secretName": "agent-key"}},
    {"name": "info", "downwardAPI": {"items": [{"path": "labels",
                                                "fieldRef": {"fieldPath": "metadata.labels"}}]}},
    {"name": "token", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}},
    {"name": "work", "persistentVolumeClaim": {"claimName": "work"}},
    {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}}},
    {"name": "model", "image": {"reference": "registry.example.com/models/m:1"}},
    {"name": "defaulted"},  # no source: the API server makes it an emptyDir
]


@pytest.mark.parametrize("volume", LOCAL, ids=[v["name"] for v in LOCAL])
def test_local_volume_types_are_admitted_before_and_after_injection(
        volume: dict[str, Any]) -> None:
    obj = with_volume(volume)
    assert before(obj) == []
    assert after(inject(mutated(obj))) == []


NETWORK = {
    "nfs": {"server": "nfs.example.com", "path": "/export"},
    "iscsi": {"targetPortal": "10.0.0.5:3260", "iqn": "iqn.2001-04.com.example:t", "lun": 0},
    "rbd": {"monitors": ["10.0.0.6:6789"], "image": "agent"},
    "cephfs": {"monitors": ["10.0.0.6:6789"]},
    "glusterfs": {"endpoints": "gluster", "path": "vol"},
    "flexVolume": {"driver": "example.com/fetcher"},
    "gitRepo": {"repository": "https://git.example.com/x.git"},
    "azureFile": {"secretName": "s", "shareName": "share"},
}


@pytest.mark.parametrize("source", sorted(NETWORK))
def test_volumes_the_node_mounts_from_the_network_are_refused(source: str) -> None:
    obj = with_volume({"name": "remote", source: NETWORK[source]})
    assert before(obj) == [("pod.network-volumes", f"spec.volumes[remote].{source}")]
    final = inject(mutated(pod()))
    final["spec"]["volumes"].append({"name": "remote", source: NETWORK[source]})
    assert after(final) == [("pod.network-volumes", f"spec.volumes[remote].{source}")]


def test_inline_csi_needs_an_approved_driver() -> None:
    obj = with_volume({"name": "secrets", "csi": {"driver": "secrets-store.csi.k8s.io"}})
    assert before(obj) == [("pod.network-volumes", "spec.volumes[secrets].csi.driver")]
    approved = policy(volumes={"allowedCSIDrivers": ["secrets-store.csi.k8s.io"]})
    assert before(obj, approved) == []


def test_host_path_is_still_its_own_rule() -> None:
    obj = with_volume({"name": "root", "hostPath": {"path": "/"}})
    assert before(obj) == [("pod.host-path", "spec.volumes[root].hostPath")]


def test_a_mount_of_an_undeclared_volume_is_refused_before_injection() -> None:
    obj = pod(container(request="512Mi", limit="1Gi",
                        volumeMounts=[{"name": "istio-envoy", "mountPath": "/x"}]))
    assert before(obj) == [("pod.istio-volumes", "spec.containers[agent].volumeMounts[0]")]
    declared = with_volume({"name": "envoy-config", "emptyDir": {}})
    assert before(declared) == []


def test_a_user_volume_with_one_of_istios_names_is_refused() -> None:
    obj = with_volume({"name": "istio-token", "emptyDir": {}})
    assert before(obj) == [("pod.istio-volumes", "spec.volumes[istio-token].name")]


@pytest.mark.parametrize("mode", MODES)
def test_only_istios_containers_mount_istios_volumes_in_the_final_pod(mode: str) -> None:
    final = inject(mutated(pod()), mode=mode)
    assert after(final) == []
    agent = final["spec"]["containers"][0]
    agent.setdefault("volumeMounts", []).append({"name": "istio-envoy",
                                                 "mountPath": "/etc/istio/proxy"})
    index = len(agent["volumeMounts"]) - 1
    assert after(final) == [("pod.istio-volumes",
                             f"spec.containers[agent].volumeMounts[{index}]")]


def test_an_ephemeral_container_may_not_mount_istios_volumes() -> None:
    live = inject(mutated(pod()))
    debug = dict(live, spec={**live["spec"], "ephemeralContainers": [
        container("debugger", volumeMounts=[{"name": "istio-token", "mountPath": "/t"}],
                  securityContext={"allowPrivilegeEscalation": False,
                                   "capabilities": {"drop": ["ALL"]}})]})
    assert rules_of(check_new_ephemeral(debug, live, policy=Policy())) == [
        ("pod.istio-volumes", "spec.ephemeralContainers[debugger].volumeMounts[0]")]


def test_the_volume_rules_follow_their_modes() -> None:
    obj = with_volume({"name": "remote", "nfs": NETWORK["nfs"]})
    off = policy(rules={"pod.network-volumes": "off"})
    assert before(obj, off) == []
    named = with_volume({"name": "istio-data", "emptyDir": {}})
    assert before(named, policy(rules={"pod.istio-volumes": "off"})) == []


def test_a_csi_driver_that_is_not_a_name_is_refused_not_a_crash() -> None:
    obj = with_volume({"name": "odd", "csi": {"driver": ["secrets-store.csi.k8s.io"]}})
    approved = policy(volumes={"allowedCSIDrivers": ["secrets-store.csi.k8s.io"]})
    assert before(obj, approved) == [("pod.network-volumes", "spec.volumes[odd].csi.driver")]
