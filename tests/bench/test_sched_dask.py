"""The Dask scheduler benchmark (hierclust/bench/sched_dask.py): its lab topology, its summary,
and one real run with the plugin on three lab hosts (root only; Dask alone takes 30 s a run, so it
is left to the benchmark itself)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hierclust.bench.sched_dask import (
    HIERCLUST_PORT,
    WITNESS_PORT,
    one_run,
    summarise,
    unavailable,
    write_topology,
)
from hierclust.runtime.netns import NetnsLab
from hierclust.topology import load


def test_each_node_sits_on_its_own_lab_host_and_a_witness_on_the_schedulers(
    tmp_path: Path,
) -> None:
    lab = NetnsLab("unused", 4, "10.210.0")  # not set up: only its addresses are read
    topology = load(write_topology(tmp_path, lab, 4))
    assert [str(topology.address(r)) for r in range(4)] == [
        f"10.210.0.{i}:{HIERCLUST_PORT}" for i in range(1, 5)
    ]
    witnesses = [g.tiebreaker for g in topology.by_index if g.tiebreaker is not None]
    assert witnesses and all(str(w.address) == f"10.210.0.1:{WITNESS_PORT}" for w in witnesses)


def test_the_summary_is_the_median_and_none_when_a_run_never_got_there() -> None:
    runs = [
        {"removed_ms": 900.0, "rescheduled_ms": 950.0},
        {"removed_ms": 700.0, "rescheduled_ms": None},
        {"removed_ms": 800.0, "rescheduled_ms": 820.0},
    ]
    summary = summarise(runs)
    assert summary["removed_ms"] == 800.0 and summary["rescheduled_ms"] is None
    assert summary["runs"] == runs


@pytest.mark.timeout(180)
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_with_the_plugin_a_host_cut_off_loses_its_worker_within_two_seconds() -> None:
    phases: list[str] = []
    result = one_run(3, True, phases.append)
    print(result)
    assert phases[-1].startswith("cut off"), phases
    assert result["victim"] in ("cn2", "cn3")  # a host that leads nothing, not the scheduler's
    assert result["stimulus_id"] and result["stimulus_id"].startswith("hierclust-"), result
    assert result["removed_ms"] is not None and result["removed_ms"] < 2000, result
    assert result["rescheduled_ms"] is not None and result["rescheduled_ms"] < 2500, result
    assert result["ran_on"] in {"cn1", "cn2"} and result["others_removed"] == [], result
