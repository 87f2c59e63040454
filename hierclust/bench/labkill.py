"""A host lost, hierclust then Corosync, on the same lab hosts with the same victim.

``hierclust bench --mode udp --vs corosync``: a lab of N hosts (network + time namespace each);
hierclust runs one node per host (:mod:`hierclust.bench.labnodes`), settles, measures a steady
window, and loses the victim's host: the host is cut off at the bridge (nftables drops every
frame to and from it), which is what a power loss looks like to the others (silence, no ICMP).
Its processes are stopped once the run ends. Then the lab is healed, hierclust stopped, and
Corosync + votequorum (:mod:`hierclust.bench.corosync`) runs on the same hosts; the same host is
cut. Fairness: only notices at or after the cut count on either side, both sides get the same
bound (:data:`AFTER_KILL_S`) to notify every survivor, and the ratio is given only when both
notified every survivor in every run.

Datagrams and bytes per node per second come the same way on both sides: each host is its own
network namespace, so its UDP ``OutDatagrams`` (``/proc/<pid>/net/snmp``) and ``eth0`` transmit
bytes count exactly what that host's node sent. CPU is the ``/proc`` time of the processes.
"""

from __future__ import annotations

import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.bench.corosync import CorosyncLab, corosync_version, state_at
from hierclust.bench.labnodes import LabNodes
from hierclust.bench.procio import namespace_counters
from hierclust.bench.report import percentile
from hierclust.bench.udp import cpu_seconds, load_avg
from hierclust.core.timeouts import MS
from hierclust.runtime.netns import NetnsLab

AFTER_KILL_S = 60.0
"""How long either side gets, from the cut, to notify every survivor (Corosync at 16 nodes needs
about 27 s with its default token)."""
Progress = Callable[[str, float, float], None]


def host_counters(pid: int) -> tuple[int, int] | None:
    """(UDP datagrams sent, eth0 bytes sent) in the network namespace of ``pid``."""
    return namespace_counters(pid, "eth0")


def steady_window(
    pids: list[int], steady_s: float, progress: Progress | None
) -> tuple[float | None, float | None, float, float]:
    """(datagrams, bytes) per node per second and CPU cores over ``steady_s``; the window."""
    before = [host_counters(p) for p in pids]
    cpu0, t0 = cpu_seconds(pids), time.monotonic()
    end = t0 + steady_s
    while time.monotonic() < end:
        if progress is not None:
            progress("steady window", steady_s - (end - time.monotonic()), steady_s)
        time.sleep(0.1)
    after = [host_counters(p) for p in pids]
    cpu1, window = cpu_seconds(pids), time.monotonic() - t0
    if any(c is None for c in before + after):
        return None, None, round((cpu1 - cpu0) / window, 3), window
    sent = sum(a[0] - b[0] for a, b in zip(after, before, strict=True) if a and b)
    tx = sum(a[1] - b[1] for a, b in zip(after, before, strict=True) if a and b)
    n = len(pids)
    return round(sent / n / window, 3), round(tx / n / window, 1), (cpu1 - cpu0) / window, window


def delays_summary(delays: list[float]) -> dict[str, Any]:
    delays = sorted(delays)
    return {
        "notify_p50_ms": round(percentile(delays, 0.5), 1) if delays else None,
        "notify_p99_ms": round(percentile(delays, 0.99), 1) if delays else None,
        "notify_max_ms": round(delays[-1], 1) if delays else None,
        "notified": len(delays),
    }


def pick_leaf(nodes: LabNodes, seed: int) -> tuple[int, str, list[int]]:
    """A node that leads no group, chosen with ``seed``: (rank, role, groups it leads)."""
    leading = set(nodes.leaders(nodes.nodes_now()).values())
    leaves = [r for r in range(nodes.nodes) if r not in leading]
    return random.Random(seed).choice(leaves), "leaf", []


