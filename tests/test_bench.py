"""A small run of each benchmark script, so none of them rots.

The figures are not checked here (speed targets live in docs/performance.md);
each script must run to the end and report what it measured.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent


def run_bench(*args: str) -> str:
    finished = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    return finished.stdout


def test_pipeline_bench_delivers_every_order_both_ways():
    output = run_bench("bench/pipeline.py", "--orders", "40", "--baseline-orders", "3")
    report = json.loads(output.strip().splitlines()[-1])
    assert (report["batched"]["orders"], report["batched"]["requests"]) == (40, 1)
    assert (report["one_each"]["orders"], report["one_each"]["requests"]) == (3, 3)
    assert report["batched"]["worker_peak_mib"] > 10


def test_intake_bench_loads_both_endpoints():
    output = run_bench(
        "bench/intake.py", "--seconds", "1", "--connections", "2", "--load", "python"
    )
    report = json.loads(output.strip().splitlines()[-1])
    assert set(report) == {"bare Flask endpoint", "Relay /webhooks", "share"}
    for name in ("bare Flask endpoint", "Relay /webhooks"):
        assert report[name]["non_2xx"] == 0
        assert report[name]["requests_per_second"] > 0


def test_normalize_bench_runs():
    output = run_bench("bench/normalize_format.py", "--events", "50", "--rounds", "1")
    assert "orders/s per core (median of 1 rounds of 50;" in output


def test_profile_script_profiles_both_jobs():
    output = run_bench("bench/profile_pipeline.py", "--orders", "20", "--lines", "5")
    assert "== normalizing: 20 orders in" in output
    assert "== sending: 20 orders in" in output
