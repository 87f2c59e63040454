"""hierclust on lab hosts, one node per host: what the Corosync comparison runs on its side.

Node ``r`` (rank) runs on lab host ``r`` as its own ``hierclust agent`` process with a state
directory of its own (``state/<address>``), started on its host (in the host's network and time
namespaces) the way ``deploy --hosts --exec`` would; when the topology has a witness and a host
is given for it, ``hierclust witness`` runs there. The topology is a generated one (``--nodes``,
``--fanout``) with every node at ``<its host's address>:<base_port + rank>`` and the default
tuning unless the caller gives other ``[defaults]``, so both systems run their defaults.

Times: every agent stamps its events and snapshots with its host's monotonic clock, which runs
:meth:`~hierclust.runtime.netns.NetnsLab.clock_offset_s` seconds ahead of this box's; each
record here gets ``at_ns``, that instant taken back to this box's clock, so records of different
hosts compare and line up with a cut made here. Every process is stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import tomli_w

from hierclust.codec import generate_keyring_file
from hierclust.runtime.deploy import collect, init_states
from hierclust.runtime.netns import NetnsLab
from hierclust.topology import Topology, from_dict, generate_document, load

SECOND_NS = 1_000_000_000
BASE_PORT = 7100
WITNESS_PORT = 7099
Progress = Callable[[str, float, float], None]


class LabNodesError(RuntimeError):
    """The nodes did not start or did not reach the state asked for in time; one line."""


def lab_document(
    lab: NetnsLab, nodes: int, fanout: int, witness_host: int | None, base_port: int = BASE_PORT
) -> dict[str, Any]:
    """A generated topology of ``nodes`` nodes, node ``r`` on host ``r``. A generated witness
    moves to ``witness_host``; without one it is dropped (then an even group has no tie-breaker,
    which the caller chose)."""
    document: dict[str, Any] = generate_document(nodes, fanout, name=f"lab{nodes}")
    for group in document["group"].values():
        if "tiebreaker" in group:
            if witness_host is None:
                group.pop("tiebreaker")
            else:
                address = f"{lab.address(witness_host)}:{WITNESS_PORT}"
                group["tiebreaker"] = {"kind": "witness", "address": address}
    document["addresses"] = {"host": lab.address(0), "base_port": base_port}
    names = from_dict(dict(document), source="generated").node_name
    document["node"] = {
        names(r): {"host": lab.address(r), "port": base_port + r} for r in range(nodes)
    }
    return document


class LabNodes:
    """``nodes`` hierclust nodes on hosts ``0 .. nodes - 1`` of ``lab`` (and a witness on
    ``witness_host`` when the topology has one). A context manager: it stops what it started."""

    def __init__(
        self,
        lab: NetnsLab,
        directory: Path,
        nodes: int,
        fanout: int,
        witness_host: int | None = None,
        tuning: dict[str, int] | None = None,
    ) -> None:
        if nodes > len(lab.host_ns):
            raise LabNodesError(f"{nodes} nodes need {nodes} lab hosts, the lab has fewer")
        self.lab = lab
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        generate_keyring_file(directory / "lab.keyring")
        document = lab_document(lab, nodes, fanout, witness_host)
        document["cluster"]["secret_file"] = "lab.keyring"
        if tuning:
            document = {"cluster": document.pop("cluster"), "defaults": dict(tuning), **document}
        self.path = directory / "lab.toml"
        self.path.write_text(tomli_w.dumps(document))
        self.topology: Topology = load(self.path)
        self.nodes = nodes
        self.witness_host = witness_host if self.has_witness() else None
        self.procs: list[subprocess.Popen[bytes]] = []

    def has_witness(self) -> bool:
        return any(g.tiebreaker is not None for g in self.topology.by_index)

    def __enter__(self) -> LabNodes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def state(self, host: int) -> Path:
        return self.directory / "state" / self.lab.address(host)

    def hierclust(self, host: int, *args: str) -> list[str]:
        return [sys.executable, "-m", "hierclust", *args, "--state-dir", str(self.state(host))]

    def _popen(self, host: int, argv: list[str]) -> None:
        with open(self.directory / f"{self.lab.address(host)}.log", "ab") as log:
            self.procs.append(
                self.lab.popen(host, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            )

    def start(self) -> None:
        if self.witness_host is not None:
            witness = self.hierclust(self.witness_host, "witness", "--topology", str(self.path))
            done = self.lab.run_on(self.witness_host, [*witness, "--init"])
            if done.returncode != 0:
                raise LabNodesError(f"hierclust witness --init: {done.stderr.strip()}")
            self._popen(self.witness_host, witness)
        for rank in range(self.nodes):
            init_states(self.topology, self.state(rank))
            name = self.topology.node_name(rank)
            agent = ["agent", "--topology", str(self.path), "--node", name]
            self._popen(rank, self.hierclust(rank, *agent))

    def stop(self) -> None:
        """SIGTERM every process started, by PID; SIGKILL what is left after 5 s."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)

    # -- observing ---------------------------------------------------------------------------------
    def offset_ns(self, host: int) -> int:
        return self.lab.clock_offset_s(host) * SECOND_NS

    def nodes_now(self, hosts: Iterable[int] | None = None) -> dict[int, dict[str, Any]]:
        """rank -> its node's status snapshot, with ``at_ns`` (the snapshot's instant on this
        box's clock). Hosts that do not answer are left out."""
        found: dict[int, dict[str, Any]] = {}
        for host in range(self.nodes) if hosts is None else hosts:
            snaps, _errors = collect(self.state(host), timeout_s=1.0)
            for snap in snaps:
                at_ns = int(snap["now_ns"]) - self.offset_ns(host)
                for node in snap.get("nodes", []):
                    found[int(node["rank"])] = {**node, "at_ns": at_ns}
        return found

    def events(self, since_ns: int, kinds: Iterable[str]) -> list[dict[str, Any]]:
        """Event records of ``kinds`` from every node's log, each with ``at_ns`` (its host's
        clock taken back to this box's), those at or after ``since_ns``, in time order."""
        wanted = set(kinds)
        found: list[dict[str, Any]] = []
        for host in range(self.nodes):
            for path in sorted(self.state(host).glob("events-*.jsonl")):
                for line in path.read_text(errors="replace").splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("event") not in wanted or "rank" not in record:
                        continue
                    at_ns = int(record["t_ns"]) - self.offset_ns(int(record["rank"]))
                    if at_ns >= since_ns:
                        found.append({**record, "at_ns": at_ns})
        return sorted(found, key=lambda r: r["at_ns"])

    def leaders(self, nodes: dict[int, dict[str, Any]]) -> dict[int, int]:
        """group -> the rank holding its lease (groups with exactly one holder)."""
        holders: dict[int, list[int]] = {}
        for rank, node in nodes.items():
            for g in node.get("groups", []):
                if g.get("leading") and g.get("lease"):
                    holders.setdefault(int(g["group"]), []).append(rank)
        return {g: r[0] for g, r in holders.items() if len(r) == 1}

    def wait_settled(self, timeout_s: float = 60.0, progress: Progress | None = None) -> float:
        """Every node up and in the primary component, every group led, the same leaders at two
        looks 0.5 s apart; the seconds it took."""
        groups = len(self.topology.by_index)
        start = time.monotonic()
        deadline = start + timeout_s
        previous: dict[int, int] | None = None
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise LabNodesError(f"a hierclust process exited ({proc.returncode})")
            nodes = self.nodes_now()
            primary = sum(1 for n in nodes.values() if n.get("in_primary"))
            leaders = self.leaders(nodes)
            if progress is not None:
                progress("hierclust: nodes in the primary component", primary, self.nodes)
            if primary == self.nodes and len(leaders) == groups:
                if previous == leaders:
                    return time.monotonic() - start
                previous = leaders
            else:
                previous = None
            if time.monotonic() > deadline:
                raise LabNodesError(
                    f"hierclust: {primary} of {self.nodes} nodes in the primary component, "
                    f"{len(leaders)} of {groups} groups led after {timeout_s:.0f} s"
                )
            time.sleep(0.5)
