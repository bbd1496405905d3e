"""The OpenShift overlay, rendered with ``kubectl kustomize``: restricted-v2 admits its pods.

The overlay is rendered by the real kustomize (``kubectl kustomize``, as ``oc apply -k`` does)
and schema-checked in ``test_manifests``. Here: it sets no fixed UID, GID or fsGroup anywhere,
and a model of restricted-v2's admission (``MustRunAsRange`` UIDs and ``MustRunAs`` fsGroup
from the namespace's ranges, no privilege) admits its Deployments for any range the namespace
may be given, while it refuses the base install's fixed 65532.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_manifests import _keys, _one, _render
from webhook.config.policy import MeshFlavour, parse_policy

ROOT = Path(__file__).resolve().parent.parent
OVERLAY = "manifests/overlays/openshift"
FIXED_IDS = {"runAsUser", "runAsGroup", "fsGroup", "supplementalGroups"}


def restricted_v2(pod: dict[str, Any], *, uids: range, groups: range) -> list[str]:
    """What restricted-v2 would refuse in a pod spec (a model of its documented strategies)."""
    problems = []
    pod_security = pod.get("securityContext") or {}
    if pod_security.get("runAsUser") is not None and pod_security["runAsUser"] not in uids:
        problems.append("pod runAsUser outside the namespace's range")
    if pod_security.get("fsGroup") is not None and pod_security["fsGroup"] not in groups:
        problems.append("fsGroup outside the namespace's range")
    for container in pod["containers"] + pod.get("initContainers", []):
        security = container.get("securityContext") or {}
        uid = security.get("runAsUser")
        if uid is not None and uid not in uids:
            problems.append(f"{container['name']}: runAsUser outside the namespace's range")
        if security.get("privileged") or security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{container['name']}: privilege")
        if (security.get("capabilities") or {}).get("add"):
            problems.append(f"{container['name']}: added capabilities")
        if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{container['name']}: does not drop ALL")
        if security.get("runAsNonRoot") is False:
            problems.append(f"{container['name']}: may run as root")
    return problems


def _pods(directory: str) -> list[dict[str, Any]]:
    """The pod spec of every Deployment (the webhook's and the controller's)."""
    pods = [o["spec"]["template"]["spec"] for o in _render(directory) if o["kind"] == "Deployment"]
    assert pods
    return pods


@functools.cache
def _overlay_pods() -> str:
    """The overlay's Deployment pod specs, rendered once (as YAML: callers get fresh copies)."""
    return yaml.safe_dump(_pods(OVERLAY))


def test_the_overlay_sets_no_fixed_id_anywhere() -> None:
    assert not FIXED_IDS & {key for obj in _render(OVERLAY) for key in _keys(obj)}


# The ranges OpenShift gives namespaces: blocks of 10,000 from 1,000,000,000 (its default
# allocator), or anything an administrator configured.
ranges = st.one_of(
    st.integers(min_value=0, max_value=200).map(lambda n: range(10**9 + n * 10**4,
                                                                10**9 + (n + 1) * 10**4)),
    st.tuples(st.integers(1, 2**31 - 2**20), st.integers(1, 2**20)).map(
        lambda pair: range(pair[0], pair[0] + pair[1])))


@settings(max_examples=200, deadline=None)
@given(ranges, ranges)
def test_restricted_v2_admits_the_overlay_for_any_namespace_range(uids: range,
                                                                   groups: range) -> None:
    for pod in yaml.safe_load(_overlay_pods()):
        assert restricted_v2(pod, uids=uids, groups=groups) == []


def test_restricted_v2_refuses_the_base_install_so_the_overlay_is_needed() -> None:
    for pod in _pods("manifests"):
        assert restricted_v2(pod, uids=range(1000650000, 1000660000),
                             groups=range(1000650000, 1000660000))


def test_the_overlay_keeps_the_pods_locked_down() -> None:
    for pod in _pods(OVERLAY):
        assert pod["securityContext"] == {"runAsNonRoot": True,
                                          "seccompProfile": {"type": "RuntimeDefault"}}
        (container,) = pod["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False


def test_the_overlay_leaves_the_runtime_classes_to_sandboxed_containers() -> None:
    objects = _render(OVERLAY)
    assert not [o for o in objects if o["kind"] == "RuntimeClass"]
    text = _one(objects, "ConfigMap", "agent-sandbox-policy")["data"]["policy.yaml"]
    policy = parse_policy(text, source="overlay policy")
    assert policy.runtime_class.names == ("kata", "kata-remote")
    assert policy.istio.flavour is MeshFlavour.OSSM2
    assert policy.identity.run_as_group == 0


def test_the_image_runs_under_an_arbitrary_uid_with_gid_0() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    runtime = dockerfile[dockerfile.rindex("FROM "):]
    (user,) = re.findall(r"^USER (\S+)$", runtime, flags=re.MULTILINE)
    uid, _, gid = user.partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can verify it"
    assert int(uid) > 0
    assert gid == "0", "OpenShift runs the image with GID 0"
    assert "chgrp -R 0 /opt/venv" in runtime
    assert "chmod -R g=u /opt/venv" in runtime
    deployment = yaml.safe_load((ROOT / "manifests/base/deployment.yaml").read_text())
    mounts = {m["mountPath"] for m in
              deployment["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    # Everything the process writes is a volume (writable by any UID), never the image.
    assert {"/tmp", "/run/agent-sandbox/certs"} <= mounts
