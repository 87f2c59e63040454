#!/usr/bin/env python3
"""A reference gang scheduler for an MPP machine, written against ``hierclust.api`` alone.

A job asks for N leaf groups and gets N whole groups whose members are all alive and active (a
leaf group is the unit a gang job's ranks are packed into: they share a switch and a leader). A
job whose node fails (``NodeFailed``, ``NodeLeft``, ``SubtreeUnreachable``) goes back to the
queue and is placed again elsewhere. Jobs are simulated: one "runs" for its ``duration`` from
the start time the table records; nothing is launched.

Run one copy per host, attached to the local nodes: every copy polls whether one of its nodes
leads the root group, and only the copy whose node does schedules (``docs/api.md``). Its safety
rests on three rules:

* It places nothing outside ``async with session.primary():``; leaving the primary component
  cancels the body with ``QuorumLost``.
* Write-ahead: a placement, a requeue or a completion counts once the table on shared storage
  says so. A real scheduler launches a job only after that write succeeded.
* Fencing: each write carries the root group's fencing token; the table keeps the largest term
  it was written with and refuses a smaller one (``StaleToken``). A deposed scheduler may
  believe it leads for up to a heartbeat plus latency after its lease ended; once its successor
  has written, the storage refuses it. Writes are also compare-and-set on the table's version
  (``Conflict``): a scheduler that read the table before someone else wrote must read it again.

Usage: ``python examples/gang_scheduler.py --state-dir D --jobs jobs.json`` where ``jobs.json``
is ``[{"name": "cfd-1", "groups": 2, "duration": 30}, ...]``; jobs added to the file later are
picked up. The table goes to ``--table`` (default ``D/gang-table.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hierclust.api import (
    Client,
    ClusterEvent,
    FencingToken,
    HierclustError,
    Member,
    NodeFailed,
    NodeLeft,
    NoDeployment,
    Session,
    SubtreeUnreachable,
    UnknownNode,
)

FORMAT = 1
Table = dict[str, Any]


class GangError(Exception):
    """A file this scheduler cannot use (the jobs file or the table); the message says how."""


class StaleToken(Exception):
    """The table was written with a larger fencing token: a newer scheduler took over."""


class Conflict(Exception):
    """The table changed since this scheduler read it: read it again before writing."""


class Deposed(Exception):
    """The node no longer leads the root group."""


@dataclass(frozen=True)
class Job:
    name: str
    groups: int
    duration: float


def load_jobs(path: Path) -> list[Job]:
    """The jobs of ``path``: ``[{"name", "groups", "duration"}, ...]`` or ``{"jobs": [...]}``."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GangError(f"{path}: cannot read the jobs file ({exc.strerror})") from None
    except ValueError as exc:
        raise GangError(f"{path}: not JSON ({exc})") from None
    rows = doc.get("jobs") if isinstance(doc, dict) else doc
    if not isinstance(rows, list):
        raise GangError(f'{path}: expected a list of jobs, or {{"jobs": [...]}}')
    jobs: dict[str, Job] = {}
    for i, row in enumerate(rows):
        at = f"{path}: jobs[{i}]"
        if not isinstance(row, dict):
            raise GangError(f'{at}: expected {{"name": ..., "groups": N, "duration": SECONDS}}')
        if set(row) - {"name", "groups", "duration"}:
            extra = sorted(set(row) - {"name", "groups", "duration"})[0]
            raise GangError(f"{at}: unknown key {extra!r} (known: name, groups, duration)")
        name, groups, duration = row.get("name"), row.get("groups", 1), row.get("duration")
        if not isinstance(name, str) or not name or name in jobs:
            raise GangError(f"{at}.name: expected a job name used once, got {name!r}")
        if type(groups) is not int or groups < 1:
            raise GangError(f"{at}.groups: expected leaf groups (1 or more), got {groups!r}")
        if not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0:
            raise GangError(f"{at}.duration: expected seconds (> 0), got {duration!r}")
        jobs[name] = Job(name, groups, float(duration))
    return list(jobs.values())


