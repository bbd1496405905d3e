"""A pod's volumes: what the node mounts for it, and Istio's own volumes.

One pass over ``spec.volumes`` judges three rules:

- ``pod.host-path``: no ``hostPath`` volume;
- ``pod.network-volumes``: only volume types that stay on the node (configMap, secret,
  downwardAPI, projected, emptyDir, persistentVolumeClaim, ephemeral, image) and inline
  ``csi`` volumes of drivers the policy lists. For ``nfs``, ``iscsi``, ``rbd``, ``cephfs``,
  ``glusterfs``, ``flexVolume``, ``gitRepo`` and the other in-tree network types the node's
  kernel or the kubelet connects out, outside the pod's network namespace: around the
  sidecar, the filtering resolver and NetworkPolicy, and Kata shares the mount into the VM.
  PersistentVolumeClaims are allowed: their volumes are an administrator's (StorageClass,
  PersistentVolume), not the pod author's. An ``image`` volume's reference is held to
  ``images.allowedRegistries`` like a container image (``pod.image-registry``);
- ``pod.istio-volumes``: before injection, no user volume takes one of Istio's names (the
  injector merges by name); after it, only Istio's containers mount Istio's volumes.
  ``istio-envoy`` holds Envoy's xDS socket: a container that can replace it while the proxy
  restarts serves Envoy its own configuration; ``istio-token`` is the proxy's identity.

``check_mounts`` judges one container's ``volumeMounts`` in the caller's single pass over the
containers: Istio's volumes (final pod, ephemeral containers included), and, before
injection, a mount naming a volume the pod does not declare (it would become valid once the
injector adds Istio's). Which containers are Istio's is ``isolation.classify``'s decision.
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods import node
from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.isolation import Role
from webhook.policies.pods.walk import ContainerRef, join
from webhook.policies.result import VerdictBuilder

ISTIO_RULE = "pod.istio-volumes"
NETWORK_RULE = "pod.network-volumes"
HOST_PATH_RULE = "pod.host-path"
# Istio's injected volumes (its golden files; istio-certs is the pre-1.10 secret mount).
ISTIO_VOLUMES = frozenset({"istio-envoy", "istio-data", "istio-podinfo", "istio-token",
                           "istiod-ca-cert", "istio-ca-crl", "workload-socket",
                           "credential-socket", "workload-certs", "istio-certs"})
LOCAL_SOURCES = frozenset({"configMap", "secret", "downwardAPI", "projected", "emptyDir",
                           "persistentVolumeClaim", "ephemeral", "image"})
ISTIO_ROLES = frozenset({Role.PROXY, Role.IPTABLES_INIT, Role.CNI_VALIDATION})
_ALWAYS_LOCAL = LOCAL_SOURCES | {"name"}
_PULLED_LOCAL = _ALWAYS_LOCAL - {"image"}


def check_volumes(spec: dict[str, Any], *, compiled: CompiledPolicy, builder: VerdictBuilder,
                  path: str, final: bool) -> frozenset[str] | None:
    """Judge ``spec.volumes``; return the declared names when mounts need them (pre-injection)."""
    volumes = spec.get("volumes")
    checked = compiled.checked
    names: set[str] | None = set() if ISTIO_RULE in checked and not final else None
    network, host_path = NETWORK_RULE in checked, HOST_PATH_RULE in checked
    # Image volumes are pulled by the node like container images: same allowlist.
    pulled = bool(compiled.registries) and node.REGISTRY_RULE in checked
    skipped = _PULLED_LOCAL if pulled else _ALWAYS_LOCAL
    for index, volume in enumerate(volumes if isinstance(volumes, list) else ()):
        if not isinstance(volume, dict):
            continue
        name = volume.get("name")
        if names is not None and isinstance(name, str):
            names.add(name)
            if name in ISTIO_VOLUMES:
                builder.violate(ISTIO_RULE, join(path, f"spec.volumes[{name}].name"),
                                f"{name!r} is one of Istio's volume names, and the injector "
                                "would merge this volume into its own; rename the volume")
        for source in volume:
            if source in skipped:  # the usual volume: one name, one local source
                continue
            label = name if isinstance(name, str) and name else str(index)
            where = join(path, f"spec.volumes[{label}].{source}")
            if source == "hostPath":
                if host_path and volume[source] is not None:
                    builder.violate(HOST_PATH_RULE, where, "mounts a host path into the pod; "
                                    "use an emptyDir, configMap, secret or persistent volume "
                                    "instead")
            elif source == "image":
                body = volume[source]
                reference = body.get("reference") if isinstance(body, dict) else None
                if not (isinstance(reference, str)
                        and node.allowed(reference, compiled.registries)):
                    builder.violate(node.REGISTRY_RULE, f"{where}.reference", f"{reference!r} "
                                    "is not from an approved registry "
                                    f"({', '.join(compiled.registries)}); the node pulls it "
                                    "from wherever it names: use an image from one of them")
            elif not network:
                continue
            elif source == "csi":
                body = volume[source]
                driver = body.get("driver") if isinstance(body, dict) else None
                if not (isinstance(driver, str) and driver in compiled.csi_drivers):
                    builder.violate(NETWORK_RULE, f"{where}.driver", f"{driver!r} is not an "
                                    "approved inline CSI driver (volumes.allowedCSIDrivers); "
                                    "its node plugin mounts on the pod's behalf, outside the "
                                    "pod's network: use a PersistentVolumeClaim, or ask an "
                                    "administrator to approve the driver")
            else:
                builder.violate(NETWORK_RULE, where, "is mounted by the node, which connects "
                                "for it outside the pod's network (around the sidecar and "
                                "NetworkPolicy); use a PersistentVolumeClaim, or a configMap, "
                                "secret, emptyDir or projected volume")
    return frozenset(names) if names is not None else None


def check_mounts(ref: ContainerRef, role: Role, declared: frozenset[str] | None, *,
                 compiled: CompiledPolicy, builder: VerdictBuilder, final: bool) -> None:
    """One container's ``volumeMounts`` (the caller checked it has some)."""
    if ISTIO_RULE not in compiled.checked or role in ISTIO_ROLES:
        return
    mounts = ref.body.get("volumeMounts")
    for index, mount in enumerate(mounts if isinstance(mounts, list) else ()):
        name = mount.get("name") if isinstance(mount, dict) else None
        if not isinstance(name, str):
            continue
        if final or declared is None:
            if name in ISTIO_VOLUMES:
                builder.violate(ISTIO_RULE, f"{ref.path}.volumeMounts[{index}]", f"mounts "
                                f"Istio's volume {name!r} (the proxy's xDS socket, identity "
                                "or certificates); only Istio's containers may: remove the "
                                "mount")
        elif name not in declared:
            builder.violate(ISTIO_RULE, f"{ref.path}.volumeMounts[{index}]", f"names the "
                            f"volume {name!r}, which the pod does not declare (Istio's "
                            "injector would make it valid by adding its own); declare the "
                            "volume or remove the mount")
