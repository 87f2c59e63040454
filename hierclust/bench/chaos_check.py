"""The chaos campaign's checker: the simulator's safety properties, on a real history.

Input: every agent's event-log record with ``at_ns``, its instant on *this box's* monotonic clock
(the record's ``t_ns`` is on its host's clock; the lab knows each host's offset exactly, and the
runner takes it off, so no two hosts' raw instants are ever compared), ``until_at_ns`` likewise
for leases and primary deadlines, and the lab's own record of what it did and when (faults,
agent process lives, pauses, which links were cut). Pure: no I/O, so unit tests feed it made-up
histories (``tests/bench/test_chaos_check.py``).

Properties (each a list of findings, empty when the history is clean):

- **two-leases** (safety): at most one node of a group holds a valid lease at any instant. A
  lease runs from the ``LeaseChanged(held)`` that took it to the latest ``until_ns`` a report of
  it named (agents run with ``HIERCLUST_LOG_LEASES=1``, so every report is logged); an explicit
  loss ends it at ``min(instant, until)``; a kill or a pause does not end it early (the promise
  stands until it runs out). Reports lag the lease by the pings of one tick at most, so these are
  lower bounds of each lease: an overlap found is a real one, and an overlap shorter than that lag
  could be missed. Lab clocks all run at the box's rate, so no drift allowance is taken.
- **fencing-token** (safety): per group, in the order leases were taken, a lease under a term
  no greater than an earlier one held by another node (the simulator's rule); and **term-down**:
  a node that, within one life, sees a group's term (``LeaderChanged``, ``LeaseChanged``) go down.
- **two-primaries** (safety): two hosts with nodes in the primary component at one instant,
  which had been unable to reach each other (not in one connected component of the lab's links,
  counting a link up only when neither direction is cut) for the whole window before it. The
  window ``primary_window_ns`` is how long a node can legitimately go on believing it is primary
  after it last heard its path up: per tier a lease, a heartbeat and the drift margin.
- **missed-notice** (liveness): a node that stayed in the primary component from a kill until
  the detection bound, and was not itself faulted, and by then neither holds the victim (in the
  incarnation it had) failed nor a subtree holding it unreachable (a kill that takes a leaf
  group's quorum with it cuts the rest of that group off: its survivors cannot act); likewise
  a site cut off for longer than the bound that some primary node does not hold unreachable.
- **crash**: a ``Failed`` event (fail-stop on an error) in any log.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NS = 1_000_000_000


@dataclass
class Model:
    """What the checker needs of the topology and the lab."""

    rank_host: dict[int, int]
    node_hosts: list[int]
    primary_window_ns: int


@dataclass
class History:
    """A campaign's record. Times are ns on the box's monotonic clock."""

    records: list[dict[str, Any]]
    faults: list[dict[str, Any]] = field(default_factory=list)
    deaths: dict[int, list[int]] = field(default_factory=dict)
    """host -> instants its agent process was killed (-9) by the lab."""
    cuts: list[tuple[int, frozenset[tuple[int, int]]]] = field(default_factory=list)
    """(instant, directed host pairs cut from then on), in time order; an empty set is a heal."""
    start_ns: int = 0
    end_ns: int = 0


def finding(kind: str, t_ns: int, start_ns: int, detail: str, **extra: Any) -> dict[str, Any]:
    return {"kind": kind, "t_s": round((t_ns - start_ns) / NS, 3), "detail": detail, **extra}


def _by_time(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: r["at_ns"])


def _life_ends(history: History, model: Model) -> dict[int, list[int]]:
    """rank -> instants its life ended without a record of its own: a kill -9 of its host."""
    ends: dict[int, list[int]] = defaultdict(list)
    for rank, host in model.rank_host.items():
        ends[rank] = sorted(history.deaths.get(host, []))
    return ends


# -- leases and terms ---------------------------------------------------------------------------
@dataclass
class Lease:
    rank: int
    group: int
    term: int
    start_ns: int
    end_ns: int


def leases(history: History, model: Model) -> list[Lease]:
    """Every lease held, from the logs (see the module doc for where each ends)."""
    found: list[Lease] = []
    open_: dict[tuple[int, int], Lease] = {}
    ends = _life_ends(history, model)
    deaths = sorted((t, rank) for rank, ts in ends.items() for t in ts)
    stream: list[tuple[int, int, dict[str, Any]]] = [(r["at_ns"], 1, r) for r in history.records]
    stream += [(t, 0, {"rank": k}) for t, k in deaths]
    stream.sort(key=lambda x: (x[0], x[1]))
    for at, kind, record in stream:
        rank = record["rank"] if isinstance(record.get("rank"), int) else -1
        if kind == 0 or record.get("event") in ("Booted", "Crashed", "Stopped", "Failed"):
            for key in [k for k in open_ if k[0] == rank]:
                found.append(open_.pop(key))  # the lease stands until its end
            continue
        if record.get("event") != "LeaseChanged":
            continue
        key = (rank, record["group"])
        until = int(record.get("until_at_ns", at))
        current = open_.get(key)
        if record["held"]:
            if current is not None and current.term != record["term"]:
                found.append(open_.pop(key))
                current = None
            if current is None:
                open_[key] = Lease(rank, record["group"], record["term"], at, max(at, until))
            else:
                current.end_ns = max(current.end_ns, until)
        elif current is not None:
            current.end_ns = max(current.start_ns, min(at, until))
            found.append(open_.pop(key))
    found.extend(open_.values())
    return found


def check_leases(history: History, model: Model) -> list[dict[str, Any]]:
    """two-leases and fencing-token findings."""
    problems: list[dict[str, Any]] = []
    by_group: dict[int, list[Lease]] = defaultdict(list)
    for lease in leases(history, model):
        by_group[lease.group].append(lease)
    for group, held in sorted(by_group.items()):
        held.sort(key=lambda x: (x.start_ns, x.rank))
        best: Lease | None = None
        active: list[Lease] = []
        for lease in held:
            active = [a for a in active if a.end_ns > lease.start_ns]
            for other in active:
                if other.rank != lease.rank:
                    problems.append(
                        finding(
                            "two-leases",
                            lease.start_ns,
                            history.start_ns,
                            f"group {group}: rank {lease.rank} took a lease (term {lease.term}) "
                            f"while rank {other.rank} held one (term {other.term}) for another "
                            f"{(other.end_ns - lease.start_ns) / 1e6:.1f} ms",
                            group=group,
                            ranks=[other.rank, lease.rank],
                        )
                    )
            if best is not None and (
                lease.term < best.term or (lease.term == best.term and lease.rank != best.rank)
            ):
                problems.append(
                    finding(
                        "fencing-token",
                        lease.start_ns,
                        history.start_ns,
                        f"group {group}: rank {lease.rank} took term {lease.term} after rank "
                        f"{best.rank} held term {best.term}",
                        group=group,
                        ranks=[best.rank, lease.rank],
                    )
                )
            if best is None or lease.term > best.term:
                best = lease
            active.append(lease)
    return problems


def check_terms(history: History) -> list[dict[str, Any]]:
    """term-down: within one life, a node sees a group's term go down."""
    problems: list[dict[str, Any]] = []
    seen: dict[tuple[int, int], int] = {}
    for record in _by_time(history.records):
        event = record.get("event")
        rank = record["rank"] if isinstance(record.get("rank"), int) else -1
        if event in ("Booted", "Crashed", "Failed", "Stopped"):
            for key in [k for k in seen if k[0] == rank]:
                del seen[key]
            continue
        if event not in ("LeaderChanged", "LeaseChanged"):
            continue
        key = (rank, record["group"])
        term = int(record["term"])
        before = seen.get(key)
        if before is not None and term < before:
            problems.append(
                finding(
                    "term-down",
                    record["at_ns"],
                    history.start_ns,
                    f"rank {rank} saw group {record['group']}'s term go from {before} to {term} "
                    f"({event})",
                    group=record["group"],
                    ranks=[rank],
                )
            )
        seen[key] = max(term, before or term)
    return problems