class JobTable:
    """The job table on shared storage: one JSON file, replaced atomically (temp, fsync, rename,
    fsync the directory) under ``flock`` on ``<file>.lock``, so readers never see half a table and
    the token check and the write are one step for every process that uses the same lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")

    def read(self) -> Table:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"format": FORMAT, "version": 0, "token": None, "tokens": [], "jobs": {}}
        except OSError as exc:
            raise GangError(f"{self.path}: cannot read the job table ({exc.strerror})") from None
        try:
            table = json.loads(text)
        except ValueError as exc:
            raise GangError(f"{self.path}: not JSON ({exc}); restore it or move it away") from None
        if not isinstance(table, dict) or table.get("format") != FORMAT:
            raise GangError(f"{self.path}: not a job table (format {FORMAT}); pass another --table")
        return table

    def write(self, table: Table, token: FencingToken, base: int) -> Table:
        """Write ``table`` if ``token`` is at least the file's and the file is still at version
        ``base``; the table as written. Blocking (call it in a thread)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read()
            held = current["token"]
            if held is not None and held["group"] != token.group:
                raise GangError(
                    f"{self.path}: written with group {held['group']}'s tokens, not "
                    f"{token.group}'s (another cluster's table?); pass another --table"
                )
            if held is not None and (
                token.term < held["term"]
                or (token.term == held["term"] and token.leader != held["leader"])
            ):
                raise StaleToken(
                    f"{self.path}: holds {held['group']} term {held['term']} (leader "
                    f"{held['leader']}); this write carries term {token.term}: refused"
                )
            if current["version"] != base:
                raise Conflict(f"{self.path}: at version {current['version']}, not {base}")
            tokens = list(current["tokens"])
            if held is None or held["term"] != token.term:
                tokens.append({"term": token.term, "leader": token.leader, "version": base + 1})
            new = {**table, "format": FORMAT, "version": base + 1, "tokens": tokens}
            new["token"] = {"group": token.group, "term": token.term, "leader": token.leader}
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            with open(temp, "w", encoding="utf-8") as out:
                json.dump(new, out, indent=1, sort_keys=True)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, self.path)
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
            return new


