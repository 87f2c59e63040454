"""Deterministic discrete-event simulator driving the real protocol core.

Theory of operation
-------------------
Every node is a real :class:`hierclust.core.node.Node`; the simulator is only its environment: an
integer-ns virtual clock, a network model, the disk (``Persist``), timers and faults. One event is
run at a time from :class:`EventQueue` in ``(time, seq)`` order, and every random choice comes from
generators seeded by one integer, so a seed reproduces a run exactly.

Effects are carried out in the order the node returns them; ``Persist`` writes the node's disk at
once, so it is durable before any later effect of the same step (the core's contract). A crashed
node loses its pending timers and inbound datagrams; a paused node keeps them and runs them late; a
node with a skewed clock sees ``now`` and its timers at its own rate.

Clocks: as on real hosts, no two nodes share one. Each node's monotonic clock has its own origin
(offsets up to ``MONO_SPREAD_NS`` apart: hosts boot days apart), and its wall clock is true time
plus an NTP error of up to ``WALL_ERROR_NS``; wall clocks can be stepped or slewed as faults. The
checkers judge in true time. (``clocks=False`` gives every node the simulator's own clock, and
the same wall clock.)

Events (``Emit``) go to the safety checker as they happen and into compact per-run records from
which the report (docs/architecture.md §5) is computed.
"""

from __future__ import annotations

import functools
import gc
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hierclust.core.messages import TieVoteResp
from hierclust.core.node import Node
from hierclust.core.node import handlers as core_handlers
from hierclust.core.timeouts import MS
from hierclust.core.types import (
    CancelTimer,
    Command,
    ElectionStarted,
    Emit,
    Failure,
    LeaderChanged,
    LeaseChanged,
    NoticeLearned,
    Persist,
    QuorumChanged,
    Received,
    Send,
    SetTimer,
    Start,
    TimerFired,
    ViewChanged,
    VoteGranted,
    WallClock,
    witness_group,
    witness_id,
)
from hierclust.sim.checkers import SafetyChecker
from hierclust.sim.cpu import CpuModel, run_loaded
from hierclust.sim.network import Network, Partition
from hierclust.sim.queue import BUCKET_NS, EventQueue
from hierclust.sim.ranks import NEVER, ClockState, Ranks, SlotViews
from hierclust.topology.model import Topology

DELIVER, TIMER, ACTION, WITNESS = 0, 1, 2, 3
WALL_EPOCH_NS = 1_798_761_600 * 1_000_000_000
"""True time 0 on the wall clock: 2027-01-01."""
MONO_SPREAD_NS = 30 * 86_400 * 1_000_000_000
"""Monotonic clocks start up to 30 days apart (hosts booted at different times)."""
WALL_ERROR_NS = 100_000_000
"""Wall clocks are off true time by up to 100 ms either way (NTP on a busy network)."""
FREEZE_NODES = 10_000
"""From this many nodes on, ``run_until`` freezes the heap it starts from (see there)."""


def make_tiebreaker(kind: str, group: int, hold_ms: int = 800) -> Any:
    """The simulated witness daemon or shared-disk lease of one group. ``hold_ms``: how long it
    refuses others after its holder's last renewal; the group's election timeout, which is
    longer than any lease its leader counts on it for."""
    from hierclust.core.disk import LeaseDisk
    from hierclust.core.witness import Witness

    if kind == "witness":
        return Witness(group, hold_ms=hold_ms)
    return LeaseDisk(group, hold_ms=hold_ms)


@dataclass(slots=True)
class Records:
    """Compact history of one run, for reports."""

    learned: dict[tuple[Any, ...], dict[int, int]] = field(default_factory=dict)  # by identity
    detected: dict[tuple[str, int, int], tuple[int, int]] = field(default_factory=dict)
    elected: list[tuple[int, int, int, int]] = field(default_factory=list)  # t, group, rank, term
    elections: list[tuple[int, int, int, int]] = field(default_factory=list)  # t, group, rank, term
    view_changes: dict[int, int] = field(default_factory=dict)  # group -> first change after mark
    mark_ns: int = -1
    sent: int = 0
    sent_since_mark: int = 0
    bytes_sampled: int = 0
    samples: int = 0


