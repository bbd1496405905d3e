"""WasmPlugin and ProxyConfig admission in agent namespaces: nothing that reprograms the proxy.

Owns ``validate_wasmplugin`` and ``validate_proxyconfig`` for objects in agent namespaces
(the root namespace's mesh-wide ones are ``webhook.policies.rootnamespace``'s):

- a WasmPlugin (extensions.istio.io) loads code into the agent's own proxy, fetched from any
  OCI registry or URL, that sees and can redirect every request, so it is refused like an
  EnvoyFilter (``wasmplugin.forbidden``): nothing in it can be compared with the registry;
- a ProxyConfig (networking.istio.io) changes how pilot-agent starts the proxy. Its
  ``environmentVariables`` reach pilot-agent and Envoy's bootstrap, which is enough to change
  where the proxy connects, so only the fields the policy lists as safe
  (``istio.proxyConfigSafeFields``, default ``concurrency`` and ``image``) may be set, besides
  the ``selector`` that scopes it (``proxyconfig.unsafe-field``).

Neither needs the registry.
"""

from __future__ import annotations

from typing import Any

from webhook.config.policy import Policy
from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.forbidden import refuse_outright
from webhook.policies.result import Verdict, VerdictBuilder

WASMPLUGIN_FORBIDDEN = "wasmplugin.forbidden"
PROXYCONFIG_UNSAFE_FIELD = "proxyconfig.unsafe-field"


def validate_wasmplugin(request: Request, context: Context) -> Verdict:
    return refuse_outright(request, context, WASMPLUGIN_FORBIDDEN,
                           "a WasmPlugin loads code into the agent's own proxy that sees and "
                           "can redirect every request, past the egress registry; "
                           "WasmPlugins are not allowed in agent namespaces. Ask a platform "
                           "admin to install a plugin you need from the Istio root namespace "
                           "with a workloadSelector")


def validate_proxyconfig(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj) or not active(context.policy, PROXYCONFIG_UNSAFE_FIELD):
        return Verdict()
    b = VerdictBuilder()
    unsafe_proxyconfig_fields(b, obj.get("spec"), context.policy, PROXYCONFIG_UNSAFE_FIELD)
    return b.build()


def unsafe_proxyconfig_fields(b: VerdictBuilder, spec: Any, policy: Policy, rule: str) -> None:
    """One violation per ProxyConfig field the policy does not list as safe."""
    safe = {"selector", *policy.istio.proxy_config_safe_fields}
    for key in sorted(spec) if isinstance(spec, dict) else ():
        if key not in safe:
            b.violate(rule, f"spec.{key}", f"{key} is not among the ProxyConfig fields the "
                      f"policy lists as safe ({', '.join(sorted(safe))}): it changes how "
                      "pilot-agent and Envoy start and can change where the proxy "
                      "connects; remove it, or ask the operator to list it in "
                      "istio.proxyConfigSafeFields")
