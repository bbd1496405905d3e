"""The benchmark's results as values, Markdown tables and the verdict on the targets.

Owns presentation only: nothing here measures. The tables are meant to be pasted into
``docs/performance.md``; ``as_json`` is what ``--json`` writes and the smoke test reads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.inprocess import Cost
from bench.load import Load
from bench.rules import RuleCost

# The targets (issues 6 and 15). They are reported, never asserted in the test suite.
TARGET_RATIO = 0.60
TARGET_SCALING = 1.8
TARGET_INPROCESS_US = 50.0
TARGET_ADDED_P50_MS = 0.5
TARGET_ADDED_P99_MS = 2.0
TARGET_RSS_MIB = 100.0
TARGET_CASE = "pod-8k"


@dataclass(frozen=True, slots=True)
class Row:
    case: str
    size: int
    connections: int
    baseline: Load
    webhook: Load

    @property
    def ratio(self) -> float:
        return self.webhook.rate / self.baseline.rate if self.baseline.rate else 0.0


@dataclass(frozen=True, slots=True)
class Paced:
    """Both servers at a fixed pace near half of the webhook's capacity for one case."""

    case: str
    capacity: float
    connections: int
    delay_ms: int
    baseline: Load
    webhook: Load


@dataclass(frozen=True, slots=True)
class Scaling:
    """One case at one concurrency: one worker on one core, then N workers on every core."""

    case: str
    connections: int
    workers: int
    one: Load
    many: Load

    @property
    def factor(self) -> float:
        return self.many.rate / self.one.rate if self.one.rate else 0.0


@dataclass(frozen=True, slots=True)
class Ablated:
    """The webhook with ``removed`` parts answering in no time (``bench.ablated``)."""

    removed: tuple[str, ...]
    load: Load  # the best run
    errors: int  # over every run, warm-up included


# What each cumulative removal of the ablation table takes away, in the table's words.
ABLATION_STEPS = (((), "the webhook as it runs"),
                  (("record",), "less the decision log and metrics"),
                  (("record", "decide"), "less the policy"),
                  (("record", "decide", "parse"), "less the parse"))


@dataclass
class Results:
    generator: str
    seconds: float
    rows: list[Row] = field(default_factory=list)
    costs: list[Cost] = field(default_factory=list)
    paced: Paced | None = None
    rss_mib: dict[str, float] = field(default_factory=dict)
    scaling: list[Scaling] = field(default_factory=list)
    worker_rss_mib: list[float] = field(default_factory=list)
    rule_costs: list[RuleCost] = field(default_factory=list)
    rule_case: str = ""
    ablated: list[Ablated] = field(default_factory=list)
    ablation_baseline: Ablated | None = None  # the do-nothing server in the same rounds
    ablation_case: str = ""
    ablation_connections: int = 0
    load_before: float = 0.0
    load_after: float = 0.0

    @property
    def errors(self) -> int:
        total = sum(r.webhook.errors + r.baseline.errors for r in self.rows)
        if self.paced is not None:
            total += self.paced.webhook.errors + self.paced.baseline.errors
        total += sum(s.many.errors for s in self.scaling)
        total += sum(a.errors for a in self.ablated)
        if self.ablation_baseline is not None:
            total += self.ablation_baseline.errors
        return total


def _ms(value: float) -> str:
    return f"{value:.2f}"