def primary_window_ns(topology: Topology) -> int:
    """How long a node may go on believing it is in the primary component after it last heard
    its path up: per group on the longest path, a lease, a heartbeat and the drift margin."""
    window = 0
    for leaf in topology.leaves:
        path = topology.path(leaf.first_rank)
        tunings = [g.tuning for g in path]
        window = max(window, sum(t.lease_ms + t.heartbeat_ms + t.drift_margin_ms for t in tunings))
    return window * MS


class Simulator:
    """Runs one topology under one seed. See ``hierclust.sim.scenario`` for ready-made runs."""

    def __init__(
        self,
        topology: Topology,
        *,
        seed: int,
        network: Network | None = None,
        node_factory: Callable[..., Any] | None = None,
        tiebreakers: bool = True,
        sizer: Callable[[Any], int] | None = None,
        clocks: bool = True,
        wall_error_ns: int = WALL_ERROR_NS,
    ) -> None:
        self.topology = topology
        self.seed = seed
        self.net = network or Network(random.Random(seed))
        self.node_rng = random.Random(seed * 7919 + 17)
        self.fault_rng = random.Random(seed * 104729 + 3)
        if node_factory is None:
            node_factory = Node
        self.node_factory = node_factory
        self.queue = EventQueue()
        self.now = 0
        self.nodes: list[Any] = [None] * topology.num_nodes
        # per rank: incarnation, disk, clocks, in flat columns (see hierclust.sim.ranks);
        # ``slots[rank]`` is a view of them
        self.ranks = ranks = Ranks(topology.num_nodes)
        self.slots = SlotViews(ranks)
        # each node's monotonic clock origin (local = true + shift, until it is skewed) and its
        # wall clock, from their own random stream (the other streams draw as without clocks)
        # (flat arrays: the run loop reads one shift per event, and neighbouring ranks, which a
        # leader's heartbeat reaches together, share a cache line, not one int object each)
        self.shifts = ranks.shift
        walls = ranks.wall
        clock_rng = random.Random(seed * 6151 + 29)
        for rank in range(topology.num_nodes):
            walls[rank] = WALL_EPOCH_NS
            if clocks:
                shift = clock_rng.randrange(MONO_SPREAD_NS)
                error = clock_rng.randrange(-wall_error_ns, wall_error_ns + 1)
                self.shifts[rank] = shift
                walls[rank] += error - shift
        # pending timers by rank: key -> generation of the SetTimer that armed it (a queued TIMER
        # event runs only if it is still the latest for its key); kept across a crash and restart
        # (a dict per rank: one dict of (rank, key) for all ranks measured no smaller at 10^5
        # nodes, and its resizes raise the peak)
        self.timers: list[dict[Any, int]] = [{} for _ in range(topology.num_nodes)]
        self._timer_gen = itertools.count(1)  # generations of node and witness timers
        # every node so far has the direct entry points deliver(now, src, msg), fire(now, key)
        # (the protocol core does); else datagrams and timers go through step()
        self._direct = True
        # every node so far is the protocol core's Node: its handlers are called directly
        self._core = True
        self.checker = SafetyChecker()
        self.records = Records()
        self.crashed: set[int] = set()
        # when the last partition, and the last loss or duplication, ended (NEVER: none yet)
        self.partition_ended_ns = NEVER
        self.lossy_ended_ns = NEVER
        self.partition_started_ns = NEVER  # when the partition in force began
        self.primary_window_ns = primary_window_ns(topology)
        # how long after a fault ends it may still explain an accusation: a node silent for
        # suspect_after_ms, probed for confirm_ms, and an election timeout for the leaders that
        # the fault unseated to settle (docs/simulator.md, Checkers)
        self.settle_ns = (
            max(
                g.tuning.suspect_after_ms + g.tuning.confirm_ms + g.tuning.election_timeout_ms
                for g in topology.by_index
            )
            * MS
        )
        self.sizer = sizer
        # Tie-breakers (witness daemons, shared-disk leases) by group index; reachable from every
        # side of a partition, as a witness at a third site or a SAN would be.
        self.witnesses: dict[int, Any] = {}
        if tiebreakers:
            for group in topology.by_index:
                if group.tiebreaker is not None:
                    self.witnesses[group.index] = make_tiebreaker(
                        group.tiebreaker.kind, group.index, group.tuning.election_timeout_ms
                    )
        self._witness_timers: dict[tuple[int, Any], int] = {}
        self.events_run = 0
        self.cpu: CpuModel | None = None  # hosts' CPUs (sim/cpu.py attach): a loaded run

    # -- lifecycle -----------------------------------------------------------------------------
    def start_all(self, spread_ns: int = 0) -> None:
        """Create and start every node, start times spread over ``spread_ns``."""
        for rank in range(self.topology.num_nodes):
            at = int(self.fault_rng.random() * spread_ns) if spread_ns else 0
            self.queue.push(at, ACTION, rank, ("start", None))

    def _boot(self, rank: int, persisted: Any, amnesiac: bool = False) -> None:
        slot = self.slots[rank]
        factory = self.node_factory
        if amnesiac:
            # only a node that lost its disk is told so (a first boot has nothing to forget)
            factory = functools.partial(factory, amnesiac=True)
        node = factory(
            self.topology,
            rank,
            rng=self.node_rng,
            incarnation=slot.incarnation,
            persisted=persisted,
        )
        self.nodes[rank] = node
        if not (hasattr(node, "deliver") and hasattr(node, "fire")):
            self._direct = False
        if not isinstance(node, Node):
            self._core = False
        slot.incarnation = getattr(node, "incarnation", slot.incarnation)
        self.crashed.discard(rank)
        self._apply(rank, node.step(self._local(rank, self.now), Start(slot.wall)))

    def crash(self, rank: int) -> None:
        """Stop a node abruptly: its timers are dropped, datagrams to it are lost."""
        node = self.nodes[rank]
        if node is not None:
            # a node that refuted a false accusation runs under a newer incarnation than it booted
            slot = self.slots[rank]
            slot.incarnation = getattr(node, "incarnation", slot.incarnation)
        self.nodes[rank] = None
        self.crashed.add(rank)

    def restart(self, rank: int, keep_disk: bool = True) -> None:
        """Restart a crashed node with a higher incarnation, with or without its disk."""
        slot = self.slots[rank]
        if self.nodes[rank] is not None:
            self.crash(rank)
        if keep_disk:
            slot.incarnation += 1
            persisted = slot.disk
        else:
            # A node that lost its disk only knows the time: a boot counter from the clock.
            slot.incarnation = max(slot.incarnation + 1, self.now // MS + 2)
            slot.disk = None
            persisted = None
        self._boot(rank, persisted, amnesiac=not keep_disk)

    def pause(self, rank: int, duration_ns: int) -> None:
        state = self.ranks.clock(rank)
        state.paused_until = max(state.paused_until, self.now + duration_ns)

    def set_skew(self, rank: int, ppm: int) -> None:
        """Make ``rank``'s clock (and so its timers) run ``ppm`` parts per million fast or slow."""
        local = self._local(rank, self.now)
        state = self.ranks.clock(rank)
        state.anchor_local = local
        state.anchor_true = self.now
        if state.skew_ppm and not ppm:
            state.unskewed_ns = self.now
        state.skew_ppm = ppm
        state.skewed = True

    def step_wall(self, rank: int, delta_ns: int) -> None:
        """Step ``rank``'s wall clock by ``delta_ns`` (an operator's ``date -s``, a bad NTP
        server); its driver tells the node the new offset."""
        slot = self.slots[rank]
        slot.wall += delta_ns
        node = self.nodes[rank]
        if node is not None:
            self._apply(rank, node.step(self._local(rank, self.now), WallClock(slot.wall)))

    def slew_wall(self, rank: int, delta_ns: int, over_ns: int, steps: int = 10) -> None:
        """Move ``rank``'s wall clock by ``delta_ns`` gradually over ``over_ns`` (``adjtime``)."""
        part = delta_ns // steps
        for i in range(steps):
            self.at(self.now + over_ns * (i + 1) // steps, lambda sim: sim.step_wall(rank, part))

    def local_now(self, rank: int) -> int:
        """``rank``'s own monotonic clock now (what its queries, such as ``lease_valid``, take)."""
        return self._local(rank, self.now)

    def partition(self, partition: Partition | None) -> None:
        if self.net.partition is not None:
            self.partition_ended_ns = self.now  # (replaced or healed)
        if partition is not None:
            self.partition_started_ns = self.now
        self.net.partition = partition

    def check_primaries(self) -> None:
        """Tell the checker which sides of the partition in force have a node in the primary
        component now, once the partition is older than :attr:`primary_window_ns` (before that a
        node may rightly go on believing the leases it heard before the cut), leaving out nodes
        paused within that window."""
        cut = self.net.partition
        if cut is None or not self._core:
            return
        if self.now - self.partition_started_ns <= self.primary_window_ns:
            return
        sides: dict[int, int] = {}
        stalled_since = self.now - self.primary_window_ns
        clocks = self.ranks.clocks
        for rank, node in enumerate(self.nodes):
            if node is None:
                continue
            state = clocks.get(rank)
            if state is not None and state.paused_until > stalled_since:
                # paused within the window: the datagrams it reads on waking are as old as its
                # stall, and it may act on what they say for a lease (only fencing tokens
                # protect a resource from a stalled process; docs/reliability.md)
                continue
            if node.in_primary(self._local(rank, self.now)):
                sides.setdefault(cut.side(rank), rank)
        self.checker.primaries(self.now, sides, self.primary_window_ns)

    def set_loss(self, loss: float, duplicate: float = 0.0) -> None:
        if (loss, duplicate) < (self.net.loss, self.net.duplicate):
            self.lossy_ended_ns = self.now
        self.net.loss = loss
        self.net.duplicate = duplicate

    def at(self, time_ns: int, action: Callable[[Simulator], None]) -> None:
        """Run ``action(self)`` at virtual time ``time_ns``."""
        self.queue.push(time_ns, ACTION, -1, ("call", action))

    def command(self, rank: int, command: Command) -> None:
        node = self.nodes[rank]
        if node is not None:
            self._apply(rank, node.step(self._local(rank, self.now), command))

    def mark(self) -> None:
        """Start of the measured window: counters and 'after the kill' records restart here."""
        self.records.mark_ns = self.now
        self.records.sent_since_mark = 0
        self.records.view_changes = {}

    # -- clocks --------------------------------------------------------------------------------
    def _local(self, rank: int, true_ns: int) -> int:
        state = self.ranks.clocks.get(rank)
        if state is None:
            return true_ns + self.shifts[rank]
        elapsed = true_ns - state.anchor_true
        return state.anchor_local + elapsed + elapsed * state.skew_ppm // 1_000_000

    def _true(self, rank: int, local_ns: int) -> int:
        state = self.ranks.clocks.get(rank)
        if state is None:
            return local_ns - self.shifts[rank]
        elapsed = local_ns - state.anchor_local
        # Round up: a timer never fires before its local deadline.
        return state.anchor_true - (-elapsed * 1_000_000 // (1_000_000 + state.skew_ppm))

    # -- the loop ------------------------------------------------------------------------------
    def run_until(self, end_ns: int) -> None:
        if self.cpu is not None:
            run_loaded(self, end_ns)
            return
        if self.topology.num_nodes < FREEZE_NODES or not gc.isenabled():
            self._run(end_ns)
            return
        # Everything alive now (nodes, pending events) is long-lived: keep the cyclic collector
        # off it (O(1); reference counting still frees it). A big run otherwise spends a large
        # share of its time in full collections walking the nodes. While the loop runs, the
        # collector is off altogether: events, datagrams and effects are acyclic and freed by
        # reference counting (a 10,000-node run leaves a few dozen cyclic objects), but the
        # collector would still walk every queued one, about 5 % of a 100,000-node run.
        gc.freeze()
        gc.disable()
        try:
            self._run(end_ns)
        finally:
            # what the run left (queued events, new node state) is long-lived too: freeze it
            # before the collector is back, or its first collection would walk all of it
            gc.freeze()
            gc.enable()

    def _run(self, end_ns: int) -> None:
        # The hot loop: one event at a time, and the effects of a node's step carried out right
        # here (the same work as ``_apply``, in the same order, without a call and a set-up per
        # event). Queue pushes are inlined too: exactly ``EventQueue.push``. Whatever the loop
        # keeps in locals (the clock, the send counters, the network's parameters) is written
        # back before, and read again after, every call that may read or change it: actions,
        # tie-breakers, events.
        queue = self.queue
        pop = queue.pop_until
        heappush = heapq.heappush
        count = queue._count
        buckets = queue._buckets
        bucket_keys = queue._keys
        current = queue._current  # replaced by pop_until when it moves to the next bucket
        late = queue._late
        current_key = queue._current_key
        nodes = self.nodes
        irregular = self.ranks.clocks  # ranks ever paused or skewed
        disks = self.ranks.disk
        timers_of = self.timers
        records = self.records
        gens = self._timer_gen
        shifts = self.shifts
        event = self._event
        direct = self._direct
        # the core's handlers, called without node.deliver / node.fire (one frame less an event)
        handlers = core_handlers() if self._core and direct else None
        net = self.net
        # a clean network needs one random draw per datagram, or none; an action may change it
        clean = not net.loss and not net.duplicate and net.partition is None
        latency, jitter, random = net.latency_ns, net.jitter_ns, net.rng.random
        sizer = self.sizer
        sent_total = records.sent
        sent_mark = records.sent_since_mark
        run = 0
        # ``self.now`` is brought up to date before every call that reads it (actions, witnesses,
        # events) and at the end, not per event
        now = self.now
        while True:
            # the queue's current bucket is popped here directly (the hot path); the queue
            # itself merges in late entries and moves on to the next bucket
            if current and not late:
                entry = current.pop()
                if entry[0] > end_ns:
                    current.append(entry)
                    break
            else:
                found = pop(end_ns)
                current = queue._current
                current_key = queue._current_key
                if found is None:
                    break
                entry = found
            now, _seq, kind, target, a, b = entry
            run += 1
            if kind > TIMER:  # not addressed to a node: an action or a tie-breaker's input
                self.now = now
                records.sent = sent_total
                records.sent_since_mark = sent_mark
                if kind == ACTION:
                    self._action(target, a)
                    # an action may change anything: the network, the sizer, which nodes exist
                    direct = self._direct
                    handlers = core_handlers() if self._core and direct else None
                    net = self.net
                    clean = not net.loss and not net.duplicate and net.partition is None
                    latency, jitter, random = net.latency_ns, net.jitter_ns, net.rng.random
                    sizer = self.sizer
                else:
                    self._witness(target, a)
                sent_total = records.sent
                sent_mark = records.sent_since_mark
                continue
            node = nodes[target]
            if node is None:
                continue
            # a rank's slot only when needed (one memory access less per event): it is set here
            # exactly for the ranks ever paused or skewed
            slot: ClockState | None = None
            shift = shifts[target]
            if irregular and target in irregular:
                slot = irregular[target]
                if slot.paused_until > now:
                    queue.push(slot.paused_until, kind, target, a, b)
                    continue
                local = self._local(target, now) if slot.skewed else now + shift
            else:
                local = now + shift
            if kind == DELIVER:
                effects: list[Any]
                if handlers is not None:
                    effects = []
                    handler = handlers.get(type(b))
                    if handler is not None:
                        handler(node, local, a, b, effects)
                elif direct:
                    effects = node.deliver(local, a, b)
                else:
                    effects = node.step(local, Received(a, b))
            else:
                timers = timers_of[target]
                if timers.get(a) != b:
                    continue
                del timers[a]
                if handlers is not None:
                    effects = []
                    node._on_timer(local, a, effects)
                elif direct:
                    effects = node.fire(local, a)
                else:
                    effects = node.step(local, TimerFired(a))
            if not effects:
                continue
            # -- the effects, in order (see _apply) --
            sent = 0
            for effect in effects:
                ekind = type(effect)
                if ekind is Send:
                    sent += 1
                    dst = effect.dst
                    if dst < 0:
                        self.now = now
                        self._to_witness(target, effect)
                        continue
                    if clean:
                        if jitter:
                            at = now + latency + int(random() * jitter)
                        else:
                            at = now + latency
                        item = (at, next(count), DELIVER, dst, target, effect.msg)
                        key = at // BUCKET_NS
                        if key > current_key:
                            bucket = buckets.get(key)
                            if bucket is not None:
                                bucket.append(item)
                            else:
                                buckets[key] = [item]
                                heappush(bucket_keys, key)
                        else:
                            heappush(late, item)
                    else:
                        msg = effect.msg
                        for delay in net.deliveries(target, dst):
                            queue.push(now + delay, DELIVER, dst, target, msg)
                elif ekind is SetTimer:
                    gen = next(gens)
                    key = effect.key
                    timers_of[target][key] = gen
                    at = effect.at_ns
                    if slot is not None and slot.skewed:
                        at = self._true(target, at)
                    else:
                        at -= shift
                    if at < now:
                        at = now
                    item = (at, next(count), TIMER, target, key, gen)
                    bkey = at // BUCKET_NS
                    if bkey > current_key:
                        bucket = buckets.get(bkey)
                        if bucket is not None:
                            bucket.append(item)
                        else:
                            buckets[bkey] = [item]
                            heappush(bucket_keys, bkey)
                    else:
                        heappush(late, item)
                elif ekind is Emit:
                    self.now = now
                    event(target, effect.event)
                elif ekind is Persist:
                    disks[target] = effect.state
                elif ekind is CancelTimer:
                    timers_of[target].pop(effect.key, None)
                else:  # pragma: no cover - a new effect type must be handled here
                    raise TypeError(f"unknown effect {effect!r}")
            if sent:
                before = sent_total
                sent_total += sent
                sent_mark += sent
                if sizer is not None and before // 64 != sent_total // 64:
                    first = next(e for e in effects if type(e) is Send)
                    records.bytes_sampled += sizer(first.msg)
                    records.samples += 1
        records.sent = sent_total
        records.sent_since_mark = sent_mark
        self.events_run += run
        self.now = max(now, end_ns)

    def _action(self, target: int, payload: tuple[str, Any]) -> None:
        what, arg = payload
        if what == "start":
            if self.nodes[target] is None and target not in self.crashed:
                self._boot(target, None)
        elif what == "call":
            arg(self)

    def _apply(self, rank: int, effects: list[Any]) -> None:
        """Carry out a node's effects outside the run loop (a boot, a command); ``run_until``
        does the same inline."""
        push = self.queue.push
        net = self.net
        now = self.now
        state = self.ranks.clocks.get(rank)
        skewed = state is not None and state.skewed
        sent = 0
        for effect in effects:
            kind = type(effect)
            if kind is Send:
                sent += 1
                dst = effect.dst
                if dst < 0:
                    self._to_witness(rank, effect)
                    continue
                for delay in net.deliveries(rank, dst):
                    push(now + delay, DELIVER, dst, rank, effect.msg)
            elif kind is SetTimer:
                gen = next(self._timer_gen)
                key = effect.key
                self.timers[rank][key] = gen
                at = effect.at_ns
                at = self._true(rank, at) if skewed else at - self.shifts[rank]
                push(at if at > now else now, TIMER, rank, key, gen)
            elif kind is CancelTimer:
                self.timers[rank].pop(effect.key, None)
            elif kind is Emit:
                self._event(rank, effect.event)
            elif kind is Persist:
                self.ranks.disk[rank] = effect.state
            else:  # pragma: no cover - a new effect type must be handled here
                raise TypeError(f"unknown effect {effect!r}")
        if sent:
            records = self.records
            before = records.sent
            records.sent = before + sent
            records.sent_since_mark += sent
            if self.sizer is not None and before // 64 != records.sent // 64:
                msgs = [e.msg for e in effects if type(e) is Send]
                records.bytes_sampled += self.sizer(msgs[0])
                records.samples += 1

    def _to_witness(self, rank: int, effect: Send) -> None:
        group = witness_group(effect.dst)
        if group in self.witnesses:
            received = Received(rank, effect.msg)
            for delay in self.net.deliveries(rank, rank):
                self.queue.push(self.now + delay, WITNESS, group, received)

    def _witness(self, group: int, payload: Any) -> None:
        witness = self.witnesses[group]
        if type(payload) is tuple:
            fired, gen = payload
            if self._witness_timers.get((group, fired.key)) != gen:
                return
            del self._witness_timers[(group, fired.key)]
            payload = fired
        now = self.now
        if witness.on_reader_clock:
            # a disk lease is read by the asking node itself, which judges it by its own clock
            now = self._local(payload.src, now)
        for effect in witness.step(now, payload):
            kind = type(effect)
            if kind is Send:
                msg = effect.msg
                if type(msg) is TieVoteResp and msg.granted and not msg.pre:
                    # the tie-breaker's vote counts like a member's: once per term
                    self.checker.vote(self.now, witness_id(group), group, msg.term, effect.dst)
                self.records.sent += 1
                for delay in self.net.deliveries(effect.dst, effect.dst):
                    self.queue.push(self.now + delay, DELIVER, effect.dst, -1 - group, effect.msg)
            elif kind is SetTimer:
                gen = next(self._timer_gen)
                self._witness_timers[(group, effect.key)] = gen
                at = max(effect.at_ns, self.now)
                self.queue.push(at, WITNESS, group, (TimerFired(effect.key), gen))
            elif kind is CancelTimer:
                self._witness_timers.pop((group, effect.key), None)

    # -- events --------------------------------------------------------------------------------
    def _event(self, rank: int, event: Any) -> None:
        now = self.now
        kind = type(event)
        records = self.records
        if kind is NoticeLearned:
            notice = event.notice
            identity = notice.identity
            per_rank = records.learned.get(identity)
            if per_rank is None:
                per_rank = records.learned[identity] = {}
            per_rank.setdefault(rank, now)
            if event.via is None and type(notice) is Failure:
                records.detected.setdefault(identity, (now, rank))
                accused = notice.node
                node = self.nodes[accused]
                # (the incarnation it runs under now: it may have refuted since it booted)
                alive = node is not None and node.incarnation == notice.incarnation
                excused = alive and self._excused(accused, rank)
                self.checker.accusation(now, accused, alive, excused)
        elif kind is LeaseChanged:
            if event.held:
                self._refresh_leases(event.group, rank)
            end = self._lease_end(rank, event.group, event.until_ns)
            self.checker.lease(now, rank, event.group, event.term, event.held, end)
        elif kind is LeaderChanged:
            if event.leader == rank:
                records.elected.append((now, event.group, rank, event.term))
        elif kind is ElectionStarted:
            records.elections.append((now, event.group, rank, event.term))
            # a candidate votes for itself (persisted before the RequestVotes go out)
            self.checker.vote(now, rank, event.group, event.term, rank)
        elif kind is ViewChanged:
            if records.mark_ns >= 0:
                records.view_changes.setdefault(event.group, now)
        elif kind is VoteGranted:
            self.checker.vote(now, rank, event.group, event.term, event.candidate)
        elif kind is QuorumChanged:
            pass

    def _exact_lease_end(self, rank: int, group: int) -> int | None:
        """The node's own lease end, in true time, where the node can tell."""
        query = getattr(self.nodes[rank], "lease_until", None)
        local = query(group) if query is not None else None
        if local is None:
            return None
        return self._true(rank, local)

    def _lease_end(self, rank: int, group: int, reported_local: int) -> int:
        """A lease's end in true time: events report a lower bound between renewals, so the
        node's exact value wins when it is later."""
        reported = self._true(rank, reported_local)
        exact = self._exact_lease_end(rank, group)
        return reported if exact is None else max(exact, reported)

    def _refresh_leases(self, group: int, rank: int) -> None:
        """Before ``rank`` is checked as a new holder, bring the others' lease ends up to date:
        renewals extend leases silently, and a crashed holder acts no more. (``rank``'s own entry
        is left alone: the check that follows replaces it.)"""
        holders = self.checker.leases.get(group)
        if not holders:
            return
        for other in list(holders):
            if other == rank:
                continue
            if self.nodes[other] is None:
                del holders[other]
                continue
            exact = self._exact_lease_end(other, group)
            if exact is not None:
                term, end = holders[other]
                holders[other] = (term, max(end, exact))

    def _excused(self, accused: int, detector: int) -> bool:
        """Whether a fault could explain ``detector`` declaring ``accused`` while it is alive: a
        fault active now, or one that ended less than ``settle_ns`` ago, on the link between
        them (loss or duplication is on every link) or on either node (a pause or a clock
        skew). Nothing else excuses an accusation: not the first seconds of a run, not an
        earlier refutation, not a skew that ended long ago."""
        now = self.now
        settle = self.settle_ns
        net = self.net
        if net.loss or net.duplicate or now - self.lossy_ended_ns < settle:
            return True
        cut = net.partition
        if cut is not None and (cut.blocks(accused, detector) or cut.blocks(detector, accused)):
            return True
        if now - self.partition_ended_ns < settle:
            return True
        for rank in (accused, detector):
            slot = self.slots[rank]
            if slot.paused_until > now - settle:
                return True
            if slot.skew_ppm or now - slot.unskewed_ns < settle:
                return True
        return False

    # -- queries -------------------------------------------------------------------------------
    def live_ranks(self) -> list[int]:
        return [r for r, node in enumerate(self.nodes) if node is not None]

    def leader_of(self, group_index: int) -> int | None:
        """The leader that the group's live members agree on, or None when they do not agree."""
        group = self.topology.by_index[group_index]
        views = set()
        for member in self.members_now(group_index):
            node = self.nodes[member]
            if node is not None:
                views.add(node.leader_of(group.index))
        if len(views) != 1:
            return None
        (leader,) = views
        return leader if leader is not None and self.nodes[leader] is not None else None

    def members_now(self, group_index: int) -> list[int]:
        """Ranks currently sitting in a group: its nodes, or the leaders of its child groups."""
        group = self.topology.by_index[group_index]
        if group.is_leaf:
            return [r for r in group.ranks if self.nodes[r] is not None]
        members = []
        for child in self.topology.slots(group):
            holder = self.leader_of(child.index)
            if holder is not None:
                members.append(holder)
        return members
