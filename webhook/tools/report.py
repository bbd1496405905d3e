"""Printing check and audit results: text, YAML, JSON or a diff, a summary, an exit status.

Owns the output formats shared by ``check`` and ``audit`` and the exit-status convention
(0 all admitted, 1 anything refused or undecidable, 2 unusable input; the last is raised by
the callers). It does not decide anything and reads nothing: it is given ``ObjectResult``s.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, TextIO

import orjson
import yaml

from webhook.tools.offline import Decision, ObjectResult

EXIT_ADMITTED = 0
EXIT_REFUSED = 1
EXIT_UNUSABLE_INPUT = 2


class Format(StrEnum):
    TEXT = "text"
    YAML = "yaml"
    JSON = "json"
    DIFF = "diff"


def exit_status(results: Sequence[ObjectResult]) -> int:
    """1 when the cluster would refuse anything (an undecidable object is refused too)."""
    failed = any(r.decision in (Decision.REFUSED, Decision.ERROR) for r in results)
    return EXIT_REFUSED if failed else EXIT_ADMITTED


def summary_line(results: Sequence[ObjectResult]) -> str:
    counts = Counter(r.decision for r in results)
    line = (f"{len(results)} object{'s' if len(results) != 1 else ''}: "
            f"{counts[Decision.ADMITTED]} admitted, {counts[Decision.REFUSED]} refused, "
            f"{counts[Decision.SKIPPED]} skipped")
    if counts[Decision.ERROR]:
        line += f", {counts[Decision.ERROR]} undecidable (refused, fail closed)"
    return line


def write_report(results: Sequence[ObjectResult], *, fmt: Format, out: TextIO,
                 err: TextIO, summary_of: Sequence[ObjectResult] | None = None) -> None:
    """Write every result, then the summary (on stderr for the machine-readable formats).

    ``summary_of`` counts a larger set than is shown (audit lists only what it refuses).
    """
    summary = summary_line(results if summary_of is None else summary_of)
    if fmt is Format.JSON:
        document = {"results": [as_record(r) for r in results],
                    "summary": summary}
        out.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
        err.write(summary + "\n")
        return
    if fmt is Format.YAML:
        records = [as_record(r) for r in results]
        out.write(yaml.safe_dump_all(records, sort_keys=False, default_flow_style=False)
                  if records else "")
        err.write(summary + "\n")
        return
    for result in results:
        out.write(render_text(result))
        if fmt is Format.DIFF:
            out.write(render_diff(result))
    out.write(summary + "\n")


def render_text(result: ObjectResult) -> str:
    lines = [f"{result.decision.value.upper():9}{result.api_version} {result.kind} "
             f"{result.display_name}  ({result.source})"]
    lines.extend(f"  {refusal}" for refusal in result.refusals)
    lines.extend(f"  warning: {warning}" for warning in result.warnings)
    if result.changes:
        lines.append(f"  changes: {', '.join(result.changes)}")
    lines.extend(f"  note: {note}" for note in result.notes)
    return "\n".join(lines) + "\n"


def render_diff(result: ObjectResult) -> str:
    """A unified diff of the object as submitted and as the webhook would store it."""
    if result.after is None or result.before is None or result.after == result.before:
        return ""
    label = f"{result.kind}/{result.display_name}"
    diff = difflib.unified_diff(
        _yaml(result.before).splitlines(keepends=True),
        _yaml(result.after).splitlines(keepends=True),
        fromfile=f"{label} (submitted)", tofile=f"{label} (admitted)")
    return "".join(diff)


def as_record(result: ObjectResult) -> dict[str, Any]:
    """One result as plain data, for -o yaml and -o json."""
    record: dict[str, Any] = {
        "source": result.source, "apiVersion": result.api_version, "kind": result.kind,
        "namespace": result.namespace, "name": result.name,
        "verdict": result.decision.value, "rules": list(result.rules),
        "refusals": list(result.refusals), "warnings": list(result.warnings),
        "notes": list(result.notes), "changes": list(result.changes),
    }
    if result.after is not None:
        record["object"] = result.after
    return record


def _yaml(obj: dict[str, Any]) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False)