# -- the primary component ----------------------------------------------------------------------
Interval = tuple[int, int]


def _union(intervals: list[Interval]) -> list[Interval]:
    merged: list[Interval] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        elif b > a:
            merged.append((a, b))
    return merged


def _intersect(xs: list[Interval], ys: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    i = j = 0
    while i < len(xs) and j < len(ys):
        a, b = max(xs[i][0], ys[j][0]), min(xs[i][1], ys[j][1])
        if a < b:
            out.append((a, b))
        if xs[i][1] < ys[j][1]:
            i += 1
        else:
            j += 1
    return out


def primary_intervals(history: History, model: Model) -> dict[int, list[Interval]]:
    """rank -> when it held itself in the primary component (a leave ends at the deadline its
    leases set when that came first; a kill -9 of its host ends it)."""
    found: dict[int, list[Interval]] = defaultdict(list)
    since: dict[int, int] = {}
    ends = _life_ends(history, model)
    stream: list[tuple[int, int, dict[str, Any]]] = [(r["at_ns"], 1, r) for r in history.records]
    stream += [(t, 0, {"rank": rank}) for rank, ts in ends.items() for t in ts]
    stream.sort(key=lambda x: (x[0], x[1]))
    for at, kind, record in stream:
        rank = int(record["rank"]) if record.get("rank") is not None else -1
        if kind == 0 or record.get("event") in ("Crashed", "Failed", "Stopped", "Booted"):
            if rank in since:
                found[rank].append((since.pop(rank), at))
            continue
        if record.get("event") != "PrimaryChanged":
            continue
        if record["in_primary"]:
            since.setdefault(rank, at)
        elif rank in since:
            end = at
            if record.get("until_at_ns") is not None:
                end = min(at, int(record["until_at_ns"]))
            start = since.pop(rank)
            found[rank].append((start, max(start, end)))
    for rank, start in since.items():
        found[rank].append((start, max(start, history.end_ns)))
    return found


def _components(hosts: list[int], cut: frozenset[tuple[int, int]]) -> dict[int, int]:
    parent = {h: h for h in hosts}

    def root(h: int) -> int:
        while parent[h] != h:
            parent[h] = parent[parent[h]]
            h = parent[h]
        return h

    for i, a in enumerate(hosts):
        for b in hosts[i + 1 :]:
            if (a, b) not in cut and (b, a) not in cut:
                parent[root(a)] = root(b)
    return {h: root(h) for h in hosts}


def disconnected(history: History, model: Model) -> dict[tuple[int, int], list[Interval]]:
    """(a, b), a < b -> when node hosts a and b were in different components."""
    hosts = sorted(model.node_hosts)
    found: dict[tuple[int, int], list[Interval]] = defaultdict(list)
    steps = [(history.start_ns, frozenset[tuple[int, int]]())] + list(history.cuts)
    steps.sort(key=lambda s: s[0])
    for k, (t, cut) in enumerate(steps):
        end = steps[k + 1][0] if k + 1 < len(steps) else history.end_ns
        if end <= t or not cut:
            continue
        comp = _components(hosts, cut)
        for i, a in enumerate(hosts):
            for b in hosts[i + 1 :]:
                if comp[a] != comp[b]:
                    found[(a, b)].append((t, end))
    return {k: _union(v) for k, v in found.items()}


def check_primaries(history: History, model: Model) -> list[dict[str, Any]]:
    """two-primaries: see the module doc."""
    by_rank = primary_intervals(history, model)
    by_host: dict[int, list[Interval]] = defaultdict(list)
    for rank, intervals in by_rank.items():
        by_host[model.rank_host[rank]].extend(intervals)
    hosts = {h: _union(v) for h, v in by_host.items()}
    window = model.primary_window_ns
    problems: list[dict[str, Any]] = []
    for (a, b), apart in sorted(disconnected(history, model).items()):
        surely = [(s + window, e) for s, e in apart if e > s + window]
        both = _intersect(hosts.get(a, []), hosts.get(b, []))
        for s, e in _intersect(surely, both):
            problems.append(
                finding(
                    "two-primaries",
                    s,
                    history.start_ns,
                    f"hosts {a} and {b} both had nodes in the primary component for "
                    f"{(e - s) / 1e6:.0f} ms while cut apart for longer than "
                    f"{window / 1e6:.0f} ms",
                    hosts=[a, b],
                )
            )
    return problems


# -- liveness during faults -----------------------------------------------------------------------
def _covers(intervals: list[Interval], a: int, b: int) -> bool:
    return any(s <= a and b <= e for s, e in intervals)


def check_notices(history: History, model: Model) -> list[dict[str, Any]]:
    """missed-notice findings for the faults whose record lists ``victims`` (kills) or a
    ``subtree`` cut off (``first``, ``count``), each with its ``bound_ns``."""
    primary = primary_intervals(history, model)
    learned_failed: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)
    unreachable: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    incarnations: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for r in history.records:
        event = r.get("event")
        if event == "NoticeLearned":
            notice = r["notice"]
            if notice.get("kind") in ("failed", "left"):
                learned_failed[(r["rank"], notice["node"])].append(
                    (r["at_ns"], notice["incarnation"])
                )
            elif notice.get("kind") == "alive":
                incarnations[notice["node"]].append((r["at_ns"], notice["incarnation"]))
        elif event == "Booted":
            incarnations[r["rank"]].append((r["at_ns"], int(r["incarnation"])))
        elif event == "SubtreeUnreachable":
            unreachable[r["rank"]].append((r["at_ns"], r["first"], r["count"]))
    problems: list[dict[str, Any]] = []
    for fault in history.faults:
        bound = int(fault.get("bound_ns", 0))
        faulted = set(fault.get("faulted_ranks", []))
        for victim, kill_ns, back_ns in fault.get("victims", []):
            if back_ns - kill_ns < bound:
                continue  # back before the bound: nobody had to hear of it
            inc = max((i for t, i in incarnations[victim] if t <= kill_ns), default=0)
            due = kill_ns + bound
            for rank in model.rank_host:
                if rank in faulted or not _covers(primary.get(rank, []), kill_ns, due):
                    continue
                told = [t for t, i in learned_failed[(rank, victim)] if i >= inc and t <= due]
                cut_off = [
                    t
                    for t, f, n in unreachable[rank]
                    if kill_ns <= t <= due and f <= victim < f + n
                ]
                if not told and not cut_off:
                    problems.append(
                        finding(
                            "missed-notice",
                            due,
                            history.start_ns,
                            f"fault #{fault['index']}: rank {rank} (in the primary component "
                            f"throughout) did not hold rank {victim} (incarnation {inc}) failed, "
                            f"nor its subtree unreachable, within {bound / 1e9:.1f} s of its kill",
                            fault=fault["index"],
                            ranks=[rank, victim],
                        )
                    )
        cut = fault.get("subtree")
        if cut is not None and fault["end_ns"] - fault["start_ns"] >= bound:
            first, count = int(cut["first"]), int(cut["count"])
            due = fault["start_ns"] + bound
            for rank in model.rank_host:
                if rank in faulted or not _covers(primary.get(rank, []), due, fault["end_ns"]):
                    continue
                held = [
                    t
                    for t, f, n in unreachable[rank]
                    if fault["start_ns"] <= t <= due and f <= first and first + count <= f + n
                ]
                if not held:
                    problems.append(
                        finding(
                            "missed-notice",
                            due,
                            history.start_ns,
                            f"fault #{fault['index']}: rank {rank} (in the primary component) "
                            f"did not hold {cut.get('name')} (ranks {first}..{first + count - 1}) "
                            f"unreachable within {bound / 1e9:.1f} s of the cut",
                            fault=fault["index"],
                            ranks=[rank],
                        )
                    )
    return problems


