"""Benchmark: failure propagation in the simulator at growing sizes; prints one JSON document.

    python bench/sim_propagation.py [--sizes 1000,10000,100000] [--fanout 16]
                                    [--kills leaf,leader] [--seed 7] [--after-ms 3000]

Each run is a fresh subprocess (so its peak RSS is its own) and prints a report
(docs/architecture.md §5);
the document is ``{"runs": [...], "summary": {...}}`` with ``wall_s`` and ``peak_rss_mib`` added
per run under ``"sim"``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys


def one(nodes: int, fanout: int, kill: str, seed: int, after_ms: int) -> dict[str, object]:
    import gc

    from hierclust.sim.scenario import KillPlan, run_kill
    from hierclust.topology import from_dict, generate_document

    topology = from_dict(generate_document(nodes, fanout))
    gc.collect()
    gc.freeze()  # long-lived node objects: keep the cyclic collector off them
    report = run_kill(topology, KillPlan(kill=kill, seed=seed, after_ms=after_ms))
    report["sim"]["peak_rss_mib"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1
    )
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--kills", default="leaf,leader")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--after-ms", type=int, default=3000)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        nodes, kill = args.one.split(":")
        print(json.dumps(one(int(nodes), args.fanout, kill, args.seed, args.after_ms)))
        return
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        for kill in args.kills.split(","):
            done = subprocess.run(
                [
                    sys.executable, __file__, "--one", f"{size}:{kill}", "--fanout",
                    str(args.fanout), "--seed", str(args.seed), "--after-ms", str(args.after_ms),
                ],
                capture_output=True, text=True, timeout=3600,
            )  # fmt: skip
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                raise SystemExit(f"run {size}:{kill} failed")
            report = json.loads(done.stdout)
            runs.append(report)
            print(
                f"{size:>9,} {kill:<11} notify_max {report['notify_max_ms']} ms, "
                f"msgs/node/s {report['msgs_per_node_per_s']}, wall {report['sim']['wall_s']} s, "
                f"{report['sim']['peak_rss_mib']} MiB",
                file=sys.stderr,
            )
    print(json.dumps({"runs": runs}, indent=2))


if __name__ == "__main__":
    main()
