"""``python -m webhook serve`` with parts of the request path replaced by a constant.

Owns the server of the "where the time goes in the server" table of ``python -m bench.run``.
``BENCH_ABLATE`` (comma-separated) names what stops costing anything:

- ``decide``: the policy runs once per stage; every later review gets that first outcome;
- ``parse``: the body is parsed once; every later review reuses that first request;
- ``record``: no metrics and no decision-log line.

Each part's cost under load is then the difference in throughput, measured the same way as
the real server's. Only for measuring: the answers are the first request's, whatever is sent.
One process only: ``--workers`` above 1 would start workers that never load this module.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

import webhook.server.app as app
from webhook.cli import main

ABLATE = "BENCH_ABLATE"
PARTS = ("decide", "parse", "record")


def _ablate(parts: set[str]) -> None:
    unknown = parts - set(PARTS)
    if unknown:
        raise SystemExit(f"{ABLATE}: unknown parts {sorted(unknown)}; known: {PARTS}")
    names = vars(app)  # the handler looks these up as module globals at each request
    if "decide" in parts:
        decide, decided = names["admit"], {}

        def admit_once(request: Any, *, stage: Any, context: Any) -> Any:
            key = (stage, id(context))
            if key not in decided:
                decided[key] = decide(request, stage=stage, context=context)
            return decided[key]

        names["admit"] = admit_once
    if "parse" in parts:
        parse = names["parse_review"]
        parsed: list[Any] = []

        def parse_once(body: bytes) -> Any:
            if not parsed:
                parsed.append(parse(body))
            return parsed[0]

        names["parse_review"] = parse_once
    if "record" in parts:
        names["_record"] = lambda *args, **kwargs: None


def _one_process(argv: list[str]) -> bool:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--workers", type=int, default=1)
    workers: int = parser.parse_known_args(argv)[0].workers
    return workers == 1


if __name__ == "__main__":
    if not _one_process(sys.argv[1:]):
        raise SystemExit("bench.ablated serves in one process: --workers must be 1")
    _ablate({part for part in os.environ.get(ABLATE, "").split(",") if part})
    sys.exit(main(sys.argv[1:]))
