"""Hold every queued packet for a while, then let it go: network delay without ``netem``.

The lab's bridge namespace sends the frames it forwards to netfilter queue 0
(``bridge-nf-call-iptables`` and an ``iptables -j NFQUEUE --queue-bypass`` rule, see
:meth:`hierclust.runtime.netns.NetnsLab.delay`); this program, run inside that namespace,
takes each packet off the queue (``fnfqueue``: the kernel's nfqueue netlink interface, metadata
only), keeps it for ``delay_ms`` plus a uniform draw of up to ``jitter_ms``, and accepts it.
Packets may overtake each other by the jitter, as on a real network. On SIGTERM every packet
still held is accepted at once, so ending a delay loses nothing; with no program bound,
``--queue-bypass`` lets frames through unheld.

    python -m hierclust.runtime.delayq --delay-ms 40 --jitter-ms 10 --seed 1

prints ``ready`` once bound, then one JSON line (packets held, mean and largest hold in ms)
when it ends.
"""

from __future__ import annotations

import argparse
import heapq
import json
import random
import signal
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

QUEUE = 0
"""The netfilter queue the lab's rule sends frames to."""


class Holder:
    """Packets in hold, ordered by the instant each is due; one thread lets them go."""

    def __init__(self, delay_ms: float, jitter_ms: float, seed: int) -> None:
        self.delay_ns = int(delay_ms * 1e6)
        self.jitter_ns = int(jitter_ms * 1e6)
        self.rng = random.Random(seed)
        self.held: list[tuple[int, int, int, Any]] = []  # (due, seq, arrival, packet)
        self.cond = threading.Condition()
        self.seq = 0
        self.stopping = False
        self.count = 0
        self.total_ns = 0
        self.longest_ns = 0

    def hold(self, packet: Any) -> None:
        now = time.monotonic_ns()
        due = now + self.delay_ns + (self.rng.randint(0, self.jitter_ns) if self.jitter_ns else 0)
        with self.cond:
            if not self.stopping:
                self.seq += 1
                heapq.heappush(self.held, (due, self.seq, now, packet))
                self.cond.notify()
                return
        accept(packet)  # (after the end: let it through at once)

    def release(self) -> None:
        """Accept each packet when it is due (every one at once after :meth:`stop`)."""
        while True:
            with self.cond:
                while not self.held and not self.stopping:
                    self.cond.wait()
                if not self.held:
                    return
                due, _, arrived, packet = self.held[0]
                wait_ns = due - time.monotonic_ns()
                if wait_ns > 0 and not self.stopping:
                    self.cond.wait(wait_ns / 1e9)
                    continue
                heapq.heappop(self.held)
            held_ns = time.monotonic_ns() - arrived
            self.count += 1
            self.total_ns += held_ns
            self.longest_ns = max(self.longest_ns, held_ns)
            accept(packet)

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify()

    def summary(self) -> dict[str, Any]:
        return {
            "packets": self.count,
            "mean_hold_ms": round(self.total_ns / self.count / 1e6, 3) if self.count else None,
            "max_hold_ms": round(self.longest_ns / 1e6, 3),
        }


def accept(packet: Any) -> None:
    try:
        packet.accept()
    except Exception:  # (the kernel forgot it: nothing left to do for this packet)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hierclust.runtime.delayq", description=__doc__)
    parser.add_argument("--delay-ms", type=float, required=True)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--queue", type=int, default=QUEUE)
    args = parser.parse_args(argv)
    if args.delay_ms < 0 or args.jitter_ms < 0:
        print("--delay-ms and --jitter-ms: expected 0 or more", file=sys.stderr)
        return 2
    import fnfqueue  # (only here: the lab's delay fault is its one user)

    conn = fnfqueue.Connection()
    try:
        queue = conn.bind(args.queue)
        queue.set_mode(0, fnfqueue.COPY_META)
        queue.fail_open = True  # a full queue lets frames through rather than drop them
    except PermissionError:
        print("binding a netfilter queue needs CAP_NET_ADMIN (run as root)", file=sys.stderr)
        return 2
    holder = Holder(args.delay_ms, args.jitter_ms, args.seed)
    releaser = threading.Thread(target=holder.release, name="release")
    reader = threading.Thread(target=read, args=(conn, holder), name="read", daemon=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: done.set())
    signal.signal(signal.SIGINT, lambda signum, frame: done.set())
    releaser.start()
    reader.start()
    print("ready", flush=True)
    while not done.wait(1.0):
        pass
    holder.stop()  # every packet still held goes now
    releaser.join()
    conn.close()
    reader.join(5.0)
    print(json.dumps(holder.summary()), flush=True)
    return 0


def read(conn: Any, holder: Holder) -> None:
    try:
        for packet in conn:
            holder.hold(packet)
    except Exception as exc:  # (closing the connection ends the loop)
        if not holder.stopping:
            print(f"delayq: {exc}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
