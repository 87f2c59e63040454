"""A short real chaos campaign: 24 agents on 7 lab hosts, 90 s of seeded faults, a clean history.

The same code as ``hierclust chaos`` (and ``make chaos``, 30 minutes at 100 nodes), on a smaller
lab: three sites of 8 nodes (scotland and england under uk, us), two lab hosts per site and the
witness on a seventh, each host in its own network and time namespace. Seed 12's first faults
pause a host's agent for longer than a lease, cut scotland off, step a wall clock, kill a
group's leader, restart the witness, kill -9 a host's agent and restart it, and cut a minority
and a majority off. The checker must find no safety violation, no liveness failure and no
crash, and the faults must show in the history: the killed nodes were heard of (failed, or
their subtree held unreachable) and the cut-off site was held unreachable by the rest.
Root only; skipped with the reason where the lab cannot run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from hierclust.bench.chaos_lab import campaign
from hierclust.bench.chaos_plan import layout
from hierclust.runtime.netns import unavailable

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(400),
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
]

SUBNET = "10.231.0"  # `hierclust chaos` uses 10.230.0
SEED = 12


def test_a_short_campaign_has_a_clean_history(tmp_path: Path) -> None:
    phases: list[str] = []
    report = campaign(
        1.5,
        SEED,
        layout(3, 8, 2),
        tmp_path,
        f"hcx{os.getpid() % 100000}",
        SUBNET,
        lambda phase, _done, _total: phases.append(phase),
    )
    text = json.dumps({k: v for k, v in report.items() if k not in ("schedule",)}, indent=1)
    assert report["violations"] == [], text
    assert report["liveness_failures"] == [], text
    assert report["crashes"] == [], text
    assert report["nodes"] == 24 and report["hosts"] == 7
    kinds = report["summary"]["faults_by_kind"]
    for kind in ("pause-host", "cut-site", "kill-leader", "crash-host", "restart-witness"):
        assert kinds.get(kind), f"{kind} did not run: {text}"
    assert report["nemesis_events"] >= 6, text
    s = report["summary"]
    assert s["victims"] >= 2 and s["victims_noticed"] == s["victims"], text
    assert s["site_cut_unreachable_held"] >= 16, text
    assert any("#1 pause-host" in p for p in phases), phases