def hierclust_kill(
    lab: NetnsLab,
    directory: Path,
    fanout: int,
    kill: str,
    seed: int,
    *,
    steady_s: float = 3.0,
    after_s: float = AFTER_KILL_S,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One hierclust run: a node per host, settle, steady window, cut the victim's host."""
    n = len(lab.host_ns)
    with LabNodes(lab, directory, n, fanout) as nodes:
        started = time.monotonic_ns()
        nodes.start()
        nodes.wait_settled(progress=progress)
        settled_ns = time.monotonic_ns()
        pids = [p.pid for p in nodes.procs]
        msgs, tx, cpu, window = steady_window(pids, steady_s, progress)
        snapshot = nodes.nodes_now()
        leaders = nodes.leaders(snapshot)
        if kill == "leaf":
            victim, role, led = pick_leaf(nodes, seed)
        else:
            victim = nodes.topology.rank(kill)
            led = sorted(g for g, r in leaders.items() if r == victim)
            role = "leader" if led else "leaf"
        t_kill = time.monotonic_ns()
        lab.cut([victim])
        survivors = set(range(n)) - {victim}
        learned: dict[int, int] = {}
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline:
            for e in nodes.events(t_kill, ("NoticeLearned",)):
                notice = e.get("notice") or {}
                rank = int(e["rank"])
                if notice.get("kind") == "failed" and notice.get("node") == victim:
                    learned.setdefault(rank, e["at_ns"])
            if progress is not None:
                name = nodes.topology.node_name(victim)
                progress(f"cut {name}'s host: notified", len(learned.keys() & survivors), n - 1)
            if survivors <= learned.keys():
                break
            time.sleep(0.1)
        events = nodes.events(t_kill, ("NoticeLearned", "LeaderChanged", "ElectionStarted"))
        wrong = {
            (e["notice"]["node"], e["notice"].get("incarnation"))
            for e in nodes.events(settled_ns, ("NoticeLearned",))
            if (e.get("notice") or {}).get("kind") == "failed" and e["notice"]["node"] != victim
        }
        new_leader = [
            e["at_ns"]
            for e in events
            if e["event"] == "LeaderChanged"
            and e.get("group") in led
            and e.get("leader") not in (None, victim)
        ]
        elsewhere = {
            e["group"] for e in events if e["event"] == "ElectionStarted" and e["group"] not in led
        }
        delays = [(t - t_kill) / MS for r, t in learned.items() if r in survivors]
        lab.heal()
    return {
        "mode": "udp",
        "nodes": n,
        "fanout": max(g.size for g in nodes.topology.by_index),
        "depth": nodes.topology.depth,
        "victim": nodes.topology.node_name(victim),
        "victim_role": role,
        "kill_at_ms": round((t_kill - started) / MS, 1),
        "detect_ms": round(min(delays), 1) if delays else None,
        **delays_summary(delays),
        "survivors": n - 1,
        "reelect_ms": round((min(new_leader) - t_kill) / MS, 1) if led and new_leader else None,
        "groups_disturbed": len(led),
        "elections_elsewhere": len(elsewhere),
        "false_positives": len(wrong),
        "msgs_per_node_per_s": msgs,
        "bytes_per_node_per_s": tx,
        "cpu_cores": round(cpu, 3),
        "seed": seed,
        "version": __version__,
        "lab": {
            "victim_host": lab.address(victim),
            "kill": "host cut off at the bridge (power loss: silence, no ICMP)",
            "window_s": round(window, 3),
            "load_avg_1m": load_avg(),
            "notify_ms": [round(d, 1) for d in sorted(delays)],
            "clock_offsets_s": sorted({lab.clock_offset_s(h) for h in range(n)}),
        },
    }


def corosync_kill(
    lab: NetnsLab,
    directory: Path,
    victim: int,
    role: str,
    seed: int,
    *,
    steady_s: float = 3.0,
    after_s: float = AFTER_KILL_S,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One Corosync run on every host of ``lab``: form, steady window, cut ``victim``'s host;
    a survivor is notified when its quorum service delivers a membership without the victim."""
    n = len(lab.host_ns)
    with CorosyncLab(lab, directory) as cs:
        started = time.monotonic_ns()
        cs.start(progress)
        formed_s = cs.wait_formed(progress=progress)
        formed_ns = time.monotonic_ns()
        totem = cs.totem(0)
        pids = [i.process.pid for i in cs.instances.values()]
        msgs, tx, cpu, window = steady_window(pids, steady_s, progress)
        vid = cs.node_id(victim)
        survivors = [h for h in cs.hosts if h != victim]
        t_kill = time.monotonic_ns()
        lab.cut([victim])
        got = cs.wait_state(
            survivors, lambda m: vid not in m, None, t_kill, after_s, "dropped the victim", progress
        )
        polled = {lab.address(h): cs.status(h) for h in survivors}
        logs = cs.logs()
        lab.heal()
    failed_at = [
        t for h in survivors for t, line in logs[h].lines
        if t >= t_kill and "A processor failed" in line
    ]  # fmt: skip
    dropped = {
        node
        for h in survivors
        for t, members in logs[h].members
        if t >= formed_ns
        for node in {cs.node_id(x) for x in cs.hosts} - members
        if node != vid
    }
    delays = [(t - t_kill) / MS for t in got.values()]
    return {
        "mode": "corosync",
        "nodes": n,
        "fanout": None,
        "depth": None,
        "victim": f"h{victim + 1}",
        "victim_role": role,
        "kill_at_ms": round((t_kill - started) / MS, 1),
        "detect_ms": round((min(failed_at) - t_kill) / MS, 1) if failed_at else None,
        **delays_summary(delays),
        "survivors": len(survivors),
        "reelect_ms": None,
        "groups_disturbed": None,
        "elections_elsewhere": None,
        "false_positives": len(dropped),
        "msgs_per_node_per_s": msgs,
        "bytes_per_node_per_s": tx,
        "cpu_cores": round(cpu, 3),
        "seed": seed,
        "version": f"corosync {corosync_version()}",
        "corosync": {
            "victim_host": lab.address(victim),
            "formed_s": round(formed_s, 2),
            "totem_ms": totem,
            "detect_is": "first 'A processor failed' logged by a survivor",
            "notified_is": "its quorum service delivered a membership without the victim",
            "window_s": round(window, 3),
            "load_avg_1m": load_avg(),
            "notify_ms": [round(d, 1) for d in sorted(delays)],
            "polled_after": {
                a: {"quorate": s["quorate"], "members": len(s["members"])}
                for a, s in polled.items()
            },
            "members_after": {
                lab.address(h): len(state_at(logs[h], time.monotonic_ns())[0]) for h in survivors
            },
        },
    }


LAB_PREFIX = "hco"
LAB_SUBNET = "10.220.0"


def lab_kill_runs(
    nodes: int,
    fanout: int,
    kill: str,
    repeats: int,
    seed: int,
    *,
    prefix: str = LAB_PREFIX,
    subnet: str = LAB_SUBNET,
    steady_s: float = 3.0,
    after_s: float = AFTER_KILL_S,
    progress: Progress | None = None,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``repeats`` pairs of runs (hierclust, then Corosync with the same victim host) on one lab
    of ``nodes`` hosts (namespaces ``<prefix><pid>-...``), torn down at the end."""
    lab = NetnsLab(f"{prefix}{os.getpid() % 100000}", nodes, subnet)
    lab.setup()
    hier: list[dict[str, Any]] = []
    coro: list[dict[str, Any]] = []
    try:
        for i in range(repeats):
            with tempfile.TemporaryDirectory(prefix="hcbench-lab-") as where:
                run = hierclust_kill(
                    lab, Path(where) / "hierclust", fanout, kill, seed + i,
                    steady_s=steady_s, after_s=after_s, progress=progress,
                )  # fmt: skip
                hier.append(run)
                victim = lab.host_of(run["lab"]["victim_host"])
                coro.append(
                    corosync_kill(
                        lab,
                        Path(where) / "corosync",
                        victim,
                        run["victim_role"],
                        seed + i,
                        steady_s=steady_s,
                        after_s=after_s,
                        progress=progress,
                    )  # fmt: skip
                )
    finally:
        left = lab.teardown()
    if left:
        raise RuntimeError(f"processes left in the lab's namespaces: {left}")
    return hier, coro
