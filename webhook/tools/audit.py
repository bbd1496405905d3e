"""``agent-sandbox-webhook audit``: which objects in a live cluster would the webhook refuse now?

Owns what is audited and how: pods, workloads, Services, Endpoints, EndpointSlices, Istio
and Gateway API objects in agent namespaces (labelled ``agentsandbox.io/enforce``), the
mesh-wide kinds (Sidecar, EnvoyFilter, ProxyConfig, WasmPlugin) in Istio's root namespace,
ServiceEntries (listed at the first served version of v1, v1beta1, v1alpha3: the API server
converts stored objects to it, and Istio's CRD converts by rewriting ``apiVersion`` only) and
Skills in every non-system namespace, and agent-sandbox ``Sandbox``/``SandboxTemplate``
objects when those CRDs are installed. Every object is a final
object, checked with the validating stage, through ``webhook.tools.offline`` and therefore the
server's own ``admit``. Also owns ``audit_loop``, the optional periodic audit inside the
webhook that hands violation counts by rule to a callback (the server owns the gauge).

Deliberately never writes to the cluster and creates no per-object report resources; the
listing itself lives behind ``webhook.cluster.listing.ObjectSource``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from webhook.cluster.listing import KubernetesSource, ObjectSource, SourceError
from webhook.config.policy import load_policy
from webhook.core.errors import ConfigError
from webhook.egress.registry import load_registry
from webhook.policies.context import SkillCatalog
from webhook.tools.offline import (
    ContextPair,
    Contexts,
    Decision,
    ObjectResult,
    Selection,
    decide_object,
)
from webhook.tools.report import EXIT_UNUSABLE_INPUT, Format, exit_status, write_report

log = logging.getLogger(__name__)

# (group, plural, versions to try in order: the first one served is used)
CustomResources = tuple[tuple[str, str, tuple[str, ...]], ...]
AGENT_NAMESPACE_CUSTOM: CustomResources = (
    ("networking.istio.io", "sidecars", ("v1", "v1beta1", "v1alpha3")),
    ("networking.istio.io", "envoyfilters", ("v1alpha3",)),
    ("networking.istio.io", "workloadentries", ("v1", "v1beta1", "v1alpha3")),
    ("networking.istio.io", "virtualservices", ("v1", "v1beta1", "v1alpha3")),
    ("networking.istio.io", "proxyconfigs", ("v1beta1",)),
    ("extensions.istio.io", "wasmplugins", ("v1alpha1",)),
    ("security.istio.io", "requestauthentications", ("v1", "v1beta1")),
    ("discovery.k8s.io", "endpointslices", ("v1",)),
    ("gateway.networking.k8s.io", "httproutes", ("v1", "v1beta1")),
    ("gateway.networking.k8s.io", "grpcroutes", ("v1", "v1alpha2")),
    ("gateway.networking.k8s.io", "tcproutes", ("v1alpha2",)),
    ("gateway.networking.k8s.io", "tlsroutes", ("v1", "v1alpha3", "v1alpha2")),
    ("agents.x-k8s.io", "sandboxes", ("v1beta1", "v1alpha1")),
    ("extensions.agents.x-k8s.io", "sandboxtemplates", ("v1beta1", "v1alpha1")),
)
# Mesh-wide kinds also audited in Istio's root namespace (by the root-namespace rules).
ROOT_NAMESPACE_PLURALS = frozenset({"sidecars", "envoyfilters", "proxyconfigs", "wasmplugins"})
EVERY_NAMESPACE_CUSTOM: CustomResources = (
    ("networking.istio.io", "serviceentries", ("v1", "v1beta1", "v1alpha3")),
    ("agentsandbox.io", "skills", ("v1alpha1",)),
)


def audit_cluster(source: ObjectSource, *, contexts: ContextPair) -> list[ObjectResult]:
    """Every audited object's result; skipped objects (not selected) are not listed."""
    selection = Selection.from_namespaces(source.list_namespaces())
    agent_namespaces = sorted(selection.enforce | selection.warn)
    root = contexts.enforce.policy.istio.root_namespace
    objects: list[dict[str, Any]] = []
    for namespace in agent_namespaces:
        objects.extend(source.list_pods(namespace))
        objects.extend(w for w in source.list_workloads(namespace) if not _controlled(w))
        objects.extend(source.list_services(namespace))
    for group, plural, versions in AGENT_NAMESPACE_CUSTOM:
        objects.extend(o for o in _list_served(source, group, plural, versions)
                       if _namespace(o) in agent_namespaces
                       or (plural in ROOT_NAMESPACE_PLURALS and _namespace(o) == root))
    for group, plural, versions in EVERY_NAMESPACE_CUSTOM:
        objects.extend(_list_served(source, group, plural, versions))
    # Pods naming a Skill are judged against the Skills just listed.
    skills = SkillCatalog(o for o in objects if o.get("kind") == "Skill")
    judged = Contexts.with_skills(contexts, skills)
    results = [decide_object(obj, source="cluster", default_namespace="",
                             selection=selection, contexts=judged, final=True)
               for obj in objects]
    return [r for r in results if r.decision is not Decision.SKIPPED]


