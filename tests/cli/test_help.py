"""Every command's --help reads cleanly, and option names mean one thing everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hierclust.cli import app

runner = CliRunner()
ROOT = typer.main.get_command(app)
VARIADIC = re.compile(r"\b[A-Z]+\}?\.\.\.")  # TARGETS..., {TARGETS}...: more of the same


def commands(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, command in getattr(group, "commands", {}).items():
        yield from commands(command, (*path, name))


EVERY_COMMAND = sorted(commands(ROOT))


def help_text(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_command_is_listed() -> None:
    names = {" ".join(p) for p in EVERY_COMMAND}
    assert {"deploy", "stop", "events", "kill", "topology generate", "sim fuzz", "bench sweep"} <= (
        names
    )


@pytest.mark.parametrize("path", EVERY_COMMAND, ids=lambda p: " ".join(p) or "hierclust")
def test_help_reads_cleanly(path: tuple[str, ...]) -> None:
    text = help_text(path)
    assert "<bool>" not in text, "flags show a type"
    assert "``" not in text, "RST markup"
    for line in text.splitlines():
        if line.startswith("Usage:"):
            continue
        assert "..." not in VARIADIC.sub("", line), f"cut or elliptic text: {line!r}"
    assert "\x08" not in text


def test_host_fanout_and_group_fanout_are_different_options() -> None:
    for path in (("deploy",), ("stop",)):
        text = help_text(path)
        assert "--host-fanout" in text and "--fanout" not in text.replace("--host-fanout", "")
    for path in (("topology", "generate"), ("sim",), ("bench",), ("bench", "sweep")):
        text = " ".join(help_text(path).split())
        assert "--fanout" in text and "--host-fanout" not in text
        assert "default: 16" in text or "(default: 16)" in text, path


def test_bench_json_is_a_flag_and_out_takes_the_path() -> None:
    for path in (("bench",), ("bench", "sweep")):
        text = help_text(path)
        assert re.search(r"^\s+--json\s+Print machine-readable JSON on stdout", text, re.M)
        assert re.search(r"^\s+--out <path>", text, re.M)


def test_events_help_explains_every_column() -> None:
    text = help_text(("events",))
    for column in ("TIME", "NODE", "EVENT", "FIELD=VALUE"):
        assert re.search(rf"^\s+{column}\s", text, re.M), column
    assert "wall-clock time on this host" in text and "monotonic clock" in text
    assert "one JSON object per line" in text
