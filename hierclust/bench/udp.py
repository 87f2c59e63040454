"""UDP benchmark runs: real agents on 127.0.0.1, one report (docs/architecture.md §5) per repeat.

Built on :class:`hierclust.runtime.demo.Demo` (deploy, status, event-log analysis, stop by PID).
A repeat deploys a fresh state directory, waits for every group's leader, settles, measures a
steady window (the workers' datagram counters, /proc CPU time of the worker PIDs), crashes one
victim and follows the event logs (read from disk, so the workers are not polled while they
propagate) until every survivor holds the notice and every group the victim led has a new leader.
All times are ``time.monotonic_ns()`` on this host.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.bench.hog import Hog, boot_report
from hierclust.bench.hog import cpu_seconds as cpu_seconds  # (re-exported: other benches use it)
from hierclust.bench.hog import load_avg as load_avg
from hierclust.core.timeouts import MS
from hierclust.runtime.control import request
from hierclust.runtime.demo import Demo, read_events
from hierclust.runtime.deploy import (
    check_addresses,
    check_ports_free,
    collect,
    deploy,
    groups_led,
    wait_ready,
)
from hierclust.runtime.errors import DeployError
from hierclust.topology import Topology, from_dict, generate_document, load

ROLES = ("leaf", "leader", "root-leader")
MAX_PROCESSES_PER_NODE_MODE = 128
Progress = Callable[[str, float, float], None]
"""``(phase, done, total)``."""


class BenchError(RuntimeError):
    """A benchmark that cannot go ahead or did not reach the state it needs; one line."""


class BootTimeout(BenchError):
    """Not every group got a leader in time (typically: the box is busy with other work)."""


# -- topology --------------------------------------------------------------------------------------
def serf_budget_tuning(heartbeat_ms: int) -> dict[str, int]:
    """Protocol timings scaled from the defaults (200 ms heartbeat) to ``heartbeat_ms``: a
    hierclust configuration that spends fewer datagrams per second, with the same safety
    relations (suspect and election after 4 heartbeats, lease 3); 150 ms at the least."""
    h = max(150, int(heartbeat_ms))  # below ~100 ms the lease rule (3h < 4h - 100) breaks
    return {
        "heartbeat_ms": h,
        "suspect_after_ms": 4 * h,
        "election_timeout_ms": 4 * h,
        "lease_ms": 3 * h,
        "confirm_ms": max(100, h // 2),
        "slot_grace_ms": max(1500, (15 * h) // 2),
    }


def write_generated(
    nodes: int, fanout: int, base_port: int, path: Path, tuning: dict[str, int] | None = None
) -> Topology:
    """Generate a topology with addresses from ``base_port`` (and ``[defaults]`` ``tuning``),
    write it to ``path`` and load it back (workers read the file)."""
    import tomli_w

    document = generate_document(nodes, fanout, base_port=base_port, name=f"bench{nodes}")
    document["addresses"]["host"] = "127.0.0.1"
    if tuning:
        document = {"cluster": document.pop("cluster"), "defaults": dict(tuning), **document}
    from_dict(document, source=str(path))  # validate before writing
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    return load(path)


def check_local(topology: Topology) -> None:
    """Addresses on this host and free: :class:`DeployError` (one line) otherwise."""
    check_addresses(topology)
    check_ports_free(topology)


# -- measurements ----------------------------------------------------------------------------------
def counters(snapshots: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(datagrams sent, bytes sent, running nodes) summed over status snapshots."""
    sent = sent_bytes = running = 0
    for snap in snapshots:
        for n in snap.get("nodes", []):
            d = n.get("datagrams", {})
            sent += int(d.get("sent", 0))
            sent_bytes += int(d.get("sent_bytes", 0))
            running += 1 if n.get("running") else 0
    return sent, sent_bytes, running


def false_positives(
    events: list[dict[str, Any]], killed: set[int], since_ns: int
) -> tuple[int, list[int]]:
    """Failure notices (distinct node, incarnation) about nodes that were never killed, learned
    at or after ``since_ns``; and the ranks concerned."""
    wrong: set[tuple[int, int]] = set()
    for e in events:
        if e.get("event") != "NoticeLearned" or e.get("t_ns", 0) < since_ns:
            continue
        notice = e.get("notice") or {}
        if notice.get("kind") == "failed" and notice.get("node") not in killed:
            wrong.add((int(notice["node"]), int(notice.get("incarnation", 0))))
    return len(wrong), sorted({r for r, _ in wrong})


