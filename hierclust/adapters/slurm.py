"""The Slurm adapter: hierclust's failures become Slurm node states, within seconds.

Slurm alone learns that a node died only when ``SlurmdTimeout`` (300 s by default) passes
without an answer from its ``slurmd``; until then the node's jobs are neither requeued nor
rescheduled. hierclust's tree detects the failure in a few heartbeats, and this adapter tells
Slurm at once: ``scontrol update NodeName=<hostlist> State=DOWN Reason="hierclust: ..."``, which
makes Slurm requeue the node's jobs. A planned departure drains the node; a node that comes back
is resumed — only if the adapter itself put it out of service (its reason starts with
``hierclust:``), so an operator's own DOWN or DRAIN is never undone.

**One adapter acts at a time.** Run one per host (``hierclust adapter slurm``); each watches its
host's node, and only the one whose node leads the root group (``root in leads()``) and is in
the primary component (``async with primary()``) runs ``scontrol``. The others wait, and take
over when leadership moves. In a minority partition no adapter acts: it cannot know that its
view is the cluster's.

**Idempotent.** Each time it starts acting (at start, after an election, after ``EventsLost``
or ``SubtreeReachable``, and every ``resync_s`` as a safety net) the adapter reads the whole
membership (``members()``) and Slurm's nodes, and issues only what differs
(:func:`hierclust.adapters.slurm_plan.plan`). Restarted, it repeats nothing.

What to decide is pure and lives in :mod:`hierclust.adapters.slurm_plan`; this module runs it:
the event loop (:class:`SlurmAdapter`) and the ``scontrol`` calls (:class:`Scontrol`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from hierclust.adapters.slurm_plan import (
    Command,
    NodeNames,
    SlurmNode,
    Want,
    applied,
    apply_events,
    parse_nodes,
    plan,
    wants_of_members,
)
from hierclust.api.errors import NodeDown, NotPrimary, QuorumLost
from hierclust.api.types import ClusterEvent, LeaderChanged, Member
from hierclust.topology import Topology


class SlurmError(RuntimeError):
    """``scontrol`` is missing, cannot reach slurmctld, or refused a command."""


class Membership(Protocol):
    """What the adapter asks of hierclust: a :class:`hierclust.api.Client` or ``Agent``."""

    node: str
    topology: Topology

    async def members(self) -> list[Member]: ...

    def events(self, since: str | None = None) -> AsyncIterator[ClusterEvent]: ...

    async def leads(self) -> tuple[str, ...]: ...

    def primary(self) -> AbstractAsyncContextManager[None]: ...


# -- scontrol --------------------------------------------------------------------------------------
def slurm_conf_problem(env: dict[str, str] | None = None) -> str | None:
    """Why ``scontrol`` cannot work here, or None: the program is missing, or no configuration
    file is named (``SLURM_CONF``) nor at Debian's default place."""
    environ = os.environ if env is None else env
    if shutil.which("scontrol", path=environ.get("PATH")) is None:
        return "scontrol: not found on PATH; install Slurm's client (apt-get install slurm-client)"
    conf = environ.get("SLURM_CONF")
    if conf:
        if not os.path.isfile(conf):
            return f"SLURM_CONF={conf}: no such file; point it at the cluster's slurm.conf"
        return None
    if not any(os.path.isfile(p) for p in ("/etc/slurm/slurm.conf", "/etc/slurm-llnl/slurm.conf")):
        return (
            "SLURM_CONF is not set and /etc/slurm/slurm.conf does not exist; set SLURM_CONF to "
            "the cluster's slurm.conf"
        )
    return None


class Scontrol:
    """Slurm's nodes and updates, through the ``scontrol`` program (``env`` for its
    ``SLURM_CONF``). ``dry_run``: updates are not run; the nodes read afterwards look as if they
    had been, so a dry run does not print the same command again."""

    def __init__(
        self, env: dict[str, str] | None = None, dry_run: bool = False, timeout_s: float = 20.0
    ) -> None:
        self.env = env
        self.dry_run = dry_run
        self.timeout_s = timeout_s
        self._assumed: list[Command] = []

    async def _run(self, *args: str) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                "scontrol",
                *args,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise SlurmError("scontrol: not found on PATH") from None
        try:
            async with asyncio.timeout(self.timeout_s):
                out, errs = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            why = f"no answer in {self.timeout_s:.0f} s"
            raise SlurmError(f"scontrol {' '.join(args)}: {why}") from None
        if proc.returncode != 0:
            why = errs.decode(errors="replace").strip() or f"exit {proc.returncode}"
            raise SlurmError(f"scontrol {' '.join(args)}: {why}")
        return out.decode(errors="replace")

    async def nodes(self) -> dict[str, SlurmNode]:
        nodes = parse_nodes(await self._run("-o", "show", "node"))
        return applied(nodes, self._assumed) if self._assumed else nodes

    async def update(self, command: Command) -> None:
        if self.dry_run:
            self._assumed.append(command)
            return
        await self._run(*command.args())


# -- the loop --------------------------------------------------------------------------------------
@dataclass
class Record:
    """One command the adapter ran (or, dry, would have run): what, why, how it went."""

    command: Command
    why: str
    ok: bool
    error: str = ""
    dry_run: bool = False
    wall_time: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.command.as_dict(),
            "why": self.why,
            "ok": self.ok,
            "error": self.error,
            "dry_run": self.dry_run,
            "time": self.wall_time,
        }


class NotElected(Exception):
    """The adapter's node no longer leads the root group."""


