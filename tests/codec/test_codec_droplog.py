"""Drop log lines are rate-limited per reason, on time passed in."""

from __future__ import annotations

import logging

import pytest

from hierclust.codec import DropLogger, Dropped, DropReason

S = 1_000_000_000
BAD_TAG = Dropped(DropReason.BAD_TAG, "tag mismatch for key id 1")
GARBAGE = Dropped(DropReason.GARBAGE, "bad magic byte 0x00")


def test_one_line_per_reason_per_interval() -> None:
    lines: list[str] = []
    log = DropLogger(interval_ns=10 * S, emit=lines.append, prefix="cn0042")
    assert log.note(0, BAD_TAG, peer="10.0.0.5:17001") is not None
    for t in range(1, 10):
        assert log.note(t * S, BAD_TAG) is None
    assert log.note(5 * S, GARBAGE) is not None  # other reasons are not held back
    assert log.suppressed(DropReason.BAD_TAG) == 9
    line = log.note(10 * S, BAD_TAG)
    assert line is not None and "(+9 more bad_tag since the last line)" in line
    assert log.suppressed(DropReason.BAD_TAG) == 0
    assert lines == [
        "cn0042: dropped datagram (bad_tag) from 10.0.0.5:17001: tag mismatch for key id 1",
        "cn0042: dropped datagram (garbage): bad magic byte 0x00",
        line,
    ]


def test_default_emit_goes_to_logging(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="hierclust.codec"):
        DropLogger().note(0, GARBAGE)
    assert [r.getMessage() for r in caplog.records] == [
        "dropped datagram (garbage): bad magic byte 0x00"
    ]
