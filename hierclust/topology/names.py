"""Node names in rank order, held as ranges so a million nodes cost a few objects.

A hostlist such as ``cn[0000001-1000000]`` is ClusterShell syntax. ClusterShell parses it by
materialising every name (about 0.5 s per million, 5 s to fold back), so the simple and by far
most common form -- one prefix, one numeric range -- is held here as arithmetic, and any other
form (steps, several brackets, suffixes, lists) is handed to ClusterShell and kept as a list of
names. A property test checks that both readings agree.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ClusterShell.NodeSet import NodeSet, NodeSetException

_SIMPLE_RANGE = re.compile(r"^([A-Za-z0-9_.\-]*[A-Za-z_.\-])?\[(\d+)-(\d+)\]$")
_SIMPLE_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_TRAILING_DIGITS = re.compile(r"^(.*?)(\d+)$")


class HostlistError(ValueError):
    """A hostlist that does not parse; the message says why."""


_RANGE = re.compile(r"(?<![0-9])([0-9]+)-([0-9]+)(?![0-9])")
_BRACKETS = re.compile(r"\[([^\]]*)\]")


def reversed_range_fix(nodeset: str) -> str | None:
    """``cn[05-01]`` -> ``cn[01-05]``: the nodeset with every reversed range turned round, or None
    when no range inside brackets is reversed."""

    def turn(match: re.Match[str]) -> str:
        low, high = match.group(1), match.group(2)
        return f"{high}-{low}" if int(low) > int(high) else match.group(0)

    fixed = _BRACKETS.sub(lambda m: "[" + _RANGE.sub(turn, m.group(1)) + "]", nodeset)
    return fixed if fixed != nodeset else None


def expand_nodeset(text: str) -> list[str]:
    """The names of a nodeset a user typed (``cn07``, ``cn[01-04,09]``); :class:`HostlistError`
    saying how to write it otherwise (a reversed range gets the range turned round). The command
    line and the library API both read node arguments here, so they answer alike."""
    fixed = reversed_range_fix(text)
    if fixed is not None:
        raise HostlistError(f"a range is reversed (ranges run from low to high); write {fixed}")
    try:
        return list(NodeSet(text))
    except NodeSetException as exc:
        raise HostlistError(
            f"not a nodeset ({exc}); write names like cn07 or ranges like cn[01-04,09]"
        ) from None


@dataclass(frozen=True, slots=True)
class Run:
    """``count`` consecutive names ``prefix + str(start + i).zfill(width)``."""

    prefix: str
    start: int
    count: int
    width: int

    def name(self, offset: int) -> str:
        return f"{self.prefix}{str(self.start + offset).zfill(self.width)}"

    def offset_of(self, digits: str) -> int | None:
        number = int(digits)
        offset = number - self.start
        if not 0 <= offset < self.count:
            return None
        return offset if str(number).zfill(self.width) == digits else None

    def fold(self, lo: int, hi: int) -> str:
        """The hostlist of offsets ``lo..hi-1``."""
        if hi - lo == 1:
            return self.name(lo)
        first = str(self.start + lo).zfill(self.width)
        last = str(self.start + hi - 1).zfill(self.width)
        return f"{self.prefix}[{first}-{last}]"


Piece = Run | tuple[str, ...]


def split_top_level(hostlist: str) -> list[str]:
    """Split at commas that are not inside brackets."""
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    for char in hostlist:
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    return parts


def parse_hostlist(hostlist: str) -> list[Piece]:
    """Parse a hostlist into pieces in the order written (ClusterShell order within a piece)."""
    if not isinstance(hostlist, str) or not hostlist.strip():
        raise HostlistError("empty hostlist")
    pieces: list[Piece] = []
    for part in split_top_level(hostlist):
        if not part:
            raise HostlistError(f"empty element in {hostlist!r}")
        simple = _SIMPLE_RANGE.match(part)
        if simple:
            first, last = simple.group(2), simple.group(3)
            if int(last) < int(first):
                raise HostlistError(f"range {first}-{last} in {part!r} runs backwards")
            padded = any(len(n) > 1 and n.startswith("0") for n in (first, last))
            if padded and len(first) != len(last):
                raise HostlistError(
                    f"padding length mismatch in {part!r}: write both ends with the same digits"
                )
            width = len(first) if padded else 0
            pieces.append(Run(simple.group(1) or "", int(first), int(last) - int(first) + 1, width))
            continue
        if _SIMPLE_NAME.match(part):
            pieces.append((part,))
            continue
        try:
            expanded = NodeSet(part)
        except NodeSetException as exc:
            raise HostlistError(f"{exc} in {part!r}") from None
        pieces.append(tuple(expanded))
    return pieces


class NodeNames(Sequence[str]):
    """Names by rank, built from hostlists appended in rank order."""

    def __init__(self) -> None:
        self._pieces: list[Piece] = []
        self._starts: list[int] = []
        self._total = 0
        self._by_prefix: dict[str, list[tuple[Run, int]]] | None = None
        self._by_name: dict[str, int] | None = None

    def extend(self, pieces: Sequence[Piece]) -> tuple[int, int]:
        """Append pieces; return the rank range ``[first, end)`` they occupy."""
        first = self._total
        for piece in pieces:
            size = piece.count if isinstance(piece, Run) else len(piece)
            self._pieces.append(piece)
            self._starts.append(self._total)
            self._total += size
        self._by_prefix = None
        self._by_name = None
        return first, self._total

    def __len__(self) -> int:
        return self._total

    def __getitem__(self, rank: int) -> str:  # type: ignore[override]
        if not 0 <= rank < self._total:
            raise IndexError(rank)
        index = bisect.bisect_right(self._starts, rank) - 1
        piece = self._pieces[index]
        offset = rank - self._starts[index]
        return piece.name(offset) if isinstance(piece, Run) else piece[offset]

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            if isinstance(piece, Run):
                yield from (piece.name(i) for i in range(piece.count))
            else:
                yield from piece

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.rank(name) is not None

    def _index(self) -> None:
        by_prefix: dict[str, list[tuple[Run, int]]] = {}
        by_name: dict[str, int] = {}
        for piece, start in zip(self._pieces, self._starts, strict=True):
            if isinstance(piece, Run):
                by_prefix.setdefault(piece.prefix, []).append((piece, start))
            else:
                for offset, name in enumerate(piece):
                    by_name.setdefault(name, start + offset)
        self._by_prefix = by_prefix
        self._by_name = by_name

    def rank(self, name: str) -> int | None:
        """The rank of ``name``, or None. First occurrence wins if a name is listed twice."""
        if self._by_prefix is None or self._by_name is None:
            self._index()
        assert self._by_prefix is not None and self._by_name is not None
        found = self._by_name.get(name)
        match = _TRAILING_DIGITS.match(name)
        if match:
            prefix, digits = match.group(1), match.group(2)
            # A run's prefix never ends in a digit, so the split of the name is unique.
            for run, start in self._by_prefix.get(prefix, ()):
                offset = run.offset_of(digits)
                if offset is not None and (found is None or start + offset < found):
                    found = start + offset
        return found

    def duplicates(self, limit: int = 5) -> list[str]:
        """Up to ``limit`` names listed more than once, without materialising ranges."""
        dupes: list[str] = []
        runs_by_prefix: dict[str, list[Run]] = {}
        listed: set[str] = set()
        for piece in self._pieces:
            if isinstance(piece, Run):
                runs_by_prefix.setdefault(piece.prefix, []).append(piece)
                continue
            for name in piece:
                if name in listed:
                    dupes.append(name)
                listed.add(name)
        for runs in runs_by_prefix.values():
            for i, a in enumerate(runs):
                for b in runs[i + 1 :]:
                    clash = _first_clash(a, b)
                    if clash is not None:
                        dupes.append(clash)
        for name in listed:
            if len(dupes) >= limit:
                break
            match = _TRAILING_DIGITS.match(name)
            if match:
                for run in runs_by_prefix.get(match.group(1), ()):
                    if run.offset_of(match.group(2)) is not None:
                        dupes.append(name)
        return sorted(set(dupes))[:limit]

    def fold(self, first: int, end: int) -> str:
        """A compact hostlist for ranks ``[first, end)``."""
        parts: list[str] = []
        for piece, start in zip(self._pieces, self._starts, strict=True):
            size = piece.count if isinstance(piece, Run) else len(piece)
            lo, hi = max(first, start), min(end, start + size)
            if lo >= hi:
                continue
            if isinstance(piece, Run):
                parts.append(piece.fold(lo - start, hi - start))
            else:
                parts.append(str(NodeSet.fromlist(piece[lo - start : hi - start])))
        return ",".join(parts)


def _first_clash(a: Run, b: Run) -> str | None:
    """A name both runs produce, if any."""
    lo = max(a.start, b.start)
    hi = min(a.start + a.count, b.start + b.count)
    if a.width != b.width:
        # Different padding only agrees once the number is wider than both paddings.
        lo = max(lo, 10 ** (max(a.width, b.width) - 1))
    if lo >= hi:
        return None
    return a.name(lo - a.start)
