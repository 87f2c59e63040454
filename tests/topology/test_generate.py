"""Properties of generated topologies and of the compact name ranges."""

from __future__ import annotations

import math

from ClusterShell.NodeSet import NodeSet
from hypothesis import given, settings
from hypothesis import strategies as st

from hierclust.topology import from_dict, generate_document
from hierclust.topology.names import NodeNames, parse_hostlist


def ceil_log(n: int, base: int) -> int:
    """Smallest d with base**d >= n, in integers (no float rounding)."""
    depth, reach = 0, 1
    while reach < n:
        depth, reach = depth + 1, reach * base
    return depth


@settings(max_examples=150, deadline=None)
@given(nodes=st.integers(2, 20_000), fanout=st.integers(2, 64))
def test_generated_tree_shape(nodes: int, fanout: int) -> None:
    if fanout**8 < nodes:
        return
    topo = from_dict(generate_document(nodes, fanout))
    assert topo.num_nodes == nodes
    assert topo.depth == ceil_log(nodes, fanout)
    assert all(1 <= g.size <= fanout for g in topo.by_index)
    # Every node in exactly one leaf group: leaf ranges tile 0..N-1 without gaps or overlap.
    spans = sorted((g.first_rank, g.end_rank) for g in topo.leaves)
    assert spans[0][0] == 0 and spans[-1][1] == nodes
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    # Balanced: groups of one tier differ in size by at most one.
    for tier in range(topo.depth):
        sizes = {g.size for g in topo.by_index if g.tier == tier}
        assert max(sizes) - min(sizes) <= 1
    # A node's path climbs one tier per step and ends at the root.
    rank = nodes // 2
    path = topo.path(rank)
    assert [g.tier for g in path] == list(range(topo.depth))
    assert path[-1] is topo.root
    assert topo.leaf_of(rank).first_rank <= rank < topo.leaf_of(rank).end_rank


@settings(max_examples=50, deadline=None)
@given(nodes=st.integers(1, 5000), fanout=st.integers(2, 64))
def test_ranks_are_stable_and_names_round_trip(nodes: int, fanout: int) -> None:
    if fanout**8 < nodes:
        return
    first = from_dict(generate_document(nodes, fanout))
    again = from_dict(generate_document(nodes, fanout))
    for rank in {0, nodes // 3, nodes - 1}:
        name = first.node_name(rank)
        assert again.node_name(rank) == name
        assert first.rank(name) == rank


def test_depth_examples() -> None:
    assert from_dict(generate_document(1024, 16)).tiers() == [64, 4, 1]
    assert from_dict(generate_document(16, 16)).depth == 1
    assert from_dict(generate_document(17, 16)).tiers() == [2, 1]
    assert math.isclose(from_dict(generate_document(4096, 16)).depth, 3)


simple_piece = st.builds(
    lambda prefix, start, count, pad: (
        f"{prefix}[{str(start).zfill(pad)}-{str(start + count).zfill(pad)}]"
    ),
    st.sampled_from(["cn", "r1n", "node-", "a.b"]),
    st.integers(0, 500),
    st.integers(0, 300),
    st.sampled_from([0, 4]),
)
other_piece = st.sampled_from(
    ["x[1-9/2]", "r[1-2]n[1-3]", "cn[1-3,7]p", "host", "h[08-11]", "z[3-5],z7"]
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(simple_piece, other_piece), min_size=1, max_size=4))
def test_fast_ranges_agree_with_clustershell(pieces: list[str]) -> None:
    text = ",".join(pieces)
    names = NodeNames()
    for piece in pieces:
        names.extend(parse_hostlist(piece))
    expected = [n for piece in pieces for n in NodeSet(piece)]
    assert list(names) == expected
    assert len(names) == len(expected)
    listed_twice = {n for n in expected if expected.count(n) > 1}
    reported = set(names.duplicates(limit=10**6))
    # At least one example per clash, and never a name that is listed once.
    assert reported <= listed_twice
    assert bool(reported) == bool(listed_twice)
    for rank, name in enumerate(expected):
        if name not in listed_twice:
            assert names.rank(name) == rank
    assert names.rank("not-a-node") is None
    assert text


def test_fold_gives_compact_hostlists() -> None:
    names = NodeNames()
    names.extend(parse_hostlist("cn[0000001-1000000]"))
    assert names.fold(0, 16) == "cn[0000001-0000016]"
    assert names.fold(999_999, 1_000_000) == "cn1000000"
    assert names[123_456] == "cn0123457"
    assert names.rank("cn0123457") == 123_456
