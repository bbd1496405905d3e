"""The benchmark: ``python -m bench.run`` (about 7 minutes) or ``--quick`` (under a minute).

Times the in-process cost of every case, then starts the real webhook and the do-nothing
server with the same throwaway TLS certificate, both pinned to core 0 while the load
generator runs on core 1, and drives each case at each concurrency against both, alternating
so that machine noise hits both alike. Then it holds the 8 KB pod at about half of the
webhook's capacity to measure latency where a real API server would run it, reads both
servers' peak RSS, and prints Markdown tables and the verdict on the targets (issues 6 and
15). With two or more cores it then runs ``--workers 2`` on every core against the one-worker
figures.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

from bench import inprocess, load, rules
from bench.cases import Case, build_cases, write_registry
from bench.report import (
    ABLATION_STEPS,
    TARGET_CASE,
    Ablated,
    Paced,
    Results,
    Row,
    Scaling,
    markdown,
)
from bench.servers import Server, start_baseline, start_webhook
from webhook.certs.pki import write_dev_bundle

SERVER_CORE = 0
LOAD_CORE = 1
PACED_CONNECTIONS = 8
SCALING_WORKERS = 2
RULE_CASE = "pod-small"  # the captured pod: what each rule costs on a plain agent pod


def _cores() -> tuple[int | None, int | None]:
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return None, None
    return cores[0], cores[1]


class Driver:
    """Runs one load against one server with the chosen generator."""

    def __init__(self, *, generator: str, scratch: Path, core: int | None, seconds: float):
        self.generator = generator
        self.scratch = scratch
        self.core = core
        self.seconds = seconds
        self._bodies: dict[str, Path] = {}

    def __call__(self, server: Server, case: Case, connections: int,
                 delay_ms: int = 0) -> load.Load:
        if self.generator == "wrk":
            body = self._bodies.get(case.name)
            if body is None:
                body = self.scratch / f"{case.name}.json"
                body.write_bytes(case.body)
                self._bodies[case.name] = body
            return load.run_wrk(url=server.base_url + case.path, body_file=body,
                                connections=connections, seconds=self.seconds,
                                scratch=self.scratch, core=self.core, delay_ms=delay_ms)
        return load.run_asyncio(host="127.0.0.1", port=server.port, path=case.path,
                                body=case.body, connections=connections,
                                seconds=self.seconds, ca=server.ca, delay_ms=delay_ms)


def check_verdicts(webhook: Server, cases: list[Case]) -> None:
    for case in cases:
        response = webhook.verdict(case.path, case.body)
        if response.get("allowed") is not case.allowed:
            raise RuntimeError(f"{case.name}: expected allowed={case.allowed}, got {response}")


def paced(drive: Driver, servers: dict[str, Server], case: Case, rows: list[Row]) -> Paced:
    """Both servers at one pace: each connection pauses so the webhook gets ~half capacity."""
    own = [r for r in rows if r.case == case.name]
    capacity = max(r.webhook.rate for r in own)
    quiet = min(own, key=lambda r: r.connections).webhook.p50
    interval_ms = PACED_CONNECTIONS / (capacity / 2) * 1000
    delay_ms = max(1, round(interval_ms - quiet))
    results = {name: drive(server, case, PACED_CONNECTIONS, delay_ms)
               for name, server in servers.items()}
    return Paced(case=case.name, capacity=capacity, connections=PACED_CONNECTIONS,
                 delay_ms=delay_ms, baseline=results["baseline"], webhook=results["webhook"])


def scaling(drive: Driver, webhook: Server, case: Case, rows: list[Row]) -> list[Scaling]:
    """``--workers 2`` on every core (the load generator shares them) against one worker."""
    own = {r.connections: r.webhook for r in rows if r.case == case.name}
    return [Scaling(case=case.name, connections=connections, workers=SCALING_WORKERS,
                    one=one, many=drive(webhook, case, connections))
            for connections, one in sorted(own.items())]


def ablation(drive: Driver, case: Case, *, start: Callable[[tuple[str, ...]], Server],
             baseline: Server, connections: int) -> tuple[list[Ablated], Ablated]:
    """The webhook with each cumulative removal of ``ABLATION_STEPS``, and the do-nothing
    server, in interleaved rounds (so that a slow patch of the machine hits every one), the
    best of three rounds each after one to warm up.

    Differences of 10-15 µs per review are within this machine's noise; the policy and the
    parse stand well above it.
    """
    servers: list[Server] = []
    try:
        for removed, _ in ABLATION_STEPS:
            servers.append(start(removed))
        runs: list[list[load.Load]] = [[] for _ in range(len(servers) + 1)]
        for _ in range(4):
            for index, server in enumerate([*servers, baseline]):
                runs[index].append(drive(server, case, connections))
    finally:
        for server in servers:
            server.stop()
    found = [Ablated(removed, max(these[1:], key=lambda run: run.rate),
                     errors=sum(run.errors for run in these))
             for (removed, _), these in zip(ABLATION_STEPS, runs, strict=False)]
    return found, Ablated(("everything",), max(runs[-1][1:], key=lambda run: run.rate),
                          errors=sum(run.errors for run in runs[-1]))


def run(*, cases: list[Case], concurrencies: list[int], seconds: float, cost_budget: float,
        generator: str, log_level: str, ablate: bool = True) -> Results:
    server_core, load_core = _cores()
    results = Results(generator=generator, seconds=seconds, load_before=os.getloadavg()[0])
    with tempfile.TemporaryDirectory(prefix="webhook-bench-") as tmp:
        scratch = Path(tmp)
        registry = write_registry(scratch)
        if server_core is not None:
            os.sched_setaffinity(0, {server_core})
        results.costs = inprocess.measure_all(cases, registry, budget=cost_budget)
        rule_case = next((c for c in cases if c.name == RULE_CASE), cases[0])
        if rule_case.stage == "mutate":
            results.rule_case = rule_case.name
            results.rule_costs = rules.measure(rule_case, registry, budget=cost_budget / 8)
        if load_core is not None:
            os.sched_setaffinity(0, {load_core})
        bundle = write_dev_bundle(scratch / "tls", dns_names=["localhost"],
                                  ip_addresses=["127.0.0.1"])
        tls = {"cert": bundle.cert, "key": bundle.key, "ca": bundle.ca_cert}
        servers = {"baseline": start_baseline(**tls, scratch=scratch, core=server_core)}
        try:
            servers["webhook"] = start_webhook(cert=bundle.cert, key=bundle.key,
                                               ca=bundle.ca_cert, registry=registry,
                                               scratch=scratch, core=server_core,
                                               log_level=log_level)
            check_verdicts(servers["webhook"], cases)
            drive = Driver(generator=generator, scratch=scratch, core=load_core,
                           seconds=seconds)
            for server in servers.values():  # warm up: imports, TLS session, allocator
                drive(server, cases[0], max(concurrencies))
            for case in cases:
                for connections in concurrencies:
                    base = drive(servers["baseline"], case, connections)
                    ours = drive(servers["webhook"], case, connections)
                    results.rows.append(Row(case.name, len(case.body), connections, base, ours))
            target = next((c for c in cases if c.name == TARGET_CASE), cases[0])
            results.paced = paced(drive, servers, target, results.rows)
            results.rss_mib = {name: s.peak_rss_mib() for name, s in servers.items()}
            if ablate:
                results.ablation_case, results.ablation_connections = (target.name,
                                                                       PACED_CONNECTIONS)
                results.ablated, results.ablation_baseline = ablation(
                    drive, target, connections=PACED_CONNECTIONS, baseline=servers["baseline"],
                    start=lambda removed: start_webhook(
                        cert=bundle.cert, key=bundle.key, ca=bundle.ca_cert, registry=registry,
                        scratch=scratch, core=server_core, log_level=log_level,
                        ablate=removed))
            if server_core is not None:  # a second core to scale onto
                many = start_webhook(cert=bundle.cert, key=bundle.key, ca=bundle.ca_cert,
                                     registry=registry, scratch=scratch, core=None,
                                     log_level=log_level, workers=SCALING_WORKERS)
                servers["webhook-workers"] = many
                unpinned = Driver(generator=generator, scratch=scratch, core=None,
                                  seconds=seconds)
                unpinned(many, target, max(concurrencies))  # warm up every worker
                results.scaling = scaling(unpinned, many, target, results.rows)
                results.worker_rss_mib = many.worker_peak_rss_mib()
                results.rss_mib["supervisor"] = many.peak_rss_mib()
            results.load_after = os.getloadavg()[0]
        finally:
            for server in servers.values():
                server.stop()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 1 s per load, one concurrency, short timing loops")
    parser.add_argument("--seconds", type=float, help="seconds per load run (default 2)")
    parser.add_argument("--concurrency", help="comma-separated connection counts "
                        "(default 1,8,25,50; --quick: 8)")
    parser.add_argument("--cases", help="comma-separated case names (default: all)")
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument("--log-level", default="info", help="the webhook's --log-level")
    parser.add_argument("--ablate", action=argparse.BooleanOptionalAction, default=None,
                        help="also run the webhook with parts removed, to see what each costs "
                        "under load (default: on, off with --quick)")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    cases = build_cases()
    if args.cases:
        wanted = args.cases.split(",")
        cases = [c for c in cases if c.name in wanted]
        if not cases:
            parser.error(f"no such case in {args.cases!r}")
    default_concurrency = "8" if args.quick else "1,8,25,50"
    concurrencies = [int(c) for c in (args.concurrency or default_concurrency).split(",")]
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if load.wrk_available() else "asyncio"
    results = run(cases=cases, concurrencies=concurrencies,
                  seconds=args.seconds or (1.0 if args.quick else 2.0),
                  cost_budget=0.1 if args.quick else 1.0, generator=generator,
                  log_level=args.log_level,
                  ablate=not args.quick if args.ablate is None else args.ablate)
    print(markdown(results))
    if args.json:
        from bench.report import as_json

        args.json.write_bytes(orjson.dumps(as_json(results), option=orjson.OPT_INDENT_2))
    return 1 if results.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
