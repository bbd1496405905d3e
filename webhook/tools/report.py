"""Printing check and audit results: text, YAML, JSON or a diff, a summary, an exit status.

Owns the output formats shared by ``check`` and ``audit``, the summary (which says why
objects were skipped) and the exit-status convention (0 all admitted, 1 anything refused or
undecidable, 2 unusable input, raised by the callers; for ``check`` also 3, nothing refused
but not everything that should have been checked was). It does not decide anything and reads
nothing: it is given ``ObjectResult``s.
"""

from __future__ import annotations

import difflib
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, TextIO

import orjson
import yaml

from webhook.policies.workloads import TEMPLATE_PATHS
from webhook.tools.offline import Decision, ObjectResult, SkipReason

EXIT_ADMITTED = 0
EXIT_REFUSED = 1
EXIT_UNUSABLE_INPUT = 2
EXIT_NOT_CHECKED = 3
# Skips that mean "you probably expected this to be checked": a pod, workload or Istio object
# outside every agent namespace (a typo in the namespace label, or no namespace at all).
UNEXPECTED_SKIPS = frozenset({SkipReason.NOT_AGENT_NAMESPACE})


class Format(StrEnum):
    TEXT = "text"
    YAML = "yaml"
    JSON = "json"
    DIFF = "diff"


def exit_status(results: Sequence[ObjectResult]) -> int:
    """1 when the cluster would refuse anything (an undecidable object is refused too)."""
    failed = any(r.decision in (Decision.REFUSED, Decision.ERROR) for r in results)
    return EXIT_REFUSED if failed else EXIT_ADMITTED


def check_exit_status(results: Sequence[ObjectResult], *, allow_skipped: bool) -> int:
    """``check``: 0 only when something was checked, nothing refused and nothing unexpected
    skipped; ``allow_skipped`` accepts skipped objects (but still not refusals)."""
    status = exit_status(results)
    if status != EXIT_ADMITTED or allow_skipped:
        return status
    return EXIT_NOT_CHECKED if not_checked_problem(results) else EXIT_ADMITTED


def not_checked_problem(results: Sequence[ObjectResult]) -> str | None:
    """Why a run that refused nothing still proves nothing, or None when it proves something."""
    unexpected = [r for r in results if r.skipped_because in UNEXPECTED_SKIPS]
    if unexpected:
        many = len(unexpected) != 1
        return (f"{len(unexpected)} object{'s' if many else ''} that the webhook checks in "
                f"agent namespaces {'were' if many else 'was'} skipped, not being in one "
                f"({_namespaces(unexpected)}): label the namespace agentsandbox.io/enforce="
                "true (or warn) in the input, pass --agent-namespace, or pass --allow-skipped "
                "if that is intended")
    if not any(r.decision is Decision.ADMITTED for r in results):
        return ("nothing was checked: no object in the input is one the webhook decides "
                "(pass --allow-skipped if that is intended)")
    return None


def summary_line(results: Sequence[ObjectResult]) -> str:
    counts = Counter(r.decision for r in results)
    line = (f"{len(results)} object{'s' if len(results) != 1 else ''}: "
            f"{counts[Decision.ADMITTED]} admitted, {counts[Decision.REFUSED]} refused, "
            f"{counts[Decision.SKIPPED]} skipped")
    if counts[Decision.ERROR]:
        line += f", {counts[Decision.ERROR]} undecidable (refused, fail closed)"
    reasons = _skip_reasons(results)
    return f"{line} ({reasons})" if reasons else line


def _skip_reasons(results: Sequence[ObjectResult]) -> str:
    """``2 not in an agent namespace: prod, (none); 1 kind without a policy: Namespace``."""
    by_reason: dict[SkipReason, list[ObjectResult]] = {}
    for result in results:
        if result.skipped_because is not None:
            by_reason.setdefault(result.skipped_because, []).append(result)
    parts = []
    for reason, skipped in by_reason.items():
        if reason is SkipReason.NOT_AGENT_NAMESPACE:
            detail = _namespaces(skipped)
        elif reason is SkipReason.NO_POLICY:
            detail = ", ".join(sorted({r.kind for r in skipped}))
        else:
            detail = ", ".join(sorted({r.display_name for r in skipped}))
        parts.append(f"{len(skipped)} {reason.value}: {detail}")
    return "; ".join(parts)


def _namespaces(results: Sequence[ObjectResult]) -> str:
    return ", ".join(sorted({r.namespace or "(none)" for r in results}))


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
    """A unified diff of the object as submitted and as the webhook would store it.

    An admitted object the webhook leaves as it is gets a note saying why instead, since an
    empty diff on a Deployment looks like a bug: templates are never patched.
    """
    if result.after is None or result.before is None:
        return ""
    if result.after == result.before:
        group = result.api_version.rpartition("/")[0]
        if (group, result.kind) in TEMPLATE_PATHS:
            return ("  no diff: a workload's pod template is never patched; the pod webhook "
                    "makes the changes in the warnings above on each pod it creates\n")
        return "  no diff: the webhook changes nothing in this object\n"
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
