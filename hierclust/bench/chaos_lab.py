"""The chaos campaign on real processes: lab hosts, agents, the nemesis, the history.

One :class:`~hierclust.runtime.netns.NetnsLab` host per share of a site (its own network and
time namespace, clocks days apart), one ``hierclust agent`` process per host running that
host's nodes, and ``hierclust witness`` on a host of its own. Every agent runs with
``HIERCLUST_LOG_LEASES=1`` (every lease report in its event log, for the checker) and
``HIERCLUST_WALL_OFFSET_FILE`` pointing at its host's wall-clock file (each host starts with an
NTP-grade error; a ``wall-step`` fault rewrites it: :mod:`hierclust.runtime.wallclock`).

The runner carries out :func:`hierclust.bench.chaos_plan.plan`'s faults one at a time, writes
down what it did on this box's monotonic clock, and after each fault waits (polling status
snapshots) until the cluster is whole again: every node running and in the primary component,
every group led by exactly one lease holder that all its members follow, no subtree held cut off,
no live node held failed. Failing that within the settle bound is a liveness failure. At the end
it stops everything, reads every event log (each host's instants brought back to this box's
clock with the host's known offset) and hands the history to :mod:`hierclust.bench.chaos_check`.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import tomli_w
from ClusterShell.NodeSet import NodeSet

from hierclust.bench.chaos_check import NS, History, Model, check, lease_figures
from hierclust.bench.chaos_plan import Fault, GroupInfo, Layout, initial_wall_offsets_ms, plan
from hierclust.bench.chaos_plan import topology_document as document
from hierclust.codec import generate_keyring_file
from hierclust.core.timeouts import MS
from hierclust.runtime.control import ControlError, request
from hierclust.runtime.deploy import collect, control_sockets, init_states
from hierclust.runtime.netns import NetnsLab, run
from hierclust.sim.simulator import primary_window_ns
from hierclust.topology import Topology, load

Progress = Callable[[str, float | None, float | None], None]
ALLOWANCE_MS = 1000
"""Added to every derived bound: retransmits and scheduling on a shared, loaded 2-core box."""
STARTUP_MS = 5000
"""A restarted agent process's start (Python imports, boot) on a loaded box."""


def bounds(topology: Topology) -> dict[str, int]:
    """The liveness bounds (ms), from the tuning. ``detect``: the longest path's sum, per group
    on it, of suspect + confirm + election timeout + slot grace (a failure cascades up at most
    one election and one slot grace per tier), plus :data:`ALLOWANCE_MS`. ``settle``: an agent's
    start, the quarantine of a node that lost its state (2 election timeouts + a lease) and the
    detection bound again. ``primary_window``: per tier of the longest path, a lease, a
    heartbeat and the drift margin (how long a node may go on believing a lease it heard)."""
    detect = quarantine = 0
    for rank in range(topology.num_nodes):
        path = topology.path(rank)
        t = [g.tuning for g in path]
        detect = max(
            detect,
            sum(
                x.suspect_after_ms + x.confirm_ms + x.election_timeout_ms + x.slot_grace_ms
                for x in t
            ),
        )
        quarantine = max(quarantine, max(2 * x.election_timeout_ms + x.lease_ms for x in t))
    detect += ALLOWANCE_MS
    return {
        "detect_ms": detect,
        "settle_ms": STARTUP_MS + quarantine + detect,
        "primary_window_ms": primary_window_ns(topology) // MS,  # (the simulator's window)
    }


def ancestors_bound_ms(topology: Topology, name: str) -> int:
    """The bound for the primary component to hold subtree ``name`` cut off: per group above
    it, suspect + confirm + election timeout + slot grace; plus :data:`ALLOWANCE_MS`."""
    total = 0
    group = topology.group(name)
    while group.parent is not None:
        group = topology.group(group.parent)
        x = group.tuning
        total += x.suspect_after_ms + x.confirm_ms + x.election_timeout_ms + x.slot_grace_ms
    return total + ALLOWANCE_MS


