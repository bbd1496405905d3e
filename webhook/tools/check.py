"""``agent-sandbox-webhook check``: the webhook's verdict on manifests, offline, for CI.

Owns the command's flags, reading manifests (files, directories searched recursively for
``*.yaml``/``*.yml``/``*.json``, ``-`` for stdin; multi-document YAML, JSON, ``List`` kinds),
agent-namespace selection from Namespace objects in the input and from flags (warning about
labels that only look like the enforcement label), and the exit status: 0 only when something
was checked and nothing refused or skipped unexpectedly (``--allow-skipped`` relaxes that).
Unusable input (an unreadable file, a YAML or JSON error, a document that is not a Kubernetes
object) stops the run with status 2 and a message naming the file and line.

Deliberately does not decide anything: ``webhook.tools.offline`` runs each object through
``webhook.admission.seam.admit`` exactly as the server would, and ``webhook.tools.report`` prints.
No cluster and no network are touched.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import orjson
import yaml

from webhook.config.policy import load_policy
from webhook.core.errors import ConfigError, WebhookError
from webhook.egress.registry import load_registry
from webhook.policies.context import SkillCatalog
from webhook.tools.lookalike import lookalike_labels
from webhook.tools.offline import Contexts, ObjectResult, Selection, decide_object
from webhook.tools.report import (
    EXIT_NOT_CHECKED,
    EXIT_UNUSABLE_INPUT,
    Format,
    check_exit_status,
    not_checked_problem,
    write_report,
)

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class InputError(WebhookError):
    """Input that cannot be checked at all; the message names the file (and line)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """One Kubernetes object from the input, and where it came from (``file#document``)."""

    source: str
    object: dict[str, Any]


def register_check_command(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``check`` to the CLI; the parsed namespace's ``func`` runs it and returns a status."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "check", help="check manifests offline with the webhook's own admission path",
        description="Run manifests through the same admission path as the server, offline. "
                    "Exit status: 0 something was checked and everything admitted, 1 something "
                    "refused, 2 unusable input, 3 nothing refused but nothing checked, or "
                    "objects skipped outside every agent namespace (see --allow-skipped).")
    add_check_arguments(parser)
    parser.set_defaults(func=run_check)
    return parser


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-f", "--filename", dest="paths", action="append", required=True,
                        metavar="PATH", help="file, directory (recursive) or - for stdin; "
                        "repeatable")
    parser.add_argument("-o", "--output", choices=[f.value for f in Format],
                        default=Format.TEXT.value, help="output format (default: text)")
    parser.add_argument("-n", "--namespace", default="default",
                        help="namespace for objects that name none (default: default)")
    parser.add_argument("--agent-namespace", action="append", default=[], metavar="NS",
                        help="treat NS as an enforced agent namespace; repeatable")
    parser.add_argument("--warn-namespace", action="append", default=[], metavar="NS",
                        help="treat NS as an agent namespace in warn mode; repeatable")
    parser.add_argument("--policy", type=Path, default=None,
                        help="policy file (default: the embedded policy)")
    parser.add_argument("--registry", type=Path, default=None,
                        help="egress registry file (default: the embedded registry)")
    parser.add_argument("--assume-sidecar", action=argparse.BooleanOptionalAction,
                        default=None, help="skip pod.istio-sidecar, which only the final pod "
                        "in a cluster can satisfy (default: on, off with --final)")
    parser.add_argument("--final", action="store_true",
                        help="objects are final, as stored in a cluster: validating stage only")
    parser.add_argument("--allow-skipped", action="store_true",
                        help="exit 0 even when nothing was checked, or when pods, workloads "
                        "or Istio objects outside every agent namespace were skipped")


