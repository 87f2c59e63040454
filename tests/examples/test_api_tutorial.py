"""The tutorial of ``docs/api.md`` runs as written: the block is extracted from the document,
pointed at a topology on free ports and a fresh state directory, and run as its own process;
``hierclust kill`` (as the tutorial says) crashes a node, and the program must print the
``NodeFailed`` and stop."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.examples.gang import write_topology

DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def tutorial() -> str:
    text = DOC.read_text(encoding="utf-8")
    found = re.search(r"<!-- tutorial:[^>]*-->\n```python\n(.*?)```", text, re.S)
    assert found, f"{DOC}: no tutorial block"
    return found.group(1)


def test_the_tutorial_is_about_ten_lines() -> None:
    lines = [line for line in tutorial().splitlines() if line.strip()]
    assert len(lines) <= 12, lines


@pytest.mark.asyncio
@pytest.mark.timeout(60)
async def test_the_tutorial_runs(tmp_path: Path) -> None:
    code = tutorial()
    state = tmp_path / "state"
    for old, new in (
        ('"topologies/demo.toml"', repr(str(write_topology(tmp_path)))),
        ('"dn[01-63]"', '"cn[01-12]"'),
        ('"/tmp/hc-tutorial"', repr(str(state))),
    ):
        assert old in code, f"the tutorial no longer says {old}"
        code = code.replace(old, new)
    script = tmp_path / "tutorial.py"
    script.write_text(code, encoding="utf-8")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(script), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    try:
        first = await asyncio.wait_for(process.stdout.readline(), 30)
        assert first.startswith(b"primary, token FencingToken(term="), first
        kill = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hierclust", "kill", "cn07", "--state-dir", str(state)
        )
        assert await asyncio.wait_for(kill.wait(), 30) == 0
        rest, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0
    last = rest.decode().splitlines()[-1]
    assert last.startswith("NodeFailed(") and "node='cn07'" in last, rest.decode()
