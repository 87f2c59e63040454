"""bench/udp_soak.py's RSS report: readings of real processes, and the summary's arithmetic."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def soak_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("udp_soak", REPO / "bench" / "udp_soak.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["udp_soak"] = module
    spec.loader.exec_module(module)
    return module


soak = soak_module()


def test_rss_of_a_live_process_and_of_a_gone_one() -> None:
    kib = soak.rss_kib(os.getpid())
    assert kib is not None and 10_000 < kib < 10_000_000  # this interpreter: MBs, not GBs
    assert soak.rss_kib(2**22 + 1) is None  # above pid_max: no such process


def test_rss_summary_start_end_max_and_growth() -> None:
    counts = {"failure_notices": 0, "elections": 0}
    samples = [
        {**soak.rss_sample({"w0": os.getpid()}, 0.0, counts)},
    ]
    assert samples[0]["workers_mib"]["w0"] > 0
    made = [
        {"t_s": t, "total_mib": total, "workers_mib": {"w0": a, "w1": b}}
        for t, total, a, b in (
            (0, 100.0, 50.0, 50.0),
            (60, 130.0, 70.0, 60.0),
            (120, 120.0, 60.0, None),
        )
    ]
    summary = soak.rss_summary(made)
    assert summary["total"] == {
        "start_mib": 100.0, "end_mib": 120.0, "max_mib": 130.0, "growth_mib": 20.0,
        "growth_pct": 20.0,
    }  # fmt: skip
    assert summary["workers"]["w0"]["max_mib"] == 70.0
    assert summary["workers"]["w1"]["end_mib"] == 60.0, "a worker gone at the end keeps its last"
    assert summary["samples"] is made
