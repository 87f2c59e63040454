"""Profile aid: the events of one simulator kill run, by phase and kind; print one JSON document.

    python bench/sim_events.py --nodes 20000 [--fanout 16] [--kill leaf] [--seed 3]

Runs ``run_kill`` (what ``hierclust sim --nodes N --fanout F --kill K --seed S`` runs) with
``Node.deliver`` and ``Node.fire`` wrapped to count every datagram by message type and every timer
by its tag (``t`` tick, ``c`` candidacy, ``l`` lease, ``r`` retransmit, ...), split at the run's
two marks: boot (until every group is led), the steady window, and after the kill. The counts
show where a run's events go (which a speed-up has to cut or cheapen); the wrappers make the run
slower, so time it with ``hierclust sim`` instead.
"""

from __future__ import annotations

import argparse
import collections
import json
from typing import Any

from hierclust.core.node import Node
from hierclust.sim.scenario import KillPlan, run_kill
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document


def count_events(nodes: int, fanout: int, kill: str, seed: int) -> dict[str, Any]:
    topology = from_dict(generate_document(nodes, fanout), source=f"--nodes {nodes}")
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    phase = ["boot"]
    marks: list[dict[str, Any]] = []
    deliver, fire, mark = Node.deliver, Node.fire, Simulator.mark

    def counted_deliver(self: Node, now: int, src: int, msg: Any) -> Any:
        counts[phase[0], "deliver " + type(msg).__name__] += 1
        return deliver(self, now, src, msg)

    def counted_fire(self: Node, now: int, key: Any) -> Any:
        counts[phase[0], "timer " + str(key[0])] += 1
        return fire(self, now, key)

    def counted_mark(self: Simulator) -> None:
        marks.append({"ends": phase[0], "at_ms": self.now / 1e6, "events_so_far": self.events_run})
        phase[0] = "steady" if phase[0] == "boot" else "after kill"
        mark(self)

    def make_sim(*args: Any, **kwargs: Any) -> Simulator:
        sim = Simulator(*args, **kwargs)
        sim._core = False  # through node.deliver / node.fire, where the counting is
        return sim

    Node.deliver, Node.fire, Simulator.mark = counted_deliver, counted_fire, counted_mark  # type: ignore[method-assign]
    import hierclust.sim.scenario as scenario

    scenario.Simulator = make_sim  # type: ignore[assignment,misc]
    try:
        report = run_kill(topology, KillPlan(kill=kill, seed=seed))
    finally:
        Node.deliver, Node.fire, Simulator.mark = deliver, fire, mark  # type: ignore[method-assign]
        scenario.Simulator = Simulator  # type: ignore[misc]
    by_phase: dict[str, dict[str, int]] = collections.defaultdict(dict)
    for (when, kind), count in sorted(counts.items(), key=lambda item: -item[1]):
        by_phase[when][kind] = count
    return {
        "config": {"nodes": nodes, "fanout": fanout, "kill": kill, "seed": seed},
        "summary": {
            "events": report["sim"]["events"],
            "virtual_s": report["sim"]["virtual_s"],
            "marks": marks,
        },
        "by_phase": by_phase,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--fanout", type=int, default=16)
    parser.add_argument("--kill", default="leaf", choices=("leaf", "leader", "root-leader"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    print(json.dumps(count_events(args.nodes, args.fanout, args.kill, args.seed), indent=2))


if __name__ == "__main__":
    main()
