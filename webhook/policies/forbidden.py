"""Istio kinds refused outright in agent namespaces: EnvoyFilter and WorkloadEntry.

Owns ``validate_envoyfilter`` and ``validate_workloadentry``, and ``refuse_outright``, which
other kinds refused whole share (WasmPlugin). Neither object has anything the egress registry
could approve, and each can undo REGISTRY_ONLY on its own:

- an EnvoyFilter patches the generated Envoy configuration of the proxies it selects
  (listeners, clusters, routes), so one can add an original-destination passthrough cluster
  and let every connection out. Its patches are free-form Envoy config: no host in it can be
  compared with the registry, so there is nothing partial to allow.
- a WorkloadEntry adds a mesh endpoint at an arbitrary address. A ServiceEntry's
  ``workloadSelector`` or a Service's selector then picks it up, and traffic for an approved
  (or in-cluster) name goes to that address.

Which namespaces count as agent namespaces is the webhook configuration's business (and
``webhook.tools.offline`` mirrors it): these handlers refuse whatever they are sent. They do not
need the registry, so a missing registry never blocks them.
"""

from __future__ import annotations

from webhook.core.review import Request
from webhook.policies.context import Context
from webhook.policies.egress import active, needs_no_check
from webhook.policies.result import Verdict, VerdictBuilder

ENVOYFILTER_FORBIDDEN = "envoyfilter.forbidden"
WORKLOADENTRY_FORBIDDEN = "workloadentry.forbidden"


def validate_envoyfilter(request: Request, context: Context) -> Verdict:
    return refuse_outright(
        request, context, ENVOYFILTER_FORBIDDEN,
        "an EnvoyFilter rewrites the proxy's listeners, clusters and routes (for example adds "
        "an original-destination passthrough cluster), which undoes REGISTRY_ONLY, and "
        "nothing in it can be checked against the egress registry; EnvoyFilters are not "
        "allowed in agent namespaces. Ask a platform admin to put a filter you need in the "
        "Istio root namespace, with a workloadSelector")


def validate_workloadentry(request: Request, context: Context) -> Verdict:
    return refuse_outright(
        request, context, WORKLOADENTRY_FORBIDDEN,
        "a WorkloadEntry adds a mesh endpoint at an arbitrary address, which a "
        "ServiceEntry's workloadSelector or a Service's selector then sends traffic to, past "
        "the egress registry; WorkloadEntries are not allowed in agent namespaces. Reach "
        "external hosts through a ServiceEntry the registry approves")


def refuse_outright(request: Request, context: Context, rule: str, message: str) -> Verdict:
    # A status write, or an update of an object being deleted (a finalizer removed), must
    # still go through: refusing it would keep an object we already dislike around forever.
    if needs_no_check(request, request.object or {}) or not active(context.policy, rule):
        return Verdict()
    b = VerdictBuilder()
    b.violate(rule, "spec", message)
    return b.build()
