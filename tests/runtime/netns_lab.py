"""Shared by the network-namespace lab tests: a lab per test, waiting, ending what a test started.

Each test module gives its labs a namespace prefix and a subnet no other module uses (the prefix
also carries the PID, so concurrent runs never share a namespace).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from hierclust.runtime.netns import CLOCK_OFFSETS_S, NetnsLab


@contextmanager
def netns_lab(
    tag: str, hosts: int, subnet: str, offsets_s: tuple[int, ...] = CLOCK_OFFSETS_S
) -> Iterator[NetnsLab]:
    """A lab of ``hosts`` hosts named ``<tag><pid>-...``; torn down on the way out, even when the
    test failed. Fails the test if a process of it was left running inside (the test must end
    what it started first)."""
    lab = NetnsLab(f"{tag}{os.getpid() % 100000}", hosts, subnet, offsets_s)
    lab.setup()
    try:
        yield lab
    finally:
        left = lab.teardown()
        assert not left, f"processes left in the lab's namespaces: {left}"


def stop_processes(procs: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM, wait, SIGKILL: every process the test started, by its PID."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


def read_events(state_dir: Path) -> list[dict[str, Any]]:
    """Every record of every event log in ``state_dir`` (what ``hierclust events --json`` prints);
    a line still being written is skipped."""
    records: list[dict[str, Any]] = []
    for path in sorted(state_dir.glob("events-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    return records


def lease_holders(nodes: dict[int, dict[str, Any]]) -> dict[int, int]:
    """group -> the rank holding its leadership lease now, from worker snapshots' nodes by rank
    (groups with exactly one holder)."""
    holders: dict[int, list[int]] = {}
    for rank, node in nodes.items():
        for g in node.get("groups", []):
            if g["leading"] and g["lease"]:
                holders.setdefault(g["group"], []).append(rank)
    return {g: ranks[0] for g, ranks in holders.items() if len(ranks) == 1}
