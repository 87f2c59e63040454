"""A site cut off on real processes: the seed company over lab hosts whose clocks are days apart.

The topology is ``topologies/seed.toml`` (scotland and england under uk, us, apac; the seed's tier
tuning, uk's witness and us's disk lease) with every node on a lab host
(:class:`~hierclust.runtime.netns.NetnsLab`: a network and a time namespace each): Scotland on
two hosts of its own, England, the US and APAC on one host each, and uk's witness on a sixth host,
a third site. One ``hierclust agent`` per node host and ``hierclust witness`` on the witness's
host, each started on its host by this test, with its host's clock.

Cutting Scotland's two hosts off from every other host (the witness's too) leaves uk's lease with
England (two of uk's three votes: England's slot and the witness), whoever led uk before. The
primary component (every node outside Scotland) must then hold every rank of Scotland
unreachable, while Scotland keeps its own leader and knows it is not in the primary component.
After the heal everyone holds everyone reachable again, and Scotland is back in the primary
component, within one uk election timeout and two heartbeats. Times come from the agents' event
logs and snapshots, each on its host's clock with the host's offset taken off (as in
``test_lab_clocks.py``). Root only; skipped with the reason where the lab cannot run.

The primary component must hold Scotland unreachable within the documented detection bound
(uk's suspect + confirm + election timeout + slot grace: 4.0 s with the seed's country tier).
uk's leader is usually in Scotland (the lowest rank stands first): then England first elects a
new uk leader after an election timeout, which dates Scotland's slot from when it last heard its
old leader, probes Scotland's members and empties the slot when none answers two rounds of probes
(at the latest when the slot's grace runs out; docs/operations.md, What a site cut looks like).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from ClusterShell.NodeSet import NodeSet

from hierclust.codec import generate_keyring_file
from hierclust.runtime.deploy import collect, init_states
from hierclust.runtime.discover import pid_alive
from hierclust.runtime.netns import NetnsLab, unavailable
from hierclust.runtime.status import aggregate
from hierclust.topology import Topology, load
from tests.runtime.netns_lab import (
    lease_holders,
    netns_lab,
    read_events,
    stop_processes,
    wait_until,
)

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
]

REPO = Path(__file__).resolve().parents[2]
TAG = "hcr"  # namespaces hcr<pid>-...; test_netns.py uses hct, test_lab_clocks.py hcc
SUBNET = "10.202.0"  # test_netns.py uses 10.200.0, test_lab_clocks.py 10.201.0
SITES = ("scotland-a", "scotland-b", "england", "us", "apac", "witness")
"""The lab hosts, in order: Scotland's two hosts, one host per other site, the witness's."""
OFFSETS_S = (0, 7, 100_000, 250_000, 3_000_000, 500_000)
"""Each host's clock ahead of the box's: Scotland's two hosts seconds apart, the rest days."""
SCOTLAND_HOSTS = (0, 1)
WITNESS_HOST = 5
BASE_PORT = 7000
WITNESS_PORT = 7990
SECOND_NS = 1_000_000_000


def site_host(topology: Topology, rank: int) -> int:
    """The lab host of the node of ``rank`` in the seed topology."""
    path = {g.name for g in topology.path(rank)}
    if "scotland" in path:
        scotland = topology.group("scotland")
        return 0 if rank - scotland.first_rank < 3 else 1  # sc[01-03], sc[04-05]
    for host, site in enumerate(SITES):
        if site in path:
            return host
    raise AssertionError(f"rank {rank}: no site")


def write_topology(directory: Path, lab: NetnsLab) -> Path:
    """The seed, each node at ``<its site's host>:7000 + rank``, uk's witness on its own host,
    us's disk lease beside the file, one keyring for every host."""
    seed = load(REPO / "topologies" / "seed.toml")
    document: dict[str, Any] = tomllib.loads((REPO / "topologies" / "seed.toml").read_text())
    generate_keyring_file(directory / "lab.keyring")
    document["cluster"]["secret_file"] = "lab.keyring"
    document["addresses"] = {"host": lab.address(2), "base_port": BASE_PORT}
    document["group"]["uk"]["tiebreaker"] = {
        "kind": "witness",
        "address": f"{lab.address(WITNESS_HOST)}:{WITNESS_PORT}",
    }
    document["group"]["us"]["tiebreaker"] = {"kind": "disk", "path": "us.lease"}
    document["node"] = {
        seed.node_name(r): {"host": lab.address(site_host(seed, r)), "port": BASE_PORT + r}
        for r in range(seed.num_nodes)
    }
    path = directory / "company.toml"
    path.write_text(tomli_w.dumps(document))
    return path


