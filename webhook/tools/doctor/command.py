"""The ``doctor`` subcommand: gather once, run every check, print one line per finding.

Owns the flags, the report (``✔`` passed, ``✖`` failed with its fix on the same line, ``-``
does not apply here) and the exit status: 0 when nothing failed, 1 when anything did, 2 when
the cluster cannot be reached at all. Read-only, like everything under it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from webhook.cluster.inspection import ClusterInspector, KubernetesInspector
from webhook.cluster.listing import EXIT_UNREACHABLE, SourceError, api_client_from_environment
from webhook.tools.doctor.checks import run_checks
from webhook.tools.doctor.findings import Finding
from webhook.tools.doctor.snapshot import Settings, gather

EXIT_READY = 0
EXIT_NOT_READY = 1


def register_doctor_command(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor", help="check that a live cluster has what agent-sandbox-webhook needs",
        description="Read-only check of the current cluster (kubeconfig or in-cluster "
                    "config): Kubernetes version, Istio's injector and REGISTRY_ONLY egress, "
                    "the Kata RuntimeClass, our webhook configurations, their CA bundle and "
                    "endpoints, policy and registry ConfigMaps, agent namespaces, the "
                    "filtering resolver and, when the controller runs, the rendered egress "
                    "layers. One line per check: ✔ passed, ✖ failed (with the fix), - does "
                    "not apply. Exit status: 0 nothing failed, 1 something failed, 2 the "
                    "cluster could not be reached.")
    parser.add_argument("--context", default=None, help="kubeconfig context to use")
    defaults = Settings()
    parser.add_argument("--namespace", default=defaults.namespace,
                        help=f"the webhook's namespace (default {defaults.namespace})")
    parser.add_argument("--istio-namespace", default=None,
                        help="Istio's root namespace, holding its mesh config (default: the "
                        "policy's mesh.controlPlaneNamespace, istio-system unless set)")
    parser.set_defaults(func=run_doctor)
    return parser


def run_doctor(args: argparse.Namespace, *, inspector: ClusterInspector | None = None,
               out: TextIO | None = None, err: TextIO | None = None,
               now: datetime | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        inspector = inspector or KubernetesInspector(
            api_client_from_environment(context=args.context))
        inspector.version()  # one cheap call first: unreachable is not "not ready"
    except SourceError as exc:
        err.write(f"error: {exc}\n")
        return EXIT_UNREACHABLE
    settings = Settings(namespace=args.namespace, istio_namespace=args.istio_namespace)
    findings = run_checks(gather(inspector, settings=settings, now=now or datetime.now(UTC)))
    for finding in findings:
        out.write(render(finding) + "\n")
    failures = sum(1 for f in findings if not f.ok)
    checked = sum(1 for f in findings if f.applies)
    skipped = len(findings) - checked
    out.write(f"{checked - failures} passed, {failures} failed"
              + (f", {skipped} not applicable" if skipped else "") + "\n")
    return EXIT_NOT_READY if failures else EXIT_READY


def render(finding: Finding) -> str:
    if not finding.applies:
        return f"- {finding.check}: {finding.message}"
    if finding.ok:
        return f"✔ {finding.check}: {finding.message}"
    return f"✖ {finding.check}: {finding.message}; fix: {finding.fix}"
