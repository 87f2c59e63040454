"""The chaos campaign's lab layout and its nemesis schedule: pure, seeded, printable.

Nothing here touches a process or a clock: :func:`layout` says which sites, groups, lab hosts and
nodes a campaign has, :func:`topology_document` turns it into a topology file, and :func:`plan`
draws the whole fault schedule from ``random.Random(seed)``, so the same seed and sizes always
give the same schedule (what a failing run's reproduction command relies on). The lab runner
(:mod:`hierclust.bench.chaos_lab`) carries the schedule out and resolves what can only be known
live (which node leads a group when its leader is to be killed).

The sites nest like a company's: the first two sites (scotland, england) sit under ``uk``, the
others directly under the root ``company``; a group with an even number of votes gets a witness
on a host of its own (the witness host, never cut off with a site). Each site's nodes are spread
over ``hosts_per_site`` lab hosts round robin, so killing one host's agent process (a host
crash) takes a share of every leaf group of the site, not a whole group.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, field
from typing import Any

SITE_NAMES = ("scotland", "england", "us", "apac", "emea", "latam", "india", "nordic")
PREFIXES = ("sc", "en", "us", "ap", "em", "la", "in", "no")
BASE_PORT = 7000
WITNESS_PORT = 7990
LEAF_FANOUT = 9
"""Leaf group size of a site (a site of 25 nodes has three leaf groups of 9, 8 and 8)."""

KINDS = (
    "cut-site",
    "cut-minority",
    "cut-majority",
    "cut-one-way",
    "loss",
    "kill-leader",
    "crash-host",
    "pause-host",
    "restart-witness",
    "wall-step",
)
"""Every fault the nemesis draws from, each with equal weight."""

DELAYS_MS = (10, 40, 100)
"""One-way delays a ``loss`` fault holds the frames it lets through for (plus up to a quarter
more, uniform): a rack's switch, a site's link, an overloaded WAN."""


@dataclass(frozen=True)
class Layout:
    """The sizes of a campaign and what follows from them."""

    sites: int
    nodes_per_site: int
    hosts_per_site: int

    @property
    def site_names(self) -> tuple[str, ...]:
        return SITE_NAMES[: self.sites]

    @property
    def node_hosts(self) -> int:
        return self.sites * self.hosts_per_site

    @property
    def witness_host(self) -> int:
        """The lab host of the witness daemon: the last one."""
        return self.node_hosts

    @property
    def hosts(self) -> int:
        return self.node_hosts + 1

    @property
    def nodes(self) -> int:
        return self.sites * self.nodes_per_site

    def site_hosts(self, site: int) -> list[int]:
        return [site * self.hosts_per_site + i for i in range(self.hosts_per_site)]

    def node_name(self, site: int, index: int) -> str:
        width = max(2, len(str(self.nodes_per_site)))
        return f"{PREFIXES[site]}{index + 1:0{width}d}"

    def host_of(self, site: int, index: int) -> int:
        """Round robin over the site's hosts: every leaf group is spread over them."""
        return self.site_hosts(site)[index % self.hosts_per_site]

    def subtrees(self) -> dict[str, list[int]]:
        """Group name -> the lab hosts holding its nodes, for every site and for ``uk``."""
        found = {name: self.site_hosts(s) for s, name in enumerate(self.site_names)}
        if self.sites >= 3:
            found["uk"] = self.site_hosts(0) + self.site_hosts(1)
        return found


class LayoutError(ValueError):
    """Sizes that make no campaign; the message names the option."""


def layout(sites: int, nodes_per_site: int, hosts_per_site: int | None = None) -> Layout:
    """Check the sizes (a :class:`LayoutError` naming the option) and fill in the hosts per
    site: about one host per leaf group, at least two so a host crash leaves the site up."""
    if not 2 <= sites <= len(SITE_NAMES):
        raise LayoutError(f"--sites {sites}: expected 2 to {len(SITE_NAMES)}")
    if not 3 <= nodes_per_site <= 64:
        raise LayoutError(f"--nodes-per-site {nodes_per_site}: expected 3 to 64")
    if hosts_per_site is None:
        hosts_per_site = max(2, math.ceil(nodes_per_site / LEAF_FANOUT))
    if not 1 <= hosts_per_site <= nodes_per_site:
        raise LayoutError(f"--hosts-per-site {hosts_per_site}: expected 1 to --nodes-per-site")
    if sites * hosts_per_site + 1 > 250:
        raise LayoutError("--sites x --hosts-per-site: at most 249 lab hosts")
    return Layout(sites, nodes_per_site, hosts_per_site)


