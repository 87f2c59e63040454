"""Hosts whose clocks are days apart: hierclust across lab hosts with their own monotonic clocks.

Five lab hosts (:class:`~hierclust.runtime.netns.NetnsLab`), each its own network namespace and
time namespace, with monotonic clocks 0, 7 s, ~1.2, ~2.9 and ~35 days ahead of the box's (the
default offsets). Sixteen nodes, fan-out 4: four leaf groups of four under a root group of four
slots; the node of rank r runs on host r % 5, so every leaf group spans four clocks and the root's
slot holders sit on different clocks too.

What the protocol promises (docs/architecture.md, section 1) must not depend on the hosts agreeing
on time: a failure is learned by every survivor within the same bound as on one clock, and only
the victim's own group changes. One agent process per host, as `deploy --hosts` runs them; a
node is crashed with `hierclust kill` run on its host. Who learned what and when comes from the
event logs, each record's time taken back to this box's clock by its host's offset. Root only;
skipped with the reason where the lab cannot run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hierclust.codec import generate_keyring_file
from hierclust.runtime.deploy import collect, init_states
from hierclust.runtime.discover import pid_alive
from hierclust.runtime.netns import NetnsLab, unavailable
from hierclust.runtime.status import aggregate
from hierclust.topology import Topology, generate_document, load
from tests.runtime.conftest import FAST
from tests.runtime.netns_lab import (
    lease_holders,
    netns_lab,
    read_events,
    stop_processes,
    wait_until,
)

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
]

TAG = "hcc"  # namespaces hcc<pid>-...; test_netns.py uses hct
SUBNET = "10.201.0"  # test_netns.py uses 10.200.0
HOSTS = 5
NODES = 16
FANOUT = 4
BASE_PORT = 7100
NOTIFY_BOUND_S = 2.5
"""Every survivor learns of a failure within this of the kill: detection (suspect_after_ms +
confirm_ms) plus one hop per tier, with room for a busy box; the bound of the single-clock tests
and benchmarks. The same layout on one clock (every offset 0) measured 0.11-0.21 s for a leaf
(the crashed node's closed port answers probes with ICMP unreachable, which starts the probe at
once) and 0.50-0.56 s for a leader."""
SECOND_NS = 1_000_000_000


def host_of(rank: int) -> int:
    return rank % HOSTS


def write_topology(directory: Path, lab: NetnsLab) -> Path:
    """16 nodes, fan-out 4, the node of rank r at ``<subnet>.(r % 5 + 1)``, port 7100 + r. The
    generated root's witness is dropped: nothing here runs it, and each group of four keeps its
    quorum (three votes) through the one failure a test causes."""
    generate_keyring_file(directory / "lab.keyring")
    document: dict[str, Any] = generate_document(NODES, FANOUT, name="clocks")
    document["cluster"]["secret_file"] = "lab.keyring"
    document["group"]["clocks"].pop("tiebreaker", None)
    document["defaults"] = dict(FAST)
    document["addresses"] = {"host": lab.address(0), "base_port": BASE_PORT}
    document["node"] = {
        f"cn{r + 1:02d}": {"host": lab.address(host_of(r)), "port": BASE_PORT + r}
        for r in range(NODES)
    }
    path = directory / "clocks.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab(TAG, HOSTS, SUBNET) as lab:
        yield lab


def offset_ns(lab: NetnsLab, rank: int) -> int:
    return lab.clock_offset_s(host_of(rank)) * SECOND_NS


# -- one agent per host, like `deploy --hosts` -------------------------------------------------------
class Cluster:
    """The 16 nodes as five ``hierclust agent`` processes, one per host with that host's nodes
    and a state directory of its own (``state/<address>``), started on their hosts by this test."""

    def __init__(self, directory: Path, lab: NetnsLab) -> None:
        self.lab = lab
        self.directory = directory
        self.path = write_topology(directory, lab)
        self.topology: Topology = load(self.path)
        self.states = [directory / "state" / lab.address(h) for h in range(HOSTS)]
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        for host, state in enumerate(self.states):
            init_states(self.topology, state)
            nodeset = "cn[" + ",".join(f"{r + 1:02d}" for r in range(host, NODES, HOSTS)) + "]"
            argv = [sys.executable, "-m", "hierclust", "agent", "--topology", str(self.path)]
            argv += ["--node", nodeset, "--state-dir", str(state)]
            with open(self.directory / f"agent-{self.lab.address(host)}.log", "wb") as log:
                self.procs.append(
                    self.lab.popen(host, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                )

    def stop(self) -> None:
        stop_processes(self.procs)
        assert not any(pid_alive(p.pid) for p in self.procs)

    def nodes(self) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
        snaps: list[dict[str, Any]] = []
        errors: list[str] = []
        for state in self.states:
            found, failed = collect(state, timeout_s=2.0)
            snaps += found
            errors += failed
        nodes = {n["rank"]: n for s in snaps for n in s["nodes"]}
        return aggregate(self.topology, snaps, errors), nodes

    def leaders(self) -> dict[int, int]:
        """group -> the rank holding its leadership lease now (groups with exactly one)."""
        _, nodes = self.nodes()
        return lease_holders(nodes)

    def wait_settled(self) -> dict[int, int]:
        """Every node up, every group led, and the same leaders at two looks 0.5 s apart."""
        groups = len(self.topology.by_index)
        seen: list[dict[int, int]] = []

        def settled() -> bool:
            summary, _ = self.nodes()
            if summary["alive"] != NODES:
                return False
            leaders = self.leaders()
            seen.append(leaders)
            if len(leaders) == groups and len(seen) >= 2 and seen[-2] == leaders:
                return True
            time.sleep(0.4)
            return False

        wait_until(settled, 40, "16 agents on five clocks to elect every group")
        return seen[-1]

    def kill(self, rank: int) -> int:
        """``hierclust kill NODE`` on the victim's host (a crash: its socket closed, its timers
        dropped at once); the instant, brought back to this box's clock."""
        host = host_of(rank)
        argv = [sys.executable, "-m", "hierclust", "kill", self.topology.node_name(rank)]
        done = self.lab.run_on(host, [*argv, "--state-dir", str(self.states[host]), "--json"])
        assert done.returncode == 0, done.stderr + done.stdout
        return int(json.loads(done.stdout)["t_ns"]) - offset_ns(self.lab, rank)

    def events_since(self, t_ns: int) -> list[dict[str, Any]]:
        """Event records from ``t_ns`` on, each with ``at_ns``: its ``t_ns`` (the clock of the
        node's host) brought back to this box's clock by taking off the host's offset."""
        found = []
        for record in (r for state in self.states for r in read_events(state)):
            at_ns = int(record["t_ns"]) - offset_ns(self.lab, int(record["rank"]))
            if at_ns >= t_ns:
                found.append({**record, "at_ns": at_ns})
        return found

    def learned(self, victim: int, kill_ns: int) -> dict[int, float]:
        """rank -> seconds after the kill at which it learned of the victim's failure."""
        first: dict[int, float] = {}
        for r in self.events_since(kill_ns):
            notice = r.get("notice") or {}
            if (
                r["event"] == "NoticeLearned"
                and notice.get("kind") == "failed"
                and notice.get("node") == victim
            ):
                took = (r["at_ns"] - kill_ns) / SECOND_NS
                first[r["rank"]] = min(took, first.get(r["rank"], took))
        return first

    def wait_learned(self, victim: int, kill_ns: int, bound_s: float) -> dict[int, float]:
        """Poll until every survivor learned of the victim, or a little past ``bound_s``."""
        survivors = set(range(NODES)) - {victim}
        deadline = kill_ns + int((bound_s + 0.5) * SECOND_NS)
        learned = self.learned(victim, kill_ns)
        while set(learned) < survivors and time.monotonic_ns() < deadline:
            time.sleep(0.1)
            learned = self.learned(victim, kill_ns)
        return learned

    def clock_table(self) -> dict[str, int]:
        return {
            self.topology.node_name(r): self.lab.clock_offset_s(host_of(r)) for r in range(NODES)
        }


