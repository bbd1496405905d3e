"""The benchmark's quick path runs end to end and measures something, with no errors.

Numbers are never asserted against targets here: the machine running tests is not the one
the targets are about. This only proves ``python -m bench.run --quick`` still works.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads peak RSS from /proc")
def test_quick_benchmark_measures_both_servers_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--seconds", "1",
         "--cases", "pod-8k,serviceentry", "--concurrency", "4", "--ablate",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
        env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "| pod-8k |" in done.stdout
    results = orjson.loads(out.read_bytes())
    assert results["errors"] == 0
    assert [row["case"] for row in results["rows"]] == ["pod-8k", "serviceentry"]
    for row in results["rows"]:
        assert row["webhook"]["requests"] > 0
        assert row["baseline"]["requests"] > 0
    assert all(cost["min_us"] > 0 for cost in results["costs"])
    assert results["paced"]["webhook"]["requests"] > 0
    assert results["rss_mib"]["webhook"] > 0
    # What each part costs in the server: the real server, then one part after another gone.
    assert [tuple(a["removed"]) for a in results["ablated"]] == [
        (), ("record",), ("record", "decide"), ("record", "decide", "parse")]
    assert all(a["load"]["requests"] > 0 for a in results["ablated"])
    assert "Where the time goes in the server" in done.stdout
    # What each pod rule costs: both totals, then every pod rule once.
    rules = [cost["rule"] for cost in results["rule_costs"]]
    assert rules[:2] == ["(every rule)", "(no pod rule)"]
    assert len(rules) == len(set(rules))
    assert {"pod.memory-floor", "pod.dns", "pod.runtime-class"} <= set(rules)
    assert results["rule_costs"][0]["us"] > results["rule_costs"][1]["us"] > 0
