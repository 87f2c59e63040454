"""Benchmark: generate and load topologies of growing size; print one JSON report.

    python bench/topology_scale.py [--sizes 1000,10000,100000,1000000] [--fanout 16]

Each size runs in a fresh subprocess so peak memory (ru_maxrss) is that size's alone.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def measure(nodes: int, fanout: int) -> dict[str, object]:
    from hierclust.topology import from_dict, generate_document

    baseline_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    topology = from_dict(generate_document(nodes, fanout))
    built = time.perf_counter() - started
    started = time.perf_counter()
    probes = [0, nodes // 2, nodes - 1]
    for rank in probes:
        name = topology.node_name(rank)
        assert topology.rank(name) == rank
        topology.path(rank)
    lookup_us = (time.perf_counter() - started) / len(probes) * 1e6
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "nodes": nodes,
        "fanout": fanout,
        "groups": len(topology.by_index),
        "depth": topology.depth,
        "build_s": round(built, 3),
        "lookup_us": round(lookup_us, 1),
        "peak_rss_mib": round(peak_kib / 1024, 1),
        "import_rss_mib": round(baseline_kib / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.fanout)))
        return
    runs = []
    for size in (int(s) for s in args.sizes.split(",")):
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--fanout", str(args.fanout)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        runs.append(json.loads(done.stdout))
        print(f"{size:>9,} nodes: {runs[-1]['build_s']} s", file=sys.stderr)
    print(json.dumps({"bench": "topology_scale", "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
