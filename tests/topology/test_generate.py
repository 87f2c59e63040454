"""Properties of generated topologies and of the compact name ranges."""

from __future__ import annotations

import math

from ClusterShell.NodeSet import NodeSet
from hypothesis import given, settings
from hypothesis import strategies as st

from hierclust.topology import from_dict, generate_document
from hierclust.topology.loader import chunk_spans
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
    topo = from_dict(generate_document(nodes, fanout, sizes="balanced"))
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
    def tiers(nodes: int, sizes: str) -> list[int]:
        return from_dict(generate_document(nodes, 16, sizes=sizes)).tiers()

    assert tiers(1024, "balanced") == [64, 4, 1]
    assert tiers(16, "balanced") == [1]
    assert tiers(17, "balanced") == [2, 1]
    assert math.isclose(from_dict(generate_document(4096, 16, sizes="balanced")).depth, 3)
    assert tiers(1024, "odd") == [70, 6, 1]  # 57 groups of 15 and 13 of 13; 4 of 11, 2 of 13
    assert tiers(16, "odd") == [1]  # fits in one group: kept whole
    assert tiers(17, "odd") == [3, 1]  # 5 + 5 + 7


@settings(max_examples=200, deadline=None)
@given(count=st.integers(1, 5000), fanout=st.integers(2, 64))
def test_odd_chunks_are_odd_at_least_three_and_tile_the_range(count: int, fanout: int) -> None:
    spans = chunk_spans(10, 10 + count, fanout, odd=True)
    sizes = [hi - lo for lo, hi in spans]
    assert spans[0][0] == 10 and spans[-1][1] == 10 + count
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert all(size <= fanout for size in sizes)
    if count <= fanout:
        assert sizes == [count]
    elif not all(size % 2 == 1 and size >= 3 for size in sizes):
        # impossible with this fan-out (e.g. 7 at most 3 per chunk): the balanced cut instead
        assert spans == chunk_spans(10, 10 + count, fanout)
    else:
        assert max(sizes) - min(sizes) <= 2
        widest = fanout if fanout % 2 else fanout - 1
        # as few chunks as odd sizes allow: one fewer would need a chunk over the widest odd size
        # or break the parity
        fewer = len(sizes) - 1
        assert fewer * widest < count or (count - fewer) % 2 == 1 or 3 * fewer > count


@settings(max_examples=100, deadline=None)
@given(nodes=st.integers(1, 30_000), fanout=st.integers(7, 64))
def test_generated_files_are_odd_below_the_top_and_load_without_warnings(
    nodes: int, fanout: int
) -> None:
    # (below a fan-out of 7 some counts cannot be cut into odd groups of 3 or more: 7 nodes at
    # most 6 per group is 4 + 3 at best; those keep one even group and its warning)
    if fanout**8 < nodes:
        return
    topo = from_dict(generate_document(nodes, fanout, base_port=20000))
    assert not topo.warnings
    for group in topo.by_index:
        if group is not topo.root and group.size not in (2, 4):
            assert group.size % 2 == 1, (group.name, group.size)
    # an even top group gets the witness below the first node's port; an odd one none
    assert (topo.root.tiebreaker is not None) == (topo.root.size % 2 == 0)
    if topo.root.tiebreaker is not None:
        assert str(topo.root.tiebreaker.address) == "127.0.0.1:19999"


def test_a_generated_file_over_hosts_puts_the_witness_on_the_first_host() -> None:
    document = generate_document(1000, 16, base_port=7000, hosts="h[01-10]")
    assert document["group"]["hc1000"]["tiebreaker"] == {
        "kind": "witness",
        "address": "h01:6999",
    }
    assert not from_dict(document).warnings


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
