"""Parsing and validation: each broken file names its key, in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hierclust.topology import Address, TopologyError, load, loads

REPO = Path(__file__).resolve().parents[2]

SEED_LIKE = """
[cluster]
name = "company"

[addresses]
base_port = 18000

[group.company]

[group.uk]
parent = "company"
tiebreaker = { kind = "witness", address = "127.0.0.1:18990" }

[group.scotland]
parent = "uk"
nodes = "sc[01-05]"

[group.england]
parent = "uk"
nodes = "en[01-21]"
fanout = 7

[group.us]
parent = "company"
nodes = "us[1-3]"
"""


def error_of(text: str) -> TopologyError:
    with pytest.raises(TopologyError) as info:
        loads(text, source="t.toml")
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    assert message.startswith("t.toml"), "errors name the file"
    return info.value


def test_nested_sites_build_the_expected_tree() -> None:
    topo = loads(SEED_LIKE, source="seed")
    assert topo.num_nodes == 5 + 21 + 3
    assert topo.root.name == "company"
    assert topo.group("uk").children == ("scotland", "england")
    assert topo.group("england").children == ("england.t0.0", "england.t0.1", "england.t0.2")
    assert [g.tier for g in topo.path(topo.rank("en08"))] == [0, 1, 2, 3]
    assert [g.name for g in topo.path(topo.rank("en08"))] == [
        "england.t0.1",
        "england",
        "uk",
        "company",
    ]
    # us is a leaf directly under the root; its path is two groups long.
    assert [g.name for g in topo.path(topo.rank("us2"))] == ["us", "company"]
    assert topo.depth == 4
    assert topo.tiers() == [5, 1, 1, 1]
    assert topo.group("uk").votes == 3 and topo.group("uk").quorum == 2


def test_ranks_follow_depth_first_order_and_are_contiguous_per_group() -> None:
    topo = loads(SEED_LIKE)
    assert [topo.node_name(r) for r in range(topo.num_nodes)][:7] == [
        "sc01", "sc02", "sc03", "sc04", "sc05", "en01", "en02",
    ]  # fmt: skip
    for group in topo.by_index:
        for rank in group.ranks:
            assert group in topo.path(rank)
    assert topo.hostlist(topo.group("england")) == "en[01-21]"


def test_addresses_from_base_port_and_overrides() -> None:
    topo = loads(SEED_LIKE + "\n[node.us1]\nport = 19000\n")
    assert topo.address(0) == Address("127.0.0.1", 18000)
    assert topo.address(topo.rank("en01")) == Address("127.0.0.1", 18005)
    assert topo.address(topo.rank("us1")) == Address("127.0.0.1", 19000)


def test_addresses_spread_over_hosts() -> None:
    topo = loads(
        '[cluster]\nname="x"\n[addresses]\nhosts="h[1-4]"\nbase_port=7000\n'
        '[group.x]\nnodes="cn[01-10]"\nfanout=5\n'
    )
    # 10 nodes over 4 hosts: 3 per host, consecutive ranks share a host.
    assert [str(topo.address(r)) for r in (0, 2, 3, 9)] == [
        "h1:7000", "h1:7002", "h2:7000", "h4:7000",
    ]  # fmt: skip


def test_no_addresses_is_fine_for_simulation() -> None:
    topo = loads('[cluster]\nname="x"\n[group.x]\nnodes="cn[1-5]"\n')
    assert topo.address(0) is None
    assert topo.summary()["addressed"] is False


def test_tuning_resolves_defaults_then_tier_then_group() -> None:
    topo = loads(
        SEED_LIKE
        + "\n[defaults]\nheartbeat_ms = 100\nsuspect_after_ms = 500\n"
        + "[tiers.1]\nsuspect_after_ms = 700\n"
    )
    assert topo.group("scotland").tuning.suspect_after_ms == 500
    assert topo.group("england").tuning.suspect_after_ms == 700  # england is tier 1
    assert topo.group("england.t0.0").tuning.heartbeat_ms == 100
    with_group = loads(
        SEED_LIKE.replace('nodes = "en[01-21]"', 'nodes = "en[01-21]"\ntuning = {confirm_ms = 250}')
    )
    # A group's override applies to the groups generated inside it.
    assert with_group.group("england.t0.2").tuning.confirm_ms == 250
    assert with_group.group("scotland").tuning.confirm_ms == 100


def test_even_group_without_tiebreaker_is_a_warning() -> None:
    topo = loads('[cluster]\nname="x"\n[group.x]\nnodes="cn[1-4]"\n')
    assert len(topo.warnings) == 1 and "x" in topo.warnings[0] and "even" in topo.warnings[0]
    odd = loads('[cluster]\nname="x"\n[group.x]\nnodes="cn[1-5]"\n')
    assert odd.warnings == ()
    tie = loads(
        '[cluster]\nname="x"\n[group.x]\nnodes="cn[1-4]"\n'
        'tiebreaker={kind="disk", path="/tmp/x.lease"}\n'
    )
    assert tie.warnings == ()


@pytest.mark.parametrize(
    ("text", "key", "phrase"),
    [
        (
            '[cluster]\nname="x"\n[group.x]\nnodes="cn[1-3],cn2"\n',
            "group.x.nodes",
            "more than once",
        ),
        (
            '[cluster]\nname="x"\n[group.r]\n[group.a]\nparent="r"\nnodes="cn[1-3]"\n'
            '[group.b]\nparent="r"\nnodes="cn[3-5]"\n',
            "group.b.nodes",
            "cn3 is listed more than once",
        ),
        (
            '[cluster]\nname="x"\n[group.a]\nparent="nowhere"\nnodes="n1"\n',
            "group.a.parent",
            "unknown parent",
        ),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="n1"\n[group.a]\nparent="b"\n[group.b]\nparent="a"\n',
            ".parent",
            "cycle",
        ),
        ('[cluster]\nname="x"\n[group.r]\n', "group.r", "empty group"),
        ('[cluster]\nname="x"\n[group.r]\nnodes="cn[1-65]"\n', "group.r.nodes", "limit of 64"),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="cn[1-100000]"\nfanout=2\n',
            "group",
            "over the limit of 8",
        ),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="cn[1-40]"\nfanout=8\nsizes="even"\n',
            "group.r.sizes",
            'expected "balanced" or "odd"',
        ),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="cn[1-9]"\nsizes="odd"\n',
            "group.r.sizes",
            "needs",
        ),
        ('[cluster]\nname="x"\n[group.r]\nnodes="cn[1-"\n', "group.r.nodes", "bad hostlist"),
        ('[cluster]\nname="x"\n[group.r]\nnodes="cn[01-100]"\n', "group.r.nodes", "padding"),
        ('[cluster]\nname="x"\n[group.r]\nnode="cn[1-3]"\n', "group.r.node", "unknown key"),
        (
            '[cluster]\nname="x"\n[defaults]\nheartbeat=100\n[group.r]\nnodes="a1"\n',
            "defaults.heartbeat",
            "unknown tuning key",
        ),
        (
            '[cluster]\nname="x"\nnodes="a1"\n[group.r]\nnodes="a1"\n',
            "cluster.nodes",
            "unknown key",
        ),
        ('[clustre]\nname="x"\n', "clustre", "unknown key"),
        ('[group.r]\nnodes="a1"\n', "cluster.name", "missing"),
        ('[cluster]\nname="x"\n', "group", "no groups"),
        (
            '[cluster]\nname="x"\n[addresses]\nbase_port=7000\n[group.r]\nnodes="a[1-3]"\n'
            "[node.a1]\nport=7002\n",
            "node.a1",
            "also the computed address of node a3",
        ),
        (
            '[cluster]\nname="x"\n[addresses]\nbase_port=7000\n[group.r]\nnodes="a[1-3]"\n'
            'tiebreaker={kind="witness", address="127.0.0.1:7001"}\n',
            "group.r.tiebreaker.address",
            "a2",
        ),
        (
            '[cluster]\nname="x"\n[addresses]\nbase_port=65000\n[group.r]\nnodes="a[1-999]"\nfanout=10\n',
            "addresses.base_port",
            "past 65535",
        ),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="a1"\ntiebreaker={kind="coin"}\n',
            "group.r.tiebreaker.kind",
            "witness",
        ),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="a1"\ntiebreaker={kind="witness"}\n',
            "group.r.tiebreaker.address",
            "HOST:PORT",
        ),
        ('[cluster]\nname="x"\n[group.r]\nnodes="a1"\nfanout=1\n', "group.r.fanout", "2..64"),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="a[1-3]"\n[node.zz]\nport=1\n',
            "node.zz",
            "no such node",
        ),
        (
            '[cluster]\nname="x"\n[defaults]\nlease_ms=900\n[group.r]\nnodes="a1"\n',
            "defaults.lease_ms",
            "election_timeout_ms",
        ),
        (
            '[cluster]\nname="x"\n[tiers.9]\nheartbeat_ms=1\n[group.r]\nnodes="a1"\n',
            "tiers.9",
            "tier number",
        ),
        (
            '[cluster]\nname="x"\n[group.r]\nnodes="a1"\n[group.s]\nnodes="b1"\n',
            "group.s.parent",
            "several groups have no parent",
        ),
        ('[cluster]\nname = "x"\n[group.r\n', "", "not valid TOML"),
    ],
)
def test_each_error_names_its_key(text: str, key: str, phrase: str) -> None:
    error = error_of(text)
    assert key in error.key or (key == "" and error.key == "")
    assert phrase in str(error)


def test_missing_file_and_oversized_file(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no such file"):
        load(tmp_path / "absent.toml")
    big = tmp_path / "big.toml"
    big.write_bytes(b"#" * (16 * 1024 * 1024 + 1))
    with pytest.raises(TopologyError, match="over the 16,777,216-byte limit"):
        load(big)


@pytest.mark.parametrize(
    ("name", "nodes", "depth"),
    [
        ("demo.toml", 63, 3),
        ("seed.toml", 43, 4),
        ("mpp-1k.toml", 1024, 3),
        ("mpp-10k.toml", 10240, 4),
    ],
)
def test_shipped_topologies_validate(name: str, nodes: int, depth: int) -> None:
    topo = load(REPO / "topologies" / name)
    assert (topo.num_nodes, topo.depth) == (nodes, depth)
    assert all(g.size <= 64 for g in topo.by_index)
    assert topo.address(topo.num_nodes - 1) is not None, "shipped files are deployable"


def test_demo_is_the_embedded_default() -> None:
    from hierclust.cli.common import default_topology_path

    shipped = (REPO / "topologies" / "demo.toml").read_text()
    assert default_topology_path().read_text() == shipped