class ChaosLab:
    """The lab, its processes, and what was done to them."""

    def __init__(self, lay: Layout, seed: int, directory: Path, prefix: str, subnet: str) -> None:
        self.lay = lay
        self.seed = seed
        self.directory = directory
        self.lab = NetnsLab(prefix, lay.hosts, subnet)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.expected_exit: set[int] = set()
        self.paused: set[int] = set()
        self.deaths: dict[int, list[int]] = {}
        self.cuts: list[tuple[int, frozenset[tuple[int, int]]]] = []
        self.crashes: list[dict[str, Any]] = []
        self.wall_ms = initial_wall_offsets_ms(seed, lay.hosts)
        self.start_ns = 0
        self.topology: Topology | None = None
        self.path = directory / "chaos.toml"

    # -- set-up and processes ---------------------------------------------------------------
    def setup(self) -> Topology:
        self.lab.setup()
        nft = "add chain bridge hclab loss; add rule bridge hclab forward jump loss"
        for command in nft.split("; "):
            run("ip", "netns", "exec", self.lab.bridge_ns, "nft", command)
        generate_keyring_file(self.directory / "lab.keyring")
        self.path.write_text(tomli_w.dumps(document(self.lay, self.lab.addresses)))
        topology = self.topology = load(self.path)
        for host in range(self.lay.hosts):
            self.state(host).mkdir(parents=True, exist_ok=True)
            self.write_wall(host)
            if host != self.lay.witness_host:
                init_states(topology, self.state(host))
        witness = self.hierclust(self.lay.witness_host, "witness", "--topology", str(self.path))
        done = self.lab.run_on(self.lay.witness_host, [*witness, "--init"], timeout_s=60)
        if done.returncode != 0:
            raise RuntimeError(f"witness --init: {done.stderr.strip() or done.stdout.strip()}")
        for host in range(self.lay.hosts):
            self.start(host)
        return topology

    def state(self, host: int) -> Path:
        return self.directory / "state" / self.lab.address(host)

    def offset_ns(self, host: int) -> int:
        return self.lab.clock_offset_s(host) * NS

    def write_wall(self, host: int) -> None:
        path = self.directory / f"wall-{host}.ns"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(f"{self.wall_ms[host] * 1_000_000}\n")
        os.replace(tmp, path)

    def hierclust(self, host: int, *args: str) -> list[str]:
        return [sys.executable, "-m", "hierclust", *args, "--state-dir", str(self.state(host))]

    def ranks_of(self, host: int) -> list[int]:
        assert self.topology is not None
        return [r for r in range(self.topology.num_nodes) if self.rank_host[r] == host]

    @property
    def rank_host(self) -> dict[int, int]:
        assert self.topology is not None
        where = {a: h for h, a in enumerate(self.lab.addresses)}
        found = {}
        for r in range(self.topology.num_nodes):
            address = self.topology.address(r)
            assert address is not None
            found[r] = where[address.host]
        return found

    def start(self, host: int) -> None:
        """Start host ``host``'s agent (or the witness), its output appended to its log."""
        assert self.topology is not None
        if host == self.lay.witness_host:
            argv = self.hierclust(host, "witness", "--topology", str(self.path))
        else:
            names = [self.topology.node_name(r) for r in self.ranks_of(host)]
            nodeset = str(NodeSet.fromlist(names))
            argv = self.hierclust(host, "agent", "--topology", str(self.path), "--node", nodeset)
        env = {
            **os.environ,
            "HIERCLUST_LOG_LEASES": "1",
            "HIERCLUST_WALL_OFFSET_FILE": str(self.directory / f"wall-{host}.ns"),
        }
        with open(self.directory / f"host-{host}.log", "ab") as log:
            self.procs[host] = self.lab.popen(
                host, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env
            )
        self.expected_exit.discard(host)

    def kill9(self, host: int) -> int:
        proc = self.procs[host]
        self.expected_exit.add(host)
        t = time.monotonic_ns()
        if host in self.paused:
            self.resume(host)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self.deaths.setdefault(host, []).append(t)
        return t

    def pause(self, host: int) -> None:
        self.procs[host].send_signal(signal.SIGSTOP)
        self.paused.add(host)

    def resume(self, host: int) -> None:
        self.procs[host].send_signal(signal.SIGCONT)
        self.paused.discard(host)

    def watch(self) -> None:
        """An agent or the witness that exited without being killed is a crash: record it
        (with its log's tail) and start it again so the campaign goes on."""
        for host, proc in list(self.procs.items()):
            if proc.poll() is not None and host not in self.expected_exit:
                log = (self.directory / f"host-{host}.log").read_text(errors="replace")
                self.crashes.append(
                    {
                        "kind": "process-exit",
                        "t_s": round((time.monotonic_ns() - self.start_ns) / NS, 3),
                        "detail": f"host {host}'s process exited with {proc.returncode}",
                        "host": host,
                        "log_tail": log[-2000:],
                    }
                )
                self.start(host)

    def stop(self) -> None:
        """SIGTERM every process (SIGCONT first), wait, SIGKILL what is left: all by PID."""
        for host in list(self.paused):
            self.resume(host)
        for host, proc in self.procs.items():
            self.expected_exit.add(host)
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def teardown(self) -> dict[str, list[int]]:
        return self.lab.teardown()

    # -- observing --------------------------------------------------------------------------
    def snapshots(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Every running agent's status snapshot, asked all at once; and the errors of those
        that did not answer."""
        hosts = [
            h
            for h in range(self.lay.node_hosts)
            if h not in self.paused and self.procs[h].poll() is None
        ]
        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            answers = list(pool.map(lambda h: collect(self.state(h), timeout_s=5.0), hosts))
        found = [snap for snaps, _ in answers for snap in snaps]
        errors = [e for _, errs in answers for e in errs]
        return found, errors

    def whole(self) -> list[str]:
        """What keeps the cluster from being whole (empty when it is): see the module doc."""
        assert self.topology is not None
        topology = self.topology
        snaps, errors = self.snapshots()
        nodes = {n["rank"]: n for s in snaps for n in s["nodes"]}
        problems: list[str] = []
        down = [r for r in range(topology.num_nodes) if not nodes.get(r, {}).get("groups")]
        if down:
            names = str(NodeSet.fromlist([topology.node_name(r) for r in down]))
            problems.append(f"{len(down)} nodes not running or not answering ({names})")
            problems += errors
            return problems
        out = [r for r, n in nodes.items() if not n.get("in_primary")]
        if out:
            problems.append(f"{len(out)} nodes not in the primary component")
        cut = [r for r, n in nodes.items() if n.get("unreachable")]
        if cut:
            problems.append(f"{len(cut)} nodes hold a subtree unreachable")
        incs = {r: n["incarnation"] for r, n in nodes.items()}
        wrong = [r for r, n in nodes.items() if any(inc >= incs[f] for f, inc, _ in n["failed"])]
        if wrong:
            problems.append(f"{len(wrong)} nodes hold a live node failed")
        for group in topology.by_index:
            holders = {
                r
                for r, n in nodes.items()
                for g in n["groups"]
                if g["group"] == group.index and g["leading"] and g["lease"]
            }
            if len(holders) != 1:
                problems.append(f"group {group.name}: {len(holders)} lease holders")
                continue
            (leader,) = holders
            followers = {
                g["leader"]
                for n in nodes.values()
                for g in n["groups"]
                if g["group"] == group.index
            }
            if followers != {leader}:
                problems.append(f"group {group.name}: members follow {sorted(map(str, followers))}")
        return problems

    def leader_of(self, group: int) -> int | None:
        holders = []
        for host in range(self.lay.node_hosts):
            if host in self.paused or self.procs[host].poll() is not None:
                continue
            for path in control_sockets(self.state(host)):
                try:
                    answer = request(path, {"op": "leaders"}, 2.0)
                except ControlError:
                    continue
                holders += [r for r, g in answer.get("leading", []) if g == group]
        return holders[0] if len(holders) == 1 else None

    def control(self, rank: int, payload: dict[str, Any]) -> dict[str, Any]:
        for path in control_sockets(self.state(self.rank_host[rank])):
            return request(path, payload, 10.0)
        raise ControlError(f"no control socket for rank {rank}")

    def history(self) -> list[dict[str, Any]]:
        """Every event-log record of every host, with instants on this box's clock."""
        records: list[dict[str, Any]] = []
        for host in range(self.lay.hosts):
            offset = self.offset_ns(host)
            for path in sorted(self.state(host).glob("events-*.jsonl")):
                for line in path.read_text(errors="replace").splitlines():
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue  # a line cut short by a kill -9
                    record["host"] = host
                    record["at_ns"] = int(record["t_ns"]) - offset
                    if record.get("until_ns") is not None:
                        record["until_at_ns"] = int(record["until_ns"]) - offset
                    records.append(record)
        return records


class Campaign:
    """Carries out a schedule on a :class:`ChaosLab` and records each fault."""

    def __init__(self, lab: ChaosLab, topology: Topology, progress: Progress) -> None:
        self.lab = lab
        self.topology = topology
        self.progress = progress
        self.bounds = bounds(topology)
        self.records: list[dict[str, Any]] = []
        self.settle: list[float] = []
        self.liveness: list[dict[str, Any]] = []

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(0.25, left))
            self.lab.watch()

    def now_s(self) -> float:
        return (time.monotonic_ns() - self.lab.start_ns) / NS

    def wait_whole(self, timeout_s: float) -> tuple[float | None, list[str]]:
        start = time.monotonic()
        problems: list[str] = ["not looked yet"]
        while time.monotonic() - start < timeout_s:
            self.lab.watch()
            problems = self.lab.whole()
            if not problems:
                return time.monotonic() - start, []
            time.sleep(0.5)
        return None, problems

    def run_fault(self, fault: Fault) -> dict[str, Any]:
        lab, lay, topo = self.lab, self.lab.lay, self.topology
        p = fault.params
        record: dict[str, Any] = {"index": fault.index, "kind": fault.kind, "params": dict(p)}
        record["start_ns"] = time.monotonic_ns()
        if fault.kind.startswith("cut-"):
            side = set(p["side"])
            if fault.kind == "cut-one-way":
                pairs = [(a, b) for a in sorted(side) for b in p["other"]]
                lab.lab.cut_pairs(pairs)
            else:
                others = [h for h in range(lay.hosts) if h not in side]
                pairs = [(a, b) for a in sorted(side) for b in others]
                pairs += [(b, a) for a, b in pairs]
                lab.lab.cut(side)
            # noted once the cut is surely in force, and the heal before it starts: the history
            # holds hosts apart only while they surely were
            lab.cuts.append((time.monotonic_ns(), frozenset(pairs)))
            record["faulted_ranks"] = [r for r, h in lab.rank_host.items() if h in side]
            if fault.kind == "cut-site":
                group = topo.group(p["subtree"])
                record["subtree"] = {
                    "name": group.name,
                    "first": group.first_rank,
                    "count": group.end_rank - group.first_rank,
                }
                record["bound_ns"] = ancestors_bound_ms(topo, group.name) * 1_000_000
            self.sleep(fault.duration_s)
            lab.cuts.append((time.monotonic_ns(), frozenset()))
            lab.lab.heal()
        elif fault.kind == "loss":
            rule = f"ether type ip numgen random mod 1000 < {p['percent'] * 10} drop"
            nft = ["ip", "netns", "exec", lab.lab.bridge_ns, "nft"]
            run(*nft, f"add rule bridge hclab loss {rule}")
            hold_ms = p.get("delay_ms")  # (none in schedules planned before delays were drawn)
            if hold_ms:
                lab.lab.delay(hold_ms, p["jitter_ms"], seed=lab.seed * 1000 + fault.index)
            self.sleep(fault.duration_s)
            run(*nft, "flush chain bridge hclab loss")
            if hold_ms:
                record["held"] = lab.lab.undelay()
        elif fault.kind == "kill-leader":
            group = topo.group(p["group"])
            victim = lab.leader_of(group.index)
            record["victim"] = victim
            if victim is not None:
                kill_ns = time.monotonic_ns()
                lab.control(victim, {"op": "kill", "rank": victim})
                self.sleep(fault.duration_s)
                back_ns = time.monotonic_ns()
                lab.control(victim, {"op": "restart", "rank": victim})
                record["victims"] = [[victim, kill_ns, back_ns]]
                record["faulted_ranks"] = [victim]
                record["bound_ns"] = self.bounds["detect_ms"] * 1_000_000
        elif fault.kind == "crash-host":
            host = p["host"]
            kill_ns = lab.kill9(host)
            self.sleep(fault.duration_s)
            if p["wipe"]:
                shutil.rmtree(lab.state(host) / "nodes", ignore_errors=True)
            back_ns = time.monotonic_ns()
            lab.start(host)
            ranks = lab.ranks_of(host)
            record["victims"] = [[r, kill_ns, back_ns] for r in ranks]
            record["faulted_ranks"] = ranks
            record["bound_ns"] = self.bounds["detect_ms"] * 1_000_000
        elif fault.kind == "pause-host":
            host = p["host"]
            lab.pause(host)
            record["faulted_ranks"] = lab.ranks_of(host)
            self.sleep(fault.duration_s)
            lab.resume(host)
        elif fault.kind == "restart-witness":
            host = p["host"]
            lab.kill9(host)
            self.sleep(fault.duration_s)
            lab.start(host)
        elif fault.kind == "wall-step":
            host = p["host"]
            lab.wall_ms[host] += p["step_ms"]
            lab.write_wall(host)
            self.sleep(fault.duration_s)
            lab.wall_ms[host] -= p["step_ms"]  # corrected, as NTP would step it back
            lab.write_wall(host)
        record["end_ns"] = time.monotonic_ns()
        took, problems = self.wait_whole(self.bounds["settle_ms"] / 1000)
        record["settle_s"] = None if took is None else round(took, 3)
        if took is None:
            self.liveness.append(
                {
                    "kind": "not-healed",
                    "t_s": round(self.now_s(), 3),
                    "fault": fault.index,
                    "detail": f"fault #{fault.index} ({fault.kind}): not whole "
                    f"{self.bounds['settle_ms'] / 1000:.1f} s after it ended: "
                    + "; ".join(problems[:6]),
                }
            )
        else:
            self.settle.append(took)
        self.sleep(fault.quiet_s)
        return record

    def run(self, schedule: list[Fault], seconds: float) -> None:
        for fault in schedule:
            if self.now_s() >= seconds:
                break
            self.progress(fault.describe(), min(self.now_s(), seconds), seconds)
            self.records.append(self.run_fault(fault))


