"""The ``agent-sandbox-webhook`` command line: ``serve``, ``check``, ``audit``, ``certs``.

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
from webhook.core.errors import ConfigError
from webhook.server.logs import configure_logging
from webhook.server.serve import ServeSettings, run
from webhook.tools.audit import register_audit_command
from webhook.tools.check import register_check_command

ENV_PREFIX = "AGENT_SANDBOX_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name, default)


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


def parse_listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"--listen wants HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def _register_serve(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    serve = subparsers.add_parser(
        "serve", help="run the admission webhook over HTTPS",
        description="Runs the admission webhook. With no arguments: the embedded default "
        "policy, an empty egress registry and a throwaway self-signed certificate on "
        "127.0.0.1:8443.")
    serve.add_argument("--listen", type=parse_listen,
                       default=parse_listen(_env("LISTEN", "127.0.0.1:8443") or ""),
                       help="HOST:PORT to listen on (env AGENT_SANDBOX_LISTEN; "
                       "default 127.0.0.1:8443)")
    serve.add_argument("--policy", default=_env("POLICY"),
                       help="policy YAML file, reloaded when it changes (env "
                       "AGENT_SANDBOX_POLICY; default: the embedded policy)")
    serve.add_argument("--registry", default=_env("REGISTRY"),
                       help="egress registry YAML file, reloaded when it changes (env "
                       "AGENT_SANDBOX_REGISTRY; default: an empty registry, approving nothing)")
    serve.add_argument("--tls-cert", default=_env("TLS_CERT"),
                       help="serving certificate PEM (env AGENT_SANDBOX_TLS_CERT)")
    serve.add_argument("--tls-key", default=_env("TLS_KEY"),
                       help="serving key PEM (env AGENT_SANDBOX_TLS_KEY)")
    serve.add_argument("--client-ca", default=_env("CLIENT_CA"),
                       help="require API server client certificates signed by this CA "
                       "(env AGENT_SANDBOX_CLIENT_CA)")
    serve.add_argument("--log-level", default=_env("LOG_LEVEL", "info"),
                       choices=["debug", "info", "warning", "error"],
                       help="env AGENT_SANDBOX_LOG_LEVEL; default info")
    serve.add_argument("--reload-interval", type=float,
                       default=float(_env("RELOAD_INTERVAL", "2") or 2),
                       help="seconds between checks of policy, registry and certificate files")
    serve.add_argument("--shutdown-delay", type=float,
                       default=float(_env("SHUTDOWN_DELAY", "5") or 5),
                       help="seconds to keep serving with readiness false after SIGTERM")
    serve.add_argument("--drain-timeout", type=float,
                       default=float(_env("DRAIN_TIMEOUT", "10") or 10),
                       help="seconds in-flight requests get to finish on shutdown")
    serve.add_argument("--audit-interval", type=float,
                       default=float(_env("AUDIT_INTERVAL", "0") or 0),
                       help="seconds between read-only audits of the cluster, published as "
                       "agent_sandbox_audit_violations (needs the agent-sandbox-auditor "
                       "ClusterRole); 0, the default, turns them off")
    register_cert_manager_arguments(serve)
    for flag, env, default, kind, what in (
            ("--max-connections", "MAX_CONNECTIONS", "256", int,
             "open connections beyond which new ones are closed at once; each costs about "
             "300 KiB while open"),
            ("--handshake-timeout", "HANDSHAKE_TIMEOUT", "10", float,
             "seconds a client gets to complete the TLS handshake"),
            ("--header-timeout", "HEADER_TIMEOUT", "10", float,
             "seconds a client gets to send complete request headers (also the idle "
             "keep-alive limit)"),
            ("--body-timeout", "BODY_TIMEOUT", "10", float,
             "seconds a client gets to send the request body (then 408)")):
        serve.add_argument(flag, type=kind, default=kind(_env(env, default) or default),
                           help=f"{what} (env AGENT_SANDBOX_{env}; default {default})")
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
        body_timeout=args.body_timeout)
    try:
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
    register_audit_command(subparsers)
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
