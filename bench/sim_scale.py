"""Benchmark: the simulator's own speed at growing sizes; print one JSON document.

    python bench/sim_scale.py [--sizes 1000,10000,100000] [--million] [--fanout 16]
                              [--kill leaf] [--seed 3] [--after-ms 3000]

One ``run_kill`` per size (what ``hierclust sim --nodes N --fanout F --kill K --seed S`` runs),
each in a fresh subprocess so that its peak RSS is that size's alone. ``--million`` adds
1,000,000 nodes (many minutes and several GiB). Per size: the run's report (the schema of
docs/architecture.md §5) with, under ``"scale"``, the events run, events per wall second, wall and
CPU seconds of the whole process (interpreter start and imports included), and its peak RSS; the
summary has the spread of datagrams per node per second across sizes (0.1 = every size within
10 % of the mean: flat is the goal), and ``provenance`` the command, commit and load average.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from typing import Any

PROCESS_TIMEOUT_S = 3 * 3600


def measure(nodes: int, fanout: int, kill: str, seed: int, after_ms: int) -> dict[str, Any]:
    """One run in this process: the report plus its cost."""
    from hierclust.sim.scenario import KillPlan, run_kill
    from hierclust.topology import from_dict, generate_document

    topology = from_dict(generate_document(nodes, fanout), source=f"--nodes {nodes}")
    started = time.perf_counter()
    report = run_kill(topology, KillPlan(kill=kill, seed=seed, after_ms=after_ms))
    run_wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    events = report["sim"]["events"]
    report["scale"] = {
        "events": events,
        "events_per_s": round(events / run_wall),
        "run_wall_s": round(run_wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
    }
    return report


def child(nodes: int, args: argparse.Namespace) -> dict[str, Any]:
    """``measure`` in a fresh interpreter, timed from outside (wall includes start-up)."""
    command = [
        sys.executable, __file__, "--one", str(nodes), "--fanout", str(args.fanout),
        "--kill", args.kill, "--seed", str(args.seed), "--after-ms", str(args.after_ms),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, timeout=PROCESS_TIMEOUT_S
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{nodes} nodes: the run failed (exit {done.returncode}):\n{done.stderr}")
    report: dict[str, Any] = json.loads(done.stdout)
    report["scale"]["wall_s"] = round(wall, 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--million", action="store_true", help="add 1,000,000 nodes")
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--kill", default="leaf", choices=("leaf", "leader", "root-leader"))
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--after-ms", type=int, default=3000)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.fanout, args.kill, args.seed, args.after_ms)))
        return
    from hierclust.bench.provenance import stamped
    from hierclust.bench.sweep import flatness, parse_sizes

    try:
        sizes = parse_sizes(args.sizes)
    except ValueError as exc:
        parser.error(str(exc))
    if args.million and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    runs = []
    for size in sizes:
        report = child(size, args)
        runs.append(report)
        scale = report["scale"]
        print(
            f"{size:>9,} nodes: {scale['events']:,} events, {scale['events_per_s']:,} events/s, "
            f"{scale['wall_s']} s wall, {scale['cpu_s']} s CPU, {scale['peak_rss_mib']} MiB, "
            f"{report['msgs_per_node_per_s']} msgs/node/s",
            file=sys.stderr,
        )
    document = {
        "config": {
            "bench": "sim_scale",
            "sizes": sizes,
            "fanout": args.fanout,
            "kill": args.kill,
            "seed": args.seed,
            "after_ms": args.after_ms,
            "python": platform.python_version(),
        },
        "runs": runs,
        "summary": {
            "msgs_per_node_spread": flatness(runs),
            "by_size": {
                str(r["nodes"]): {
                    "events_per_s": r["scale"]["events_per_s"],
                    "msgs_per_node_per_s": r["msgs_per_node_per_s"],
                    "wall_s": r["scale"]["wall_s"],
                    "cpu_s": r["scale"]["cpu_s"],
                    "peak_rss_mib": r["scale"]["peak_rss_mib"],
                }
                for r in runs
            },
        },
    }
    print(json.dumps(stamped(document), indent=2))


if __name__ == "__main__":
    main()