class Company:
    """The seed company as one ``hierclust agent`` per node host (``state/<address>``) and
    ``hierclust witness`` on the witness's host, all started on their hosts by this test."""

    def __init__(self, directory: Path, lab: NetnsLab) -> None:
        self.lab = lab
        self.directory = directory
        self.path = write_topology(directory, lab)
        self.topology: Topology = load(self.path)
        self.hosts = {r: site_host(self.topology, r) for r in range(self.topology.num_nodes)}
        self.node_hosts = sorted(set(self.hosts.values()))
        self.states = {h: directory / "state" / lab.address(h) for h in range(len(SITES))}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.scotland = set(self.topology.group("scotland").ranks)
        self.primary = set(range(self.topology.num_nodes)) - self.scotland

    def hierclust(self, host: int, *args: str) -> list[str]:
        return [sys.executable, "-m", "hierclust", *args, "--state-dir", str(self.states[host])]

    def start(self) -> None:
        witness = self.hierclust(WITNESS_HOST, "witness", "--topology", str(self.path))
        done = self.lab.run_on(WITNESS_HOST, [*witness, "--init"])
        assert done.returncode == 0, done.stderr + done.stdout
        self.popen(WITNESS_HOST, witness)
        for host in self.node_hosts:
            init_states(self.topology, self.states[host])
            names = [self.topology.node_name(r) for r, h in self.hosts.items() if h == host]
            nodeset = str(NodeSet.fromlist(names))
            self.popen(
                host, self.hierclust(host, "agent", "--topology", str(self.path), "--node", nodeset)
            )

    def popen(self, host: int, argv: list[str]) -> None:
        log = self.directory / f"{SITES[host]}.log"
        with open(log, "ab") as out:
            self.procs.append(
                self.lab.popen(host, argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
            )

    def stop(self) -> None:
        stop_processes(self.procs)
        assert not any(pid_alive(p.pid) for p in self.procs)

    def offset_ns(self, host: int) -> int:
        return self.lab.clock_offset_s(host) * SECOND_NS

    def snapshots(self) -> list[dict[str, Any]]:
        """Every agent's status snapshot, each with ``at_ns``: its ``now_ns`` (its host's clock)
        brought back to this box's clock."""
        found: list[dict[str, Any]] = []
        for host in self.node_hosts:
            snaps, _errors = collect(self.states[host], timeout_s=2.0)
            for snap in snaps:
                snap["at_ns"] = int(snap["now_ns"]) - self.offset_ns(host)
            found += snaps
        return found

    def nodes(self) -> dict[int, dict[str, Any]]:
        return {n["rank"]: {**n, "at_ns": s["at_ns"]} for s in self.snapshots() for n in s["nodes"]}

    def leaders(self, nodes: dict[int, dict[str, Any]]) -> dict[int, int]:
        """group -> the rank holding its lease now (groups with exactly one holder)."""
        return lease_holders(nodes)

    def wait_settled(self) -> dict[int, int]:
        """Every node up and in the primary component, every group led, the same leaders at two
        looks 0.5 s apart."""
        groups = len(self.topology.by_index)
        seen: list[dict[int, int]] = []

        def settled() -> bool:
            nodes = self.nodes()
            if len(nodes) < self.topology.num_nodes or not all(
                n.get("in_primary") for n in nodes.values()
            ):
                return False
            leaders = self.leaders(nodes)
            seen.append(leaders)
            if len(leaders) == groups and len(seen) >= 2 and seen[-2] == leaders:
                return True
            time.sleep(0.4)
            return False

        wait_until(settled, 60, "the company on six hosts to elect every group")
        return seen[-1]

    def events_since(self, t_ns: int, event: str) -> list[dict[str, Any]]:
        """Records of ``event`` from ``t_ns`` on, each with ``at_ns`` (its host's clock brought
        back to this box's)."""
        found = []
        for host in self.node_hosts:
            for record in read_events(self.states[host]):
                if record.get("event") != event:
                    continue
                at_ns = int(record["t_ns"]) - self.offset_ns(host)
                if at_ns >= t_ns:
                    found.append({**record, "at_ns": at_ns})
        return found

    def first_flip(self, t_ns: int, event: str, ranks: set[int]) -> dict[int, float]:
        """rank -> seconds after ``t_ns`` at which it first emitted ``event`` about a subtree
        holding every rank of ``ranks``."""
        first: dict[int, float] = {}
        low, high = min(ranks), max(ranks) + 1
        for r in self.events_since(t_ns, event):
            if r["first"] <= low and high <= r["first"] + r["count"]:
                took = (r["at_ns"] - t_ns) / SECOND_NS
                first[r["rank"]] = min(took, first.get(r["rank"], took))
        return first

    def cli(self, host: int, *args: str) -> dict[str, Any]:
        """``hierclust ARGS --json`` on ``host`` against its agent; the JSON it printed."""
        done = self.lab.run_on(host, [*self.hierclust(host, *args), "--json"])
        assert done.returncode == 0, done.stderr + done.stdout
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def name(self, rank: int) -> str:
        return self.topology.node_name(rank)


@pytest.fixture
def company(tmp_path: Path) -> Iterator[Company]:
    with netns_lab(TAG, len(SITES), SUBNET, OFFSETS_S) as lab:
        company = Company(tmp_path, lab)
        try:
            company.start()
            yield company
        finally:
            company.stop()


def detection_bound_ms(topology: Topology) -> int:
    """The documented bound (docs/architecture.md, Cut-off subtrees) for the primary component
    to hold a child of uk cut off: uk's suspect_after_ms + confirm_ms + election_timeout_ms +
    slot_grace_ms (4.0 s with the seed's country tier)."""
    uk = topology.group("uk").tuning
    return uk.suspect_after_ms + uk.confirm_ms + uk.election_timeout_ms + uk.slot_grace_ms


def heal_bound_ms(topology: Topology) -> int:
    """After the heal: the cut-off child's leader is found (Locate, once per scan) and takes its
    slot, and uk's leader says so at its next scan: one election timeout and two heartbeats."""
    uk = topology.group("uk").tuning
    return uk.election_timeout_ms + 2 * uk.heartbeat_ms


def test_a_cut_off_site_is_unreachable_for_the_primary_and_back_after_heal(
    company: Company,
) -> None:
    leaders = company.wait_settled()
    topology = company.topology
    lab = company.lab
    scotland, primary = company.scotland, company.primary
    sc = topology.group("scotland").index
    uk = topology.group("uk").index
    bound_ms = detection_bound_ms(topology)
    names = company.name
    report: dict[str, Any] = {
        "leaders_before": {topology.by_index[g].name: names(r) for g, r in leaders.items()},
        "clock_offset_s": {SITES[h]: lab.clock_offset_s(h) for h in range(len(SITES))},
        "detection_bound_ms": bound_ms,
        "heal_bound_ms": heal_bound_ms(topology),
    }

    cut_ns = time.monotonic_ns()
    lab.cut(SCOTLAND_HOSTS)
    deadline = cut_ns + (bound_ms + 3000) * 1_000_000
    learned: dict[int, float] = {}
    while time.monotonic_ns() < deadline:
        learned = company.first_flip(cut_ns, "SubtreeUnreachable", scotland)
        if set(learned) >= primary:
            break
        time.sleep(0.2)
    report["unreachable_s"] = {names(r): round(s, 3) for r, s in sorted(learned.items())}
    print(json.dumps(report))
    never = sorted(names(r) for r in primary - set(learned))
    assert not never, f"never held Scotland unreachable: {never}; {json.dumps(report)}"
    assert set(learned) == primary, "a Scotland node held its own site cut off"
    slowest_ms = max(learned.values()) * 1000
    assert slowest_ms <= bound_ms, (
        f"Scotland held unreachable after {slowest_ms:.0f} ms, past the bound of {bound_ms} ms; "
        f"{json.dumps(report)}"
    )

    # Every node of the primary component is in it within the same bound. (The subtree notice
    # floods at once; a member hears that its path to the root is primary again from its
    # leader's next ack, a heartbeat per tier, so it may come a moment after the notice.)
    nodes = company.nodes()
    while not all(nodes[r]["in_primary"] for r in primary):
        assert time.monotonic_ns() < cut_ns + bound_ms * 1_000_000, sorted(
            names(r) for r in primary if not nodes[r]["in_primary"]
        )
        time.sleep(0.1)
        nodes = company.nodes()
    report["all_primary_s"] = round((time.monotonic_ns() - cut_ns) / 1e9, 3)
    # Every node of the primary component holds all of Scotland unreachable, and nothing else;
    # England kept uk (with the witness), Scotland kept its own leader.
    for r in primary:
        assert nodes[r]["in_primary"], names(r)
        held = {x for _g, first, n in nodes[r]["unreachable"] for x in range(first, first + n)}
        assert held == scotland, (names(r), nodes[r]["unreachable"])
        assert [g for g, _f, _n in nodes[r]["unreachable"]] == [sc]
    cut_leaders = company.leaders(nodes)
    report["leaders_cut"] = {topology.by_index[g].name: names(r) for g, r in cut_leaders.items()}
    assert cut_leaders.get(uk) in primary, "uk's lease stays with England"
    assert cut_leaders.get(sc) in scotland, "Scotland keeps its local leader"
    assert not any(nodes[r]["in_primary"] for r in scotland)
    summary = aggregate(topology, company.snapshots())
    assert sorted(summary["unreachable_nodes"]) == sorted(names(r) for r in scotland)
    assert summary["unreachable_groups"] == ["scotland"] and summary["alive"] == len(primary)
    by_group = {d["name"]: d for d in summary["group_details"]}
    assert by_group["scotland"]["leader_state"] == "unreachable"
    assert not by_group["scotland"]["led"], "an unreachable leader is not shown leading"

    # The same through the command line, on each site's own host: every site outside Scotland
    # sees all of Scotland unreachable; every Scotland node says it is not in the primary.
    for host in (2, 3, 4):
        name = names(min(r for r, h in company.hosts.items() if h == host))
        seen = company.cli(host, "members", "--from", name)
        assert seen["from"] == name
        states = {row["rank"]: row["state"] for row in seen["members"]}
        assert {r for r, s in states.items() if s == "unreachable"} == scotland, (name, states)
        assert {s for r, s in states.items() if r not in scotland} == {"alive"}, (name, states)
    for r in sorted(scotland):
        answer = company.cli(company.hosts[r], "quorum", "--from", names(r))
        assert answer["in_primary"] is False, (names(r), answer)
        assert answer["group_quorum"]["scotland"]["quorate"], (names(r), answer)

    heal_ns = time.monotonic_ns()
    lab.heal()
    back: dict[int, float] = {}  # Scotland rank -> seconds to its first snapshot in the primary
    deadline = heal_ns + (heal_bound_ms(topology) + 5000) * 1_000_000
    while time.monotonic_ns() < deadline:
        nodes = company.nodes()
        for r in scotland:
            if r not in back and nodes[r]["in_primary"]:
                back[r] = (nodes[r]["at_ns"] - heal_ns) / SECOND_NS
        if len(back) == len(scotland) and not any(n["unreachable"] for n in nodes.values()):
            break
        time.sleep(0.1)
    reachable = company.first_flip(heal_ns, "SubtreeReachable", scotland)
    report["reachable_s"] = {names(r): round(s, 3) for r, s in sorted(reachable.items())}
    report["primary_again_s"] = {names(r): round(s, 3) for r, s in sorted(back.items())}
    report["leaders_after"] = {
        topology.by_index[g].name: names(r) for g, r in company.leaders(nodes).items()
    }
    print(json.dumps(report))
    still = {names(r): n["unreachable"] for r, n in nodes.items() if n["unreachable"]}
    assert not still, f"still held cut off after the heal: {still}; {json.dumps(report)}"
    assert set(reachable) >= primary, json.dumps(report)
    assert len(back) == len(scotland), f"Scotland not back in the primary: {json.dumps(report)}"
    heal_s = heal_bound_ms(topology) / 1000
    assert max(reachable.values()) <= heal_s, json.dumps(report)
    assert max(back.values()) <= heal_s, json.dumps(report)
    assert all(n["in_primary"] for n in nodes.values())
    for host in (0, 2):  # one view from each side: nobody unreachable any more
        name = names(min(r for r, h in company.hosts.items() if h == host))
        seen = company.cli(host, "members", "--from", name)
        assert not [row["name"] for row in seen["members"] if row["state"] == "unreachable"]