def load_table(results: Results) -> str:
    lines = ["| case | body | conns | do-nothing rev/s | webhook rev/s | ratio | "
             "p50 ms | p90 ms | p99 ms | do-nothing p50/p99 ms | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results.rows:
        w, b = r.webhook, r.baseline
        lines.append(f"| {r.case} | {r.size / 1024:.1f} KiB | {r.connections} | {b.rate:,.0f} | "
                     f"{w.rate:,.0f} | {r.ratio:.0%} | {_ms(w.p50)} | {_ms(w.p90)} | "
                     f"{_ms(w.p99)} | {_ms(b.p50)} / {_ms(b.p99)} | {w.errors + b.errors} |")
    return "\n".join(lines)


def cost_table(results: Results) -> str:
    lines = ["| case | in-process min µs | median µs |", "|---|---:|---:|"]
    lines += [f"| {c.case} | {c.min_us:.1f} | {c.median_us:.1f} |" for c in results.costs]
    return "\n".join(lines)


def paced_table(paced: Paced) -> str:
    lines = [f"At half of capacity ({paced.case}, capacity {paced.capacity:,.0f} rev/s, "
             f"{paced.connections} connections, {paced.delay_ms} ms pause each):", "",
             "| server | rev/s | p50 ms | p90 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for name, load in (("do-nothing", paced.baseline), ("webhook", paced.webhook)):
        lines.append(f"| {name} | {load.rate:,.0f} | {_ms(load.p50)} | {_ms(load.p90)} | "
                     f"{_ms(load.p99)} |")
    return "\n".join(lines)


def scaling_table(results: Results) -> str:
    lines = ["| case | conns | 1 worker rev/s (one core) | "
             f"{results.scaling[0].workers} workers rev/s (all cores) | factor | p99 ms | errors |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {s.case} | {s.connections} | {s.one.rate:,.0f} | {s.many.rate:,.0f} | "
              f"{s.factor:.2f}x | {_ms(s.many.p99)} | {s.many.errors} |" for s in results.scaling]
    return "\n".join(lines)


def rule_table(results: Results) -> str:
    lines = [f"What each pod rule costs in process ({results.rule_case}, `admit` alone):", "",
             "| rule | µs |", "|---|---:|"]
    lines += [f"| {c.rule} | {c.us:.1f} |" for c in results.rule_costs]
    return "\n".join(lines)


def ablation_table(results: Results) -> str:
    """Throughput as parts stop costing anything; each step's difference is that part."""
    lines = [f"Where the time goes in the server ({results.ablation_case} at "
             f"{results.ablation_connections} connections, each part removed in turn; the "
             "difference in µs per review is what it costs under load):", "",
             "| server | rev/s | µs per review | the part removed costs µs |",
             "|---|---:|---:|---:|"]
    words = dict(ABLATION_STEPS)
    previous: float | None = None
    for ablated in results.ablated:
        us = 1e6 / ablated.load.rate if ablated.load.rate else float("nan")
        step = "" if previous is None else f"{previous - us:.0f}"
        lines.append(f"| {words.get(ablated.removed, ','.join(ablated.removed))} | "
                     f"{ablated.load.rate:,.0f} | {us:.0f} | {step} |")
        previous = us
    base = results.ablation_baseline.load if results.ablation_baseline else None
    if base is not None and base.rate and previous is not None:
        us = 1e6 / base.rate
        lines.append(f"| the do-nothing server | {base.rate:,.0f} | {us:.0f} | "
                     f"{previous - us:.0f} (the rest of our handler) |")
    return "\n".join(lines)


def targets(results: Results) -> list[tuple[str, str, bool]]:
    """(target, measured, holds) for each target that this run measured."""
    found: list[tuple[str, str, bool]] = []
    rows = [r for r in results.rows if r.case == TARGET_CASE]
    if rows:
        best = max(rows, key=lambda r: r.webhook.rate)
        found.append((f"≥ {TARGET_RATIO:.0%} of do-nothing rev/s ({TARGET_CASE})",
                      f"{best.ratio:.0%} at {best.connections} conns", best.ratio >= TARGET_RATIO))
    costs = [c for c in results.costs if c.case == TARGET_CASE]
    if costs:
        found.append((f"in-process ≤ {TARGET_INPROCESS_US:.0f} µs ({TARGET_CASE})",
                      f"{costs[0].min_us:.1f} µs", costs[0].min_us <= TARGET_INPROCESS_US))
    if results.paced is not None:
        p = results.paced
        p50 = p.webhook.p50 - p.baseline.p50
        p99 = p.webhook.p99 - p.baseline.p99
        found.append((f"added p50 ≤ {TARGET_ADDED_P50_MS} ms at half capacity",
                      f"{p50:+.2f} ms (total {p.webhook.p50:.2f})", p50 <= TARGET_ADDED_P50_MS))
        found.append((f"added p99 ≤ {TARGET_ADDED_P99_MS} ms at half capacity",
                      f"{p99:+.2f} ms (total {p.webhook.p99:.2f})", p99 <= TARGET_ADDED_P99_MS))
    if results.scaling:
        top = max(results.scaling, key=lambda s: s.factor)
        found.append((f"--workers {top.workers} ≥ {TARGET_SCALING}x one worker ({top.case})",
                      f"{top.factor:.2f}x at {top.connections} conns",
                      top.factor >= TARGET_SCALING))
    if "webhook" in results.rss_mib:
        rss = max([results.rss_mib["webhook"], *results.worker_rss_mib])
        clean = results.errors == 0
        found.append((f"peak RSS ≤ {TARGET_RSS_MIB:.0f} MiB per worker, no errors",
                      f"{rss:.1f} MiB, {results.errors} errors",
                      rss <= TARGET_RSS_MIB and clean))
    return found


def markdown(results: Results) -> str:
    parts = [f"Load generator: {results.generator}, {results.seconds:g} s per run.", "",
             load_table(results), "", cost_table(results)]
    if results.paced is not None:
        parts += ["", paced_table(results.paced)]
    if results.scaling:
        parts += ["", scaling_table(results)]
    if results.ablated:
        parts += ["", ablation_table(results)]
    if results.rule_costs:
        parts += ["", rule_table(results)]
    rss = ", ".join(f"{name} {mib:.1f} MiB" for name, mib in results.rss_mib.items())
    if results.worker_rss_mib:
        rss += ", workers " + " / ".join(f"{mib:.1f}" for mib in results.worker_rss_mib) + " MiB"
    parts += ["", f"Peak RSS (VmHWM): {rss}.", "",
              f"Load average (1 min) before / after the run: {results.load_before:.2f} / "
              f"{results.load_after:.2f}.", "", "| target | measured | holds |", "|---|---|---|"]
    parts += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in targets(results)]
    return "\n".join(parts)


def as_json(results: Results) -> dict[str, Any]:
    data = asdict(results)
    for row, raw in zip(results.rows, data["rows"], strict=True):
        raw["ratio"] = row.ratio
        raw["webhook"]["rate"] = row.webhook.rate
        raw["baseline"]["rate"] = row.baseline.rate
    for ablated, raw in zip(results.ablated, data["ablated"], strict=True):
        raw["load"]["rate"] = ablated.load.rate
    if results.ablation_baseline is not None:
        data["ablation_baseline"]["load"]["rate"] = results.ablation_baseline.load.rate
    data["errors"] = results.errors
    data["targets"] = [{"target": t, "measured": m, "holds": ok} for t, m, ok in targets(results)]
    return data
