"""The command line: exit codes, JSON output, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.cli.common import default_topology_path

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def test_validate_json_reports_mpp_1k() -> None:
    result = runner.invoke(
        app, ["topology", "validate", str(REPO / "topologies/mpp-1k.toml"), "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["nodes"] == 1024
    assert report["depth"] == 3 and report["tiers"] == [70, 6, 1]
    assert report["groups"] == 77
    assert report["warnings"] == []  # odd groups, and a witness on the even root


def test_broken_file_exits_2_with_one_line_naming_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[cluster]\nname="x"\n[group.r]\nnodes="cn[1-3]"\nfanout=99\n')
    result = runner.invoke(app, ["topology", "validate", str(bad)])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "bad.toml: group.r.fanout" in lines[0]
    as_json = runner.invoke(app, ["topology", "validate", str(bad), "--json"])
    assert as_json.exit_code == 2
    assert json.loads(as_json.stdout)["key"] == "group.r.fanout"


def test_missing_file_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["topology", "validate", str(tmp_path / "nope.toml")])
    assert result.exit_code == 2
    assert "no such file" in result.stderr


def test_generate_writes_compact_file_that_validates(tmp_path: Path) -> None:
    out = tmp_path / "big.toml"
    result = runner.invoke(
        app,
        ["topology", "generate", "--nodes", "100000", "--fanout", "16", "-o", str(out), "--json"],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["nodes"] == 100_000
    assert out.stat().st_size < 300, "ranges, not one line per node"
    check = runner.invoke(app, ["topology", "validate", str(out), "--json"])
    assert json.loads(check.stdout)["nodes"] == 100_000


def test_generate_refuses_ports_past_65535(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["topology", "generate", "--nodes", "100000", "--fanout", "16", "--base-port", "20000",
         "-o", str(tmp_path / "x.toml")],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "addresses.base_port" in result.stderr and "--hosts" not in result.stdout


def test_show_json_folds_children_and_draws_png(tmp_path: Path) -> None:
    png = tmp_path / "tree.png"
    result = runner.invoke(
        app,
        ["topology", "show", str(REPO / "topologies/mpp-1k.toml"), "--json", "--max-children", "3",
         "--png", str(png)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    tree = json.loads(result.stdout)["tree"]
    assert len(tree["children"]) == 3 and tree["children_hidden"] == 3
    assert tree["children"][0]["children_hidden"] == 10
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_show_text_lists_sites() -> None:
    result = runner.invoke(app, ["topology", "show", str(REPO / "topologies/seed.toml")])
    assert result.exit_code == 0
    for site in ("company", "uk", "scotland", "england", "us-east", "witness 127.0.0.1:18990"):
        assert site in result.stdout


def test_bad_option_value_exits_2() -> None:
    result = runner.invoke(app, ["topology", "generate", "--nodes", "ten", "--fanout", "4"])
    assert result.exit_code == 2


@pytest.mark.parametrize("args", [["--version"], ["demo", "--json"]])
def test_python_dash_m_entry_point(args: list[str], tmp_path: Path) -> None:
    if args[0] == "demo":
        # the embedded demo topology on free ports: its own 17000-17062 may be held by another
        # run on the same box
        from hierclust.runtime.transport import free_udp_base

        text = default_topology_path().read_text()
        moved = tmp_path / "demo.toml"
        moved.write_text(text.replace("base_port = 17000", f"base_port = {free_udp_base(63)}"))
        args = [*args, "--topology", str(moved)]
    done = subprocess.run(
        [sys.executable, "-m", "hierclust", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    if args[0] == "demo":
        assert json.loads(done.stdout)["nodes"] == 63
