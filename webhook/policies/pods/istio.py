"""The Istio rules: injection on, capture not narrowed, proxy not replaced, sidecar present.

Owns ``pod.istio-inject``, ``pod.istio-reserved-names``, ``pod.istio-capture-annotations``,
``pod.istio-proxy-override`` and ``pod.istio-sidecar``, plus the labels the mutating webhook
adds so that Istio's injector selects the pod. Before injection (``final=False``) any
capture or override annotation is the user's and is refused by its presence. In the final
pod Istio has written some of them itself (``sidecar.istio.io/status``, and with the CNI
``interceptionMode: REDIRECT`` and ``includeOutboundIPRanges: "*"``), so there the values are
judged instead. The iptables arguments are judged by ``iptables``.
"""

from __future__ import annotations

from typing import Any

from webhook.policies.pods.compiled import CompiledPolicy
from webhook.policies.pods.iptables import capture_problems, ref_argv
from webhook.policies.pods.proxyids import ProxyIds
from webhook.policies.pods.walk import (
    EPHEMERAL_CONTAINERS,
    INIT_CONTAINERS,
    ContainerRef,
    join,
)
from webhook.policies.result import VerdictBuilder

INJECT = "sidecar.istio.io/inject"
REVISION = "istio.io/rev"
DATAPLANE_MODE = "istio.io/dataplane-mode"
STATUS = "sidecar.istio.io/status"
RESERVED_NAMES = frozenset({"istio-proxy", "istio-init", "istio-validation"})
INCLUDE_RANGES = "traffic.sidecar.istio.io/includeOutboundIPRanges"
INTERCEPTION_MODE = "sidecar.istio.io/interceptionMode"

# Rendered into istio-init's iptables arguments (or read by the CNI plugin): each one lets
# some outbound traffic skip the proxy.
CAPTURE_ANNOTATIONS = (
    "traffic.sidecar.istio.io/excludeOutboundIPRanges",
    "traffic.sidecar.istio.io/excludeOutboundPorts",
    "traffic.sidecar.istio.io/includeOutboundPorts",
    "traffic.sidecar.istio.io/excludeInterfaces",
    INCLUDE_RANGES,
    "traffic.sidecar.istio.io/kubevirtInterfaces",
    "istio.io/reroute-virtual-interfaces",
    INTERCEPTION_MODE,
)
# Replace the proxy, its image (a "/" in proxyImage replaces the init image too), its
# template, bootstrap or volumes.
OVERRIDE_ANNOTATIONS = ("sidecar.istio.io/proxyImage", "inject.istio.io/templates",
                        "proxy.istio.io/config", "sidecar.istio.io/bootstrapOverride",
                        "sidecar.istio.io/discoveryAddress")  # another control plane
# Off, the kubelet probes the app itself, from the node; Istio reads it with Go's ParseBool.
REWRITE_PROBERS = "sidecar.istio.io/rewriteAppHTTPProbers"
_GO_FALSE = frozenset({"0", "f", "F", "false", "FALSE", "False"})
OVERRIDE_PREFIXES = ("sidecar.istio.io/userVolume",)
# Written by the injector; pre-set by a user on CREATE they steer re-injection.
INJECTOR_OUTPUT_ANNOTATIONS = (STATUS, "proxy.istio.io/overrides")


def _annotation_path(path: str, section: str, key: str) -> str:
    return join(path, f"metadata.{section}[{key}]")


def check_injection(labels: dict[str, Any], annotations: dict[str, Any], *,
                    compiled: CompiledPolicy, builder: VerdictBuilder, path: str,
                    final: bool) -> None:
    """``pod.istio-inject``: nothing switches injection off or to another control plane."""
    if "pod.istio-inject" not in compiled.checked:
        return
    rule = "pod.istio-inject"
    accepted = compiled.accepted
    for section, values in (("labels", labels), ("annotations", annotations)):
        value = values.get(INJECT)
        if value is not None and value != "true":
            builder.violate(rule, _annotation_path(path, section, INJECT), f"is {value!r}; "
                            "agent pods must carry the Istio sidecar: remove it or set \"true\"")
        revision = values.get(REVISION)
        # isinstance first: a list here is unhashable (found by the transport fuzz).
        if revision is not None and (not isinstance(revision, str) or revision not in accepted) \
                and not _ossm2_output(section, revision, compiled=compiled, final=final):
            ours = compiled.revision or "the default revision"
            fix = f"set it to {compiled.revision}" if compiled.revision else "remove it"
            builder.violate(rule, _annotation_path(path, section, REVISION), f"is {revision!r}, "
                            f"not {ours}; another control plane would inject its own sidecar: "
                            f"{fix}")
        if values.get(DATAPLANE_MODE) == "none":
            builder.violate(rule, _annotation_path(path, section, DATAPLANE_MODE), "opts the "
                            "pod out of the mesh; remove it")
    if final:
        if labels.get(INJECT) != "true":
            builder.violate(rule, _annotation_path(path, "labels", INJECT), "is not \"true\"; "
                            "the mutating webhook adds it: is it installed?")
        if compiled.ossm2 and annotations.get(INJECT) != "true":
            builder.violate(rule, _annotation_path(path, "annotations", INJECT), "is not "
                            "\"true\"; OpenShift Service Mesh 2 injects on this annotation, "
                            "which the mutating webhook adds: is it installed?")
        if compiled.revision and not compiled.ossm2 and labels.get(REVISION) != \
                compiled.revision:
            builder.violate(rule, _annotation_path(path, "labels", REVISION), "is not "
                            f"{compiled.revision!r}; the mutating webhook adds it: is it "
                            "installed?")