def pick_victim(
    topology: Topology, leading: list[list[int]], kill: str, rng: random.Random
) -> tuple[int, str, list[int]]:
    """The victim for ``kill`` (a role or a node name) from ``leaders`` answers: its rank, role
    and the groups it leads. ``leader`` = the leader of a leaf group that leads nothing else
    (like the simulator); ``root-leader`` = the root group's leader."""
    led: dict[int, list[int]] = {}
    for rank, group in leading:
        led.setdefault(int(rank), []).append(int(group))
    root = topology.root.index
    root_leader = next((r for r, gs in led.items() if root in gs), None)
    if kill == "root-leader":
        if root_leader is None:
            raise BenchError("the root group has no leader to kill")
        return root_leader, "root-leader", sorted(led[root_leader])
    if kill == "leaf":
        leaves = [r for r in range(topology.num_nodes) if r not in led]
        if not leaves:
            raise BenchError("no node fits --kill leaf (every node leads a group)")
        return rng.choice(leaves), "leaf", []
    if kill == "leader":
        fits = []
        for rank, groups in sorted(led.items()):
            if len(groups) != 1:
                continue
            only = topology.by_index[groups[0]]
            if only.is_leaf and only.parent is not None:
                fits.append(rank)
        if not fits:
            raise BenchError("no node fits --kill leader (a leaf-group leader below the root)")
        rank = rng.choice(fits)
        return rank, "leader", sorted(led[rank])
    try:
        rank = topology.rank(kill)
    except KeyError as exc:
        raise BenchError(str(exc.args[0])) from None
    groups = sorted(led.get(rank, []))
    role = "leaf" if not groups else ("root-leader" if rank == root_leader else "leader")
    return rank, role, groups


KILL_MODES = ("host", "process")
"""How the victim dies: ``host`` (power loss: silence) or ``process`` (a crashed process: its
port closes, so peers may hear "port unreachable"); see :meth:`UdpRun.crash`."""