class GangScheduler:
    """Schedule ``jobs_file``'s jobs from whichever of ``sessions`` leads the root group."""

    def __init__(
        self,
        sessions: Sequence[Session],
        table: JobTable,
        jobs_file: Path,
        *,
        tick: float = 0.5,
        log: Callable[[str, str], None] | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        if not sessions:
            raise GangError("no node to schedule from")
        self.sessions = list(sessions)
        self.topology = sessions[0].topology
        self.root = self.topology.root.name
        name = self.topology.node_name
        self.nodes = {g.name: [name(r) for r in g.ranks] for g in self.topology.leaves}
        self.table, self.jobs_file, self.tick = table, jobs_file, tick
        self._log, self._on_change = log, on_change
        self.notes: list[tuple[str, str]] = []
        self.leading: str | None = None  # the node it schedules from, while it does
        self._jobs: tuple[float, list[Job]] = (-1.0, [])

    def note(self, kind: str, message: str) -> None:
        self.notes.append((kind, message))
        if self._log is not None:
            self._log(kind, message)
        if self._on_change is not None:
            self._on_change()

    async def run(self, until_done: bool = False) -> None:
        """Wait to be elected, schedule, and again after every step-down; with ``until_done``,
        return once every job in the table is done."""
        while True:
            session = await self._elected()
            try:
                async with session.primary():
                    if await self._lead(session, until_done):
                        return
            except (HierclustError, StaleToken, Deposed) as exc:
                self.leading = None
                self.note("stepdown", f"{session.node}: {type(exc).__name__}: {exc}")
                await asyncio.sleep(self.tick)  # whoever fenced it out gets the next turn
            finally:
                self.leading = None

    async def _elected(self) -> Session:
        while True:
            for session in self.sessions:
                with contextlib.suppress(HierclustError):
                    if self.root in await session.leads():
                        return session
            await asyncio.sleep(self.tick)

    async def _lead(self, session: Session, until_done: bool) -> bool:
        token = await session.fencing_token(self.root)
        pending: list[tuple[set[str], str, float]] = []  # failures, not yet in a written table
        wake = asyncio.Event()

        async def watch(events: AsyncIterator[ClusterEvent]) -> None:
            async for ev in events:
                if isinstance(ev, NodeFailed | NodeLeft):
                    pending.append(({ev.node}, f"{type(ev).__name__} {ev.node}", time.time()))
                elif isinstance(ev, SubtreeUnreachable):
                    cause = f"SubtreeUnreachable {ev.hostlist}"
                    pending.append((set(ev.nodes), cause, time.time()))
                wake.set()  # and after EventsLost: members() is read again on every pass

        async with session.subscribe(buffer=1024) as events:  # subscribed before members()
            watcher = asyncio.ensure_future(watch(events))
            try:
                return await self._schedule(session, token, pending, wake, watcher, until_done)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError, HierclustError):
                    await watcher

    async def _schedule(
        self,
        session: Session,
        token: FencingToken,
        pending: list[tuple[set[str], str, float]],
        wake: asyncio.Event,
        watcher: asyncio.Future[None],
        until_done: bool,
    ) -> bool:
        table = await asyncio.to_thread(self.table.read)
        self.leading = session.node
        self.note("lead", f"{session.node} leads {self.root} (term {token.term})")
        dirty = True  # the first write fences every older scheduler out
        while True:
            if watcher.done():
                watcher.result()  # ConnectionLost: its host went away
            if self.root not in await session.leads():
                raise Deposed(f"{session.node} no longer leads {self.root}")
            wake.clear()
            members = {m.name: m for m in await session.members()}
            now, applied = time.time(), len(pending)
            dirty |= self._submit(table)
            dirty |= self._requeue(table, members, pending[:applied], now)
            dirty |= self._place(table, members, token, session.node, now)
            if dirty:
                try:
                    base = table["version"]
                    table = await asyncio.to_thread(self.table.write, table, token, base)
                except Conflict as exc:
                    self.note("conflict", f"{exc}; reading it again")
                    table = await asyncio.to_thread(self.table.read)
                    continue
                del pending[:applied]
                dirty = False
                self.note("write", f"version {table['version']}, term {token.term}")
            jobs = table["jobs"].values()
            if until_done and jobs and all(j["state"] in ("done", "rejected") for j in jobs):
                return True
            ends = [r["start"] + j["duration"] - now for j, r in _running(table)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), max(0.0, min([self.tick, *ends])))

    def _submit(self, table: Table) -> bool:
        """Add the jobs file's new jobs to the queue (re-read when the file changed)."""
        try:
            mtime = self.jobs_file.stat().st_mtime_ns
            if mtime != self._jobs[0]:
                self._jobs = (mtime, load_jobs(self.jobs_file))
        except (OSError, GangError) as exc:
            self.note("jobs", f"{exc}; keeping the jobs read before")
        added = False
        for job in self._jobs[1]:
            if job.name not in table["jobs"]:
                row = {"name": job.name, "seq": len(table["jobs"]), "groups": job.groups}
                row.update(duration=job.duration, state="queued", requeued=0, where=None, runs=[])
                if job.groups > len(self.nodes):
                    row.update(state="rejected", why=f"only {len(self.nodes)} leaf groups exist")
                    self.note("reject", f"{job.name}: asks for {job.groups} groups; {row['why']}")
                table["jobs"][job.name] = row
                added = True
        return added

    def _requeue(
        self,
        table: Table,
        members: dict[str, Member],
        pending: list[tuple[set[str], str, float]],
        now: float,
    ) -> bool:
        """End the runs that finished or lost a node; a job whose node failed goes back to the
        queue. A failure counts against a run if it came while the run was still going."""
        changed = False
        for job, run in _running(table):
            end = run["start"] + job["duration"]
            why = next(
                (w for nodes, w, t in pending if nodes & set(run["nodes"]) and t < end), None
            )
            if why is None and end > now:
                gone = [_gone(members, n, i) for n, i in run["nodes"].items()]
                why = next((w for w in gone if w is not None), None)
                if why is None:
                    continue
            changed = True
            run["end"], run["outcome"] = (end, "done") if why is None else (now, "requeued")
            job["where"] = None
            if why is None:
                job["state"] = "done"
                self.note("done", job["name"])
            else:
                job.update(state="queued", requeued=job["requeued"] + 1)
                run["why"] = why
                self.note("requeue", f"{job['name']}: {why}")
        return changed

    def _place(
        self, table: Table, members: dict[str, Member], token: FencingToken, by: str, now: float
    ) -> bool:
        """First fit in submission order on whole groups whose members are alive and active."""
        busy = {g for _, run in _running(table) for g in run["groups"]}
        free = [
            g
            for g, nodes in self.nodes.items()
            if g not in busy
            and all(n in members and members[n].state == "alive" for n in nodes)
            and all(members[n].mode == "active" for n in nodes)
        ]
        placed = False
        queued = [j for j in table["jobs"].values() if j["state"] == "queued"]
        for job in sorted(queued, key=lambda j: j["seq"]):
            if job["groups"] > len(free):
                continue
            groups, free = free[: job["groups"]], free[job["groups"] :]
            nodes = {n: members[n].incarnation for g in groups for n in self.nodes[g]}
            where = ",".join(self.topology.hostlist(self.topology.group(g)) for g in groups)
            job.update(state="running", where=where)
            job["runs"].append(
                {"groups": groups, "nodes": nodes, "start": now, "end": None, "outcome": None}
                | {"term": token.term, "by": by}
            )
            self.note("place", f"{job['name']} on {where}")
            placed = True
        return placed


