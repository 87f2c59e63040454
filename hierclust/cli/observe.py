"""Looking at a running cluster: ``status``, ``members``, ``quorum``, ``events``.

Every figure comes from :func:`hierclust.runtime.status.aggregate` (whose docstring defines alive,
unreachable, failed, left, suspect, led, quorate and votes present), from one node's own view
(``--from NODE``: :mod:`hierclust.runtime.view`) or from the event logs.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from hierclust.cli.common import JsonFlag, command_group, emit_json, fail, out, plural, refuse
from hierclust.cli.statedir import StateDirOpt, live, resolve
from hierclust.cli.targets import known, rank_of
from hierclust.topology import Topology

app = command_group()

GroupOpt = Annotated[
    str | None,
    typer.Option("--group", help="Only this group's subtree.", show_default=False),
]
FromOpt = Annotated[
    str | None,
    typer.Option(
        "--from",
        help="As this node sees it (its own notices, modes, cut-off subtrees and leases), "
        "instead of the primary component's merged view.",
        show_default=False,
    ),
]
STATE_COLOUR = {
    "alive": "green",
    "unreachable": "magenta",
    "suspect": "yellow",
    "failed": "red",
    "left": "blue",
}


def check_group(topology: Topology, group: str | None, as_json: bool) -> None:
    if group is not None and group not in topology.groups:
        fail(
            f"{group}: no group of that name in {topology.source}; {known(topology, group)}",
            as_json,
            group=group,
        )


@app.command("status")
def status(
    state_dir: StateDirOpt = None,
    group: GroupOpt = None,
    raw: Annotated[
        bool,
        typer.Option("--snapshots", hidden=True, help="Raw worker snapshots (for deploy --hosts)."),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """The group tree: leaders, terms, quorum, failed members.

    Counts are the primary component's view: a node in a subtree that the primary component
    holds cut off is 'unreachable', and a group whose leader is failed or unreachable has no
    leader. Quorum reads 'quorate (6 of 7 votes, needs 4)':
    votes present, the group's votes, the majority it needs. A node that stopped on an error
    counts as failed at once, and a line under the tree gives its reason (stopped_on_error in
    --json). A node that cannot write its state file (read-only or full state directory) stays
    alive but votes for no one: a line under the tree says why (storage_faults in --json).
    With --group, every count is of that subtree.
    """
    from hierclust.runtime.status import aggregate

    if raw:
        from hierclust.runtime.deploy import collect

        directory = resolve(state_dir, "status", as_json, must_exist=False)
        if not directory.is_dir():
            emit_json({"snapshots": [], "errors": [f"{directory}: no such directory"]})
            return
        found, errors = collect(directory)
        emit_json({"snapshots": found, "errors": errors})
        return
    _, topology, snapshots, errors = live(state_dir, "status", as_json)
    check_group(topology, group, as_json)
    summary = aggregate(topology, snapshots, errors, group)
    if as_json:
        emit_json(summary)
        return
    out.print(status_tree(topology, summary))


def status_tree(topology: Topology, summary: dict[str, Any]) -> Tree:
    """The status summary as a tree of groups, one line each."""
    details = {d["name"]: d for d in summary["group_details"]}
    where = topology.name if summary["group"] is None else f"{topology.name} {summary['group']}"
    head = (
        f"{where}: {summary['alive']}/{summary['nodes']} alive, "
        f"{summary['unreachable']} unreachable, "
        f"{summary['suspect']} suspect, {summary['failed']} failed, {summary['left']} left "
        f"({summary['maintenance']} in maintenance, {summary['drained']} drained); "
        f"{summary['groups_led']}/{summary['groups']} led, {summary['groups_quorate']} quorate; "
        f"{summary['datagrams_dropped']} datagrams dropped"
    )
    head = escape(head)
    if not summary["primary"]:
        head += "; [red]no primary component[/]"
    tree = Tree(head)
    top = topology.group(summary["group"]) if summary["group"] else topology.root

    def add(node: Tree, name: str) -> None:
        branch = node.add(group_line(details[name]))
        for child in topology.group(name).children:
            if child in details:
                add(branch, child)

    add(tree, top.name)
    for name in summary["unreachable_groups"]:
        folded = topology.hostlist(topology.group(name))
        tree.add(f"[magenta]cut off from the primary component: {escape(name)} {escape(folded)}[/]")
    for reason in summary["stopped_on_error"].values():
        tree.add(f"[red]stopped on an error: {escape(reason)}[/]")
    for line in storage_lines(summary.get("storage_faults", {})):
        tree.add(f"[yellow]{escape(line)}[/]")
    for error in summary["errors"]:
        tree.add(f"[red]{escape(error)}[/]")
    return tree


def storage_lines(faults: dict[str, str], most: int = 4) -> list[str]:
    """``NODE REASON`` per node that cannot persist; beyond ``most`` nodes, one line per error
    with the nodes folded (a full disk under a worker puts all its nodes here at once)."""
    if len(faults) <= most:
        return [f"{name} {reason}" for name, reason in faults.items()]
    from ClusterShell.NodeSet import NodeSet

    by_error: dict[str, list[str]] = {}
    for name, reason in faults.items():
        # "cannot write PATH: ERROR (ERRNO); ...": the path names the node, the rest is shared
        error = reason.partition(": ")[2] or reason
        by_error.setdefault(error, []).append(name)
    return [
        f"{NodeSet.fromlist(names)} ({plural(len(names), 'node')}) cannot write their state: "
        f"{error}"
        for error, names in by_error.items()
    ]


def group_line(d: dict[str, Any]) -> str:
    """One group: who leads it (only an alive leader counts), term, quorum, its members."""
    from ClusterShell.NodeSet import NodeSet

    leader = escape(d["leader"] or "")
    if d["led"]:
        lead = f"[green]led[/] {leader}"
    elif d["leader"] is None:
        lead = "[red]no leader[/]"
    elif d["leader_state"] == "alive":
        lead = f"[red]no leader[/] (members follow {leader})"
    else:
        lead = f"[red]no leader[/]: {leader} is {d['leader_state']}"
    quorum = "[green]quorate[/]" if d["quorate"] else "[red]no quorum[/]"
    text = (
        f"[bold]{escape(d['name'])}[/] tier {d['tier']}: {lead}, term {d['term']}, {quorum} "
        f"({d['votes_present']} of {d['votes']} votes, needs {d['quorum']})"
    )
    if d["members_alive"] is not None:
        text += f", {d['members_alive']} alive"
    if d["failed_members"]:
        text += f", [red]failed: {escape(', '.join(d['failed_members']))}[/]"
    if d["left_members"]:
        text += f", [blue]left: {escape(', '.join(d['left_members']))}[/]"
    if d["unreachable_members"]:
        folded = str(NodeSet.fromlist(d["unreachable_members"]))
        text += f", [magenta]unreachable: {escape(folded)}[/]"
    if d["admin_members"]:
        by_mode: dict[str, list[str]] = {}
        for name, mode in d["admin_members"].items():
            by_mode.setdefault(mode, []).append(name)
        text += "".join(f", {m}: {escape(', '.join(ns))}" for m, ns in sorted(by_mode.items()))
    return text


@app.command("members")
def members(
    state_dir: StateDirOpt = None,
    group: GroupOpt = None,
    from_node: FromOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Every node: state, mode, incarnation, leads, reason.

    Mode is the admin mode, leads the groups it leads. State is alive, unreachable (in a subtree
    the primary component holds cut off), suspect, failed or left, as in status. Reason: for a
    node its worker reports stopped, how it stopped ('killed', or the error that stopped it: that
    node is failed at once); empty (null in --json) otherwise.

    With --from NODE: every node as NODE itself sees it (its failure and alive notices, admin
    modes, cut-off subtrees, the leaders it follows): alive, failed, left or unreachable. Exit 2
    if there is no such node, 1 if it does not run here.
    """
    from hierclust.runtime.status import aggregate

    _, topology, snapshots, errors = live(state_dir, "members", as_json)
    check_group(topology, group, as_json)
    ranks = topology.group(group).ranks if group is not None else range(topology.num_nodes)
    if from_node is not None:
        members_from(topology, snapshots, from_node, ranks, as_json)
        return
    summary = aggregate(topology, snapshots, errors)
    by_rank = {n["rank"]: n for s in snapshots for n in s["nodes"]}
    states: dict[str, str] = {}
    for state, key in (
        ("suspect", "suspect_nodes"),
        ("unreachable", "unreachable_nodes"),
        ("left", "left_nodes"),
        ("failed", "failed_nodes"),
    ):
        states.update(dict.fromkeys(summary[key], state))
    modes = dict.fromkeys(summary["maintenance_nodes"], "maintenance")
    modes.update((n, "drained") for n in summary["drained_nodes"])
    leads: dict[str, list[str]] = {}
    for d in summary["group_details"]:
        if d["led"] and d["leader"]:
            leads.setdefault(d["leader"], []).append(d["name"])
    rows = []
    for r in ranks:
        name = topology.node_name(r)
        entry = by_rank.get(r, {})
        rows.append(
            {
                "node": name,
                "name": name,
                "rank": r,
                "group": topology.leaf_of(r).name,
                "state": states.get(name, "alive"),
                "mode": modes.get(name, "active"),
                "incarnation": entry.get("incarnation"),
                "leads": leads.get(name, []),
                "address": str(topology.address(r)),
                "reason": None if entry.get("running", True) else entry.get("stop_reason"),
            }
        )
    if as_json:
        emit_json({"members": rows})
        return
    table = Table(title=f"{topology.name}: members")
    reasons = any(row["reason"] for row in rows)  # the column only when some node is down
    columns = ["node", "state", "mode", "inc", "address", "leads"]
    for col in columns + ["reason"] if reasons else columns:
        table.add_column(col)
    for row in rows:
        cells = [
            row["node"],
            f"[{STATE_COLOUR[row['state']]}]{row['state']}[/]",
            row["mode"] if row["mode"] != "active" else "",
            str(row["incarnation"] or "-"),
            row["address"],
            ", ".join(row["leads"]),
        ]
        if reasons:
            cells.append(escape(row["reason"] or ""))
        table.add_row(*cells)
    out.print(table)


