"""`hierclust sim` and `hierclust sim fuzz` from the command line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.sim.scenario import REPORT_FIELDS

runner = CliRunner()


def sim_json(*args: str) -> dict:  # type: ignore[type-arg]
    result = runner.invoke(app, ["sim", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_sim_report_has_the_shared_schema_and_repeats_exactly() -> None:
    args = ("--nodes", "120", "--fanout", "6", "--kill", "leader", "--seed", "7")
    first, second = sim_json(*args), sim_json(*args)
    assert set(REPORT_FIELDS) <= set(first)
    assert first["mode"] == "sim" and first["nodes"] == 120 and first["victim_role"] == "leader"
    for report in (first, second):
        report.pop("cpu_cores")
        report["sim"].pop("wall_s")
    assert first == second
    assert first["notified"] == first["survivors"] == 119


def test_sim_kill_by_name_on_a_topology_file() -> None:
    report = sim_json("--topology", "topologies/seed.toml", "--kill", "en08", "--seed", "3")
    assert report["victim"] == "en08"
    assert report["notified"] == report["survivors"] == 42


def test_sim_fanout_defaults_to_16_like_topology_and_bench() -> None:
    # odd groups of at most 16: five of 11 and one of 9 (at --fanout 8: seven of 7, three of 5)
    report = sim_json("--nodes", "64")
    assert report["fanout"] == 11 and report["nodes"] == 64
    assert sim_json("--nodes", "64", "--fanout", "8")["fanout"] == 7


def test_sim_bad_input_exits_2() -> None:
    missing = runner.invoke(app, ["sim"])
    assert missing.exit_code == 2 and "--topology FILE, or --nodes N" in missing.stderr
    alone = runner.invoke(app, ["sim", "--fanout", "8"])
    assert alone.exit_code == 2 and "--fanout 8 needs --nodes N" in alone.stderr
    unknown = runner.invoke(app, ["sim", "--nodes", "20", "--fanout", "4", "--kill", "zz9"])
    assert unknown.exit_code == 2 and "zz9" in unknown.stderr
    both = runner.invoke(
        app, ["sim", "--topology", "topologies/demo.toml", "--nodes", "5", "--fanout", "3"]
    )
    assert both.exit_code == 2


def test_fuzz_json_summary() -> None:
    result = runner.invoke(app, ["sim", "fuzz", "--schedules", "5", "--seed", "40", "--json"])
    summary = json.loads(result.stdout)
    assert summary["schedules"] == 5
    assert set(summary) >= {"violations", "liveness_failures", "failed_seeds", "reproduce"}
    assert result.exit_code == (1 if summary["failed_seeds"] else 0)
    assert len(summary["reproduce"]) == len(summary["failed_seeds"])
