"""Every benchmark document says where it came from: the command, the commit, the load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hierclust.bench import provenance as prov
from hierclust.cli import app

REPO = Path(__file__).resolve().parents[2]


def test_a_bench_document_names_its_command_and_the_checkouts_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out.json"
    argv = ["bench", "--mode", "sim", "--nodes", "40", "--fanout", "5", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["/some/venv/bin/hierclust", *argv])
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    stamp = json.loads(out.read_text())["provenance"]
    assert stamp["command"] == "hierclust " + " ".join(argv)
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    if head:  # a checkout (CI's clean clone is one)
        assert stamp["commit"] == head and isinstance(stamp["dirty"], bool)
    assert stamp["cpus"] >= 1 and stamp["load_avg_1m"] >= 0 and stamp["utc"].endswith("Z")


def test_a_sim_report_on_stdout_names_its_command(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = ["sim", "--nodes", "30", "--fanout", "5", "--kill", "leaf", "--seed", "2", "--json"]
    monkeypatch.setattr(sys, "argv", ["/some/venv/bin/hierclust", *argv])
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["mode"] == "sim" and report["notified"] == report["survivors"] == 29
    assert report["provenance"]["command"] == "hierclust " + " ".join(argv)


def test_a_script_in_the_checkout_is_named_as_typed() -> None:
    line = prov.command_line([str(REPO / "bench" / "sim_scale.py"), "--sizes", "1000,10k"])
    assert line == "python bench/sim_scale.py --sizes 1000,10k"
    assert prov.command_line(["/x/hierclust/__main__.py", "sim", "--seed", "3"]) == (
        "hierclust sim --seed 3"
    )
    assert prov.command_line(["/usr/bin/hierclust", "bench", "a b"]) == "hierclust bench 'a b'"


def test_a_document_that_has_a_provenance_keeps_it() -> None:
    first = prov.stamped({"runs": []}, "hierclust bench --mode sim")
    again = prov.stamped(first, "python bench/figures.py")
    assert again["provenance"]["command"] == "hierclust bench --mode sim"
    assert again["provenance"] is first["provenance"]


def test_a_tree_that_differs_from_its_commit_is_marked_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "f").write_text("one\n")
    git("add", "f")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    monkeypatch.setattr(prov, "PACKAGE_ROOT", tmp_path)
    prov.checkout.cache_clear()
    try:
        commit, dirty = prov.checkout()
        assert commit is not None and len(commit) == 40 and dirty is False
        (tmp_path / "f").write_text("two\n")
        prov.checkout.cache_clear()
        assert prov.checkout() == (commit, True)
    finally:
        prov.checkout.cache_clear()
