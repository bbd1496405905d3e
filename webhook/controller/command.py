"""``agent-sandbox-webhook controller``: its flags (each also an ``AGENT_SANDBOX_*`` variable).

Owns argument parsing only; ``webhook.controller.run`` does the work.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from webhook.cluster.listing import EXIT_UNREACHABLE, SourceError
from webhook.config.flags import add_env_argument
from webhook.controller.run import ControllerSettings, run_controller


def register_controller_command(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "controller", help="keep the rendered egress layers in the cluster",
        description="Watches the egress registry ConfigMap and the namespaces "
        "labelled agentsandbox.io/enforce=true, and applies exactly what `render` renders "
        "(server-side apply); deletes what it owns and no longer renders. One replica is "
        "active (leader election on a Lease).")
    add_env_argument(parser, "--namespace", default="agent-sandbox-system",
                     help="the webhook's namespace: registry ConfigMap, resolver allowlist, "
                     "Lease")
    add_env_argument(parser, "--policy", shown_default="the embedded policy",
                     help="policy YAML file, read on every pass")
    add_env_argument(parser, "--registry-configmap", default="egress-registry",
                     help="the ConfigMap holding registry.yaml")
    add_env_argument(parser, "--lease-name", default="agent-sandbox-controller",
                     help="the coordination.k8s.io Lease the replicas elect a leader on")
    add_env_argument(parser, "--metrics-port", kind=int, default="9090",
                     help="port of the /metrics endpoint")
    add_env_argument(parser, "--resync-seconds", kind=float, default="300",
                     help="a full pass at least this often (finds and repairs drift)")
    add_env_argument(parser, "--log-level", default="info",
                     choices=["debug", "info", "warning", "error"], help="log level")
    parser.set_defaults(func=_run)
    return parser


def _run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return run_controller(ControllerSettings(
            namespace=args.namespace, policy_path=Path(args.policy) if args.policy else None,
            registry_configmap=args.registry_configmap, lease_name=args.lease_name,
            metrics_port=args.metrics_port, resync_seconds=args.resync_seconds))
    except SourceError as exc:  # no cluster to reach: one line and exit 2, as doctor and audit
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_UNREACHABLE
