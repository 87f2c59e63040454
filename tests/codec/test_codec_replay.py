"""Each (src, incarnation, seq) is accepted once; old incarnations and old seqs are refused."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from hierclust.codec import Decoded, Dropped, DropReason, ReplayWindow
from hierclust.codec.replay import Verdict
from tests.codec.samples import Beat, codec

BEAT = Beat(view_id=1, digest=())


def _reasons(results: list[Decoded | Dropped]) -> list[str]:
    return ["ok" if isinstance(r, Decoded) else r.reason.value for r in results]


def test_replayed_datagram_is_dropped_and_counted() -> None:
    sender, receiver = codec(1), codec(2)
    datagram = sender.encode(BEAT, 2)
    assert _reasons([receiver.decode(datagram) for _ in range(3)]) == ["ok", "replayed", "replayed"]
    assert receiver.counters.accepted == 1
    assert receiver.counters.dropped[DropReason.REPLAYED] == 2


def test_out_of_order_within_window_is_accepted_once() -> None:
    sender, receiver = codec(1), codec(2)
    datagrams = [sender.encode(Beat(view_id=i, digest=()), 2) for i in range(5)]
    order = [4, 2, 0, 3, 1]
    first = [receiver.decode(datagrams[i]) for i in order]
    assert _reasons(first) == ["ok"] * 5
    assert [r.msg.view_id for r in first if isinstance(r, Decoded)] == order
    again = [receiver.decode(datagrams[i]) for i in order]
    assert _reasons(again) == ["replayed"] * 5
    assert receiver.counters.accepted == 5


def test_seq_older_than_the_window_is_refused() -> None:
    sender, receiver = codec(1), codec(2, replay=ReplayWindow(width=64))
    datagrams = [sender.encode(BEAT, 2) for _ in range(66)]  # seqs 1..66
    assert isinstance(receiver.decode(datagrams[65]), Decoded)  # highest = 66
    assert isinstance(receiver.decode(datagrams[2]), Decoded)  # seq 3: 63 behind, inside
    result = receiver.decode(datagrams[1])  # seq 2: 64 behind, outside
    assert isinstance(result, Dropped) and result.reason is DropReason.REPLAYED
    assert receiver.counters.dropped[DropReason.REPLAYED] == 1


def test_higher_incarnation_resets_and_lower_is_stale() -> None:
    receiver = codec(2)
    before = codec(1, incarnation=4)
    old = [before.encode(BEAT, 2) for _ in range(3)]
    assert isinstance(receiver.decode(old[0]), Decoded)
    restarted = codec(1, incarnation=5)  # seq starts again at 1
    fresh = restarted.encode(BEAT, 2)
    result = receiver.decode(fresh)
    assert isinstance(result, Decoded) and (result.incarnation, result.seq) == (5, 1)
    assert receiver.replay.incarnation_of(1) == 5
    stale = receiver.decode(old[1])
    assert isinstance(stale, Dropped) and stale.reason is DropReason.STALE_INCARNATION
    assert _reasons([receiver.decode(fresh)]) == ["replayed"]
    assert receiver.counters.dropped[DropReason.STALE_INCARNATION] == 1


def test_sources_are_tracked_independently() -> None:
    receiver = codec(9)
    a, b = codec(1), codec(2)
    assert _reasons([receiver.decode(a.encode(BEAT, 9)), receiver.decode(b.encode(BEAT, 9))]) == [
        "ok",
        "ok",
    ]  # both seq 1


def test_memory_is_bounded_oldest_source_forgotten() -> None:
    window = ReplayWindow(width=8, max_sources=3)
    for src in range(5):
        window.accept(src, 1, 10)
    assert len(window) == 3
    assert 0 not in window and 1 not in window and 4 in window
    window.accept(2, 1, 11)  # 2 is now most recent: 3 goes next
    window.accept(7, 1, 1)
    assert 3 not in window and 2 in window


def test_big_jump_clears_the_bitmap() -> None:
    window = ReplayWindow(width=8)
    window.accept(1, 1, 5)
    window.accept(1, 1, 100)
    assert window.check(1, 1, 100) is Verdict.REPLAYED
    assert window.check(1, 1, 99) is Verdict.FRESH
    assert window.check(1, 1, 92) is Verdict.REPLAYED  # 8 behind: outside
    assert window.check(1, 1, 5) is Verdict.REPLAYED


@settings(max_examples=300, deadline=None)
@given(
    width=st.integers(1, 70),
    events=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3), st.integers(0, 150))),
)
def test_window_matches_a_reference_model(width: int, events: list[tuple[int, int, int]]) -> None:
    window = ReplayWindow(width=width)
    incarnation: dict[int, int] = {}
    seen: dict[int, set[int]] = {}
    for src, inc, seq in events:
        if src not in incarnation or inc > incarnation[src]:
            expected = Verdict.FRESH
        elif inc < incarnation[src]:
            expected = Verdict.STALE_INCARNATION
        elif seq in seen[src] or seq <= max(seen[src]) - width:
            expected = Verdict.REPLAYED
        else:
            expected = Verdict.FRESH
        assert window.check(src, inc, seq) is expected
        if expected is Verdict.FRESH:
            window.accept(src, inc, seq)
            if src not in incarnation or inc > incarnation[src]:
                incarnation[src], seen[src] = inc, set()
            seen[src].add(seq)