def _ossm2_output(section: str, revision: Any, *, compiled: CompiledPolicy,
                  final: bool) -> bool:
    """OpenShift Service Mesh 2 writes its control plane's name as the istio.io/rev
    annotation; with no revision configured, membership (not this value) chose it."""
    return (final and compiled.ossm2 and compiled.revision is None
            and section == "annotations" and isinstance(revision, str))


def wanted_marks(labels: dict[str, Any], annotations: dict[str, Any],
                 compiled: CompiledPolicy) -> tuple[list[tuple[str, str]],
                                                    list[tuple[str, str]]]:
    """(labels, annotations) the mutating webhook adds so the mesh's injector selects the pod.

    Istio, Sail and OpenShift Service Mesh 3 select on the inject label (and istio.io/rev for
    a revision); OpenShift Service Mesh 2 on the inject annotation, and its control plane is
    chosen by namespace membership, so no istio.io/rev label is added there. Both flavours get
    the label: it is harmless where unused, and the final-pod check reads it.
    """
    wanted_labels = []
    if labels.get(INJECT) is None:
        wanted_labels.append((INJECT, "true"))
    if compiled.revision and not compiled.ossm2 and labels.get(REVISION) is None:
        wanted_labels.append((REVISION, compiled.revision))
    wanted_annotations = []
    if compiled.ossm2 and annotations.get(INJECT) is None:
        wanted_annotations.append((INJECT, "true"))
    return wanted_labels, wanted_annotations


def check_annotations(annotations: dict[str, Any], *, compiled: CompiledPolicy,
                      builder: VerdictBuilder, path: str, final: bool) -> None:
    """Capture-narrowing and proxy-replacing annotations."""
    if "pod.istio-capture-annotations" in compiled.checked:
        for key in CAPTURE_ANNOTATIONS:
            if key not in annotations:
                continue
            value = annotations[key]
            if key == INCLUDE_RANGES:
                harmless = value == "*"
            elif final:
                # In the final pod the injector may have written these itself (CNI mode).
                harmless = (value == "REDIRECT" if key == INTERCEPTION_MODE else
                            isinstance(value, str) and not value.strip())
            else:
                harmless = False
            if not harmless:
                builder.violate("pod.istio-capture-annotations",
                                _annotation_path(path, "annotations", key), f"is {value!r}, "
                                "which lets outbound traffic skip the Istio proxy; remove the "
                                "annotation (egress must go through the proxy)")
    if "pod.istio-proxy-override" in compiled.checked:
        overriding = [key for key in annotations if key in OVERRIDE_ANNOTATIONS
                      or key.startswith(OVERRIDE_PREFIXES)]
        if not final:
            overriding += [key for key in INJECTOR_OUTPUT_ANNOTATIONS if key in annotations]
        rewrite = annotations.get(REWRITE_PROBERS)
        if isinstance(rewrite, str) and rewrite in _GO_FALSE:
            overriding.append(REWRITE_PROBERS)
        for key in overriding:
            builder.violate("pod.istio-proxy-override",
                            _annotation_path(path, "annotations", key), "replaces or steers "
                            "Istio's proxy, its image, template, bootstrap, volumes, control "
                            "plane or probe rewriting; remove the annotation")


def check_reserved_name(ref: ContainerRef, *, compiled: CompiledPolicy,
                        builder: VerdictBuilder, final: bool) -> None:
    """Before injection every container is the user's; ephemeral ones always are."""
    if "pod.istio-reserved-names" not in compiled.checked or ref.name not in RESERVED_NAMES:
        return
    if final and ref.kind != EPHEMERAL_CONTAINERS:
        return
    builder.violate("pod.istio-reserved-names", join(ref.path, "name"), f"{ref.name!r} is "
                    "reserved for Istio's injected containers, and the injector would merge "
                    "this definition into its own; rename the container")


def check_sidecar(refs: list[ContainerRef], *, compiled: CompiledPolicy,
                  builder: VerdictBuilder, path: str, ids: ProxyIds) -> None:
    """``pod.istio-sidecar`` over the final pod: a proxy, and an init that captures it all.

    ``ids`` is the proxy's identity as the pod gives it: the iptables ``-u``/``-g`` must name
    exactly that (on OpenShift, the top of the namespace's ranges rather than 1337).
    """
    rule = "pod.istio-sidecar"
    if not compiled.require_sidecar or rule not in compiled.checked:
        return
    proxy = any(ref.name == "istio-proxy" and (ref.kind == "containers" or (
        ref.kind == INIT_CONTAINERS and ref.body.get("restartPolicy") == "Always"))
        for ref in refs)
    if not proxy:
        builder.violate(rule, join(path, "spec.containers"), "has no istio-proxy sidecar "
                        "(container or native sidecar), so egress is not filtered; label the "
                        "pod sidecar.istio.io/inject=true and make sure this webhook's "
                        "configuration sorts before Istio's injector")
    inits = [ref for ref in refs if ref.kind == INIT_CONTAINERS
             and ref.name in ("istio-init", "istio-validation")]
    if not inits:
        builder.violate(rule, join(path, "spec.initContainers"), "has no istio-init (or "
                        "istio-validation with the Istio CNI), so no outbound traffic is "
                        "redirected to the proxy; let Istio's injector add it")
    for ref in inits:
        found = ref_argv(ref)
        if found is None:
            builder.violate(rule, join(ref.path, "args"), "does not run istio-iptables; only "
                            "Istio's injector may define this container")
            continue
        problems = capture_problems(found.words, proxy_uid=ids.uid, proxy_gid=ids.gid,
                                    cni=ref.name == "istio-validation", small=found.small)
        if problems:
            builder.violate(rule, join(ref.path, "args"), "leaves outbound traffic uncaptured: "
                            f"{'; '.join(problems)}; remove the traffic.sidecar.istio.io/* "
                            "annotations and Istio mesh settings that narrow capture")
