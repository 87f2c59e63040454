"""Large payloads split into messages that each fit a datagram, in order, none lost."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hierclust.codec import Decoded, EncodeError, chunk_items
from hierclust.core.types import Failure
from hierclust.tuning import MAX_DATAGRAM_BYTES
from tests.codec.samples import Report, Sync, codec


def _sync(part_items: tuple[str, ...]) -> Sync:
    return Sync(part=0, items=part_items)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300), max_size=120), st.none() | st.integers(1, 50))
def test_chunks_fit_keep_order_and_are_full(items: list[str], max_items: int | None) -> None:
    sender, receiver = codec(1), codec(2)
    chunks = chunk_items(items, _sync, sender.fits, max_items=max_items)
    flat = [item for chunk in chunks for item in chunk.items]
    assert flat == items
    for index, chunk in enumerate(chunks):
        datagram = sender.encode(chunk, 2)
        assert len(datagram) <= MAX_DATAGRAM_BYTES
        result = receiver.decode(datagram)
        assert isinstance(result, Decoded) and result.msg == chunk
        if max_items is not None:
            assert len(chunk.items) <= max_items
        if index < len(chunks) - 1 and (max_items is None or len(chunk.items) < max_items):
            grown = _sync(chunk.items + (chunks[index + 1].items[0],))
            assert not sender.fits(grown)  # greedy: nothing more would have fitted


def test_notice_backlog_is_split() -> None:
    sender = codec(1)
    notices = [Failure(n, 1, n // 16, 0, 3, age_ms=10**9 + n) for n in range(1000)]
    chunks = chunk_items(notices, lambda part: Report(None, part, "", False, b""), sender.fits)
    assert len(chunks) > 1
    assert [n for c in chunks for n in c.notices] == notices
    assert all(len(sender.encode(c, 2)) <= MAX_DATAGRAM_BYTES for c in chunks)


def test_empty_payload_is_one_empty_message() -> None:
    assert chunk_items([], _sync, codec(1).fits) == [Sync(0, ())]


def test_item_too_big_alone_raises() -> None:
    with pytest.raises(EncodeError, match="item 1 alone does not fit"):
        chunk_items(["ok", "x" * 2000], _sync, codec(1).fits)
