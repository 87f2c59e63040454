"""How long a Dask scheduler takes to give up on a host that lost power, alone and with hierclust.

**Set-up.** ``nodes`` lab hosts (:class:`~hierclust.runtime.netns.NetnsLab`: a network namespace
each on one bridge, all clocks at offset 0 so the scheduler's times and this process's compare).
Every host runs a ``hierclust agent`` for its node ``cnI`` (default tuning) and a Dask worker
named ``cnI`` (one thread, no nanny); host 1 also runs the scheduler
(:mod:`hierclust.bench.dask_probe`), with :class:`~hierclust.adapters.dask.HierclustPlugin`
following its node ``cn1`` in the ``with_hierclust`` runs and without it in the ``alone`` runs.
Dask's settings are its defaults (``distributed.comm.timeouts.tcp`` 30 s, ``worker-ttl``), so
``alone`` is what a stock deployment does.

**One measurement.** A task pinned to the victim's worker (others allowed) starts there and
hangs. Then nftables on the lab's bridge drops every frame to and from the victim's host: no RST,
no FIN, as when a host loses power. ``removed_ms``: from the cut to the scheduler's removal of the
victim's worker; ``rescheduled_ms``: from the cut to the task's completion on another worker
(it returns at once there, so this is the rescheduling's delay). The victim is the last host
whose hierclust node leads no group: the common case, a compute node that is nobody's leader.

The processes, the lab and the cut are torn down after each run; each run starts afresh. Root
only (network namespaces): :func:`unavailable` says why it cannot run elsewhere.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import dask.config
import distributed  # noqa: F401  (loads its defaults into dask.config)
import tomli_w

from hierclust.codec import generate_keyring_file
from hierclust.runtime.deploy import collect, init_states
from hierclust.runtime.netns import NetnsLab
from hierclust.runtime.netns import unavailable as lab_unavailable
from hierclust.topology import generate_document, load

Progress = Callable[[int, int, str], None]
"""``(run, runs, phase)``."""

SUBNET = "10.210.0"
HIERCLUST_PORT = 7100
WITNESS_PORT = 7099
SCHEDULER_PORT = 8786
FANOUT = 3
SETTLE_TIMEOUT_S = 60.0
WAIT_TIMEOUT_S = 120.0
"""How long one run waits for the removal and the rescheduled task (Dask alone takes 30 s and
more)."""


class BenchError(RuntimeError):
    """The benchmark could not set up or run; ``str()`` says what and where."""


def unavailable() -> str | None:
    """Why the benchmark cannot run here (None when it can)."""
    return lab_unavailable()


def write_topology(directory: Path, lab: NetnsLab, nodes: int) -> Path:
    """``nodes`` nodes, node ``cnI`` on host ``I-1`` at port 7100, default tuning, one keyring;
    a witness the generator asks for sits on host 1."""
    document: dict[str, Any] = generate_document(
        nodes, FANOUT, base_port=HIERCLUST_PORT, name="sd", prefix="cn"
    )
    generate_keyring_file(directory / "lab.keyring")
    document["cluster"]["secret_file"] = "lab.keyring"
    for group in document["group"].values():
        if "tiebreaker" in group:
            group["tiebreaker"] = {"kind": "witness", "address": f"{lab.address(0)}:{WITNESS_PORT}"}
    width = len(str(nodes))
    document["node"] = {
        f"cn{str(i + 1).zfill(width)}": {"host": lab.address(i), "port": HIERCLUST_PORT}
        for i in range(nodes)
    }
    path = directory / "sd.toml"
    path.write_text(tomli_w.dumps(document))
    return path


class LabRun:
    """One lab with agents, workers and a scheduler; ``measure()`` cuts the victim off."""

    def __init__(self, directory: Path, nodes: int, with_hierclust: bool) -> None:
        self.directory = directory
        self.nodes = nodes
        self.with_hierclust = with_hierclust
        self.lab = NetnsLab(f"hsd{os.getpid() % 100000}", nodes, SUBNET, offsets_s=(0,))
        self.procs: list[subprocess.Popen[bytes]] = []
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.marker = directory / "running-on-victim"
        self.reader: threading.Thread | None = None

    def hierclust(self, host: int, *args: str) -> list[str]:
        state = self.directory / "state" / self.lab.address(host)
        return [sys.executable, "-m", "hierclust", *args, "--state-dir", str(state)]

    def popen(
        self, host: int, argv: list[str], name: str, stdout: int | IO[bytes] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.directory / f"{name}.log", "ab") as log:
            proc = self.lab.popen(
                host, argv, stdin=subprocess.DEVNULL, stdout=stdout or log, stderr=log
            )
        self.procs.append(proc)
        return proc

    def start_hierclust(self) -> None:
        self.path = write_topology(self.directory, self.lab, self.nodes)
        self.topology = load(self.path)
        if any(g.tiebreaker is not None for g in self.topology.by_index):
            witness = self.hierclust(0, "witness", "--topology", str(self.path))
            done = self.lab.run_on(0, [*witness, "--init"])
            if done.returncode != 0:
                raise BenchError(f"hierclust witness --init: {done.stderr.strip()}")
            self.popen(0, witness, "witness")
        for host in range(self.nodes):
            init_states(self.topology, self.directory / "state" / self.lab.address(host))
            node = self.topology.node_name(host)
            self.popen(
                host,
                self.hierclust(host, "agent", "--topology", str(self.path), "--node", node),
                f"agent-{node}",
            )

    def snapshot_nodes(self) -> dict[int, dict[str, Any]]:
        nodes: dict[int, dict[str, Any]] = {}
        for host in range(self.nodes):
            snaps, _ = collect(self.directory / "state" / self.lab.address(host), timeout_s=2.0)
            for snap in snaps:
                nodes.update({n["rank"]: n for n in snap["nodes"]})
        return nodes

    def wait_settled(self) -> dict[int, dict[str, Any]]:
        """Every node running and in the primary component, every group led."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        groups = len(self.topology.by_index)
        while time.monotonic() < deadline:
            nodes = self.snapshot_nodes()
            led = {g["group"] for n in nodes.values() for g in n.get("groups", []) if g["leading"]}
            if (
                len(nodes) == self.nodes
                and all(n.get("in_primary") for n in nodes.values())
                and len(led) == groups
            ):
                return nodes
            time.sleep(0.3)
        raise BenchError(f"hierclust on {self.nodes} lab hosts not settled in {SETTLE_TIMEOUT_S} s")

    def pick_victim(self, nodes: dict[int, dict[str, Any]]) -> int:
        """The last host whose node leads nothing, in a leaf group of three or more (losing one
        of two would cost that group its quorum); never the scheduler's host."""
        for host in range(self.nodes - 1, 0, -1):
            leading = any(g["leading"] for g in nodes[host].get("groups", []))
            if not leading and self.topology.leaf_of(host).size >= 3:
                return host
        raise BenchError("no host outside the scheduler's leads nothing in a group of 3 or more")

    def start_dask(self, victim: int) -> None:
        probe = [
            sys.executable, "-m", "hierclust.bench.dask_probe",
            "--host", self.lab.address(0), "--port", str(SCHEDULER_PORT),
            "--workers", str(self.nodes), "--victim", self.topology.node_name(victim),
            "--marker", str(self.marker), "--timeout-s", str(WAIT_TIMEOUT_S),
        ]  # fmt: skip
        if self.with_hierclust:
            state = self.directory / "state" / self.lab.address(0)
            node = self.topology.node_name(0)
            probe += ["--hierclust-node", node, "--hierclust-state-dir", str(state)]
        scheduler = self.popen(0, probe, "scheduler", stdout=subprocess.PIPE)
        self.reader = threading.Thread(target=self._read, args=(scheduler,), daemon=True)
        self.reader.start()
        self.expect("listening", 60)
        address = f"tcp://{self.lab.address(0)}:{SCHEDULER_PORT}"
        for host in range(self.nodes):
            name = self.topology.node_name(host)
            worker = [
                sys.executable, "-m", "dask", "worker", address, "--name", name,
                "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", self.lab.address(host),
            ]  # fmt: skip
            self.popen(host, worker, f"worker-{name}")

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                self.lines.put(json.loads(line))
            except ValueError:
                continue
        self.lines.put({"event": "exit", "code": proc.wait()})

    def expect(self, event: str, timeout_s: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no {event!r} from the scheduler in {timeout_s} s") from None
            if line["event"] == event:
                return line
            if line["event"] in ("exit", "error"):
                log = self.directory / "scheduler.log"
                raise BenchError(f"the scheduler stopped before {event!r}: {line}; see {log}")

    def measure(self, victim: int) -> dict[str, Any]:
        ready = self.expect("ready", WAIT_TIMEOUT_S)
        deadline = time.monotonic() + 60
        while not self.marker.exists():
            if time.monotonic() > deadline:
                raise BenchError("the task never started on the victim")
            time.sleep(0.01)
        self.lab.cut([victim])
        cut_ns = time.monotonic_ns()
        removed: dict[str, Any] | None = None
        done: dict[str, Any] | None = None
        others: list[str] = []
        names = {address: name for name, address in ready["workers"].items()}
        while True:
            try:
                line = self.lines.get(timeout=WAIT_TIMEOUT_S + 10)
            except queue.Empty:
                break
            if line["event"] == "removed" and line["worker"] == ready["victim"]:
                removed = line
            elif line["event"] == "removed":
                others.append(names.get(line["worker"], line["worker"]))
            elif line["event"] == "done":
                done = line
            elif line["event"] in ("end", "exit", "timeout"):
                break
        return {
            "victim": self.topology.node_name(victim),
            "victim_group": self.topology.leaf_of(victim).name,
            "others_removed": others,
            "removed_ms": None if removed is None else round((removed["t_ns"] - cut_ns) / 1e6, 1),
            "rescheduled_ms": None if done is None else round((done["t_ns"] - cut_ns) / 1e6, 1),
            "stimulus_id": None if removed is None else removed["stimulus_id"],
            "ran_on": None if done is None else done["worker"],
        }

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self.reader is not None:
            self.reader.join(timeout=10)
        for proc in self.procs:
            if proc.stdout is not None:
                proc.stdout.close()
        left = self.lab.teardown()
        if left:
            raise BenchError(f"processes left in the lab's namespaces: {left}")


def one_run(nodes: int, with_hierclust: bool, phase: Callable[[str], None]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hierclust-sched-dask-") as tmp:
        run = LabRun(Path(tmp), nodes, with_hierclust)
        run.lab.setup()
        try:
            phase("starting hierclust agents")
            run.start_hierclust()
            victim = run.pick_victim(run.wait_settled())
            phase("starting the Dask scheduler and workers")
            run.start_dask(victim)
            phase("cut off; waiting for the scheduler")
            return run.measure(victim)
        finally:
            run.close()


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over the runs of each time (None when some run never got there), and the runs."""
    summary: dict[str, Any] = {}
    for key in ("removed_ms", "rescheduled_ms"):
        values = [r[key] for r in runs]
        summary[key] = None if None in values else round(statistics.median(values), 1)
    summary["runs"] = runs
    return summary


def run(nodes: int, *, repeats: int = 1, progress: Progress | None = None) -> dict[str, Any]:
    """Dask alone, then Dask with the hierclust plugin, ``repeats`` runs each on ``nodes`` lab
    hosts; the report (``removed_ms``/``rescheduled_ms`` are medians over the runs)."""
    if nodes < 3:
        raise ValueError(f"nodes: need at least 3 lab hosts (got {nodes})")
    if not 1 <= repeats <= 20:
        raise ValueError(f"repeats: 1 to 20 (got {repeats})")
    why = unavailable()
    if why is not None:
        raise BenchError(f"the lab cannot run here: {why}")
    config = {
        "repeats": repeats,
        "fanout": FANOUT,
        "hierclust_tuning": "defaults",
        "cut": "nftables drop on the lab bridge, both ways (no RST)",
        "distributed": metadata.version("distributed"),
        "comm_timeouts": dict(dask.config.get("distributed.comm.timeouts")),
        "worker_ttl": dask.config.get("distributed.scheduler.worker-ttl"),
        "python": sys.version.split()[0],
        "cpu_cores": os.cpu_count(),
    }
    total = 2 * repeats
    results: dict[str, list[dict[str, Any]]] = {"alone": [], "with_hierclust": []}
    for mode in results:
        for _ in range(repeats):
            step = len(results["alone"]) + len(results["with_hierclust"])

            def phase(text: str, step: int = step, mode: str = mode) -> None:
                if progress is not None:
                    progress(step, total, f"{mode}: {text}")

            results[mode].append(one_run(nodes, mode == "with_hierclust", phase))
    if progress is not None:
        progress(total, total, "done")
    return {
        "scheduler": "dask",
        "nodes": nodes,
        "alone": summarise(results["alone"]),
        "with_hierclust": summarise(results["with_hierclust"]),
        "config": config,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m hierclust.bench.sched_dask",
        description="Time a Dask scheduler's reaction to a host cut off, alone and with hierclust.",
    )
    parser.add_argument("--nodes", type=int, default=8, help="lab hosts (default 8)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", dest="out", type=Path, default=None, help="write the report")
    args = parser.parse_args(argv)

    def show(step: int, total: int, phase: str) -> None:
        print(f"[{step}/{total}] {phase}", file=sys.stderr, flush=True)

    try:
        report = run(args.nodes, repeats=args.repeats, progress=show)
    except (BenchError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    text = json.dumps(report, indent=1)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
