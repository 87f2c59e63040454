"""Benchmark: a real-UDP soak of a whole topology on this host; prints one JSON report.

    python bench/udp_soak.py [--topology topologies/mpp-1k.toml] [--processes 2]
                             [--steady-s 300] [--flood N [--flood-rate R]] [--out FILE]
                             [--rss-s 60] [--progress]

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
- ``rss``: the resident set (VmRSS of /proc/PID/status) of every worker process at the start of
  the window, once every ``--rss-s`` seconds and at its end: ``start``/``end``/``max`` MiB per
  worker and in total, ``growth_mib`` and ``growth_pct`` (end against start), and the samples
  (with the failure notices counted so far), so a leak shows as a slope, not one number;
- then a leaf node is killed and ``notify_*_ms`` say when each survivor learned of it (first
  ``NoticeLearned`` in the event logs; one monotonic clock for all processes on the host).

Everything started is stopped at the end, whatever happens (``left_running`` says so).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import random
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.bench.provenance import checkout, stamped
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


def rss_kib(pid: int) -> int | None:
    """VmRSS of ``pid`` in KiB, None once it is gone (proc(5): ``VmRSS:   12345 kB``)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def rss_sample(workers: dict[str, int], t_s: float, so_far: dict[str, int]) -> dict[str, Any]:
    """One RSS reading of every worker (MiB), the sum, and the failure notices and elections so
    far in the window (so a report tells when they happened, not only how many)."""
    per = {wid: rss_kib(pid) for wid, pid in workers.items()}
    return {
        "t_s": round(t_s, 1),
        "total_mib": mib(sum(v for v in per.values() if v is not None)),
        "workers_mib": {wid: (mib(v) if v is not None else None) for wid, v in per.items()},
        "false_positives_so_far": so_far["failure_notices"],
        "elections_so_far": so_far["elections"],
        "load1": round(os.getloadavg()[0], 2),
    }


def rss_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """rss start/end/max per worker and in total, growth end - start in MiB and %."""

    def stats(values: list[float]) -> dict[str, Any]:
        start, end = values[0], values[-1]
        return {
            "start_mib": start,
            "end_mib": end,
            "max_mib": max(values),
            "growth_mib": round(end - start, 1),
            "growth_pct": round(100 * (end - start) / start, 2) if start else None,
        }

    workers = samples[0]["workers_mib"].keys()
    per = {}
    for wid in workers:
        values = [s["workers_mib"][wid] for s in samples if s["workers_mib"].get(wid) is not None]
        if values:
            per[wid] = stats(values)
    return {
        "total": stats([s["total_mib"] for s in samples]),
        "workers": per,
        "samples": samples,
    }


def counts_since(state_dir: Path, t0: int) -> dict[str, int]:
    """Failure notices (nothing is killed in the window) and elections in the event logs since
    ``t0``."""
    found = window_events(read_events(state_dir), t0, 1 << 62)
    return {k: found[k] for k in ("failure_notices", "elections")}


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
        # sample loop lag and the box's load now and then (a status costs ~25 ms per 512 nodes),
        # the workers' RSS at the start and every --rss-s seconds
        workers = {w.id: w.pid for w in demo.deployment.workers}
        rss_samples = [rss_sample(workers, 0.0, {"failure_notices": 0, "elections": 0})]
        next_rss = time.monotonic() + args.rss_s
        samples: list[dict[str, Any]] = []
        so_far = {"failure_notices": 0, "elections": 0}
        with window_progress(args.steady_s, args.progress) as show:
            while (remaining := deadline - time.monotonic()) > 0:
                time.sleep(min(remaining, args.sample_s, max(0.0, next_rss - time.monotonic())))
                t_s = (time.monotonic_ns() - t0) / 1e9
                if time.monotonic() >= next_rss:
                    so_far = counts_since(demo.state_dir, t0)
                    rss_samples.append(rss_sample(workers, t_s, so_far))
                    next_rss += args.rss_s
                snaps_now, _ = collect(demo.state_dir)
                samples.append(
                    {
                        "t_s": round(t_s, 1),
                        "lag_ms": max((s.get("lag_ms", 0) for s in snaps_now), default=None),
                        "load1": round(os.getloadavg()[0], 2),
                    }
                )
                show(t_s, rss_samples[-1]["total_mib"], so_far["failure_notices"], samples[-1])
        t1 = time.monotonic_ns()
        end = rss_sample(workers, (t1 - t0) / 1e9, counts_since(demo.state_dir, t0))
        if rss_samples[-1]["t_s"] > end["t_s"] - 1.0:
            rss_samples.pop()  # a minute's reading that fell on the end of the window
        rss_samples.append(end)
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
            rss=rss_summary(rss_samples),
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


@contextlib.contextmanager
def window_progress(total_s: float, wanted: bool | None) -> Iterator[Any]:
    """A progress bar on stderr for the steady window (on a terminal, or with --progress):
    elapsed of total, RSS of all workers, failure notices so far, loop lag and load."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    show = console.is_terminal if wanted is None else wanted
    if not show:
        yield lambda *a: None
        return
    if not console.is_terminal:
        # to a log file: one plain line a minute instead of a live bar
        printed = [-1]

        def line(t_s: float, rss_mib: float, fps: int, sample: dict[str, Any]) -> None:
            if int(t_s // 60) != printed[0]:
                printed[0] = int(t_s // 60)
                print(
                    f"steady window {t_s:.0f}/{total_s:.0f} s: rss {rss_mib:.0f} MiB, "
                    f"false positives {fps}, lag {sample['lag_ms']} ms, load {sample['load1']}",
                    file=sys.stderr,
                    flush=True,
                )

        yield line
        return
    with Progress(
        TextColumn("[bold]steady window[/]"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s {task.description}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("", total=total_s)

        def update(t_s: float, rss_mib: float, fps: int, sample: dict[str, Any]) -> None:
            bar.update(
                task,
                completed=min(t_s, total_s),
                description=f"rss {rss_mib:.0f} MiB, false positives {fps}, "
                f"lag {sample['lag_ms']} ms, load {sample['load1']}",
            )

        yield update


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
    parser.add_argument("--rss-s", type=float, default=60.0, help="RSS sample period (s)")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar on stderr (default: on a terminal)",
    )
    parser.add_argument(
        "--nice", type=int, default=0, help="nice value for the workers (negative: root only)"
    )
    parser.add_argument("--uvloop", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--out", type=Path, help="also write the JSON report here")
    args = parser.parse_args(argv)
    if args.flood < 0 or args.flood_rate <= 0 or args.steady_s <= 0 or args.rss_s <= 0:
        parser.error("--flood >= 0, --flood-rate > 0, --steady-s > 0 and --rss-s > 0")
    checkout()  # the commit now: the tree may move on during a long run (the result is cached)
    report = stamped(soak(args))
    text = json.dumps(report, indent=1)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n")
    return 1 if "error" in report else 0


if __name__ == "__main__":
    sys.exit(main())
