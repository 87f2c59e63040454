"""What the Slurm adapter decides, without doing it: membership and Slurm's node states in,
``scontrol update`` commands out.

Pure (no I/O, no clock), so every rule here is unit-tested on its own; the asyncio loop and the
subprocess calls are in :mod:`hierclust.adapters.slurm`.

The rules:

* **What hierclust wants of each node** (:class:`Want`): in service while it is alive (or only
  suspected), ``DOWN`` once it failed or is in a subtree cut off from the observer, ``DRAIN``
  once it left as planned. Events move one node's want (``NodeFailed``, ``NodeLeft``,
  ``NodeAlive``, ``SubtreeUnreachable``); a ``SubtreeReachable`` or an ``EventsLost`` says the
  observer's full view must be read again (:func:`apply_events` reports it), because a node in a
  subtree that comes back may still have failed meanwhile.
* **What is done about it** (:func:`plan`), given what Slurm shows now: nothing for a node
  Slurm does not know; nothing when Slurm already shows what is wanted (which makes every plan
  idempotent: replaying events or restarting the adapter repeats no command); nothing for a node
  an operator took out of service (DOWN, DRAIN or FAIL with a reason not starting with
  ``hierclust:``) — the adapter neither overrides nor undoes an operator's decision; and
  ``RESUME`` only for a node whose reason is the adapter's own.
* **Batching**: nodes getting the same state with the same reason go in one command, their
  names folded into a Slurm hostlist (``cn[01-04,09]``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from ClusterShell.NodeSet import NodeSet, NodeSetParseError

from hierclust.api.types import (
    ClusterEvent,
    EventsLost,
    Member,
    NodeAlive,
    NodeFailed,
    NodeLeft,
    SubtreeReachable,
    SubtreeUnreachable,
)

REASON_PREFIX = "hierclust:"
"""Every reason the adapter writes starts with this; only such nodes are ever resumed."""
REASON_FAILED = "hierclust: node failed"
REASON_LEFT = "hierclust: node left (planned)"


REASON_CUT_OFF = "hierclust: unreachable (in a subtree cut off)"
"""For a node the members list unreachable: they do not say which subtree is cut off."""


def reason_unreachable(group: str) -> str:
    return f"hierclust: unreachable (subtree {group} cut off)"


# -- Slurm's side ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SlurmNode:
    """One node as ``scontrol show node`` prints it: ``state`` (``IDLE``, ``DOWN*``,
    ``IDLE+DRAIN``, ...) and ``reason`` (empty when none)."""

    name: str
    state: str
    reason: str = ""

    @property
    def flags(self) -> frozenset[str]:
        """The state's words, without Slurm's one-character marks (``*`` not responding ...)."""
        return frozenset(w.rstrip("*$~#%@!^-") for w in self.state.upper().split("+"))

    @property
    def down(self) -> bool:
        return "DOWN" in self.flags

    @property
    def out_of_service(self) -> bool:
        """DOWN, or drained (DRAIN/FAIL): Slurm places no new job there."""
        return bool(self.flags & {"DOWN", "DRAIN", "DRAINED", "DRAINING", "FAIL", "FAILING"})

    @property
    def ours(self) -> bool:
        """Out of service for a reason the adapter wrote."""
        return self.out_of_service and self.reason.startswith(REASON_PREFIX)

    @property
    def operators(self) -> bool:
        """Out of service for anyone else's reason (an operator, Slurm itself)."""
        return self.out_of_service and not self.reason.startswith(REASON_PREFIX)

    @property
    def idle(self) -> bool:
        return self.flags == {"IDLE"} and "*" not in self.state


_SHOW_KEY = re.compile(r"(?:^|\s)([A-Za-z:/_]+)=")


def parse_show(line: str) -> dict[str, str]:
    """``Key=Value ...`` as printed by ``scontrol -o show``: a value runs up to the next
    ``Key=`` after a space (``Reason=`` holds spaces)."""
    fields: dict[str, str] = {}
    keys = list(_SHOW_KEY.finditer(line))
    for i, key in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(line)
        fields[key.group(1)] = line[key.end() : end].strip()
    return fields


def parse_nodes(output: str) -> dict[str, SlurmNode]:
    """``scontrol -o show node`` output: SlurmNode by NodeName."""
    nodes: dict[str, SlurmNode] = {}
    for line in output.splitlines():
        if not line.startswith("NodeName="):
            continue
        fields = parse_show(line)
        reason = fields.get("Reason", "")
        if reason in ("(null)", "None"):
            reason = ""
        name = fields["NodeName"]
        nodes[name] = SlurmNode(name, fields.get("State", "UNKNOWN"), reason)
    return nodes


def hostlist(names: Iterable[str]) -> str:
    """Slurm's hostlist of ``names``, folded along the last number only (``rack1-n[1-4]``; Slurm
    reads no multi-dimensional ranges)."""
    nodeset = NodeSet.fromlist(sorted(names))
    nodeset.fold_axis = (-1,)
    return str(nodeset)


# -- names ----------------------------------------------------------------------------------------
class NameMapError(ValueError):
    """A ``--map`` rule that cannot be read."""