def violations_by_rule(results: Sequence[ObjectResult]) -> dict[str, int]:
    """How many audited objects break each rule (undecidable objects count as ``error``)."""
    counts: Counter[str] = Counter()
    for result in results:
        if result.decision is Decision.ERROR:
            counts["error"] += 1
        counts.update(result.rules)
    return dict(counts)


async def audit_loop(*, source: ObjectSource, contexts: Callable[[], ContextPair],
                     interval: float, publish: Callable[[Mapping[str, int]], None]) -> None:
    """Audit every ``interval`` seconds and publish counts by rule, until cancelled.

    ``contexts`` is called on every round so that a reloaded policy or registry counts from
    the next round on. A failed round is logged and leaves the last published counts.
    """
    while True:
        try:
            results = await asyncio.to_thread(audit_cluster, source, contexts=contexts())
        except SourceError as exc:
            log.warning("audit round failed: %s", exc)
        except Exception:
            # A bug in one round must not end the periodic audit for the process's lifetime.
            log.exception("audit round failed")
        else:
            publish(violations_by_rule(results))
        await asyncio.sleep(interval)


def register_audit_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``audit`` to the CLI; the parsed namespace's ``func`` runs it and returns a status."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "audit", help="report objects in the current cluster that the webhook would refuse",
        description="List agent pods, workloads, Services, endpoints, Istio and Gateway API "
                    "objects, the root namespace's mesh-wide Istio objects, ServiceEntries "
                    "and Skills with the "
                    "current kubeconfig (or in-cluster config) and report every object the "
                    "policy and registry would refuse. Read-only. Exit status: 0 nothing "
                    "refused, 1 something refused, 2 cluster or configuration unusable.")
    parser.add_argument("-o", "--output", choices=[f.value for f in Format],
                        default=Format.TEXT.value, help="output format (default: text)")
    parser.add_argument("--all", action="store_true",
                        help="also list admitted objects (default: only refused ones)")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    parser.add_argument("--policy", type=Path, default=None,
                        help="policy file (default: the embedded policy)")
    parser.add_argument("--registry", type=Path, default=None,
                        help="egress registry file (default: the embedded registry)")
    parser.set_defaults(func=run_audit)
    return parser


def run_audit(args: argparse.Namespace, *, source: ObjectSource | None = None,
              out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        contexts = Contexts.build(policy=load_policy(args.policy),
                                  registry=load_registry(args.registry),
                                  registry_problem="the egress registry could not be loaded")
        source = source or KubernetesSource.from_environment(context=args.context)
        results = audit_cluster(source, contexts=contexts)
    except (ConfigError, SourceError) as exc:
        err.write(f"error: {exc}\n")
        return EXIT_UNUSABLE_INPUT
    # Objects in warn-mode namespaces are admitted, but a rule they break is still news.
    shown = results if args.all else [r for r in results
                                      if r.decision is not Decision.ADMITTED or r.rules]
    write_report(shown, fmt=Format(args.output), out=out, err=err, summary_of=results)
    return exit_status(results)


def _list_served(source: ObjectSource, group: str, plural: str,
                 versions: Sequence[str]) -> list[dict[str, Any]]:
    for version in versions:
        listed = source.list_custom(group, version, plural)
        if listed is not None:
            return listed
    return []  # not installed in this cluster: nothing to audit


def _controlled(obj: Mapping[str, Any]) -> bool:
    # A Deployment's ReplicaSets and a CronJob's Jobs repeat their owner's template;
    # the owner is audited, so the copy would only double-count.
    owners = (obj.get("metadata") or {}).get("ownerReferences") or ()
    return any(isinstance(o, dict) and o.get("controller") for o in owners)


def _namespace(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


def periodic_audit_ctx(*, contexts: Callable[[], ContextPair], interval: float,
                       publish: Callable[[Mapping[str, int]], None],
                       ) -> Callable[[Any], AsyncIterator[None]]:
    """A ``cleanup_ctx`` entry that runs ``audit_loop`` inside ``serve`` (off by default).

    It is never on the admission path: it lists objects with the cluster credentials in a
    worker thread and only publishes counts, never per-object resources.
    """

    async def periodic_audit(app: Any) -> AsyncIterator[None]:
        source = await asyncio.to_thread(KubernetesSource.from_environment)
        task = asyncio.create_task(audit_loop(source=source, contexts=contexts,
                                              interval=interval, publish=publish),
                                   name="periodic-audit")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return periodic_audit