@pytest.fixture
def cluster(tmp_path: Path, lab: NetnsLab) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path, lab)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def assert_everyone_learned(
    cluster: Cluster, victim: int, learned: dict[int, float], bound_s: float
) -> None:
    names = cluster.topology.node_name
    survivors = set(range(NODES)) - {victim}
    late = {names(r): round(s, 3) for r, s in learned.items() if s > bound_s}
    never = sorted(names(r) for r in survivors - set(learned))
    detail = {
        "victim": names(victim),
        "learned_s": {names(r): round(s, 3) for r, s in sorted(learned.items())},
        "clock_offset_s": cluster.clock_table(),
    }
    print(json.dumps(detail))
    assert not never and not late, (
        f"{len(never)} of {len(survivors)} survivors never learned of {names(victim)}'s failure "
        f"within {bound_s} s (+0.5 s): {never}; late: {late}; {json.dumps(detail)}"
    )


def elections_since(cluster: Cluster, kill_ns: int) -> set[int]:
    """Groups in which some node started an election (a real vote) since the kill."""
    return {
        int(r["group"]) for r in cluster.events_since(kill_ns) if r["event"] == "ElectionStarted"
    }


# -- tests -----------------------------------------------------------------------------------------
def test_every_lab_host_runs_its_agents_on_its_own_clock(cluster: Cluster) -> None:
    """Each agent runs in its host's time namespace and its status snapshot's ``now_ns`` reads
    its host's clock: this box's clock plus the host's offset, so any two hosts differ by their
    offsets (0 to 35 days). The cluster still forms: every group is led."""
    cluster.wait_settled()
    lab = cluster.lab
    ahead_s: dict[str, float] = {}  # host -> its clock minus this box's, less the query's time
    for host, (proc, state) in enumerate(zip(cluster.procs, cluster.states, strict=True)):
        offset = lab.clock_offset_s(host)
        assert Path(f"/proc/{proc.pid}/timens_offsets").read_text().split() == [
            *("monotonic", str(offset), "0"),
            *("boottime", str(offset), "0"),
        ]
        before_ns = time.monotonic_ns()
        snaps, errors = collect(state, timeout_s=2.0)
        after_ns = time.monotonic_ns()
        assert not errors and [s["pid"] for s in snaps] == [proc.pid]
        now_ns = snaps[0]["now_ns"]
        # read between before and after, on a clock `offset` ahead of this box's
        assert before_ns + offset * SECOND_NS <= now_ns <= after_ns + offset * SECOND_NS
        ahead_s[lab.address(host)] = round((now_ns - before_ns) / SECOND_NS, 3)
    print(json.dumps({"clock_ahead_s": ahead_s}))


