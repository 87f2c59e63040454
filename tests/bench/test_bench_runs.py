"""`hierclust bench` end to end: sim, a tiny real UDP run, bad input, and Serf when installed."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hierclust.bench.report import REPORT_FIELDS, check_report
from hierclust.bench.serf import serf_binary
from hierclust.cli import app
from tests.runtime.conftest import free_base_port

runner = CliRunner()


def bench(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "out.json"
    result = runner.invoke(app, ["bench", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())  # type: ignore[no-any-return]


def test_sim_bench_two_repeats_use_two_seeds_and_medians(tmp_path: Path) -> None:
    doc = bench(tmp_path, "--mode", "sim", "--nodes", "60", "--fanout", "6", "--repeats", "2")
    assert [r["seed"] for r in doc["runs"]] == [7, 8]
    for run in doc["runs"]:
        check_report(run)
        assert run["mode"] == "sim" and run["notified"] == run["survivors"] == 59
    summary = doc["summary"]
    assert set(REPORT_FIELDS) <= set(summary) and summary["repeats"] == 2
    maxes = sorted(r["notify_max_ms"] for r in doc["runs"])
    assert summary["notify_max_ms"] == pytest.approx(sum(maxes) / 2, abs=0.001)


def test_vs_serf_skips_cleanly_without_serf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hierclust.bench.serf.skip_reason", lambda: "serf is not installed")
    out = tmp_path / "out.json"
    result = runner.invoke(
        app, ["bench", "--nodes", "30", "--fanout", "5", "--vs", "serf", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "serf: skipped, serf is not installed" in result.output
    assert json.loads(out.read_text())["summary"]["serf"] == {"skipped": "serf is not installed"}


def test_json_is_a_flag_printing_the_document_on_stdout(tmp_path: Path) -> None:
    """--json as everywhere else: the document on stdout (tables on stderr); --out the file."""
    out = tmp_path / "doc.json"
    result = runner.invoke(
        app, ["bench", "--nodes", "30", "--fanout", "5", "--json", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["summary"]["nodes"] == 30 and printed == json.loads(out.read_text())
    assert "medians" in result.stderr
    sweep = runner.invoke(app, ["bench", "sweep", "--sizes", "40", "--kills", "leaf", "--json"])
    assert sweep.exit_code == 0, sweep.output
    assert json.loads(sweep.stdout)["summary"]["fanout"] == 16


def test_the_old_json_path_spelling_points_at_out(tmp_path: Path) -> None:
    target = tmp_path / "doc.json"
    result = runner.invoke(app, ["bench", "--nodes", "30", "--json", str(target)])
    assert result.exit_code == 2 and not target.exists()
    assert f"write it to a file with --out {target}" in " ".join(result.stderr.split())


def test_out_must_be_a_writable_file_path(tmp_path: Path) -> None:
    result = runner.invoke(app, ["bench", "--nodes", "30", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 2
    assert json.loads(result.stdout)["error"] == (
        f"{tmp_path}: is a directory; expected a file for the JSON document"
    )


def test_bad_input_exits_2() -> None:
    assert (
        runner.invoke(app, ["bench", "--nodes", "30", "--fanout", "5", "--vs", "x"]).exit_code == 2
    )
    assert runner.invoke(app, ["bench", "--mode", "udp"]).exit_code == 2
    both = ["bench", "--mode", "udp", "--topology", "topologies/demo.toml", "--fanout", "4"]
    assert runner.invoke(app, both).exit_code == 2
    assert runner.invoke(app, ["bench", "sweep", "--sizes", "1"]).exit_code == 2
    assert runner.invoke(app, ["bench", "sweep", "--kills", "everyone"]).exit_code == 2


def test_udp_ports_taken_is_a_clear_error() -> None:
    base = free_base_port(12)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("127.0.0.1", base + 3))
    try:
        result = runner.invoke(
            app,
            ["bench", "--mode", "udp", "--nodes", "12", "--fanout", "4", "--base-port", str(base)],
        )
    finally:
        taken.close()
    assert result.exit_code == 2
    assert f"127.0.0.1:{base + 3} is not free" in result.output


def test_udp_bench_tiny_real_run_notifies_every_survivor(tmp_path: Path) -> None:
    base = free_base_port(12)
    plot = tmp_path / "cdf.png"
    doc = bench(
        tmp_path, "--mode", "udp", "--nodes", "12", "--fanout", "4", "--kill", "leader",
        "--base-port", str(base), "--steady-s", "1", "--plot", str(plot),
    )  # fmt: skip
    (run,) = doc["runs"]
    check_report(run)
    assert run["mode"] == "udp" and run["victim_role"] == "leader"
    assert run["survivors"] == 11 and run["notified"] == 11
    assert len(run["udp"]["notify_ms"]) == 11
    assert run["reelect_ms"] is not None and run["udp"]["reelected"]
    assert run["msgs_per_node_per_s"] > 0 and run["cpu_cores"] >= 0
    assert plot.stat().st_size > 1000
    assert not Path(run["udp"]["topology"]).exists()  # the generated topology is cleaned up


def test_udp_bench_one_process_per_node_kills_with_sigkill(tmp_path: Path) -> None:
    base = free_base_port(6)
    doc = bench(
        tmp_path, "--mode", "udp", "--nodes", "6", "--fanout", "3", "--kill", "leaf",
        "--base-port", str(base), "--steady-s", "1", "--one-process-per-node",
    )  # fmt: skip
    (run,) = doc["runs"]
    assert run["udp"]["one_process_per_node"] and run["udp"]["processes"] == 6
    assert run["notified"] == run["survivors"] == 5


@pytest.mark.skipif(serf_binary() is None, reason="serf is not installed (make bench-deps)")
def test_serf_run_reports_every_survivor_failed() -> None:
    from hierclust.bench.serf import serf_run

    run = serf_run(5, 3, "leaf", 1, steady_s=2.0, converge_timeout_s=30, after_s=30)
    check_report(run)
    assert run["victim"] == "s3" and run["survivors"] == 4 and run["notified"] == 4
    assert run["false_positives"] == 0
    assert run["notify_max_ms"] is not None and run["notify_max_ms"] > 0
    assert run["serf"]["converged_ms"] < run["kill_at_ms"]
    assert run["serf"]["false_positives_from"].startswith("converged")
    if run["serf"]["namespace"]:
        assert run["msgs_per_node_per_s"] is not None and run["msgs_per_node_per_s"] > 0
        # the window opened once five 1 s datagram counts agreed within 10 %, or after 60 s
        rates = run["serf"]["settle_datagrams_per_s_total"]
        assert len(rates) >= 5 and run["serf"]["settle_waited_s"] >= 5.0
        if run["serf"]["settle_s"] is not None:
            assert max(rates[-5:]) - min(rates[-5:]) < 0.1 * max(rates[-5:])


@pytest.mark.skipif(serf_binary() is None, reason="serf is not installed (make bench-deps)")
def test_a_serf_cluster_that_does_not_converge_is_a_result_not_an_error() -> None:
    from hierclust.bench.serf import serf_run

    # 0 s to converge: no cluster of agents that are still starting makes it
    run = serf_run(4, 1, "leaf", 1, steady_s=1.0, converge_timeout_s=0.0, after_s=5)
    check_report(run)
    assert run["serf"]["converged"] is False and run["serf"]["converged_agents"] < 4
    assert run["notified"] == 0 and run["notify_max_ms"] is None and run["victim"] is None