def _running(table: Table) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(j, j["runs"][-1]) for j in table["jobs"].values() if j["state"] == "running"]


def _gone(members: dict[str, Member], node: str, incarnation: int | None) -> str | None:
    """Why ``node`` no longer runs what it was given: not alive, or restarted since (when both
    incarnations are known: an observer names one only once it holds a notice of the node)."""
    member = members.get(node)
    if member is None or member.state != "alive":
        return f"{node} {member.state if member else 'unknown'}"
    if None not in (member.incarnation, incarnation) and member.incarnation != incarnation:
        return f"{node} restarted (incarnation {member.incarnation})"
    return None


async def _clients(state_dir: Path | None, nodes: str | None) -> list[Client]:
    """A client for each node the state directory's workers run (or each of ``nodes``)."""
    first = Client(state_dir)
    await first.connect()
    topology = first.topology
    if nodes is None:
        names = [topology.node_name(r) for r in range(topology.num_nodes)]
    else:
        from ClusterShell.NodeSet import NodeSet, NodeSetParseError

        try:
            names = list(NodeSet(nodes))
        except NodeSetParseError as exc:
            raise GangError(f"--node {nodes}: not a nodeset ({exc})") from None
    clients: list[Client] = []
    for name in names:
        client = Client(first.state_dir, name)
        try:
            await client.connect()
        except UnknownNode:
            if nodes is not None:
                raise
            continue
        clients.append(client)
    if not clients:
        raise UnknownNode(f"{first.state_dir}: no node runs here")
    return clients


async def _main(args: argparse.Namespace) -> int:
    clients = await _clients(args.state_dir, args.node)
    table = JobTable(args.table or clients[0].state_dir / "gang-table.json")

    def log(kind: str, message: str) -> None:
        if args.json:
            print(json.dumps({"t": time.time(), "kind": kind, "message": message}), flush=True)
        elif kind != "write":
            print(f"{time.strftime('%H:%M:%S')} {kind:9} {message}", file=sys.stderr, flush=True)

    scheduler = GangScheduler(clients, table, args.jobs, tick=args.tick, log=log)
    log("start", f"{len(clients)} nodes here; table {table.path}; waiting to lead the root")
    await scheduler.run(until_done=args.until_done)
    jobs = table.read()["jobs"]
    if args.json:
        rows = {n: {k: j[k] for k in ("state", "requeued", "runs")} for n, j in jobs.items()}
        print(json.dumps({"table": str(table.path), "jobs": rows}))
    else:
        done = sum(j["state"] == "done" for j in jobs.values())
        print(f"{done} jobs done, {len(jobs) - done} rejected; table {table.path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A reference gang scheduler over hierclust.api.")
    parser.add_argument("--state-dir", type=Path, help="the deployment's state directory")
    parser.add_argument("--jobs", type=Path, required=True, help="[{name, groups, duration}]")
    parser.add_argument("--table", type=Path, help="default: STATE_DIR/gang-table.json")
    parser.add_argument("--node", help="local nodes to schedule from (default: all run here)")
    parser.add_argument("--tick", type=float, default=0.5, help="seconds between passes")
    parser.add_argument("--until-done", action="store_true", help="exit when every job is done")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout")
    args = parser.parse_args(argv)
    try:
        load_jobs(args.jobs)
        return asyncio.run(_main(args))
    except (GangError, NoDeployment, UnknownNode) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except HierclustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
