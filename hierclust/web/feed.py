"""Reading a state directory for the web view: the workers' snapshots and the event logs.

The same sources as ``hierclust status`` (every worker's ``status`` answer over its control
socket, :func:`hierclust.runtime.deploy.collect`) and ``hierclust events --follow`` (the
``events-*.jsonl`` files, read from where the last read stopped). Blocking calls: the server runs
them in a thread so the event loop keeps serving.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hierclust.runtime.deploy import collect
from hierclust.topology import Topology, TopologyError, load

READ_LIMIT = 4 << 20
"""Bytes read from one log per call: a long-lived deployment's logs are read in steps."""


class EventFiles:
    """New complete lines of every ``events-*.jsonl`` in a state directory, oldest file first;
    a file that shrinks (a new deployment in the same directory) is read again from its start."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.offsets: dict[Path, int] = {}

    def read_new(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for path in sorted(self.state_dir.glob("events-*.jsonl")):
            offset = self.offsets.get(path, 0)
            try:
                if path.stat().st_size < offset:
                    offset = 0
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read(READ_LIMIT)
            except OSError:
                continue
            complete = data[: data.rfind(b"\n") + 1]
            self.offsets[path] = offset + len(complete)
            for line in complete.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict):
                    records.append(record)
        records.sort(key=lambda r: r.get("t_ns", 0) if isinstance(r.get("t_ns"), int) else 0)
        return records


class Deployment:
    """The snapshots of a state directory's workers, and its topology (loaded once, again when
    the workers name another file)."""

    def __init__(self, state_dir: Path, timeout_s: float = 2.0) -> None:
        self.state_dir = state_dir
        self.timeout_s = timeout_s
        self.topology: Topology | None = None
        self.topology_path: str | None = None

    def read(self) -> tuple[Topology | None, list[dict[str, Any]], list[str]]:
        """``(topology, snapshots, errors)``; no topology when no worker answers."""
        if not self.state_dir.is_dir():
            return None, [], [f"{self.state_dir}: no such state directory"]
        snapshots, errors = collect(self.state_dir, self.timeout_s)
        if not snapshots:
            return None, [], errors or [f"{self.state_dir}: no worker answers here"]
        path = str(snapshots[0].get("topology"))
        if self.topology is None or path != self.topology_path:
            try:
                self.topology = load(Path(path))
            except (OSError, TopologyError) as exc:
                return None, [], [f"{path}: the deployment's topology: {exc}"]
            self.topology_path = path
        return self.topology, snapshots, errors