def members_from(
    topology: Topology,
    snapshots: list[dict[str, Any]],
    name: str,
    ranks: range,
    as_json: bool,
) -> None:
    """``members --from NAME``: the rows of :func:`hierclust.runtime.view.members_as_seen`."""
    from hierclust.runtime.view import members_as_seen

    view = node_view(topology, snapshots, name, as_json)
    rows = members_as_seen(topology, view, ranks)
    if as_json:
        emit_json({"from": name, "members": rows})
        return
    table = Table(title=f"{topology.name}: members as {name} sees them")
    for col in ("node", "state", "mode", "inc", "leads"):
        table.add_column(col)
    for row in rows:
        table.add_row(
            row["name"],
            f"[{STATE_COLOUR[row['state']]}]{row['state']}[/]",
            row["mode"] if row["mode"] != "active" else "",
            str(row["incarnation"] or "-"),
            ", ".join(row["leads"]),
        )
    out.print(table)


def node_view(
    topology: Topology, snapshots: list[dict[str, Any]], name: str, as_json: bool
) -> dict[str, Any]:
    """Node ``name``'s own view, asked of the worker that runs it. Exit 2 if there is no such
    node; exit 1 if it is not running, or no worker answering here runs it."""
    from ClusterShell.NodeSet import NodeSet

    from hierclust.runtime.control import ControlError, request

    rank = rank_of(topology, name, as_json)
    here: list[str] = []
    for snap in snapshots:
        here += [topology.node_name(r) for r in snap.get("ranks", [])]
        if rank not in snap.get("ranks", []):
            continue
        try:
            view: dict[str, Any] | None = request(
                Path(snap["socket"]), {"op": "view", "rank": rank}
            ).get("view")
        except ControlError as exc:
            refuse(f"{name}: its worker does not answer: {exc}", as_json, node=name)
        if not view or not view.get("running"):
            how = (view or {}).get("stop_reason") or "stopped"
            refuse(
                f"{name} is not running ({how}); `hierclust restart {name}` brings it back",
                as_json,
                node=name,
            )
        return view
    runs = str(NodeSet.fromlist(here)) if here else "no node"
    refuse(
        f"{name} does not run in this state directory (its workers run {runs}); ask on the "
        f"host of {name}, with the --state-dir of its agent",
        as_json,
        node=name,
    )