RECORD = "lab-record.json"
"""What the lab did (faults, kills, cuts: box-clock instants) and the checker's model, kept
beside the logs so the history can be checked again (:func:`load_record`)."""


def save_record(directory: Path, history: History, model: Model) -> None:
    record = {
        "faults": history.faults,
        "deaths": {str(h): ts for h, ts in history.deaths.items()},
        "cuts": [[t, sorted(pairs)] for t, pairs in history.cuts],
        "start_ns": history.start_ns,
        "end_ns": history.end_ns,
        "rank_host": {str(r): h for r, h in model.rank_host.items()},
        "node_hosts": model.node_hosts,
        "primary_window_ns": model.primary_window_ns,
    }
    (directory / RECORD).write_text(json.dumps(record))


def load_record(directory: Path, records: list[dict[str, Any]]) -> tuple[History, Model]:
    """The history and model of a kept campaign directory (its logs as ``records``, read by
    :meth:`ChaosLab.history`)."""
    saved = json.loads((directory / RECORD).read_text())
    history = History(
        records=records,
        faults=saved["faults"],
        deaths={int(h): ts for h, ts in saved["deaths"].items()},
        cuts=[(t, frozenset((a, b) for a, b in pairs)) for t, pairs in saved["cuts"]],
        start_ns=saved["start_ns"],
        end_ns=saved["end_ns"],
    )
    model = Model(
        rank_host={int(r): h for r, h in saved["rank_host"].items()},
        node_hosts=saved["node_hosts"],
        primary_window_ns=saved["primary_window_ns"],
    )
    return history, model


