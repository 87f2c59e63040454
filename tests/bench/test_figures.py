"""The manifest behind `make bench`: every command in it is one the programs accept."""

from __future__ import annotations

import importlib.util
import shlex
import sys
from pathlib import Path
from types import ModuleType

import pytest
import typer

from hierclust.cli import app

REPO = Path(__file__).resolve().parents[2]


def manifest() -> ModuleType:
    spec = importlib.util.spec_from_file_location("figures", REPO / "bench" / "figures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["figures"] = module  # dataclasses look their module up while defining a class
    spec.loader.exec_module(module)
    return module


FIGURES = manifest().FIGURES


@pytest.mark.parametrize("figure", FIGURES, ids=lambda f: f"{f.name}:{f.command[:40]}")
def test_every_figure_command_parses(figure: object, tmp_path: Path) -> None:
    argv = shlex.split(figure.command.replace("{dir}", str(tmp_path)))  # type: ignore[attr-defined]
    if argv[0] == "python" and argv[1] == "-m":
        assert importlib.util.find_spec(argv[2]) is not None, argv[2]
        return
    if argv[0] == "python":
        assert (REPO / argv[1]).is_file(), argv[1]
        return
    assert argv[0] == "hierclust"
    command = typer.main.get_command(app)
    args = argv[1:]
    # walk down the command groups, then let click parse the options as it would run them
    while args and args[0] in getattr(command, "commands", {}):
        command = command.commands[args.pop(0)]  # type: ignore[attr-defined]
    with command.make_context(argv[0], list(args), resilient_parsing=False) as ctx:
        # parsed: an unknown option or a bad value raised; nothing may be left over
        assert ctx.params and not getattr(ctx, "protected_args", []) and not ctx.args, argv


def test_every_benchmark_folder_with_json_has_a_figure() -> None:
    """`make bench` can take every committed JSON document again: each folder of
    docs/benchmarks/ that holds one is a figure's name."""
    docs = REPO / "docs" / "benchmarks"
    folders = {path.relative_to(docs).parts[0] for path in docs.rglob("*.json")}
    names = {figure.name for figure in FIGURES}
    assert not folders - names, sorted(folders - names)
    for figure in FIGURES:
        home = REPO / (figure.home or f"docs/benchmarks/{figure.name}")
        assert home.is_dir(), home