def run_check(args: argparse.Namespace, *, stdin: TextIO | None = None,
              out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    try:
        manifests = list(read_manifests(args.paths, stdin=stdin or sys.stdin))
        policy = load_policy(args.policy)
        registry = load_registry(args.registry)
    except (InputError, ConfigError) as exc:
        err.write(f"error: {exc}\n")
        return EXIT_UNUSABLE_INPUT
    # Pods naming a Skill are judged against the Skills in the input, as the server judges
    # them against its cache of the cluster's Skills.
    skills = SkillCatalog(m.object for m in manifests
                          if m.object.get("kind") == "Skill"
                          and str(m.object.get("apiVersion", "")).startswith("agentsandbox.io/"))
    contexts = Contexts.build(policy=policy, registry=registry,
                              registry_problem="the egress registry could not be loaded",
                              skills=skills)
    selection = Selection.from_namespaces(
        (m.object for m in manifests if _is_namespace(m.object)),
        enforce=args.agent_namespace, warn=args.warn_namespace)
    assume_sidecar = not args.final if args.assume_sidecar is None else args.assume_sidecar
    results: list[ObjectResult] = [
        decide_object(m.object, source=m.source, default_namespace=args.namespace,
                      selection=selection, contexts=contexts, final=args.final,
                      assume_sidecar=assume_sidecar)
        for m in manifests
    ]
    for manifest in manifests:
        if _is_namespace(manifest.object):
            metadata = manifest.object.get("metadata") or {}
            for finding in lookalike_labels(metadata.get("labels")):
                err.write(f"warning: Namespace {metadata.get('name')} ({manifest.source}): "
                          f"{finding}\n")
    write_report(results, fmt=Format(args.output), out=out, err=err)
    status = check_exit_status(results, allow_skipped=args.allow_skipped)
    if status == EXIT_NOT_CHECKED:
        err.write(f"error: {not_checked_problem(results)}\n")
    return status


def read_manifests(paths: Sequence[str], *, stdin: TextIO) -> Iterator[Manifest]:
    for path in paths:
        if path == "-":
            yield from parse_documents(stdin.read(), source="<stdin>", as_json=False)
            continue
        for file in _expand(Path(path)):
            try:
                text = file.read_text("utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise InputError(f"{file}: cannot read: {exc}") from exc
            yield from parse_documents(text, source=str(file), as_json=file.suffix == ".json")


def _expand(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file()
                       and p.suffix in MANIFEST_SUFFIXES)
        if not found:
            raise InputError(f"{path}: no *.yaml, *.yml or *.json files in this directory")
        return found
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    return [path]


def parse_documents(text: str, *, source: str, as_json: bool) -> Iterator[Manifest]:
    """Every Kubernetes object in one file, ``List`` kinds flattened, in order."""
    for index, document in enumerate(_load(text, source=source, as_json=as_json), start=1):
        if document is None:
            continue  # an empty document between two "---"
        where = f"{source}#{index}"
        yield from _objects(document, where=where)


def _load(text: str, *, source: str, as_json: bool) -> list[Any]:
    if as_json:
        try:
            return [orjson.loads(text)]
        except orjson.JSONDecodeError as exc:
            raise InputError(f"{source}:{exc.lineno}:{exc.colno}: not valid JSON: "
                             f"{exc.msg}") from exc
    try:
        return list(yaml.safe_load_all(text))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{source}{at}: not valid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{source}: not valid YAML: {exc}") from exc


def _objects(document: Any, *, where: str) -> Iterator[Manifest]:
    if not isinstance(document, dict) or not document.get("kind") \
            or not document.get("apiVersion"):
        raise InputError(f"{where}: not a Kubernetes object (a mapping with apiVersion and "
                         "kind)")
    kind = str(document["kind"])
    request = document.get("request")
    if kind == "AdmissionReview" and isinstance(request, dict):
        # A captured review: check the object it carries, in the namespace it was sent for.
        obj = request.get("object")
        if isinstance(obj, dict):
            metadata = {"namespace": request.get("namespace") or "", **(obj.get("metadata")
                                                                        or {})}
            yield from _objects({**obj, "metadata": metadata}, where=f"{where}.request")
        return
    if kind.endswith("List") and isinstance(document.get("items"), list):
        # kubectl's List and typed lists (PodList): items may omit their own kind.
        item_kind = kind[: -len("List")] if kind != "List" else ""
        for number, item in enumerate(document["items"], start=1):
            if isinstance(item, dict) and item_kind:
                item = {"apiVersion": document["apiVersion"], "kind": item_kind, **item}
            yield from _objects(item, where=f"{where}.items[{number - 1}]")
        return
    yield Manifest(source=where, object=document)


def _is_namespace(obj: dict[str, Any]) -> bool:
    return obj.get("kind") == "Namespace" and obj.get("apiVersion") == "v1"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``check`` on its own (the package CLI registers it as a subcommand)."""
    parser = argparse.ArgumentParser(prog="agent-sandbox-webhook check")
    add_check_arguments(parser)
    return run_check(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