def observed(history: list[dict[str, Any]], faults: list[dict[str, Any]]) -> dict[str, Any]:
    """Evidence that the faults happened: how many of each kind ran; per killed node, whether
    some node heard of it during the fault (a failure notice, or a subtree holding it cut off:
    a kill that takes a leaf group's quorum leaves the rest of that group unable to declare
    anything), and the slowest first such notice per victim; for site cuts, how many nodes held
    the subtree unreachable."""
    learned: dict[int, list[int]] = {}
    cut_seen: list[tuple[int, int, int, int]] = []
    for r in history:
        if r.get("event") == "NoticeLearned" and r["notice"].get("kind") == "failed":
            learned.setdefault(r["notice"]["node"], []).append(r["at_ns"])
        elif r.get("event") == "SubtreeUnreachable":
            cut_seen.append((r["at_ns"], r["first"], r["count"], r["rank"]))
    kinds: dict[str, int] = {}
    victims = noticed = cut_holders = 0
    first_s: list[float] = []
    for f in faults:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        for victim, kill_ns, back_ns in f.get("victims", []):
            victims += 1
            times = [t for t in learned.get(victim, []) if kill_ns <= t <= back_ns]
            times += [
                t for t, a, n, _r in cut_seen if kill_ns <= t <= back_ns and a <= victim < a + n
            ]
            if times:
                noticed += 1
                first_s.append((min(times) - kill_ns) / NS)
        sub = f.get("subtree")
        if sub is not None:
            cut_holders += len(
                {
                    rank
                    for t, a, n, rank in cut_seen
                    if f["start_ns"] <= t <= f["end_ns"] and a <= sub["first"] < a + n
                }
            )
    first_s.sort()
    return {
        "faults_by_kind": kinds,
        "victims": victims,
        "victims_noticed": noticed,
        "first_notice_p50_s": round(first_s[len(first_s) // 2], 3) if first_s else None,
        "first_notice_max_s": round(first_s[-1], 3) if first_s else None,
        "site_cut_unreachable_held": cut_holders,
    }


def campaign(
    minutes: float,
    seed: int,
    lay: Layout,
    directory: Path,
    prefix: str,
    subnet: str,
    progress: Progress,
    show: Callable[[list[Fault]], None] | None = None,
) -> dict[str, Any]:
    """Set the lab up, run the seeded schedule for ``minutes`` of nemesis time (``show`` gets
    it first), check the history; the report (see ``hierclust chaos --help``). Everything
    started is stopped and every namespace deleted on the way out, whatever happens."""
    lab = ChaosLab(lay, seed, directory, prefix, subnet)
    try:
        progress("setting up the lab", None, None)
        topology = lab.setup()
        limits = bounds(topology)
        groups = [GroupInfo(g.name, g.tier) for g in topology.by_index]
        lease_ms = max(g.tuning.lease_ms for g in topology.by_index)
        schedule = plan(seed, minutes, lay, groups, lease_ms, limits["detect_ms"] / 1000)
        if show is not None:
            show(schedule)
        run = Campaign(lab, topology, progress)
        lab.start_ns = time.monotonic_ns()
        progress("waiting for every group to be led", None, None)
        took, problems = run.wait_whole(60.0)
        if took is None:
            raise RuntimeError("the lab cluster did not form in 60 s: " + "; ".join(problems))
        lab.start_ns = time.monotonic_ns()
        run.run(schedule, minutes * 60.0)
        end_ns = time.monotonic_ns()
        lab.stop()
        records = lab.history()
        history = History(
            records=records,
            faults=run.records,
            deaths=lab.deaths,
            cuts=lab.cuts,
            start_ns=lab.start_ns,
            end_ns=end_ns,
        )
        model = Model(
            rank_host=lab.rank_host,
            node_hosts=list(range(lay.node_hosts)),
            primary_window_ns=limits["primary_window_ms"] * 1_000_000,
        )
        save_record(directory, history, model)
        found = check(history, model)
        figures = lease_figures(history, model)
    finally:
        lab.stop()
        left = lab.teardown()
    if left:
        raise RuntimeError(f"processes left in the lab's namespaces: {left}")
    faults = [
        {
            **{k: v for k, v in f.items() if not k.endswith("_ns") and k != "victims"},
            "start_s": round((f["start_ns"] - lab.start_ns) / NS, 3),
            "end_s": round((f["end_ns"] - lab.start_ns) / NS, 3),
            "victims": [r for r, _k, _b in f.get("victims", [])],
        }
        for f in run.records
    ]
    settle = sorted(run.settle)
    report = {
        "minutes": minutes,
        "seed": seed,
        "nemesis_seconds": round((end_ns - lab.start_ns) / NS, 1),
        "nemesis_events": len(run.records),
        "violations": found["violations"],
        "liveness_failures": run.liveness + found["liveness_failures"],
        "crashes": lab.crashes + found["crashes"],
        "nodes": topology.num_nodes,
        "hosts": lay.hosts,
        "sites": lay.sites,
        "nodes_per_site": lay.nodes_per_site,
        "hosts_per_site": lay.hosts_per_site,
        "clock_offsets_s": [lab.lab.clock_offset_s(h) for h in range(lay.hosts)],
        "bounds_ms": limits,
        "summary": {
            "records": len(records),
            **figures,
            "settle_max_s": round(settle[-1], 3) if settle else None,
            "settle_p50_s": round(settle[len(settle) // 2], 3) if settle else None,
            **observed(records, run.records),
        },
        "schedule": [f.as_json() for f in schedule],
        "faults": faults,
    }
    report["reproduce"] = reproduce(minutes, seed, lay)
    return report


def reproduce(minutes: float, seed: int, lay: Layout) -> str:
    """The command line that runs the same campaign again (same seed, same sizes)."""
    return shlex.join(
        [
            "hierclust",
            "chaos",
            "--minutes",
            f"{minutes:g}",
            "--seed",
            str(seed),
            "--sites",
            str(lay.sites),
            "--nodes-per-site",
            str(lay.nodes_per_site),
            "--hosts-per-site",
            str(lay.hosts_per_site),
        ]
    )