def crashes(history: History) -> list[dict[str, Any]]:
    return [
        finding(
            "crash",
            r["at_ns"],
            history.start_ns,
            f"{r.get('node')}: {r.get('reason')}",
            ranks=[r.get("rank")],
        )
        for r in history.records
        if r.get("event") == "Failed"
    ]


def lease_figures(history: History, model: Model) -> dict[str, Any]:
    """How many leases the history holds, and the closest hand-over: per group, the smallest
    gap between the end of one holder's lease and the next holder's take (negative would be a
    two-leases violation)."""
    by_group: dict[int, list[Lease]] = defaultdict(list)
    all_leases = leases(history, model)
    for lease in all_leases:
        by_group[lease.group].append(lease)
    closest: int | None = None
    for held in by_group.values():
        held.sort(key=lambda x: x.start_ns)
        for before, after in zip(held, held[1:], strict=False):
            if before.rank != after.rank:
                gap = after.start_ns - before.end_ns
                closest = gap if closest is None else min(closest, gap)
    return {
        "leases": len(all_leases),
        "lease_holders_changed": sum(
            1
            for held in by_group.values()
            for a, b in zip(held, held[1:], strict=False)
            if a.rank != b.rank
        ),
        "closest_handover_ms": None if closest is None else round(closest / 1e6, 1),
    }


def check(history: History, model: Model) -> dict[str, list[dict[str, Any]]]:
    """Every property: ``{"violations": [...], "liveness_failures": [...], "crashes": [...]}``."""
    violations = check_leases(history, model) + check_terms(history)
    violations += check_primaries(history, model)
    return {
        "violations": sorted(violations, key=lambda f: f["t_s"]),
        "liveness_failures": check_notices(history, model),
        "crashes": crashes(history),
    }