class SlurmAdapter:
    """Feed ``session``'s view of the cluster to Slurm through ``scontrol``.

    ``report`` is called with every :class:`Record` (the CLI prints them); ``note`` with a line
    of text when the adapter's role changes (elected, waiting). :attr:`records` keeps them all.
    """

    def __init__(
        self,
        session: Membership,
        scontrol: Scontrol,
        names: NodeNames | None = None,
        *,
        resync_s: float = 30.0,
        poll_s: float = 1.0,
        report: Callable[[Record], None] | None = None,
        note: Callable[[str], None] | None = None,
    ) -> None:
        self.session = session
        self.scontrol = scontrol
        self.names = names or NodeNames()
        self.resync_s = resync_s
        self.poll_s = poll_s
        self.report = report
        self.note = note
        self.root = session.topology.root.name
        self.wants: dict[str, Want] = {}
        self.records: list[Record] = []
        self.elected = False
        self.reconciles = 0

    def _say(self, line: str) -> None:
        if self.note is not None:
            self.note(line)

    async def run(self, once: bool = False) -> None:
        """Act whenever elected, forever (``once``: one reconcile if elected now, then return).
        Losing the primary component or the root's leadership, or the watched node stopping,
        only pauses it; ``ConnectionLost`` (the node's worker went away) propagates."""
        waiting_said = False
        while True:
            if not await self.is_elected():
                if not waiting_said:
                    self._say(
                        f"{self.session.node} does not lead {self.root}: waiting (another "
                        "host's adapter acts)"
                    )
                    waiting_said = True
                if once:
                    return
                await asyncio.sleep(self.poll_s)
                continue
            waiting_said = False
            try:
                async with self.session.primary():
                    self.elected = True
                    self._say(f"{self.session.node} leads {self.root}: acting")
                    if once:
                        await self.reconcile("start")
                        return
                    await self._serve()
            except (NotPrimary, QuorumLost, NotElected, NodeDown) as exc:
                self._say(f"{self.session.node}: stopped acting ({exc or type(exc).__name__})")
                if once:
                    return
                await asyncio.sleep(self.poll_s)
            finally:
                self.elected = False

    async def is_elected(self) -> bool:
        try:
            return self.root in await self.session.leads()
        except (NotPrimary, NodeDown):  # NodeDown: the watched node is stopped; it may return
            return False

    async def reconcile(self, why: str) -> list[Record]:
        """Read the members and Slurm's nodes, and issue what differs."""
        self.reconciles += 1
        self.wants = wants_of_members(await self.session.members())
        return await self._issue(plan(self.wants, await self.scontrol.nodes(), self.names), why)

    async def handle(self, events: list[ClusterEvent]) -> list[Record]:
        """Move the wants by ``events`` and issue what they change (a full reconcile when they
        say the view must be read again)."""
        touched, resync = apply_events(self.wants, events)
        if resync:
            return await self.reconcile(type(events[-1]).__name__)
        if not touched:
            return []
        commands = plan(self.wants, await self.scontrol.nodes(), self.names, only=touched)
        if not commands:
            return []
        if not await self.is_elected():  # leadership may have moved while the events queued
            raise NotElected(f"{self.session.node} no longer leads {self.root}")
        return await self._issue(commands, ", ".join(sorted({type(e).__name__ for e in events})))

    async def _issue(self, commands: Iterable[Command], why: str) -> list[Record]:
        done: list[Record] = []
        for command in commands:
            try:
                await self.scontrol.update(command)
                record = Record(command, why, ok=True, dry_run=self.scontrol.dry_run)
            except SlurmError as exc:  # retried at the next reconcile
                record = Record(command, why, ok=False, error=str(exc))
            self.records.append(record)
            done.append(record)
            if self.report is not None:
                self.report(record)
        return done

    async def _serve(self) -> None:
        queue: asyncio.Queue[ClusterEvent] = asyncio.Queue()

        async def pump() -> None:
            async for event in self.session.events():
                queue.put_nowait(event)

        # subscribe first, so nothing concluded after the members are read is missed
        pumping = asyncio.ensure_future(pump())
        try:
            await asyncio.sleep(0)
            await self.reconcile("start")
            next_resync = time.monotonic() + self.resync_s
            while True:
                wait_s = max(0.0, min(next_resync - time.monotonic(), self.poll_s * 5))
                try:
                    async with asyncio.timeout(wait_s):
                        first = await self._next(queue, pumping)
                except TimeoutError:
                    if not await self.is_elected():
                        why = f"{self.session.node} no longer leads {self.root}"
                        raise NotElected(why) from None
                    if time.monotonic() >= next_resync:
                        await self.reconcile("periodic")
                        next_resync = time.monotonic() + self.resync_s
                    continue
                batch = [first]
                while not queue.empty():
                    batch.append(queue.get_nowait())
                for event in batch:
                    if (
                        isinstance(event, LeaderChanged)
                        and event.group == self.root
                        and event.leader != self.session.node
                    ):
                        raise NotElected(f"{event.leader} now leads {self.root}")
                await self.handle(batch)
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pumping

    @staticmethod
    async def _next(
        queue: asyncio.Queue[ClusterEvent], pumping: asyncio.Future[None]
    ) -> ClusterEvent:
        """The next event; the pump's own error (``ConnectionLost``) if it ended."""
        getter: asyncio.Future[Any] = asyncio.ensure_future(queue.get())
        waiting: set[asyncio.Future[Any]] = {getter, pumping}
        try:
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getter.done():
                getter.cancel()
        if getter.done() and not getter.cancelled():
            event: ClusterEvent = getter.result()
            return event
        pumping.result()  # raises what ended the stream
        raise NotElected("the event stream ended")
