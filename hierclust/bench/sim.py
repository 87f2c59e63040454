"""Simulated benchmark runs: :func:`hierclust.sim.scenario.run_kill` once per repeat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hierclust.sim.scenario import KillPlan, run_kill
from hierclust.topology import Topology

Progress = Callable[[int, int, str], None]
"""``(repeat, repeats, phase)``."""


def sim_runs(
    topology: Topology,
    kill: str,
    repeats: int,
    seed: int,
    *,
    after_ms: int = 3000,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """One report (docs/architecture.md §5) per repeat; repeat ``i`` uses seed ``seed + i``."""
    runs: list[dict[str, Any]] = []
    for i in range(repeats):

        def step(now_ns: int, total_ns: int, phase: str, i: int = i) -> None:
            if progress is not None:
                progress(i, repeats, f"{phase} {now_ns / max(1, total_ns):.0%}")

        runs.append(
            run_kill(topology, KillPlan(kill=kill, seed=seed + i, after_ms=after_ms), progress=step)
        )
        if progress is not None:
            progress(i + 1, repeats, "done")
    return runs