class EventTail:
    """Follows the workers' ``events-*.jsonl`` files from their current ends: the notices about
    one victim and the leaders taking over its groups, without asking the workers anything."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.offsets: dict[Path, int] = {
            p: p.stat().st_size for p in state_dir.glob("events-*.jsonl")
        }
        self.partial: dict[Path, bytes] = {}

    def lines(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        for path in self.state_dir.glob("events-*.jsonl"):
            offset = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            self.offsets[path] = offset + len(data)
            data = self.partial.pop(path, b"") + data
            *complete, rest = data.split(b"\n")
            if rest:
                self.partial[path] = rest
            for line in complete:
                if b"NoticeLearned" in line or b"LeaderChanged" in line:
                    try:
                        records.append(json.loads(line))
                    except ValueError:
                        continue
        return records


# -- one repeat ------------------------------------------------------------------------------------
class UdpRun(Demo):
    """One deploy-measure-kill-measure-stop cycle. Call :meth:`finish` in a ``finally``."""

    def __init__(
        self,
        topology: Topology,
        topology_path: Path,
        *,
        processes: int,
        one_process_per_node: bool = False,
        use_uvloop: bool = False,
        kill_mode: str = "host",
    ) -> None:
        if kill_mode not in KILL_MODES:
            raise BenchError(f"kill mode {kill_mode!r}: expected one of {', '.join(KILL_MODES)}")
        if one_process_per_node:
            if topology.num_nodes > MAX_PROCESSES_PER_NODE_MODE:
                raise BenchError(
                    f"--one-process-per-node: at most {MAX_PROCESSES_PER_NODE_MODE} nodes, "
                    f"got {topology.num_nodes}"
                )
            processes = topology.num_nodes
        super().__init__(topology, topology_path, processes)
        self.state_dir.rmdir()  # the demo's temporary directory, still empty: ours is named apart
        self.state_dir = Path(tempfile.mkdtemp(prefix="hcbench-", dir="/tmp"))
        self.one_process_per_node = one_process_per_node
        self.use_uvloop = use_uvloop
        self.kill_mode = kill_mode
        self.stopped_pid: int | None = None
        self.boot_report: dict[str, Any] = {}

    def run_kill(
        self,
        kill: str,
        seed: int,
        *,
        settle_s: float = 1.0,
        steady_s: float = 3.0,
        boot_timeout_s: float = 60.0,
        after_s: float = 10.0,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        topology = self.topology

        def say(phase: str, done: float, total: float) -> None:
            if progress is not None:
                progress(phase, done, total)

        started = time.monotonic_ns()
        self.deployment, self.children = deploy(
            topology,
            self.topology_path,
            self.state_dir,
            self.processes,
            use_uvloop=self.use_uvloop,
        )
        groups = len(topology.by_index)

        def led(answers: list[dict[str, Any]]) -> tuple[int, int]:
            count = groups_led(answers)
            say(f"{count}/{groups} groups led", count, groups)
            return count, groups

        best = [0]

        def led_counted(answers: list[dict[str, Any]]) -> tuple[int, int]:
            done, total = led(answers)
            best[0] = done
            return done, total

        if not wait_ready(self.deployment, self.children, boot_timeout_s, None, led_counted):
            self.boot_report = boot_report(self.state_dir, started, None)
            raise BootTimeout(
                f"only {best[0]} of {groups} groups of {topology.num_nodes} nodes had a leader "
                f"after {boot_timeout_s:.0f} s (load average {load_avg()})"
            )
        all_led_ns = time.monotonic_ns()
        self.boot_report = boot_report(self.state_dir, started, all_led_ns)
        settle_end = time.monotonic() + settle_s
        while time.monotonic() < settle_end:
            say("settling", 0, 1)
            time.sleep(0.1)
        # steady window
        pids = [w.pid for w in self.deployment.workers]
        snaps_before, errors = collect(self.state_dir)
        if errors:
            raise BenchError(f"workers stopped answering: {errors[0]}")
        cpu_before, t0 = cpu_seconds(pids), time.monotonic_ns()
        window_end = time.monotonic() + steady_s
        while time.monotonic() < window_end:
            say("steady window", steady_s - (window_end - time.monotonic()), steady_s)
            time.sleep(0.1)
        cpu_after, t1 = cpu_seconds(pids), time.monotonic_ns()
        snaps_after, errors = collect(self.state_dir)
        if errors:
            raise BenchError(f"workers stopped answering: {errors[0]}")
        window_s = (t1 - t0) / 1e9
        sent0, bytes0, _ = counters(snaps_before)
        sent1, bytes1, running = counters(snaps_after)
        live = max(1, running)
        msgs_rate = (sent1 - sent0) / live / window_s
        bytes_rate = (bytes1 - bytes0) / live / window_s
        cpu_cores = (cpu_after - cpu_before) / window_s
        # the kill
        leaders, errors = collect(self.state_dir, op="leaders")
        if errors:
            raise BenchError(f"workers stopped answering: {errors[0]}")
        leading = [pair for answer in leaders for pair in answer.get("leading", [])]
        victim, role, led_groups = pick_victim(topology, leading, kill, random.Random(seed))
        inside = self.groups_of(victim, snaps_after)
        incarnation = self.incarnation(victim, snaps_after)
        tail = EventTail(self.state_dir)
        t_kill = self.crash(victim)
        name = topology.node_name(victim)
        survivors = set(range(topology.num_nodes)) - {victim}
        learned: set[int] = set()
        new_leaders: dict[int, int] = {}
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline:
            for e in tail.lines():
                if e.get("event") == "NoticeLearned":
                    n = e.get("notice") or {}
                    if n.get("kind") == "failed" and n.get("node") == victim:
                        learned.add(int(e["rank"]))
                elif e.get("leader") == e.get("rank") != victim and e.get("group") in led_groups:
                    new_leaders.setdefault(int(e["group"]), int(e["rank"]))
            say(f"kill {name}: notified", len(learned & survivors), len(survivors))
            if survivors <= learned and all(g in new_leaders for g in led_groups):
                break
            time.sleep(0.05)
        time.sleep(0.3)  # let the last lines reach the logs
        record: dict[str, Any] = {
            "victim": name,
            "victim_role": role,
            "kill_t_ns": t_kill,
            "inc": incarnation,
            "inside": sorted(inside),
            "led": led_groups,
        }
        analysed: dict[str, Any] = {"kills": [record]}
        self.analyse(analysed, [victim])
        events = read_events(self.state_dir)
        fp, fp_ranks = false_positives(events, {victim}, all_led_ns)
        boot_fp, _ = false_positives(events, {victim}, 0)
        outcome: dict[str, Any] = analysed["kills"][0]
        timeline = outcome.pop("timeline")
        report: dict[str, Any] = {
            "mode": "udp",
            "nodes": topology.num_nodes,
            "fanout": max(g.size for g in topology.by_index),
            "depth": topology.depth,
            "victim": name,
            "victim_role": role,
            "kill_at_ms": round((t_kill - started) / MS, 1),
            "detect_ms": outcome["detect_ms"],
            "notify_p50_ms": outcome["notify_p50_ms"],
            "notify_p99_ms": outcome["notify_p99_ms"],
            "notify_max_ms": outcome["notify_max_ms"],
            "notified": outcome["notified"],
            "survivors": outcome["survivors"],
            "reelect_ms": outcome["reelect_ms"],
            "groups_disturbed": outcome["groups_disturbed"],
            "elections_elsewhere": outcome["elections_elsewhere"],
            "false_positives": fp,
            "msgs_per_node_per_s": round(msgs_rate, 3),
            "bytes_per_node_per_s": round(bytes_rate, 1),
            "cpu_cores": round(cpu_cores, 3),
            "seed": seed,
            "version": __version__,
            "udp": {
                "processes": len(self.deployment.workers),
                "one_process_per_node": self.one_process_per_node,
                "kill_mode": self.kill_mode,
                "uvloop": self.use_uvloop,
                "all_led_ms": round((all_led_ns - started) / MS, 1),
                "false_positives_from": "converged: every group led (all_led_ms)",
                "window_s": round(window_s, 3),
                "detected_by": outcome["detected_by"],
                "reelected": outcome["reelected"],
                "false_positive_nodes": [topology.node_name(r) for r in fp_ranks[:10]],
                "false_positives_incl_boot": boot_fp,
                "boot_s": round((all_led_ns - started) / 1e9, 2),
                "boot": self.boot_report,
                "load_avg_1m": load_avg(),
                "loop_lag_max_ms": max(
                    (int(s.get("lag_max_ms", 0)) for s in snaps_after), default=0
                ),
                "notify_ms": [t["ms"] for t in timeline],
                # who learned it, through which group (None: detected it), in notify_ms's order:
                # the timeline and tree of `bench --html`
                "notify_nodes": [t["node"] for t in timeline],
                "notify_via": [t["via"] for t in timeline],
                "topology": str(topology.source),
            },
        }
        return report

    def crash(self, victim: int) -> int:
        """Crash ``victim`` abruptly; the monotonic time of the crash.

        ``kill_mode`` ``host`` (the default) is a power loss: the victim goes silent and its
        port stays bound, so nobody gets an ICMP "port unreachable" (with a process of its own
        it is stopped with SIGSTOP, and killed when the run ends). ``process`` is a process
        crash: its socket closes (SIGKILL with a process of its own), and a peer sending to it
        may learn from the kernel's "port unreachable" at once."""
        assert self.deployment is not None
        silent = self.kill_mode == "host"
        if self.one_process_per_node:
            for w in self.deployment.workers:
                if victim in w.ranks:
                    t = time.monotonic_ns()
                    os.kill(w.pid, signal.SIGSTOP if silent else signal.SIGKILL)
                    self.stopped_pid = w.pid if silent else None
                    return t
        answer = request(self.socket_of(victim), {"op": "kill", "rank": victim, "silent": silent})
        return int(answer["t_ns"])

    def finish(self) -> dict[str, Any]:
        """Stop everything; a victim stopped with SIGSTOP (a power loss) is killed first, as a
        stopped process would make the stop wait for its timeouts."""
        if self.stopped_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.stopped_pid, signal.SIGKILL)
            self.stopped_pid = None
        return super().finish()


