"""``hierclust bench hostile``: hostile datagrams against live agents, and proof none got in.

A campaign deploys a generated topology on 127.0.0.1 whose top group is even, so it has a witness
daemon (worker ``w0`` runs it): two kinds of listener, the nodes' sockets and the witness's.
It captures the cluster's own traffic off loopback (:func:`~hierclust.bench.hostile_forge.capture`),
records every node's view and the witness's state, then sends each hostile kind in turn
(:data:`~hierclust.bench.hostile_forge.KINDS`: random bytes, bit flips of captured datagrams,
truncations, oversized datagrams, replays of captured datagrams, datagrams signed with keys the
cluster does not hold), spread evenly over every listener, paced at ``rate`` per second and sent
only to the deployment's own 127.0.0.1 addresses.

After each kind it waits until the listeners' counters have taken in what was sent, and compares
per listener: the kernel's per-socket drop counter (``/proc/net/udp``: what UDP on loopback did not
deliver), the codec's drop counters by reason, and the reason predicted for every datagram sent.
Received = sent - kernel drops must equal the drops counted, reason by reason; a datagram
received and not dropped was accepted. At the end it compares every node's view (leaders, terms,
view ids, slot holders, notices, modes, incarnations) and the witness's term and holder with the
records from before, checks that every node and worker still runs, and reads the event logs of
the campaign's window (nothing may have happened: no leader change, no notice, no ``Failed``).
"""

from __future__ import annotations

import json
import random
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hierclust import __version__
from hierclust.bench.hostile_forge import (
    ACCEPTED,
    KINDS,
    REPLAY_REASONS,
    Forge,
    Listener,
    capture,
    listeners_of,
    proc_udp_drops,
)
from hierclust.bench.udp import BenchError, check_local, write_generated
from hierclust.codec import DropReason, load_keyring
from hierclust.runtime.context import local_witnesses
from hierclust.runtime.control import request
from hierclust.runtime.demo import read_events
from hierclust.runtime.deploy import Deployment, collect, deploy, groups_led, stop, wait_ready

Progress = Callable[[str, float, float], None]
MAX_DATAGRAMS = 10_000_000
MAX_RATE = 50_000
REASONS = [reason.value for reason in DropReason]
VIEW_FIELDS = ("running", "incarnation", "amnesiac", "in_primary", "mode", "unreachable",
               "failed", "admin", "incarnations")  # fmt: skip
GROUP_FIELDS = ("group", "leader", "term", "leading", "view_id", "holders")
SETTLE_TIMEOUT_S = 30.0
CAPTURE_PER_LISTENER = 300
EITHER_REPLAY = "|".join(REPLAY_REASONS)
"""The prediction for a captured datagram sent again: one of the two replay reasons."""


