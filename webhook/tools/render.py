"""``agent-sandbox-webhook render``: every egress layer of the agent namespaces, offline.

Owns the command's flags, loading the registry and policy files, and printing the objects
``webhook.egress.render.render_layers`` returns: a YAML stream (multi-line strings as literal
blocks, so the RPZ zone and the Corefile read as files) or a JSON ``v1`` List. Pure and
offline: nothing is read from or sent to a cluster; the controller applies the same objects.
Exit status 0, or 2 when a file does not load.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

from webhook.config.policy import load_policy
from webhook.core.errors import ConfigError
from webhook.egress.registry import load_registry
from webhook.egress.render import DEFAULT_WEBHOOK_NAMESPACE, render_layers
from webhook.tools.report import EXIT_UNUSABLE_INPUT


class _Dumper(yaml.SafeDumper):
    """Block strings for multi-line values, and never an anchor: objects are read by people."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def register_render_command(subparsers: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "render", help="render ServiceEntries, Sidecars, NetworkPolicies and the resolver "
        "allowlist from the egress registry",
        description="Print the objects that make the given agent namespaces egress exactly "
        "what the registry approves. Offline; the controller applies the same objects.")
    parser.add_argument("--registry", required=True, help="egress registry YAML file")
    parser.add_argument("--policy", help="policy YAML file (default: the embedded policy)")
    parser.add_argument("--namespace", "-n", dest="namespaces", action="append",
                        required=True, metavar="NS", help="an agent namespace (repeatable)")
    parser.add_argument("--skills", metavar="FILE", help="Skill objects (YAML stream or List) "
                        "to render per-Skill Sidecars for")
    parser.add_argument("--webhook-namespace", default=DEFAULT_WEBHOOK_NAMESPACE,
                        help="where the resolver allowlist ConfigMap goes "
                        f"(default {DEFAULT_WEBHOOK_NAMESPACE})")
    parser.add_argument("-o", "--output", choices=["yaml", "json"], default="yaml")
    parser.set_defaults(func=run_render)
    return parser


def run_render(args: argparse.Namespace) -> int:
    try:
        registry = load_registry(Path(args.registry))
        policy = load_policy(Path(args.policy) if args.policy else None)
        skills = read_skills(Path(args.skills)) if args.skills else []
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE_INPUT
    objects = render_layers(registry, policy, args.namespaces,
                            webhook_namespace=args.webhook_namespace, skills=skills)
    write_objects(objects, args.output, sys.stdout)
    return 0


def read_skills(path: Path) -> list[dict[str, Any]]:
    """The Skill objects in a YAML (or JSON) stream, ``List`` items included."""
    try:
        documents = list(yaml.safe_load_all(path.read_text("utf-8")))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read Skills: {exc}") from exc
    found: list[dict[str, Any]] = []
    for document in documents:
        items = document.get("items") if isinstance(document, dict) and \
            document.get("kind") == "List" else [document]
        found.extend(item for item in items or () if isinstance(item, dict)
                     and item.get("kind") == "Skill")
    return found


def write_objects(objects: list[dict[str, Any]], output: str, out: TextIO) -> None:
    if output == "json":
        document = {"apiVersion": "v1", "kind": "List", "items": objects}
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out.write(yaml.dump_all(objects, Dumper=_Dumper, sort_keys=False, width=100))
