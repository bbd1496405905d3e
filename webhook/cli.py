"""The ``agent-sandbox-webhook`` command line: ``serve``, ``check``, ``render``,
``controller``, ``audit``, ``doctor``, ``certs``.

Owns argument parsing and exit codes only; each subcommand's work lives in its own module.
Every ``serve`` flag can also come from an ``AGENT_SANDBOX_*`` environment variable, which
is how the Deployment in manifests/ configures it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from webhook import __version__
from webhook.certs.manager import cert_manager_settings, register_cert_manager_arguments
from webhook.certs.pki import register_certs_command
from webhook.config.flags import add_env_argument, env_name
from webhook.controller.command import register_controller_command
from webhook.core.errors import ConfigError
from webhook.server.logs import configure_logging
from webhook.server.serve import ServeSettings, run
from webhook.server.workers import supervise
from webhook.tools.audit import register_audit_command
from webhook.tools.check import register_check_command
from webhook.tools.doctor.command import register_doctor_command
from webhook.tools.render import register_render_command


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _workers(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 64:
        raise argparse.ArgumentTypeError(f"--workers wants a number from 1 to 64, got {value!r}")
    return int(value)


def _register_serve(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve", help="run the admission webhook over HTTPS",
        description="Runs the admission webhook. With no arguments: the embedded default "
        "policy, an empty egress registry and a throwaway self-signed certificate on "
        "127.0.0.1:8443. Every flag can also be set by the environment variable named in its "
        "help. On SIGTERM or Ctrl-C it stops being ready, keeps answering for "
        "--shutdown-delay seconds, then drains; a second SIGTERM or Ctrl-C exits at once.")
    add_env_argument(serve, "--listen", kind=parse_listen, default="127.0.0.1:8443",
                     help="HOST:PORT to listen on")
    add_env_argument(serve, "--policy", shown_default="the embedded policy",
                     help="policy YAML file, reloaded when it changes")
    add_env_argument(serve, "--registry", shown_default="an empty registry, approving nothing",
                     help="egress registry YAML file, reloaded when it changes")
    add_env_argument(serve, "--tls-cert", help="serving certificate PEM, with --tls-key")
    add_env_argument(serve, "--tls-key", help="serving key PEM, with --tls-cert")
    add_env_argument(serve, "--client-ca", shown_default="no client certificate required",
                     help="require API server client certificates signed by this CA")
    add_env_argument(serve, "--log-level", default="info",
                     choices=["debug", "info", "warning", "error"], help="log level")
    for flag, default, what in (
            ("--reload-interval", "2",
             "seconds between checks of policy, registry and certificate files"),
            ("--shutdown-delay", "5",
             "seconds to keep serving with readiness false after SIGTERM"),
            ("--drain-timeout", "10", "seconds in-flight requests get to finish on shutdown"),
            ("--audit-interval", "0",
             "seconds between read-only audits of the cluster, published as "
             "agent_sandbox_audit_violations (needs the agent-sandbox-auditor ClusterRole); "
             "0 turns them off"),
            ("--handshake-timeout", "10",
             "seconds a client gets to complete the TLS handshake"),
            ("--header-timeout", "10",
             "seconds a client gets to send complete request headers (also the idle "
             "keep-alive limit)"),
            ("--body-timeout", "10",
             "seconds a client gets to send the request body (then 408)")):
        add_env_argument(serve, flag, kind=float, default=default, help=what)
    add_env_argument(serve, "--max-connections", kind=int, default="256",
                     help="open connections beyond which new ones are closed at once; each "
                     "costs about 300 KiB while open")
    add_env_argument(serve, "--workers", kind=_workers, default="1",
                     help="serving processes sharing the port, one core each; more than one "
                     "runs a supervisor that starts them, restarts one that dies and stops "
                     "them all on SIGTERM (give the pod as many CPUs)")
    serve.add_argument("--watch-skills", action="store_true",
                       default=os.environ.get(env_name("--watch-skills"), "") in ("1", "true"),
                       help="keep a background cache of the cluster's Skills, which pods "
                       "naming a Skill (agentsandbox.io/skill) are checked against; needs "
                       "list/watch on skills.agentsandbox.io; without it such pods fail "
                       f"closed (env {env_name('--watch-skills')}; default off; true turns "
                       "it on)")
    register_cert_manager_arguments(serve)
    serve.set_defaults(func=_run_serve)


def _run_serve(args: argparse.Namespace) -> int:
    configure_logging(args.log_level)
    if bool(args.tls_cert) != bool(args.tls_key):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    host, port = args.listen
    settings = ServeSettings(
        host=host, port=port, policy_path=_path(args.policy),
        registry_path=_path(args.registry), cert_path=_path(args.tls_cert),
        key_path=_path(args.tls_key), client_ca_path=_path(args.client_ca),
        reload_interval=args.reload_interval, shutdown_delay=args.shutdown_delay,
        drain_timeout=args.drain_timeout, certificates=cert_manager_settings(args),
        audit_interval=args.audit_interval, max_connections=args.max_connections,
        handshake_timeout=args.handshake_timeout, header_timeout=args.header_timeout,
        body_timeout=args.body_timeout, workers=args.workers,
        watch_skills=args.watch_skills)
    try:
        if settings.workers > 1:
            return asyncio.run(supervise(settings, log_level=args.log_level))
        asyncio.run(run(settings))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="agent-sandbox-webhook",
        description="Admission webhook that keeps AI-agent pods in Kata VMs behind the Istio "
        "sidecar and a filtering resolver, and admits only approved egress.")
    parser.add_argument("--version", action="version", version=__version__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _register_serve(subparsers)
    register_check_command(subparsers)
    register_render_command(subparsers)
    register_controller_command(subparsers)
    register_audit_command(subparsers)
    register_doctor_command(subparsers)
    register_certs_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except BrokenPipeError:
        # The reader went away (`check ... | head`): stop quietly, and without claiming that
        # everything was admitted, since the rest of the report was never read.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