class Campaign:
    """One deployment under attack; :meth:`run` does it all, :meth:`close` stops the workers."""

    def __init__(self, nodes: int, fanout: int, base_port: int, processes: int) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="hchostile-", dir="/tmp"))
        path = self.directory / "topology.toml"
        try:
            self.topology = write_generated(nodes, fanout, base_port, path)
            if not local_witnesses(self.topology):
                raise BenchError(
                    f"--nodes {nodes} --fanout {fanout}: the top group is odd, so there is no "
                    "witness to attack; pick sizes whose generated top group is even (e.g. 8, 5)"
                )
            check_local(self.topology)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        self.path = path
        self.processes = processes
        self.state_dir = self.directory / "state"
        self.children: list[Any] = []
        self.deployment: Deployment | None = None

    def close(self) -> None:
        if self.deployment is not None:
            stop(self.state_dir)
        for child in self.children:
            try:
                child.wait(10)
            except Exception:  # noqa: BLE001 - stop() already escalated to SIGKILL
                child.kill()

    # -- reading the cluster -----------------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, int]]:
        """Per listener name: ``arrived``, ``accepted`` and ``dropped_<reason>``."""
        snapshots, errors = collect(self.state_dir)
        if errors:
            raise BenchError(f"a worker did not answer: {errors[0]}")
        found: dict[str, dict[str, int]] = {}
        for snap in snapshots:
            for node in snap.get("nodes", []):
                d = node.get("datagrams", {})
                found[node["name"]] = {
                    "arrived": d.get("arrived", 0),
                    "accepted": d.get("received", 0),
                    **{r: d.get(f"dropped_{r}", 0) for r in REASONS},
                }
            for witness in snap.get("witnesses", []):
                d = witness["datagrams"]
                found[f"witness {witness['address']}"] = {
                    "arrived": d["arrived"],
                    "accepted": d["accepted"],
                    **{r: d[f"dropped_{r}"] for r in REASONS},
                }
        return found

    def state(self) -> dict[str, Any]:
        """What hostile input must not change: each node's view (the stable part) and every
        witness's durable term and holder; plus which nodes run and why others stopped."""
        assert self.deployment is not None
        views: dict[str, Any] = {}
        for worker in self.deployment.workers:
            for rank in worker.ranks:
                got = request(worker.socket_path(self.state_dir), {"op": "view", "rank": rank})
                view = got["view"] or {}
                stable: dict[str, Any] = {k: view.get(k) for k in VIEW_FIELDS}
                stable["groups"] = [
                    {k: g.get(k) for k in GROUP_FIELDS} for g in view.get("groups", [])
                ]
                stable["stop_event"] = view.get("stop_event")
                views[self.topology.node_name(rank)] = stable
        snapshots, _ = collect(self.state_dir)
        witnesses = [w["groups"] for s in snapshots for w in s.get("witnesses", [])]
        return {"views": views, "witnesses": witnesses}

    # -- the campaign ------------------------------------------------------------------------------
    def run(
        self, datagrams: int, rate: int, seed: int, progress: Progress | None
    ) -> dict[str, Any]:
        say = progress or (lambda phase, done, total: None)
        topology = self.topology
        say("deploying", 0, datagrams)
        self.deployment, self.children = deploy(topology, self.path, self.state_dir, self.processes)
        groups = len(topology.by_index)
        if not wait_ready(
            self.deployment, self.children, 60, None, lambda a: (groups_led(a), groups)
        ):
            raise BenchError(f"not every group of {topology.num_nodes} nodes had a leader in 60 s")
        time.sleep(1.0)  # the first renewals and digests settle
        keyring = load_keyring(self.deployment.keyring)
        addresses = []
        for rank in range(topology.num_nodes):
            a = topology.address(rank)
            assert a is not None
            addresses.append((a.host, a.port))
        names = [topology.node_name(r) for r in range(topology.num_nodes)]
        listeners = listeners_of(
            topology.name, addresses, names, local_witnesses(topology), keyring
        )
        ports = {x.address[1] for x in listeners}
        say("capturing", 0, datagrams)
        kernel_before = proc_udp_drops(ports)
        captured = capture(listeners, per_listener=CAPTURE_PER_LISTENER, timeout_s=8.0)
        captured["kernel_drops"] = _delta_sum(proc_udp_drops(ports), kernel_before)
        for listener in listeners:
            if not listener.captured or not listener.messages:
                raise BenchError(f"{listener.name}: no traffic to it was captured in 8 s")
        time.sleep(0.5)
        before = self.state()
        # a quiet second: legitimate traffic alone must not move a drop counter
        base0 = self.counters()
        time.sleep(1.0)
        base1 = self.counters()
        baseline_drops = sum(
            base1[x.name][r] - base0[x.name][r] for x in listeners for r in REASONS
        )
        started_ns = time.monotonic_ns()
        forge = Forge(topology.name, random.Random(seed), topology.num_nodes)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sender.bind(("127.0.0.1", 0))
        kinds: dict[str, Any] = {}
        sent_total = 0
        try:
            for index, kind in enumerate(KINDS):
                count = datagrams // len(KINDS) + (1 if index < datagrams % len(KINDS) else 0)

                def tick(done: int, kind: str = kind, base: int = sent_total) -> None:
                    say(kind, base + done, datagrams)

                kinds[kind] = self._phase(kind, count, listeners, forge, sender, rate, ports, tick)
                sent_total += count
        finally:
            sender.close()
        ended_ns = time.monotonic_ns()
        time.sleep(0.5)
        after = self.state()
        events = [
            e
            for e in read_events(self.state_dir)
            if started_ns <= e.get("t_ns", 0) <= ended_ns + 500_000_000
        ]
        all_events = read_events(self.state_dir)
        running = [c.poll() is None for c in self.children]
        say("done", datagrams, datagrams)
        return self._report(
            datagrams, rate, seed, listeners, captured, baseline_drops, kinds, before, after,
            events, all_events, running, (ended_ns - started_ns) / 1e9,
        )  # fmt: skip

    def _phase(
        self,
        kind: str,
        count: int,
        listeners: list[Listener],
        forge: Forge,
        sender: socket.socket,
        rate: int,
        ports: set[int],
        tick: Callable[[int], None],
    ) -> dict[str, Any]:
        """Send ``count`` datagrams of ``kind`` round-robin over the listeners; wait until the
        counters took them in; what each listener counted against what was predicted."""
        counts0 = self.counters()
        kernel0 = proc_udp_drops(ports)
        sent = {x.name: 0 for x in listeners}
        outcomes = [*REASONS, ACCEPTED, EITHER_REPLAY]
        predicted = {x.name: dict.fromkeys(outcomes, 0) for x in listeners}
        send_errors = 0
        batch = max(1, rate // 100)
        due = began = time.monotonic()
        for i in range(count):
            listener = listeners[i % len(listeners)]
            data = forge.make(kind, listener)
            outcome = listener.predict(data)
            if kind == "replayed" and outcome == ACCEPTED:
                outcome = EITHER_REPLAY  # valid once; the live window must refuse it now
            predicted[listener.name][outcome] += 1
            try:
                sender.sendto(data, listener.address)
                sent[listener.name] += 1
            except OSError:
                send_errors += 1
            if (i + 1) % batch == 0:
                due += batch / rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                tick(i + 1)
        tick(count)
        sending_s = time.monotonic() - began
        # settle: every listener has counted (dropped) what reached its socket
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            counts1 = self.counters()
            kernel1 = proc_udp_drops(ports)
            pending = [
                x.name
                for x in listeners
                if sum(counts1[x.name][r] - counts0[x.name][r] for r in REASONS)
                + kernel1.get(x.address[1], 0)
                - kernel0.get(x.address[1], 0)
                < sent[x.name]
            ]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(0.2)  # anything late (a drop too many) shows in a last read
        counts1 = self.counters()
        kernel1 = proc_udp_drops(ports)
        per_listener: dict[str, Any] = {}
        for x in listeners:
            port = x.address[1]
            dropped = {r: counts1[x.name][r] - counts0[x.name][r] for r in REASONS}
            per_listener[x.name] = {
                "sent": sent[x.name],
                "kernel_dropped": kernel1.get(port, 0) - kernel0.get(port, 0),
                "arrived": counts1[x.name]["arrived"] - counts0[x.name]["arrived"],
                "accepted_all": counts1[x.name]["accepted"] - counts0[x.name]["accepted"],
                "dropped": {r: n for r, n in dropped.items() if n},
                "predicted": {r: n for r, n in predicted[x.name].items() if n},
            }
        return {"send_errors": send_errors, "sending_s": sending_s, "listeners": per_listener}

    def _report(
        self,
        datagrams: int,
        rate: int,
        seed: int,
        listeners: list[Listener],
        captured: dict[str, int],
        baseline_drops: int,
        kinds: dict[str, Any],
        before: dict[str, Any],
        after: dict[str, Any],
        events: list[dict[str, Any]],
        all_events: list[dict[str, Any]],
        running: list[bool],
        duration_s: float,
    ) -> dict[str, Any]:
        kind_rows: dict[str, Any] = {}
        for kind, phase in kinds.items():
            row: dict[str, Any] = dict.fromkeys(
                ("sent", "kernel_dropped", "received", "dropped", "accepted"), 0
            )
            by_reason: dict[str, int] = {}
            predicted: dict[str, int] = {}
            match = True
            for name, entry in phase["listeners"].items():
                received = entry["sent"] - entry["kernel_dropped"]
                dropped = sum(entry["dropped"].values())
                row["sent"] += entry["sent"]
                row["kernel_dropped"] += entry["kernel_dropped"]
                row["received"] += received
                row["dropped"] += dropped
                row["accepted"] += received - dropped
                for r, n in entry["dropped"].items():
                    by_reason[r] = by_reason.get(r, 0) + n
                for r, n in entry["predicted"].items():
                    predicted[r] = predicted.get(r, 0) + n
                # every arrival, hostile or not, was accepted or dropped: none is unaccounted
                entry["arrivals_accounted"] = entry["arrived"] == entry["accepted_all"] + dropped
                entry["match"] = _matches(entry, received) and entry["arrivals_accounted"]
                match = match and entry["match"]
                if not entry["match"]:
                    row.setdefault("mismatched", []).append(name)
            row.update(
                by_reason=dict(sorted(by_reason.items())),
                predicted=dict(sorted(predicted.items())),
                match=match,
                send_errors=phase["send_errors"],
                sending_s=round(phase["sending_s"], 2),
            )
            kind_rows[kind] = row
        changed = sorted(
            name for name, view in before["views"].items() if after["views"].get(name) != view
        )
        witness_changed = before["witnesses"] != after["witnesses"]
        failed = [e for e in all_events if e.get("event") in ("Failed", "Crashed")]
        stopped = sorted(n for n, v in after["views"].items() if not v.get("running"))
        sending = sum(phase["sending_s"] for phase in kinds.values())
        totals = {k: sum(r[k] for r in kind_rows.values()) for k in
                  ("sent", "kernel_dropped", "received", "dropped", "accepted")}  # fmt: skip
        summary = {
            "datagrams_sent": totals["sent"],
            "kernel_dropped": totals["kernel_dropped"],
            "received": totals["received"],
            "dropped": totals["dropped"],
            "accepted": totals["accepted"],
            "counters_match": all(r["match"] for r in kind_rows.values()),
            "crashes": len(failed) + len(stopped) + running.count(False),
            "views_changed": changed,
            "witness_changed": witness_changed,
            "events_during_campaign": len(events),
            "baseline_drops": baseline_drops,
            "duration_s": round(duration_s, 2),
            "sending_rate_per_s": round(totals["sent"] / sending) if sending else None,
        }
        summary["ok"] = (
            summary["accepted"] == 0
            and summary["counters_match"]
            and summary["crashes"] == 0
            and not changed
            and not witness_changed
            and not events
            and baseline_drops == 0
        )
        topology = self.topology
        return {
            "benchmark": "hostile",
            "version": __version__,
            "config": {
                "datagrams": datagrams,
                "rate": rate,
                "seed": seed,
                "nodes": topology.num_nodes,
                "groups": len(topology.by_index),
                "processes": self.processes,
                "listeners": [
                    {"name": x.name, "role": x.role, "address": f"{x.address[0]}:{x.address[1]}"}
                    for x in listeners
                ],  # fmt: skip
            },
            "summary": summary,
            "captured": captured,
            "kinds": kind_rows,
            "per_listener": {kind: phase["listeners"] for kind, phase in kinds.items()},
            "events": events[:20],
            "failed": failed[:20],
            "state_before": before,
        }


def _matches(entry: dict[str, Any], received: int) -> bool:
    """Whether a listener's drops account for what it received of one kind, reason by reason.
    With no kernel drop the drops must equal the prediction exactly; with some (loopback lost
    them before the socket) each reason may fall short, never exceed, and the total must be
    what arrived."""
    dropped: dict[str, int] = entry["dropped"]
    predicted: dict[str, int] = dict(entry["predicted"])
    if predicted.get(ACCEPTED):
        return False  # the campaign forged a datagram the cluster must take: its own bug
    if EITHER_REPLAY in predicted:  # the live window decides which of the two
        replays = sum(dropped.get(r, 0) for r in REPLAY_REASONS)
        dropped = {r: n for r, n in dropped.items() if r not in REPLAY_REASONS}
        if replays:
            dropped[EITHER_REPLAY] = replays
    if sum(dropped.values()) != received:
        return False
    if entry["kernel_dropped"] == 0:
        return dropped == {r: n for r, n in predicted.items() if n}
    return all(n <= predicted.get(r, 0) for r, n in dropped.items())


def _delta_sum(after: dict[int, int], before: dict[int, int]) -> int:
    return sum(n - before.get(port, 0) for port, n in after.items())


def run(
    datagrams: int = 20_000,
    *,
    nodes: int = 8,
    fanout: int = 5,
    rate: int = 10_000,
    base_port: int = 23_000,
    seed: int = 1,
    processes: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One campaign; the report is ``{"config", "summary", "kinds", ...}`` (see the module)."""
    if not 1 <= datagrams <= MAX_DATAGRAMS:
        raise BenchError(f"--datagrams {datagrams}: expected 1 to {MAX_DATAGRAMS:,}")
    if not 1 <= rate <= MAX_RATE:
        raise BenchError(f"--rate {rate}: expected 1 to {MAX_RATE:,} datagrams per second")
    campaign = Campaign(nodes, fanout, base_port, processes)
    report: dict[str, Any] | None = None
    try:
        report = campaign.run(datagrams, rate, seed, progress)
    finally:
        campaign.close()
        if report is not None and report["summary"]["ok"]:
            shutil.rmtree(campaign.directory, ignore_errors=True)
    if not report["summary"]["ok"]:  # the workers' logs and events, for a look
        report["state_dir"] = str(campaign.state_dir)
    return report


if __name__ == "__main__":  # pragma: no cover - a measuring aid
    print(json.dumps(run(), indent=2))