class NodeNames:
    """hierclust node name -> Slurm NodeName: the same name unless a rule maps it.

    Rules are ``HC=SLURM`` nodesets of equal size, paired in order: ``cn[01-16]=nid[001-016]``.
    """

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        self.mapping = dict(mapping or {})

    @classmethod
    def parse(cls, rules: Sequence[str]) -> NodeNames:
        mapping: dict[str, str] = {}
        for rule in rules:
            left, sep, right = rule.partition("=")
            if not sep or not left.strip() or not right.strip():
                raise NameMapError(f"{rule!r}: expected HIERCLUST=SLURM, e.g. cn[1-4]=nid[001-004]")
            try:
                ours, theirs = list(NodeSet(left.strip())), list(NodeSet(right.strip()))
            except NodeSetParseError as exc:
                raise NameMapError(f"{rule!r}: not a nodeset ({exc})") from None
            if len(ours) != len(theirs):
                raise NameMapError(
                    f"{rule!r}: {len(ours)} hierclust names but {len(theirs)} Slurm names"
                )
            mapping.update(zip(ours, theirs, strict=True))
        return cls(mapping)

    def slurm(self, node: str) -> str:
        return self.mapping.get(node, node)


# -- hierclust's side -----------------------------------------------------------------------------
class Action(Enum):
    UP = "resume"
    DOWN = "down"
    DRAIN = "drain"


@dataclass(frozen=True, slots=True)
class Want:
    """What hierclust wants Slurm to show for one node, and the reason it gives."""

    action: Action
    reason: str = ""


IN_SERVICE = Want(Action.UP)


def wants_of_members(members: Iterable[Member]) -> dict[str, Want]:
    """Every node's want from the observer's members."""
    wants: dict[str, Want] = {}
    for m in members:
        if m.state == "failed":
            wants[m.name] = Want(Action.DOWN, REASON_FAILED)
        elif m.state == "left":
            wants[m.name] = Want(Action.DRAIN, REASON_LEFT)
        elif m.state == "unreachable":
            wants[m.name] = Want(Action.DOWN, REASON_CUT_OFF)
        else:
            wants[m.name] = IN_SERVICE
    return wants


def apply_events(wants: dict[str, Want], events: Iterable[ClusterEvent]) -> tuple[set[str], bool]:
    """Move ``wants`` by ``events`` in order; the nodes whose want was set, and whether the
    observer's members must be read again (``SubtreeReachable``, ``EventsLost``)."""
    touched: set[str] = set()
    resync = False
    for ev in events:
        if isinstance(ev, NodeFailed):
            wants[ev.node] = Want(Action.DOWN, REASON_FAILED)
            touched.add(ev.node)
        elif isinstance(ev, NodeLeft):
            wants[ev.node] = Want(Action.DRAIN, REASON_LEFT)
            touched.add(ev.node)
        elif isinstance(ev, NodeAlive):
            wants[ev.node] = IN_SERVICE
            touched.add(ev.node)
        elif isinstance(ev, SubtreeUnreachable):
            for node in ev.nodes:
                wants[node] = Want(Action.DOWN, reason_unreachable(ev.group))
                touched.add(node)
        elif isinstance(ev, SubtreeReachable | EventsLost):
            resync = True
    return touched, resync


# -- the plan -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """One ``scontrol update`` of ``nodes`` (Slurm names, sorted) to ``action``."""

    action: Action
    nodes: tuple[str, ...]
    reason: str = ""

    @property
    def hostlist(self) -> str:
        return hostlist(self.nodes)

    def args(self) -> list[str]:
        """The arguments after ``scontrol`` (one argument per word: no shell quoting needed)."""
        state = {Action.UP: "RESUME", Action.DOWN: "DOWN", Action.DRAIN: "DRAIN"}[self.action]
        argv = ["update", f"NodeName={self.hostlist}", f"State={state}"]
        if self.action is not Action.UP:
            argv.append(f"Reason={self.reason}")
        return argv

    def as_dict(self) -> dict[str, object]:
        return {
            "action": self.action.value,
            "nodes": self.hostlist,
            "count": len(self.nodes),
            "reason": self.reason,
            "argv": ["scontrol", *self.args()],
        }


def needed(want: Want, node: SlurmNode) -> bool:
    """Whether Slurm's ``node`` must change for ``want``."""
    if want.action is Action.UP:
        return node.ours
    if node.operators:
        return False
    if want.action is Action.DOWN:
        return not node.down
    return not node.out_of_service


def plan(
    wants: Mapping[str, Want],
    slurm: Mapping[str, SlurmNode],
    names: NodeNames | None = None,
    only: Iterable[str] | None = None,
) -> list[Command]:
    """The commands that bring Slurm to ``wants`` (of the nodes in ``only``, default all),
    batched by state and reason: DOWN first (jobs requeued soonest), then DRAIN, then RESUME."""
    names = names or NodeNames()
    chosen = wants.keys() if only is None else [n for n in only if n in wants]
    batches: dict[tuple[Action, str], list[str]] = {}
    for node in chosen:
        want = wants[node]
        theirs = slurm.get(names.slurm(node))
        if theirs is None or not needed(want, theirs):
            continue
        batches.setdefault((want.action, want.reason), []).append(theirs.name)
    order = {Action.DOWN: 0, Action.DRAIN: 1, Action.UP: 2}
    return [
        Command(action, tuple(sorted(batch)), reason)
        for (action, reason), batch in sorted(
            batches.items(), key=lambda item: (order[item[0][0]], item[0][1])
        )
    ]


def applied(slurm: Mapping[str, SlurmNode], commands: Iterable[Command]) -> dict[str, SlurmNode]:
    """Slurm's nodes as they would be after ``commands`` (what a dry run assumes happened)."""
    after = dict(slurm)
    for cmd in commands:
        for name in cmd.nodes:
            old = after[name]
            if cmd.action is Action.UP:
                after[name] = SlurmNode(name, "IDLE", "")
            elif cmd.action is Action.DOWN:
                after[name] = SlurmNode(name, "DOWN", cmd.reason)
            else:
                after[name] = SlurmNode(name, f"{old.state.split('+')[0]}+DRAIN", cmd.reason)
    return after