def test_leaf_kill_is_learned_everywhere_across_clocks_days_apart(cluster: Cluster) -> None:
    """Crash a node that leads nothing, in the leaf group whose leader (its detector) has the
    clock furthest behind: every survivor, whatever its clock, learns within the bound; no group
    holds an election and every leader stays."""
    leaders = cluster.wait_settled()
    topology = cluster.topology
    leaf = min(
        topology.leaves,
        key=lambda g: (cluster.lab.clock_offset_s(host_of(leaders[g.index])), g.index),
    )
    victim = max(r for r in leaf.ranks if r not in leaders.values())
    kill_ns = cluster.kill(victim)
    learned = cluster.wait_learned(victim, kill_ns, NOTIFY_BOUND_S)
    assert elections_since(cluster, kill_ns) == set()
    assert cluster.leaders() == leaders
    assert_everyone_learned(cluster, victim, learned, NOTIFY_BOUND_S)


def test_leader_kill_reelects_only_its_group_across_clocks_days_apart(cluster: Cluster) -> None:
    """Crash a node that leads a leaf group and holds its slot in the root group (not the root's
    leader): every survivor learns within the bound, the leaf group elects a new leader that takes
    the slot, and no other group elects or changes leader."""
    leaders = cluster.wait_settled()
    topology = cluster.topology
    root = topology.root.index
    leaf_leaders = {
        g.index: leaders[g.index] for g in topology.leaves if leaders[g.index] != leaders[root]
    }
    group, victim = max(leaf_leaders.items(), key=lambda item: item[1])
    kill_ns = cluster.kill(victim)
    learned = cluster.wait_learned(victim, kill_ns, NOTIFY_BOUND_S)

    def took_the_slot() -> bool:
        """A survivor leads the victim's group and sits in the root group, following its
        unchanged leader (a node joins the group above when it starts leading below)."""
        new = cluster.leaders().get(group)
        if new in (None, victim):
            return False
        _, nodes = cluster.nodes()
        seats = {g["group"]: g for g in nodes.get(new, {}).get("groups", [])}
        return root in seats and seats[root]["leader"] == leaders[root]

    wait_until(took_the_slot, 5, f"{topology.by_index[group].name}'s new leader in the root")
    after = cluster.leaders()
    assert after[group] in set(topology.by_index[group].ranks) - {victim}
    assert elections_since(cluster, kill_ns) == {group}
    assert {g: r for g, r in after.items() if g != group} == {
        g: r for g, r in leaders.items() if g != group
    }
    assert_everyone_learned(cluster, victim, learned, NOTIFY_BOUND_S)
