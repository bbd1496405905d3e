"""Istio's root namespace: mesh-wide EnvoyFilters, WasmPlugins, Sidecars and ProxyConfigs.

Owns ``split_by_root``, which sends objects in the root namespace (policy
``istio.rootNamespace``, ``istio-system`` by default; the webhook configuration selects it by
name) to the checks here and every other object to the agent-namespace policy, and those
checks. In the root namespace an object without a workloadSelector applies to every proxy in
the mesh, agent pods included, so:

- ``rootnamespace.envoyfilter`` and ``rootnamespace.wasmplugin``: refused when they select
  every proxy: no selector (no ``workloadSelector``/``selector``, no ``targetRef(s)``), an
  empty one, or one that matches only on labels every mesh or agent pod carries
  (``security.istio.io/tlsMode``, ``sidecar.istio.io/inject``, ``istio.io/rev``,
  ``agentsandbox.io/*``). A selector on an application's own labels is the mesh admin's
  business: which pods carry those labels is not visible to a pure policy;
- ``rootnamespace.sidecar``: the root Sidecar without a workloadSelector is every
  namespace's default; it must not set ALLOW_ANY, an egressProxy or wildcard imports from every
  namespace (the checks of ``webhook.policies.sidecars``);
- ``rootnamespace.proxyconfig``: the root ProxyConfig without a selector applies to every proxy;
  it may set only the safe fields (``webhook.policies.meshextensions``).

Each is its own rule so that a mesh admin can start with ``warn``. Objects with a selector
are admitted: they configure the root namespace's own workloads or named applications.
"""

from __future__ import annotations

from typing import Any

from webhook.core.labels import ENFORCE_LABEL
from webhook.core.review import Request
from webhook.policies.context import Context, Handler
from webhook.policies.egress import active, needs_no_check
from webhook.policies.meshextensions import unsafe_proxyconfig_fields
from webhook.policies.result import Verdict, VerdictBuilder
from webhook.policies.sidecars import egress_hosts, outbound_policy

ROOT_ENVOYFILTER = "rootnamespace.envoyfilter"
ROOT_WASMPLUGIN = "rootnamespace.wasmplugin"
ROOT_SIDECAR = "rootnamespace.sidecar"
ROOT_PROXYCONFIG = "rootnamespace.proxyconfig"

# Labels whose value is the same on every injected (or every agent) pod: a selector made of
# these alone selects them all.
MESH_WIDE_LABELS = frozenset({"security.istio.io/tlsMode", "sidecar.istio.io/inject",
                              "istio.io/rev"})
AGENT_LABEL_PREFIX = ENFORCE_LABEL.split("/", 1)[0] + "/"


def split_by_root(agent: Handler, root: Handler) -> Handler:
    """A handler that judges root-namespace objects with ``root``, the rest with ``agent``."""

    def handler(request: Request, context: Context) -> Verdict:
        if request.object_namespace == context.policy.istio.root_namespace:
            return root(request, context)
        return agent(request, context)

    handler.__name__ = f"{agent.__name__}_or_root"
    return handler


def root_envoyfilter(request: Request, context: Context) -> Verdict:
    return _mesh_wide(request, context, ROOT_ENVOYFILTER, "workloadSelector", "labels",
                      "an EnvoyFilter in the root namespace that selects every proxy patches "
                      "every agent's proxy too (for example with a passthrough cluster)")


def root_wasmplugin(request: Request, context: Context) -> Verdict:
    return _mesh_wide(request, context, ROOT_WASMPLUGIN, "selector", "matchLabels",
                      "a WasmPlugin in the root namespace that selects every proxy runs its "
                      "code in every agent's proxy")


def root_sidecar(request: Request, context: Context) -> Verdict:
    obj, spec = _object(request)
    if (obj is None or not active(context.policy, ROOT_SIDECAR)
            or _selector(spec, "workloadSelector", "labels")):
        return Verdict()
    b = VerdictBuilder()
    outbound_policy(b, spec.get("outboundTrafficPolicy"), ROOT_SIDECAR)
    egress_hosts(b, spec.get("egress"), ROOT_SIDECAR)
    return b.build()


def root_proxyconfig(request: Request, context: Context) -> Verdict:
    obj, spec = _object(request)
    if (obj is None or not active(context.policy, ROOT_PROXYCONFIG)
            or _selector(spec, "selector", "matchLabels")):
        return Verdict()
    b = VerdictBuilder()
    unsafe_proxyconfig_fields(b, spec, context.policy, ROOT_PROXYCONFIG)
    return b.build()


def _object(request: Request) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    obj = request.object or {}
    if needs_no_check(request, obj):
        return None, {}
    spec = obj.get("spec")
    return obj, spec if isinstance(spec, dict) else {}


def _mesh_wide(request: Request, context: Context, rule: str, selector_key: str,
               labels_key: str, why: str) -> Verdict:
    obj, spec = _object(request)
    if obj is None or not active(context.policy, rule):
        return Verdict()
    if spec.get("targetRef") or spec.get("targetRefs"):
        return Verdict()  # attached to named Gateways or Services, not to every proxy
    if _selector(spec, selector_key, labels_key):
        return Verdict()
    b = VerdictBuilder()
    b.violate(rule, f"spec.{selector_key}", f"{why}, past the egress registry; give it a "
              f"{selector_key} on the labels of the workloads it is for (labels every mesh "
              "pod carries, such as security.istio.io/tlsMode, select them all)")
    return b.build()


def _selector(spec: dict[str, Any], selector_key: str, labels_key: str) -> bool:
    """True when the object names workloads more narrowly than "every proxy"."""
    selector = spec.get(selector_key)
    labels = selector.get(labels_key) if isinstance(selector, dict) else None
    if not isinstance(labels, dict) or not labels:
        return False
    return any(key not in MESH_WIDE_LABELS and not str(key).startswith(AGENT_LABEL_PREFIX)
               for key in labels)
