"""``hierclust demo``: deploy the demo topology locally, kill a leaf node, then a tier-1 leader,
and report from the event logs when each node learned each failure.

All times come from ``time.monotonic_ns()``, one clock for every process on the host; each kill
is timed where it happens (inside the worker). Figures follow the names of the report schema
(docs/architecture.md §5).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.core.timeouts import MS
from hierclust.runtime.control import request
from hierclust.runtime.deploy import Deployment, collect, deploy, groups_led, stop, wait_ready
from hierclust.runtime.discover import pid_alive
from hierclust.runtime.errors import DeployError
from hierclust.runtime.status import aggregate
from hierclust.stats import percentile
from hierclust.topology import Topology

Progress = Callable[[str, int, int], None]


def read_events(state_dir: Path) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for path in sorted(state_dir.glob("events-*.jsonl")):
        for line in path.read_text(errors="replace").splitlines():
            try:
                records.append(json.loads(line))
            except ValueError:
                continue
    records.sort(key=lambda r: r.get("t_ns", 0))
    return records


class Demo:
    def __init__(self, topology: Topology, topology_path: Path, processes: int) -> None:
        self.topology = topology
        self.topology_path = topology_path
        self.processes = processes
        self.state_dir = Path(tempfile.mkdtemp(prefix="hcdemo-", dir="/tmp"))
        self.deployment: Deployment | None = None
        self.children: list[Any] = []

    # -- helpers ----------------------------------------------------------------------------------
    def status(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        snapshots, errors = collect(self.state_dir)
        return aggregate(self.topology, snapshots, errors), snapshots

    def socket_of(self, rank: int) -> Path:
        assert self.deployment is not None
        for w in self.deployment.workers:
            if rank in w.ranks:
                return w.socket_path(self.state_dir)
        raise KeyError(rank)

    def wait(
        self,
        what: str,
        done: Callable[[dict[str, Any], list[dict[str, Any]]], tuple[int, int]],
        timeout_s: float,
        progress: Progress | None,
    ) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            summary, snapshots = self.status()
            have, total = done(summary, snapshots)
            if progress is not None:
                progress(what, have, total)
            if have >= total:
                return True
            time.sleep(0.05)
        return False

    # -- the run ----------------------------------------------------------------------------------
    def run(self, progress: Progress | None = None) -> dict[str, Any]:
        started = time.monotonic_ns()
        self.deployment, self.children = deploy(
            self.topology, self.topology_path, self.state_dir, self.processes
        )
        groups = len(self.topology.by_index)

        def led(answers: list[dict[str, Any]]) -> tuple[int, int]:
            count = groups_led(answers)
            if progress is not None:
                progress("electing", count, groups)
            return count, groups

        all_led = wait_ready(self.deployment, self.children, 20.0, None, led)
        all_led_ms = (time.monotonic_ns() - started) / MS if all_led else None
        if not all_led:
            raise DeployError(f"not every group got a leader within 20 s ({self.topology.source})")
        # steady window: datagrams per node per second
        before, _ = self.status()
        t0 = time.monotonic_ns()
        time.sleep(2.0)
        after, snaps = self.status()
        window_s = (time.monotonic_ns() - t0) / 1e9
        nodes = self.topology.num_nodes
        rate = (after["datagrams_sent"] - before["datagrams_sent"]) / nodes / window_s
        sent_bytes = sum(n["datagrams"]["sent_bytes"] for s in snaps for n in s["nodes"])
        report: dict[str, Any] = {
            "mode": "runtime-demo",
            "nodes": nodes,
            "groups": groups,
            "processes": len(self.deployment.workers),
            "all_led_ms": round(all_led_ms, 1) if all_led_ms is not None else None,
            "msgs_per_node_per_s": round(rate, 2),
            "bytes_per_datagram": round(sent_bytes / max(1, after["datagrams_sent"]), 1),
            "kills": [],
        }
        killed: list[int] = []
        for role in ("leaf", "leader"):
            victim = self.pick(role, snaps, killed)
            summary_before, snaps_before = self.status()
            inside = self.groups_of(victim, snaps_before)
            led_before = [
                d["index"]
                for d in summary_before["group_details"]
                if d["leader"] == self.topology.node_name(victim)
            ]
            inc = self.incarnation(victim, snaps_before)
            t_kill = int(request(self.socket_of(victim), {"op": "kill", "rank": victim})["t_ns"])
            killed.append(victim)
            name = self.topology.node_name(victim)

            def notified(
                summary: dict[str, Any], snapshots: list[dict[str, Any]], victim: int = victim
            ) -> tuple[int, int]:
                """Survivors holding the notice; done once all do and every group is led."""
                running = [n for s in snapshots for n in s["nodes"] if n.get("running")]
                knows = sum(1 for n in running if any(f[0] == victim for f in n["failed"]))
                total = len(running) + (0 if summary["groups_led"] == groups else 1)
                return knows, total

            self.wait(f"kill {name}", notified, 10.0, progress)
            time.sleep(0.3)  # let the last notices land in the logs
            report["kills"].append(
                {
                    "victim": name,
                    "victim_role": role,
                    "kill_t_ns": t_kill,
                    "inc": inc,
                    "inside": sorted(inside),
                    "led": led_before,
                }
            )
            snaps = self.status()[1]
        self.analyse(report, killed)
        report["seconds"] = round((time.monotonic_ns() - started) / 1e9, 1)
        report["version"] = __version__
        return report

    def pick(self, role: str, snaps: list[dict[str, Any]], killed: list[int]) -> int:
        summary = aggregate(self.topology, snaps)
        leading: dict[str, list[int]] = {}
        for d in summary["group_details"]:
            if d["leader"] is not None:
                leading.setdefault(d["leader"], []).append(d["tier"])
        root_leader = summary["group_details"][self.topology.root.index]["leader"]
        for rank in reversed(range(self.topology.num_nodes)):
            name = self.topology.node_name(rank)
            if rank in killed:
                continue
            if role == "leaf" and name not in leading:
                return rank
            if role == "leader" and name != root_leader and 1 in leading.get(name, []):
                return rank
        raise DeployError(f"no node fits the {role} kill in {self.topology.source}")

    @staticmethod
    def groups_of(rank: int, snaps: list[dict[str, Any]]) -> set[int]:
        for s in snaps:
            for n in s["nodes"]:
                if n["rank"] == rank:
                    return {g["group"] for g in n.get("groups", [])}
        return set()

    @staticmethod
    def incarnation(rank: int, snaps: list[dict[str, Any]]) -> int:
        for s in snaps:
            for n in s["nodes"]:
                if n["rank"] == rank:
                    return int(n.get("incarnation", 1))
        return 1

    def analyse(self, report: dict[str, Any], killed: list[int]) -> None:
        events = read_events(self.state_dir)
        kills = report["kills"]
        for i, kill in enumerate(kills):
            t_kill = kill.pop("kill_t_ns")
            t_end = kills[i + 1]["kill_t_ns"] if i + 1 < len(kills) else 1 << 62
            victim = self.topology.rank(kill["victim"])
            inside = set(kill.pop("inside"))
            led = kill.pop("led")
            dead = set(killed[: i + 1])
            learned: dict[int, tuple[int, Any]] = {}
            detected: tuple[int, str] | None = None
            elected: dict[int, int] = {}
            disturbed: set[int] = set()
            elsewhere = 0
            for e in events:
                t = e.get("t_ns", 0)
                if t < t_kill or t >= t_end or "rank" not in e:
                    continue
                kind = e.get("event")
                rank = e["rank"]
                if kind == "NoticeLearned":
                    n = e["notice"]
                    if n["kind"] == "failed" and n["node"] == victim and rank not in learned:
                        learned[rank] = (t, e.get("via"))
                        if e.get("via") is None and detected is None:
                            detected = (t, e["node"])
                elif kind == "LeaderChanged" and e.get("leader") == rank and rank != victim:
                    elected.setdefault(e["group"], t)
                elif kind == "ViewChanged" and e["group"] not in inside:
                    disturbed.add(e["group"])
                elif kind == "ElectionStarted" and e["group"] not in inside:
                    elsewhere += 1
            survivors = [r for r in range(self.topology.num_nodes) if r not in dead]
            delays = sorted((learned[r][0] - t_kill) / MS for r in survivors if r in learned)
            reelect = [elected.get(g) for g in led]
            names = self.topology.node_name
            kill.update(
                detect_ms=round((detected[0] - t_kill) / MS, 1) if detected else None,
                detected_by=detected[1] if detected else None,
                notify_p50_ms=round(percentile(delays, 0.5), 1) if delays else None,
                notify_p99_ms=round(percentile(delays, 0.99), 1) if delays else None,
                notify_max_ms=round(delays[-1], 1) if delays else None,
                notified=len(delays),
                survivors=len(survivors),
                reelect_ms=round(max((t - t_kill) / MS for t in reelect if t is not None), 1)
                if led and all(t is not None for t in reelect)
                else None,
                reelected={
                    self.topology.by_index[g].name: names(r)
                    for g in led
                    for r in [self.leader_after(events, g, t_kill, t_end, victim)]
                    if r is not None
                },
                groups_disturbed=len(disturbed),
                elections_elsewhere=elsewhere,
                timeline=[
                    {
                        "node": names(r),
                        "ms": round((t - t_kill) / MS, 1),
                        "via": None if via is None else self.topology.by_index[via].name,
                    }
                    for r, (t, via) in sorted(learned.items(), key=lambda kv: kv[1][0])
                ],
            )

    @staticmethod
    def leader_after(
        events: list[dict[str, Any]], group: int, t0: int, t1: int, victim: int
    ) -> int | None:
        for e in events:
            if t0 <= e.get("t_ns", 0) < t1 and e.get("event") == "LeaderChanged":
                if e["group"] == group and e.get("leader") == e.get("rank") != victim:
                    return int(e["rank"])
        return None

    def finish(self) -> dict[str, Any]:
        """Stop every worker, check none is left, remove the temporary state directory."""
        result = stop(self.state_dir)
        for child in self.children:
            try:
                child.wait(timeout=5)
            except Exception:
                child.kill()
                child.wait()
        left = [c.pid for c in self.children if pid_alive(c.pid)]
        shutil.rmtree(self.state_dir, ignore_errors=True)
        return {"left_running": len(left), "escalated": result["escalated"]}
