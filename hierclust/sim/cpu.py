"""A starved CPU in the simulator: nodes share host processes whose event loops take time.

Theory of operation
-------------------
The plain simulator runs every step in zero time, so it cannot show what a real agent suffers
when its host is overloaded: ranks share a worker process (deploy puts up to 256 nodes, or a
core's share, in one), a worker runs one event at a time on one event loop, and when the loop
has more work than CPU every timer and every datagram is handled late. Late acks make leases
lapse, late votes make candidates give up, and the extra elections are more work still.

:class:`CpuModel` gives each *host* (a slice of consecutive ranks, as ``deploy`` slices them) one
serial CPU. Each input a node handles costs ``step_ns`` plus ``send_ns`` per datagram it sends,
times ``slow`` (1.0: about what one agent costs on this project's reference box; ``slow`` 2 is a
process that gets half the CPU it would need at that speed, e.g. one of two workers sharing two
cores with two busy loops). An input whose time comes while its host is busy waits until the
host is free, in arrival order; the node sees the time it is handled (its clock reads the late
``now``, as ``time.monotonic_ns()`` would). As in the runtime (``runtime/host.py``), each host
samples its own lag once per heartbeat (the largest lateness of any timer since the last
sample, and the sample's own) and feeds it to each of its nodes as :class:`LoopLag`; that, too,
costs CPU.

The loaded run loop (:func:`run_loaded`) is separate from the simulator's hot loop: runs
without a CPU model are untouched (and their golden digests with them). It is seeded and
deterministic like the rest: it draws no randomness of its own.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hierclust.core.timeouts import MS
from hierclust.core.types import LoopLag, Received, Send, TimerFired

DELIVER, TIMER, ACTION, WITNESS, HOSTLAG, HOSTRUN = 0, 1, 2, 3, 4, 5
"""Event kinds: the first four are the simulator's; ``HOSTLAG`` is a host's lag sample,
``HOSTRUN`` a busy host taking the next input off its backlog."""

STEP_NS = 15_000
"""One input (decode, MAC check, ``Node.step``) at ``slow`` 1: about what the real receive
path costs per datagram (docs/benchmarks.md, the 1,024-node soak: 0.27 cores for ~10,000
datagrams sent and received per second)."""
SEND_NS = 12_000
"""One datagram sent (encode, MAC, ``sendto``) at ``slow`` 1."""
SETTLED_BUSY = 0.00035
"""The share of one host's CPU that one settled node keeps busy at ``slow`` 1 (fan-out 16,
measured with this model: 0.35 for 1,000 nodes)."""
LAG_NS = 2_000
"""Feeding one node its :class:`LoopLag` sample."""


@dataclass(slots=True)
class CpuModel:
    """Hosts of ``per_host`` consecutive ranks, each with one serial CPU whose costs are scaled
    by ``slow``."""

    per_host: int = 1000
    slow: float = 1.0
    step_ns: int = STEP_NS
    send_ns: int = SEND_NS
    lag_ns: int = LAG_NS
    busy_until: list[int] = field(default_factory=list)
    # per host, inputs waiting for the loop's next iteration: timers, then datagrams and boots
    timers_q: list[deque[tuple[int, int, Any, Any, int]]] = field(default_factory=list)
    inputs_q: list[deque[tuple[int, int, Any, Any, int]]] = field(default_factory=list)
    lag_max: list[int] = field(default_factory=list)
    # (the whole run) lag samples per bucket of LAG_BUCKETS_MS and the largest sample
    samples: list[int] = field(default_factory=list)
    worst_ns: int = 0
    busy_ns: int = 0

    def __post_init__(self) -> None:
        if self.per_host < 1:
            raise ValueError(f"nodes per host: expected 1 or more, got {self.per_host}")
        if not (self.slow > 0 and math.isfinite(self.slow)):
            raise ValueError(f"slow: expected a positive factor, got {self.slow}")

    def hosts(self, num_nodes: int) -> int:
        return -(-num_nodes // self.per_host)

    def cost(self, sends: int) -> int:
        return int((self.step_ns + sends * self.send_ns) * self.slow)

    def summary(self, virtual_ns: int) -> dict[str, Any]:
        """Lag samples by bucket, the worst sample, and the hosts' mean CPU use."""
        keys = [f"<={b}" for b in LAG_BUCKETS_MS] + [f">{LAG_BUCKETS_MS[-1]}"]
        hosts = max(1, len(self.busy_until))
        return {
            "per_host": self.per_host,
            "slow": self.slow,
            "loop_lag_hist": dict(zip(keys, self.samples, strict=True)),
            "loop_lag_max_ms": self.worst_ns // MS,
            "cpu_busy": round(self.busy_ns / hosts / virtual_ns, 3) if virtual_ns > 0 else 0.0,
        }


LAG_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000)
"""As the runtime's histogram (``runtime/context.py``)."""


def attach(sim: Any, model: CpuModel) -> None:
    """Give ``sim`` this CPU model: from now on :meth:`Simulator.run_until` runs
    :func:`run_loaded`, and every host samples its lag once per heartbeat."""
    hosts = model.hosts(sim.topology.num_nodes)
    model.busy_until = [0] * hosts
    model.timers_q = [deque() for _ in range(hosts)]
    model.inputs_q = [deque() for _ in range(hosts)]
    model.lag_max = [0] * hosts
    model.samples = [0] * (len(LAG_BUCKETS_MS) + 1)
    sim.cpu = model
    period = sim.topology.tuning.heartbeat_ms * MS
    for host in range(hosts):
        sim.queue.push(sim.now + period, HOSTLAG, host, sim.now + period)


