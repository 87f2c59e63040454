"""Benchmark: a real-UDP soak of a whole topology on this host; prints one JSON report.

    python bench/udp_soak.py [--topology topologies/mpp-1k.toml] [--processes 2]
                             [--steady-s 300] [--flood N [--flood-rate R]] [--out FILE]

Deploys the topology with the same machinery as ``hierclust deploy``/``hierclust demo``
(:mod:`hierclust.runtime.deploy`, :class:`hierclust.runtime.demo.Demo`) into a temporary state
directory, then measures:

- ``boot_s``: from the start of the deploy until every group is led (one node with a lease);
- a steady window of ``--steady-s`` seconds: ``cpu_cores`` used by the worker processes (utime +
  stime deltas from /proc/PID/stat over wall time), ``msgs_per_node_per_s`` (datagrams sent),
  ``false_positives`` (failure notices in the event logs, with nothing killed), elections and
  leader changes in the window;
- with ``--flood N``: N random datagrams (random length and bytes, at most ``--flood-rate`` per
  second) at the agents' ports on 127.0.0.1 during the window; ``flood.ok`` says that only the drop
  counters moved (no election, no failure notice, no leader or term change);
- then a leaf node is killed and ``notify_*_ms`` say when each survivor learned of it (first
  ``NoticeLearned`` in the event logs; one monotonic clock for all processes on the host).

Everything started is stopped at the end, whatever happens (``left_running`` says so).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import socket
import sys
import time
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.core.timeouts import MS
from hierclust.runtime.control import request
from hierclust.runtime.demo import Demo, read_events
from hierclust.runtime.deploy import (
    DeployError,
    check_addresses,
    check_ports_free,
    collect,
    deploy,
    groups_led,
    wait_ready,
)
from hierclust.stats import percentile
from hierclust.topology import Topology, load

CLK_TCK = os.sysconf("SC_CLK_TCK")
MAX_FLOOD = 10_000_000
MAX_FLOOD_RATE = 50_000


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5), counted from state


def leaders_and_terms(snaps: list[dict[str, Any]]) -> dict[int, tuple[int, int]]:
    """group -> (leading rank, term), from status snapshots (leaders with a valid lease)."""
    found: dict[int, tuple[int, int]] = {}
    for s in snaps:
        for n in s["nodes"]:
            for g in n.get("groups", []):
                if g["leading"] and g["lease"]:
                    found[g["group"]] = (n["rank"], g["term"])
    return found


def window_events(events: list[dict[str, Any]], t0: int, t1: int) -> dict[str, Any]:
    """What happened between ``t0`` and ``t1`` (monotonic ns) according to the event logs."""
    failures: list[dict[str, Any]] = []
    elections = leader_changes = views = 0
    for e in events:
        if not t0 <= e.get("t_ns", 0) < t1:
            continue
        kind = e.get("event")
        if kind == "NoticeLearned" and e["notice"]["kind"] == "failed":
            failures.append(e)
        elif kind == "ElectionStarted":
            elections += 1
        elif kind == "LeaderChanged":
            leader_changes += 1
        elif kind == "ViewChanged":
            views += 1
    return {
        "first_t_ns": failures[0]["t_ns"] if failures else None,
        "failure_notices": len(failures),
        "accused": sorted({f["notice"]["node"] for f in failures}),
        "elections": elections,
        "leader_changes": leader_changes,
        "view_changes": views,
    }


def flood(topology: Topology, count: int, rate: float, deadline: float, seed: int) -> int:
    """Send up to ``count`` random datagrams at the nodes' ports, at most ``rate`` per second,
    until ``deadline`` (monotonic s). Returns how many were sent."""
    rng = random.Random(seed)
    targets = []
    for r in range(topology.num_nodes):
        address = topology.address(r)
        if address is not None:
            targets.append((address.host, address.port))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sent = 0
    started = time.monotonic()
    try:
        while sent < count and time.monotonic() < deadline:
            due = started + sent / rate
            now = time.monotonic()
            if due > now:
                time.sleep(min(due - now, 0.05))
                continue
            size = rng.choice((0, 1, 8, 38, 64, 200, 1400, 1500, rng.randrange(0, 1500)))
            try:
                sock.sendto(rng.randbytes(size), rng.choice(targets))
            except OSError:
                pass  # a full buffer: this flood datagram is lost, like any other
            sent += 1
    finally:
        sock.close()
    return sent


def soak(args: argparse.Namespace) -> dict[str, Any]:
    path = Path(args.topology)
    topology = load(path)
    check_addresses(topology)
    check_ports_free(topology)
    nodes = topology.num_nodes
    groups = len(topology.by_index)
    use_uvloop = args.uvloop
    if use_uvloop is None:
        # as `hierclust deploy` chooses
        use_uvloop = nodes > 256 and importlib.util.find_spec("uvloop") is not None
    demo = Demo(topology, path, args.processes)
    report: dict[str, Any] = {
        "mode": "udp-soak",
        "topology": str(path),
        "nodes": nodes,
        "groups": groups,
        "processes": args.processes,
        "uvloop": use_uvloop,
        "cpus": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
    }
    try:
        started = time.monotonic_ns()
        demo.deployment, demo.children = deploy(
            topology, path, demo.state_dir, args.processes, use_uvloop=use_uvloop
        )
        pids = [w.pid for w in demo.deployment.workers]
        if args.nice:
            # only our own workers; negative values (root) favour them over other work on a
            # shared box, so the figures say what the agents need, not what is left over
            # (each worker is its own session; with kernel autogroups (the default), CPU is
            # shared between sessions first, so the session's autogroup gets the nice value too)
            for pid in pids:
                os.setpriority(os.PRIO_PROCESS, pid, args.nice)
                try:
                    Path(f"/proc/{pid}/autogroup").write_text(f"{args.nice}\n")
                except OSError:
                    pass
            report["worker_nice"] = args.nice

        progress: list[tuple[float, int]] = []

        def led(answers: list[dict[str, Any]]) -> tuple[int, int]:
            count = groups_led(answers)
            t = round((time.monotonic_ns() - started) / 1e9, 1)
            if not progress or progress[-1][1] != count:
                progress.append((t, count))
            return count, groups

        ok = wait_ready(demo.deployment, demo.children, args.boot_timeout_s, None, led)
        report["boot_progress"] = progress[-12:]  # (s since start, groups led) when it changed
        if not ok:
            snaps, _ = collect(demo.state_dir)
            report["loop_lag_ms_max"] = max((s.get("lag_max_ms", 0) for s in snaps), default=None)
            raise DeployError(f"not every group led within {args.boot_timeout_s} s")
        t_led = time.monotonic_ns()
        report["boot_s"] = round((t_led - started) / 1e9, 2)
        report["boot_cpu_s"] = round(sum(cpu_ticks(p) for p in pids) / CLK_TCK, 2)
        time.sleep(args.settle_s)  # boot-time view changes and lease handovers end

        # -- steady window ------------------------------------------------------------------
        before, snaps = demo.status()
        leaders_before = leaders_and_terms(snaps)
        bytes0 = sum_bytes(snaps)
        ticks0 = sum(cpu_ticks(p) for p in pids)
        t0 = time.monotonic_ns()
        deadline = time.monotonic() + args.steady_s
        flood_sent = 0
        if args.flood:
            flood_sent = flood(
                topology,
                min(args.flood, MAX_FLOOD),
                min(args.flood_rate, MAX_FLOOD_RATE),
                deadline,
                args.seed,
            )
        # sample loop lag and the box's load now and then (a status costs ~25 ms per 512 nodes)
        samples: list[dict[str, Any]] = []
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(remaining, args.sample_s))
            snaps_now, _ = collect(demo.state_dir)
            samples.append(
                {
                    "t_s": round((time.monotonic_ns() - t0) / 1e9, 1),
                    "lag_ms": max((s.get("lag_ms", 0) for s in snaps_now), default=None),
                    "load1": round(os.getloadavg()[0], 2),
                }
            )
        t1 = time.monotonic_ns()
        ticks1 = sum(cpu_ticks(p) for p in pids)
        after, snaps = demo.status()
        leaders_after = leaders_and_terms(snaps)
        window_s = (t1 - t0) / 1e9
        steady = window_events(read_events(demo.state_dir), t0, t1)
        boot = window_events(read_events(demo.state_dir), started, t0)
        report.update(
            steady_s=round(window_s, 1),
            cpu_cores=round((ticks1 - ticks0) / CLK_TCK / window_s, 3),
            msgs_per_node_per_s=round(
                (after["datagrams_sent"] - before["datagrams_sent"]) / nodes / window_s, 2
            ),
            bytes_per_node_per_s=round((sum_bytes(snaps) - bytes0) / nodes / window_s, 1),
            false_positives=steady["failure_notices"],
            steady_events=steady,
            boot_events={k: v for k, v in boot.items() if k not in ("accused", "first_t_ns")},
            alive_after_steady=after["alive"],
            groups_led_after_steady=after["groups_led"],
            loop_lag_ms_max=max((s.get("lag_max_ms", 0) for s in snaps), default=0),
            steady_lag_ms_max=max((x["lag_ms"] or 0 for x in samples), default=None),
            steady_load1_max=max((x["load1"] for x in samples), default=None),
            first_false_positive_s=round((steady["first_t_ns"] - t0) / 1e9, 1)
            if steady["first_t_ns"]
            else None,
            samples=samples if args.samples else None,
        )
        steady.pop("first_t_ns")
        dropped_delta = after["datagrams_dropped"] - before["datagrams_dropped"]
        if args.flood:
            by_reason = {
                k: v - before["dropped_by_reason"].get(k, 0)
                for k, v in after["dropped_by_reason"].items()
                if v != before["dropped_by_reason"].get(k, 0)
            }
            report["flood"] = {
                "sent": flood_sent,
                "rate_per_s": min(args.flood_rate, MAX_FLOOD_RATE),
                "dropped_delta": dropped_delta,
                "dropped_by_reason_delta": by_reason,
                "elections": steady["elections"],
                "failure_notices": steady["failure_notices"],
                "leaders_or_terms_changed": leaders_before != leaders_after,
                "ok": dropped_delta > 0
                and steady["elections"] == 0
                and steady["failure_notices"] == 0
                and steady["leader_changes"] == 0
                and leaders_before == leaders_after,
            }

        # -- kill a leaf node ---------------------------------------------------------------
        victim = demo.pick("leaf", snaps, [])
        name = topology.node_name(victim)
        t_kill = int(request(demo.socket_of(victim), {"op": "kill", "rank": victim})["t_ns"])

        def notified(summary: dict[str, Any], snapshots: list[dict[str, Any]]) -> tuple[int, int]:
            running = [n for s in snapshots for n in s["nodes"] if n.get("running")]
            knows = sum(1 for n in running if any(f[0] == victim for f in n["failed"]))
            return knows, len(running)

        demo.wait(f"kill {name}", notified, args.notify_timeout_s, None)
        time.sleep(0.5)  # the last notices reach the logs
        learned: dict[int, int] = {}
        detected_by = None
        for e in read_events(demo.state_dir):
            t = e.get("t_ns", 0)
            if t < t_kill or e.get("event") != "NoticeLearned" or "rank" not in e:
                continue
            n = e["notice"]
            if n["kind"] == "failed" and n["node"] == victim and e["rank"] not in learned:
                learned[e["rank"]] = t
                if e.get("via") is None and detected_by is None:
                    detected_by = (e["node"], t)
        delays = sorted((t - t_kill) / MS for r, t in learned.items() if r != victim)
        final, _ = demo.status()
        report.update(
            victim=name,
            victim_role="leaf",
            detected_by=detected_by[0] if detected_by else None,
            detect_ms=round((detected_by[1] - t_kill) / MS, 1) if detected_by else None,
            notified=len(delays),
            survivors=nodes - 1,
            notify_p50_ms=round(percentile(delays, 0.5), 1) if delays else None,
            notify_p99_ms=round(percentile(delays, 0.99), 1) if delays else None,
            notify_max_ms=round(delays[-1], 1) if delays else None,
            datagrams_dropped=final["datagrams_dropped"],
            dropped_by_reason=final["dropped_by_reason"],
        )
    except (DeployError, OSError) as exc:
        report["error"] = str(exc)
    finally:
        report.update(demo.finish())
    report["loadavg_end"] = list(os.getloadavg())
    report["version"] = __version__
    return report


def sum_bytes(snaps: list[dict[str, Any]]) -> int:
    return sum(n["datagrams"]["sent_bytes"] for s in snaps for n in s["nodes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--topology", default="topologies/mpp-1k.toml")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--steady-s", type=float, default=300.0)
    parser.add_argument("--settle-s", type=float, default=3.0, help="pause after all led")
    parser.add_argument("--boot-timeout-s", type=float, default=60.0)
    parser.add_argument("--notify-timeout-s", type=float, default=15.0)
    parser.add_argument("--flood", type=int, default=0, help="random datagrams to send")
    parser.add_argument("--flood-rate", type=float, default=2000.0, help="at most this many/s")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sample-s", type=float, default=5.0, help="lag/load sample period")
    parser.add_argument("--samples", action="store_true", help="include every sample")
    parser.add_argument(
        "--nice", type=int, default=0, help="nice value for the workers (negative: root only)"
    )
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.flood < 0 or args.flood_rate <= 0 or args.steady_s <= 0:
        parser.error("--flood >= 0, --flood-rate > 0 and --steady-s > 0")
    report = soak(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