def udp_runs(
    topology: Topology,
    topology_path: Path,
    kill: str,
    repeats: int,
    seed: int,
    *,
    processes: int,
    one_process_per_node: bool = False,
    use_uvloop: bool = False,
    steady_s: float = 3.0,
    after_s: float = 10.0,
    boot_timeout_s: float = 60.0,
    progress: Progress | None = None,
    failures: list[dict[str, Any]] | None = None,
    kill_mode: str = "host",
    hog: int = 0,
) -> list[dict[str, Any]]:
    """One report per repeat, each on a fresh deployment (stopped by PID, even on error or ^C).
    A repeat whose cluster does not get every leader in time is recorded in ``failures`` (when
    given, with what its boot did) and skipped; :class:`BenchError` when no repeat succeeds.
    ``hog``: that many busy-loop processes (:class:`~hierclust.bench.hog.Hog`) run through each
    whole repeat, started before the deploy and ended by PID after the stop."""
    check_local(topology)
    runs: list[dict[str, Any]] = []
    last_error = ""
    for i in range(repeats):
        run = UdpRun(
            topology,
            topology_path,
            processes=processes,
            one_process_per_node=one_process_per_node,
            use_uvloop=use_uvloop,
            kill_mode=kill_mode,
        )
        ok = False
        hogs = Hog(hog, max_s=boot_timeout_s + steady_s + after_s + 60.0)
        try:
            hogs.start()
            runs.append(
                run.run_kill(
                    kill,
                    seed + i,
                    steady_s=steady_s,
                    after_s=after_s,
                    boot_timeout_s=boot_timeout_s,
                    progress=progress,
                )
            )
            ok = True
        except BootTimeout as exc:
            if failures is None:
                raise
            last_error = str(exc)
            failures.append(
                {
                    "seed": seed + i,
                    "error": last_error,
                    "load_avg_1m": load_avg(),
                    "boot": run.boot_report,
                }
            )
        except DeployError as exc:
            raise BenchError(str(exc)) from None
        finally:
            left = run.finish()
            hogs.stop()
            if hog and ok:
                runs[-1]["udp"]["hog"] = hogs.info()
            elif hog and failures and failures[-1].get("seed") == seed + i:
                failures[-1]["hog"] = hogs.info()
            if ok and left["left_running"]:
                raise BenchError(f"{left['left_running']} worker processes did not stop")
    if not runs:
        raise BenchError(last_error or "no repeat completed")
    return runs
