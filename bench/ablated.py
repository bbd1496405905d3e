"""``python -m webhook serve`` with parts of the request path replaced by a constant.

Owns the server of the "where the time goes in the server" table of ``python -m bench.run``.
``BENCH_ABLATE`` (comma-separated) names what stops costing anything:

- ``decide``: the policy runs once per stage; every later review gets that first outcome;
- ``parse``: the body is parsed once; every later review reuses that first request;
- ``record``: no metrics and no decision-log line.

Each part's cost under load is then the difference in throughput, measured the same way as
the real server's. Only for measuring: the answers are the first request's, whatever is sent.
"""

from __future__ import annotations

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


if __name__ == "__main__":
    _ablate({part for part in os.environ.get(ABLATE, "").split(",") if part})
    sys.exit(main(sys.argv[1:]))