def topology_document(lay: Layout, addresses: list[str]) -> dict[str, Any]:
    """The topology (as a TOML document) of ``lay`` with lab host ``i`` at ``addresses[i]``:
    every node on its host at ``BASE_PORT + rank``, witnesses on the witness host."""
    witness_address = addresses[lay.witness_host]
    groups: dict[str, dict[str, Any]] = {"company": {}}
    root_slots = lay.sites
    site_parent = ["company"] * lay.sites
    witness_port = WITNESS_PORT
    if lay.sites >= 3:
        groups["uk"] = {
            "parent": "company",
            "tiebreaker": {"kind": "witness", "address": f"{witness_address}:{witness_port}"},
        }
        witness_port += 1
        site_parent[0] = site_parent[1] = "uk"
        root_slots = lay.sites - 1
    if root_slots % 2 == 0:
        groups["company"]["tiebreaker"] = {
            "kind": "witness",
            "address": f"{witness_address}:{witness_port}",
        }
    nodes: dict[str, dict[str, Any]] = {}
    for s, name in enumerate(lay.site_names):
        width = max(2, len(str(lay.nodes_per_site)))
        group: dict[str, Any] = {
            "parent": site_parent[s],
            "nodes": f"{PREFIXES[s]}[{1:0{width}d}-{lay.nodes_per_site:0{width}d}]",
        }
        if lay.nodes_per_site > LEAF_FANOUT:
            group["fanout"] = LEAF_FANOUT
        groups[name] = group
    rank = 0  # ranks are depth-first: the sites in the order above, nodes in name order
    for s in range(lay.sites):
        for i in range(lay.nodes_per_site):
            host = lay.host_of(s, i)
            nodes[lay.node_name(s, i)] = {"host": addresses[host], "port": BASE_PORT + rank}
            rank += 1
    return {
        "cluster": {"name": "chaos", "secret_file": "lab.keyring"},
        "addresses": {"host": addresses[0], "base_port": BASE_PORT},
        "group": groups,
        "node": nodes,
    }


@dataclass
class Fault:
    """One nemesis step: ``kind`` for ``duration_s``, then at least ``quiet_s`` of quiet (and
    until the cluster has healed). ``params`` say what exactly (hosts, loss rate, ...)."""

    index: int
    kind: str
    duration_s: float
    quiet_s: float
    params: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        p = self.params
        kind = self.kind
        if kind == "cut-site":
            what = f"cut {p['subtree']} (hosts {p['side']}) off"
        elif kind in ("cut-minority", "cut-majority"):
            what = f"cut hosts {p['side']} (a {kind[4:]}) off"
        elif kind == "cut-one-way":
            what = f"drop frames from hosts {p['side']} to the others"
        elif kind == "loss":
            what = f"drop {p['percent']} % of frames on the bridge"
            if p.get("delay_ms"):
                what += f", hold the rest {p['delay_ms']} ms (+ up to {p['jitter_ms']} ms)"
        elif kind == "kill-leader":
            what = f"kill the leader of tier-{p['tier']} group {p['group']}, restart it"
        elif kind == "crash-host":
            how = "without" if p["wipe"] else "with"
            what = f"kill -9 host {p['host']}'s agent, restart it {how} its node state"
        elif kind == "pause-host":
            what = f"SIGSTOP host {p['host']}'s agent, then SIGCONT"
        elif kind == "restart-witness":
            what = "kill -9 the witness daemon, restart it"
        else:
            what = f"step host {p['host']}'s wall clock by {p['step_ms']:+} ms, then back"
        return f"#{self.index} {kind}: {what} ({self.duration_s:.1f} s)"


@dataclass(frozen=True)
class GroupInfo:
    """What the planner needs of the topology: each group's name and tier."""

    name: str
    tier: int