def run_loaded(sim: Any, end_ns: int) -> None:
    """:meth:`Simulator._run` with every host's CPU taken into account (see the module doc).

    A host whose loop is free handles an input at once. A busy host's inputs wait: timers (and
    the lag sample) in one backlog, datagrams and boots in another. When the host is free again
    (a ``HOSTRUN`` event) it runs one loop iteration as libuv and asyncio do: first every timer
    that fell due meanwhile, then every datagram that arrived meanwhile; what comes in during
    the iteration waits for the next one. So a lagging node's candidacy timer runs before the
    vote requests that arrived ahead of it are read, as on a real starved host."""
    model = sim.cpu
    assert model is not None
    queue = sim.queue
    per_host = model.per_host
    busy = model.busy_until
    timers_q = model.timers_q
    inputs_q = model.inputs_q
    run = 0
    while True:
        entry = queue.pop_until(end_ns)
        if entry is None:
            break
        now, _seq, kind, target, a, b = entry
        run += 1
        if kind == WITNESS or (kind == ACTION and target < 0):
            sim.now = now
            if kind == WITNESS:
                sim._witness(target, a)
            else:
                sim._action(target, a)
            continue
        if kind == HOSTRUN:
            host = target
            batch = [*timers_q[host], *inputs_q[host]]
            timers_q[host].clear()
            inputs_q[host].clear()
            at = now
            for kind, target, a, b, due in batch:
                _handle(sim, model, host, at, kind, target, a, b, due)
                at = max(at, busy[host])
            if timers_q[host] or inputs_q[host]:
                queue.push(busy[host], HOSTRUN, host, None)
            continue
        host = target if kind == HOSTLAG else target // per_host
        waiting = timers_q[host] if kind == TIMER or kind == HOSTLAG else inputs_q[host]
        if busy[host] > now or timers_q[host] or inputs_q[host]:
            # the host's loop is busy: this input waits for its next iteration
            if not timers_q[host] and not inputs_q[host]:
                queue.push(busy[host], HOSTRUN, host, None)
            waiting.append((kind, target, a, b, now))
            continue
        _handle(sim, model, host, now, kind, target, a, b, now)
    sim.events_run += run
    sim.now = max(sim.now, end_ns)


def _handle(
    sim: Any, model: CpuModel, host: int, now: int, kind: int, target: int, a: Any, b: Any, due: int
) -> None:
    """Run one input of ``host`` at ``now`` (it arrived, or was due, at ``due``) and charge the
    host's CPU for it."""
    sim.now = now
    if kind == HOSTLAG:
        _sample(sim, model, host, now, a)
        return
    if kind == ACTION:  # a node's boot
        sim._action(target, a)
        spent = model.cost(0)
        model.busy_until[host] = now + spent
        model.busy_ns += spent
        return
    node = sim.nodes[target]
    if node is None:
        return
    slot = sim.slots[target]
    if slot.paused_until > now:
        sim.queue.push(slot.paused_until, kind, target, a, b)
        return
    local = sim._local(target, now)
    if kind == DELIVER:
        effects = node.step(local, Received(a, b))
    else:
        timers = sim.timers[target]
        if timers.get(a) != b:
            return
        del timers[a]
        if now - due > model.lag_max[host]:  # how late the loop ran it, as the runtime measures
            model.lag_max[host] = now - due
        if (now - due) * 2 > sim.topology.tuning.heartbeat_ms * MS:
            node.step(local, LoopLag((now - due) // MS))  # (as the runtime's driver does)
        effects = node.step(local, TimerFired(a))
    sends = sum(1 for e in effects if type(e) is Send)
    spent = model.cost(sends)
    model.busy_until[host] = now + spent
    model.busy_ns += spent
    if effects:
        sim._apply(target, effects)


def _sample(sim: Any, model: CpuModel, host: int, now: int, due: int) -> None:
    """One lag sample of ``host``: feed it to every node the host runs, as the runtime's lag
    monitor does, and schedule the next one (a heartbeat after the later of due and now)."""
    lag = max(model.lag_max[host], now - due)
    model.lag_max[host] = 0
    if lag > model.worst_ns:
        model.worst_ns = lag
    lag_ms = lag // MS
    for i, bound in enumerate(LAG_BUCKETS_MS):
        if lag_ms <= bound:
            model.samples[i] += 1
            break
    else:
        model.samples[-1] += 1
    first = host * model.per_host
    fed = 0
    for rank in range(first, min(first + model.per_host, sim.topology.num_nodes)):
        node = sim.nodes[rank]
        if node is not None:
            fed += 1
            sim._apply(rank, node.step(sim._local(rank, now), LoopLag(int(lag_ms))))
    spent = int(fed * model.lag_ns * model.slow)
    model.busy_until[host] = now + spent
    model.busy_ns += spent
    period = sim.topology.tuning.heartbeat_ms * MS
    nxt = max(due + period, now)
    sim.queue.push(nxt, HOSTLAG, host, nxt)
