"""Bad input exits 2 with one line that names the file, node or directory and says what was
expected: unknown targets, reversed ranges, directories given as files and the other way round,
state directories without a live deployment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.topology.names import reversed_range_fix

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "topologies" / "demo.toml")
runner = CliRunner()


def one_error_line(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0].removeprefix("error: ")


def test_reversed_ranges_are_turned_round() -> None:
    assert reversed_range_fix("cn[05-01]") == "cn[01-05]"
    assert reversed_range_fix("dn[3-1,7,12-9]x[1-2]") == "dn[1-3,7,9-12]x[1-2]"
    assert reversed_range_fix("cn[01-05]") is None
    assert reversed_range_fix("rack-a.t0-1") is None, "a dash outside brackets is a name"


def test_unknown_group_names_the_groups_there_are(tmp_path: Path) -> None:
    line = one_error_line(["agent", "--topology", DEMO, "--node", "rack-z", "--state-dir", "x"])
    assert line.startswith(f"rack-z: no group or node of that name in {DEMO}; did you mean rack-c?")
    assert "groups: demo, rack-a, rack-b, rack-c" in line and "nodes: dn[01-63]" in line
    result = runner.invoke(app, ["agent", "--topology", DEMO, "--node", "rack-z", "--json"])
    assert json.loads(result.stdout)["target"] == "rack-z"


def test_reversed_range_says_so_and_shows_the_fix() -> None:
    line = one_error_line(["agent", "--topology", DEMO, "--node", "dn[05-01]"])
    assert (
        line
        == "target dn[05-01]: a range is reversed (ranges run from low to high); write dn[01-05]"
    )
    line = one_error_line(["deploy", DEMO, "--hosts", "h[3-1]", "--exec", "x"])
    assert line.endswith("write h[1-3]") and line.startswith("--hosts h[3-1]")
    line = one_error_line(["agent", "--topology", DEMO, "--node", "dn[1-3"])
    assert line.startswith("target dn[1-3: not a nodeset (missing bracket")


def test_directory_given_as_a_file(tmp_path: Path) -> None:
    expected = f"{tmp_path}: is a directory; expected a topology file (.toml)"
    assert one_error_line(["topology", "validate", str(tmp_path)]) == expected
    assert one_error_line(["sim", "--topology", str(tmp_path)]) == expected
    assert one_error_line(["deploy", str(tmp_path)]) == expected
    assert one_error_line(["topology", "generate", "--nodes", "10", "-o", str(tmp_path)]) == (
        f"{tmp_path}: is a directory; expected a file to write the topology to"
    )


def test_file_given_as_a_directory(tmp_path: Path) -> None:
    file = tmp_path / "state"
    file.write_text("")
    expected = (
        f"{file}: is a file; expected a state directory (the --state-dir given to deploy or agent)"
    )
    for command in (["status"], ["stop"], ["events"], ["kill", "dn01"], ["heal"]):
        assert one_error_line([*command, "--state-dir", str(file)]) == expected, command
    assert one_error_line(["deploy", DEMO, "--state-dir", str(file)]) == expected
    assert one_error_line(["deploy", DEMO, "--systemd", str(file)]) == (
        f"{file}: is a file; expected a directory for the unit files"
    )


def test_stop_without_a_live_deployment_exits_2_and_names_the_live_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("hierclust.runtime.discover.live_state_dirs", lambda *_: {})
    line = one_error_line(["stop", "--state-dir", str(tmp_path)])
    assert line == (
        f"{tmp_path}: no live deployment here (no recorded worker runs); "
        "no hierclust worker or agent runs on this host"
    )
    elsewhere = Path("/srv/hc-a")
    monkeypatch.setattr(
        "hierclust.runtime.discover.live_state_dirs", lambda *_: {elsewhere: [4242]}
    )
    line = one_error_line(["stop", "--state-dir", str(tmp_path)])
    assert line.endswith("hierclust runs in /srv/hc-a: `hierclust stop --state-dir /srv/hc-a`")
    result = runner.invoke(app, ["stop", "--state-dir", str(tmp_path / "nope"), "--json"])
    assert result.exit_code == 2
    answer = json.loads(result.stdout)
    assert (
        answer["live_state_dirs"] == ["/srv/hc-a"] and "no such state directory" in answer["error"]
    )


@pytest.mark.parametrize(
    "args, expected",
    [
        ([], "exactly one of --slurm or --dask"),
        (["--slurm", "--dask"], "exactly one of --slurm or --dask"),
        (["--slurm", "--crash", "pull-the-plug"], "--crash pull-the-plug: expected cut or kill"),
        (["--slurm", "--out", "/nonexistent-dir/x.json"], "/nonexistent-dir is not a directory"),
    ],
)
def test_bench_scheduler_refuses_bad_options(args: list[str], expected: str) -> None:
    assert expected in one_error_line(["bench", "scheduler", *args])


def test_chaos_keeps_its_lab_only_in_a_new_or_empty_directory(tmp_path: Path) -> None:
    (tmp_path / "lab.keyring").write_text("x")  # the lab of an earlier run
    line = one_error_line(["chaos", "--minutes", "1", "--keep", str(tmp_path)])
    assert (
        line
        == f"--keep {tmp_path}: not empty (the lab of an earlier run?); give a new or empty directory"
    )
    line = one_error_line(["chaos", "--minutes", "1", "--keep", str(tmp_path / "lab.keyring")])
    assert line.startswith(f"--keep {tmp_path / 'lab.keyring'}: not a directory")