def plan(
    seed: int,
    minutes: float,
    lay: Layout,
    groups: list[GroupInfo],
    lease_ms: int,
    hold_s: float,
) -> list[Fault]:
    """The nemesis schedule: faults one after another until their planned durations and quiet
    periods fill ``minutes``. Every fault is bounded; a pause lasts longer than a lease
    (``lease_ms``). A wall-clock step lasts the fault's duration and is then undone. A host
    whose wall clock was stepped back is never restarted without its state: the runtime's
    stated assumption for a node that lost its disk (its new incarnation comes from the wall
    clock, which must not have gone back past its last boot). The witness
    host's clock is stepped both ways: the witness keeps its last incarnation in its state file
    (a witness restarted after a step back was once mute, every node dropping its datagrams as
    from a stale incarnation; found by seed 1). Kills and
    site cuts last ``hold_s`` or more (the detection bound), so that who must have heard of
    them by then can be checked."""
    rng = random.Random(seed)
    budget = minutes * 60.0
    faults: list[Fault] = []
    used = 0.0
    stepped_back: set[int] = set()
    tiers = sorted({g.tier for g in groups})
    subtrees = lay.subtrees()
    node_hosts = list(range(lay.node_hosts))
    while used < budget:
        kind = rng.choice(KINDS)
        duration = round(rng.uniform(3.0, 10.0), 1)
        quiet = round(rng.uniform(2.0, 5.0), 1)
        params: dict[str, Any] = {}
        if kind in ("cut-site", "kill-leader", "crash-host"):
            duration = round(rng.uniform(hold_s, hold_s + 4.0), 1)
        if kind == "cut-site":
            name = rng.choice(sorted(subtrees))
            params = {"subtree": name, "side": subtrees[name]}
        elif kind in ("cut-minority", "cut-majority"):
            half = lay.node_hosts // 2
            size = (
                rng.randint(1, max(1, (lay.node_hosts - 1) // 2))
                if kind == "cut-minority"
                else rng.randint(half + 1, lay.node_hosts - 1)
            )
            params = {"side": sorted(rng.sample(node_hosts, size))}
        elif kind == "cut-one-way":
            size = rng.randint(1, max(1, lay.node_hosts // 2))
            side = sorted(rng.sample(node_hosts, size))
            params = {"side": side, "other": [h for h in range(lay.hosts) if h not in side]}
        elif kind == "loss":
            params = {"percent": rng.choice((2, 5, 10, 20))}
            # the delay comes from a stream of its own: adding it left every other fault of a
            # seed's schedule as it was, so runs before and after compare fault by fault
            hold = random.Random(f"delay:{seed}:{len(faults) + 1}").choice(DELAYS_MS)
            params.update(delay_ms=hold, jitter_ms=hold // 4)
        elif kind == "kill-leader":
            tier = rng.choice(tiers)
            names = sorted(g.name for g in groups if g.tier == tier)
            params = {"tier": tier, "group": rng.choice(names)}
        elif kind == "crash-host":
            host = rng.choice(node_hosts)
            wipe = rng.random() < 0.5 and host not in stepped_back
            params = {"host": host, "wipe": wipe}
        elif kind == "pause-host":
            host = rng.choice(node_hosts)
            duration = round(rng.uniform(1.5 * lease_ms / 1000, 6.0), 1)
            params = {"host": host}
        elif kind == "restart-witness":
            params = {"host": lay.witness_host}
        elif kind == "wall-step":
            # stepped for the fault's duration, then stepped back (as NTP corrects a clock that
            # jumped): wall clocks agree again before the next fault, which the terms above the
            # leaf tier assume when a cut leaves nobody who knew a group's last term
            host = rng.choice(range(lay.hosts))
            step = rng.choice((-1, 1)) * rng.randint(500, 120_000)
            if step < 0:
                stepped_back.add(host)
            params = {"host": host, "step_ms": step}
        faults.append(Fault(len(faults) + 1, kind, duration, quiet, params))
        used += duration + quiet
    return faults


def initial_wall_offsets_ms(seed: int, hosts: int) -> list[int]:
    """Each host's wall clock error at start: up to 50 ms either way (NTP-grade), seeded."""
    rng = random.Random(f"wall:{seed}")
    return [rng.randint(-50, 50) for _ in range(hosts)]