@app.command("quorum")
def quorum(
    state_dir: StateDirOpt = None,
    node: Annotated[
        str | None, typer.Option("--node", help="Ask as this node.", show_default=False)
    ] = None,
    from_node: FromOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Quorum per group, and who is in the primary component.

    With --node: whether that node is in the primary component (exit 1 if it is not running).
    With --from NODE: NODE's own answer (in_primary) and the quorum of each group it sits in as
    it holds it (a leader: its lease; a member: the lease its leader's acks report). Exit 2 if
    there is no such node, 1 if it does not run here.
    """
    from hierclust.runtime.status import aggregate

    if node is not None and from_node is not None:
        fail("give --node NODE or --from NODE, not both", as_json)
    _, topology, snapshots, errors = live(state_dir, "quorum", as_json)
    if from_node is not None:
        quorum_from(topology, snapshots, from_node, as_json)
        return
    summary = aggregate(topology, snapshots, errors)
    nodes = [n for s in snapshots for n in s["nodes"] if n.get("running")]
    if node is not None:
        rank = rank_of(topology, node, as_json)
        nodes = [n for n in nodes if n["rank"] == rank]
        if not nodes:
            refuse(f"node {node} is not running", as_json, node=node)
    result = {
        "groups": len(topology.by_index),
        "groups_quorate": summary["groups_quorate"],
        "in_primary": sum(1 for n in nodes if n.get("in_primary")),
        "nodes": len(nodes),
        "group_quorum": {
            d["name"]: {
                "quorate": d["quorate"],
                "votes": d["votes"],
                "votes_present": d["votes_present"],
                "quorum": d["quorum"],
                "term": d["term"],
            }
            for d in summary["group_details"]
        },
    }
    if node is not None:
        result["node"] = node
        result["primary"] = bool(nodes[0].get("in_primary"))
    if as_json:
        emit_json(result)
        return
    out.print(
        f"{result['groups_quorate']}/{result['groups']} groups quorate; "
        f"{result['in_primary']}/{result['nodes']} running nodes in the primary component",
        highlight=False,
    )


def quorum_from(
    topology: Topology, snapshots: list[dict[str, Any]], name: str, as_json: bool
) -> None:
    """``quorum --from NAME``: :func:`hierclust.runtime.view.quorum_as_seen`."""
    from hierclust.runtime.view import quorum_as_seen

    result = quorum_as_seen(topology, node_view(topology, snapshots, name, as_json))
    if as_json:
        emit_json(result)
        return
    where = "in" if result["in_primary"] else "not in"
    lines = [f"{name}: {where} the primary component"]
    for group, q in result["group_quorum"].items():
        held = "quorate" if q["quorate"] else "no quorum"
        if q["leading"]:
            who = f"led by {name} (itself)"
        elif q["leader"] is not None:
            who = f"follows {q['leader']}"
        else:
            who = "no leader known"
        lines.append(f"  {group} tier {q['tier']}: {held}, {who}, term {q['term']}")
    out.print("\n".join(lines), highlight=False)


@app.command("events")
def events(
    state_dir: StateDirOpt = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new events.")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Node events, oldest first, one line each.

    \b
    Columns: TIME NODE EVENT, then the event's fields as FIELD=VALUE.
      TIME   wall-clock time on this host (HH:MM:SS.mmm), converted from the
             monotonic clock that every worker of this host stamps events with
      NODE   the node the event happened on
      EVENT  what happened: NoticeLearned, LeaderChanged, ElectionStarted,
             LeaseChanged, ViewChanged, QuorumChanged, VoteGranted,
             SubtreeUnreachable / SubtreeReachable (this node now holds a
             subtree cut off, or reachable again; followed by GROUP NODESET);
             the runtime adds Booted, Crashed (killed), Failed (stopped on an error in its
             step or its effects, a failed write included; reason= names the
             node, what it was doing and the exception) and Stopped (a clean
             stop)
      FIELD=VALUE  a field of the event (a notice: kind, node rank, incarnation;
             a subtree notice: unreachable or reachable, group, nodes, seq)

    With --json: the records as logged, one JSON object per line; t_ns is that
    monotonic clock (CLOCK_MONOTONIC) in nanoseconds.
    """
    directory = resolve(state_dir, "events", as_json)
    offsets: dict[Path, int] = {}
    wall_offset_ns = time.time_ns() - time.monotonic_ns()
    try:
        while True:
            batch: list[dict[str, Any]] = []
            for path in sorted(directory.glob("events-*.jsonl")):
                with open(path, "rb") as handle:
                    handle.seek(offsets.get(path, 0))
                    data = handle.read()
                complete = data[: data.rfind(b"\n") + 1]
                offsets[path] = offsets.get(path, 0) + len(complete)
                for line in complete.splitlines():
                    try:
                        batch.append(json.loads(line))
                    except ValueError:
                        continue
            batch.sort(key=lambda r: r.get("t_ns", 0))
            for record in batch:
                text = json.dumps(record) if as_json else event_line(record, wall_offset_ns)
                print(text, flush=True)
            if not follow:
                return
            time.sleep(0.2)
    except (KeyboardInterrupt, BrokenPipeError):
        return


def event_line(record: dict[str, Any], wall_offset_ns: int) -> str:
    """``TIME NODE EVENT FIELD=VALUE ...``; TIME is the wall clock of ``t_ns`` (monotonic) given
    ``wall_offset_ns`` = wall clock - monotonic clock, both read on this host."""
    fields = {k: v for k, v in record.items() if k not in ("t_ns", "node", "rank", "event")}
    if "notice" in fields:
        n = fields.pop("notice")
        if n["kind"] == "admin":
            fields["notice"] = f"{n['mode']} ranks {n['node']}+{n['count']} seq {n['seq']}"
        elif n["kind"] in ("unreachable", "reachable"):
            fields["notice"] = f"{n['kind']} {subtree_text(n, n['node'])} seq {n['seq']}"
        else:
            fields["notice"] = f"{n['kind']} rank {n['node']} inc {n['incarnation']}"
    if record.get("event") in ("SubtreeUnreachable", "SubtreeReachable"):
        rest = subtree_text(fields, fields.get("first"))
    else:
        rest = " ".join(f"{k}={v}" for k, v in fields.items())
    wall_ns = int(record.get("t_ns", 0)) + wall_offset_ns
    stamp = time.strftime("%H:%M:%S", time.localtime(wall_ns // 1_000_000_000))
    stamp += f".{wall_ns // 1_000_000 % 1000:03d}"
    return f"{stamp} {record.get('node', '-')} {record.get('event')} {rest}".rstrip()


def subtree_text(fields: dict[str, Any], first: Any) -> str:
    """A subtree in an event line: ``scotland sc[01-05]`` (its group's name and nodes, as the
    worker logged them), else ``group 3 ranks 0+5``."""
    if "group_name" in fields:
        return f"{fields['group_name']} {fields.get('nodes', '')}".rstrip()
    return f"group {fields.get('group')} ranks {first}+{fields.get('count')}"
