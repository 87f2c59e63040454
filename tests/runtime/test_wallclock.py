"""The runtime's wall clock and its fault-injection offset (what a lab's wall-step fault
writes): read again whenever the file changes, 0 when it is missing or not a number."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hierclust.runtime import wallclock
from hierclust.runtime.driver import wall_offset_ns

HOUR_NS = 3600 * 1_000_000_000


def test_without_the_variable_the_wall_clock_is_the_systems(monkeypatch: Any) -> None:
    monkeypatch.setattr(wallclock, "_PATH", None)
    before = time.time_ns()
    assert before <= wallclock.wall_ns() <= time.time_ns()
    assert wallclock.injected_offset_ns() == 0


def test_an_offset_file_steps_every_wall_clock_read(tmp_path: Path, monkeypatch: Any) -> None:
    path = tmp_path / "wall.ns"
    monkeypatch.setattr(wallclock, "_PATH", str(path))
    monkeypatch.setattr(wallclock, "_cache", None)
    assert wallclock.injected_offset_ns() == 0, "no file yet: no offset"
    path.write_text(f"{-HOUR_NS}\n")
    assert abs(wallclock.wall_ns() - (time.time_ns() - HOUR_NS)) < 1_000_000_000
    # the driver's wall-minus-monotonic offset, which the host's lag monitor watches, moves too
    stepped = wall_offset_ns()
    path.write_text(f"{HOUR_NS}\n")  # a new size: read again
    assert abs(wall_offset_ns() - stepped - 2 * HOUR_NS) < 1_000_000_000
    path.write_text("not a number\n")
    assert wallclock.injected_offset_ns() == 0
