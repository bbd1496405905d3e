"""RequestAuthentication admission in agent namespaces: istiod fetches keys from approved hosts.

Owns ``validate_requestauthentication`` (security.istio.io, every served version). For each
``spec.jwtRules[]`` without inline ``jwks``, istiod itself fetches the key set: from
``jwksUri``, or, when that is unset too, from the OpenID discovery document under ``issuer``
(``<issuer>/.well-known/openid-configuration``). istiod runs outside any sidecar, so the fetch
passes no egress control, and it inlines what it got into the config of every selected proxy,
where the agent can read it at the proxy's admin port: a channel from, and a beacon to, any
host. So the URL istiod fetches must name a host the registry approves for the namespace, on
its port (443 for https, 80 for http), as HTTPS/TLS or HTTP. Inline ``jwks`` needs no fetch,
and a URL of an in-cluster Service stays in the cluster, but only a Service of the object's
own namespace, named with it (``keycloak.<namespace>.svc``): another namespace's Service can
point anywhere (hand-made endpoints, a forward proxy), and a short name is resolved by istiod
in its own namespace.

What a discovery document at an approved issuer then names as its ``jwks_uri`` is up to that
issuer's operator, whom the registry entry trusts.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import SplitResult, urlsplit

from webhook.core.review import Request
from webhook.egress.hosts import HostError, HostProblem, parse_host
from webhook.egress.registry import Approval, Registry
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check, refusal_text, require_registry
from webhook.policies.result import Verdict, VerdictBuilder
from webhook.policies.virtualservices import is_cluster_local, service_namespace

JWKS_URI = "requestauthentication.jwks-uri"
_DEFAULT_PORTS = {"https": 443, "http": 80}
_PROTOCOLS = {"https": ("HTTPS", "TLS"), "http": ("HTTP",)}


def validate_requestauthentication(request: Request, context: Context) -> Verdict:
    obj = request.object or {}
    if needs_no_check(request, obj) or not active(context.policy, JWKS_URI):
        return Verdict()
    spec = obj.get("spec")
    rules = spec.get("jwtRules") if isinstance(spec, dict) else None
    namespace = request.object_namespace
    b = VerdictBuilder()
    registry: Registry | None = None
    for i, rule in enumerate(rules if isinstance(rules, list) else ()):
        if not isinstance(rule, dict) or rule.get("jwks"):
            continue  # inline keys: istiod fetches nothing
        key = "jwksUri" if rule.get("jwksUri") else "issuer"
        path = f"spec.jwtRules[{i}].{key}"
        problem, url = _parse(rule.get(key), context, namespace)
        if problem is None and url is None:
            continue  # an in-cluster Service
        if problem is not None or url is None:
            b.violate(JWKS_URI, path, f"{problem}; istiod fetches the keys from this URL "
                      "itself, outside any sidecar; use an https URL of a host the egress "
                      "registry approves, or inline the keys with jwks")
            continue
        if registry is None:
            what = f"RequestAuthentication {namespace}/{request.name}"
            registry = require_registry(context, what=what)
        message = _approval_problem(registry, url, namespace)
        if message is not None:
            b.violate(JWKS_URI, path, f"istiod fetches the keys from this URL itself and "
                      f"puts them into the agents' proxies: {message}; or inline the keys with "
                      "jwks")
    return b.build()


def _parse(raw: Any, context: Context,
           namespace: str) -> tuple[str | None, SplitResult | None]:
    if not isinstance(raw, str) or not raw:
        return "no jwks, jwksUri or issuer URL", None
    try:
        url = urlsplit(raw)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return f"{raw!r} is not a URL ({exc})", None
    if url.scheme not in _DEFAULT_PORTS or not url.hostname:
        return f"{raw!r} is not an http(s) URL with a host", None
    domains = (context.policy.dns.cluster_domain,)
    try:
        parse_host(url.hostname, cluster_domains=domains)
    except HostError as exc:
        if exc.reason is HostProblem.CLUSTER and is_cluster_local(url.hostname, domains):
            if service_namespace(url.hostname, domains) == namespace:
                return None, None  # a Service of this namespace: inside the cluster
            return (f"{url.hostname!r} is not a Service of namespace {namespace} (name it "
                    f"<service>.{namespace}.svc; another namespace's Service can point "
                    "anywhere, and istiod resolves a short name in its own namespace)"), None
        return str(exc), None
    return None, url


def _approval_problem(registry: Registry, url: SplitResult, namespace: str) -> str | None:
    host = parse_host(url.hostname).name
    port = url.port or _DEFAULT_PORTS[url.scheme]
    protocols = _PROTOCOLS[url.scheme]
    result = registry.approve(host=host, namespace=namespace)
    if not isinstance(result, Approval):
        return refusal_text(result, namespace=namespace, wanted=[(port, protocols[0])])
    for protocol in protocols:
        on_port = registry.approve(host=host, namespace=namespace, port=port, protocol=protocol)
        if isinstance(on_port, Approval):
            return None
        result_on_port = on_port
    return refusal_text(result_on_port, namespace=namespace, wanted=[(port, protocols[0])])
