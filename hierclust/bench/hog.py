"""CPU hogs for overload benchmarks, and what a boot under load looked like from the event logs.

A :class:`Hog` is ``N`` busy-loop processes at nice 0, started before a benchmark's cluster and
ended by PID after it, so the agents compete for the CPU with work they cannot see (another
benchmark, a compile, a job on the node). Each hog is bounded twice: the bench ends it, and it
ends itself after ``max_s`` whatever happens to the bench.

:func:`boot_diagnostics` counts, from the workers' event logs, what the protocol did while it
booted: elections started, distinct terms, votes granted, leaders won and lost, failures
declared. It is what tells an election storm from leases that lapse or false suspicion.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BUSY_LOOP = (
    "import time\n"
    "end = time.monotonic() + {max_s}\n"
    "while time.monotonic() < end:\n"
    "    for _ in range(100000):\n"
    "        pass\n"
)
"""One hog: spin until ``max_s`` have passed (checked every ~2 ms of spinning)."""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (processes gone count 0)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / ticks


def load_avg() -> float:
    """This host's 1-minute load average, rounded (reported beside every figure)."""
    return round(os.getloadavg()[0], 2)


class Hog:
    """``count`` busy-loop processes; :meth:`start`, then :meth:`stop` in a ``finally``."""

    def __init__(self, count: int, max_s: float) -> None:
        if count < 0:
            raise ValueError(f"hog processes: expected 0 or more, got {count}")
        self.count = count
        self.max_s = max_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started_ns = 0
        self.load_at_start = 0.0
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def start(self) -> None:
        self.load_at_start = load_avg()
        self.started_ns = time.monotonic_ns()
        code = BUSY_LOOP.format(max_s=float(self.max_s))
        for _ in range(self.count):
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, "-c", code],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def stop(self) -> None:
        """End every hog this object started, by PID, and note the CPU they used."""
        if not self.procs:
            return
        self.cpu_s = cpu_seconds(self.pids)
        self.wall_s = (time.monotonic_ns() - self.started_ns) / 1e9
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
        self.procs = []

    def info(self) -> dict[str, Any]:
        """What the report says about the hogs (after :meth:`stop`)."""
        cores = self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0
        return {
            "processes": self.count,
            "nice": 0,
            "max_s": self.max_s,
            "cpu_s": round(self.cpu_s, 2),
            "cores_used": round(cores, 3),
            "load_avg_1m_at_start": self.load_at_start,
        }


def boot_diagnostics(state_dir: Path, until_ns: int | None = None) -> dict[str, Any]:
    """What the event logs of ``state_dir`` say happened up to ``until_ns`` (all when None):
    elections started and their distinct ``(group, term)``, votes granted, leaderships won and
    lost, failure notices first declared (``via`` None) and the busiest group's election count."""
    started: dict[int, int] = {}
    terms: set[tuple[int, int]] = set()
    votes = won = lost = declared = 0
    for path in sorted(state_dir.glob("events-*.jsonl")):
        try:
            lines = path.read_bytes().splitlines()
        except OSError:
            continue
        for line in lines:
            try:
                e = json.loads(line)
            except ValueError:
                continue
            if until_ns is not None and int(e.get("t_ns", 0)) > until_ns:
                continue
            kind = e.get("event")
            if kind == "ElectionStarted":
                group = int(e.get("group", -1))
                started[group] = started.get(group, 0) + 1
                terms.add((group, int(e.get("term", 0))))
            elif kind == "VoteGranted":
                votes += 1
            elif kind == "LeaderChanged":
                if e.get("leader") == e.get("rank"):
                    won += 1
                elif e.get("leader") is None:
                    lost += 1
            elif kind == "NoticeLearned" and e.get("via") is None:
                if (e.get("notice") or {}).get("kind") == "failed":
                    declared += 1
    busiest = max(started.items(), key=lambda kv: kv[1], default=(None, 0))
    return {
        "elections_started": sum(started.values()),
        "groups_electing": len(started),
        "terms": len(terms),
        "votes_granted": votes,
        "leaderships_won": won,
        "leader_lost_events": lost,
        "failures_declared": declared,
        "busiest_group": busiest[0],
        "busiest_group_elections": busiest[1],
    }


def boot_report(state_dir: Path, started_ns: int, all_led_ns: int | None) -> dict[str, Any]:
    """What a deployment's boot did (:func:`boot_diagnostics`, up to every group being led when
    it was), and its workers' loop lag so far: the maximum and the per-heartbeat histogram
    summed over the workers (asked over their control sockets)."""
    from hierclust.runtime.deploy import collect

    diag = boot_diagnostics(state_dir, all_led_ns)
    diag["until_s"] = None if all_led_ns is None else round((all_led_ns - started_ns) / 1e9, 2)
    snaps, _errors = collect(state_dir)
    hist: dict[str, int] = {}
    for snap in snaps:
        for key, count in (snap.get("lag_hist") or {}).items():
            hist[key] = hist.get(key, 0) + int(count)
    diag["loop_lag_max_ms"] = max((int(s.get("lag_max_ms", 0)) for s in snaps), default=0)
    diag["loop_lag_hist"] = hist
    diag["load_avg_1m"] = load_avg()
    return diag
