"""Runtime commands of the ``hierclust`` CLI: agent, deploy, status, members, quorum, events, kill,
pause, partition, heal, stop. :func:`register` adds them to the main typer app.

Every command takes ``--state-dir`` (default ``$HIERCLUST_STATE_DIR`` or ``/tmp/hierclust-UID``)
and ``--json``; errors a user can cause print one line naming the file/key/node and exit 2.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

import hierclust.cli as base
from hierclust.core.types import ACTIVE, ADMIN_MODES, DRAINED, MAINTENANCE
from hierclust.runtime.discover import default_state_dir
from hierclust.runtime.errors import DeployError

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="Deployment state directory (default $HIERCLUST_STATE_DIR or /tmp/hierclust-UID).",
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
HostsOpt = Annotated[
    str | None,
    typer.Option(
        "--hosts",
        help="Hosts of the topology's addresses to act on (nodeset, or 'all'), with ClusterShell.",
    ),
]
SshFlag = Annotated[
    bool, typer.Option("--ssh", help="With --hosts: over ssh (ClusterShell; the default).")
]
ExecOpt = Annotated[
    str | None,
    typer.Option(
        "--exec",
        help="With --hosts: run through this local prefix instead of ssh; %h is the host "
        "(e.g. 'ip netns exec lab-%h').",
    ),
]
PythonOpt = Annotated[
    str | None,
    typer.Option("--python", help="With --hosts: the Python on the hosts (default: this one)."),
]
Targets = Annotated[
    list[str], typer.Argument(help="Group names or nodesets (cn[01-04]); several allowed.")
]
WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        min=0.0,
        help="Seconds to wait until every target is in the new mode and has handed over what it "
        "led (0: do not wait).",
    ),
]
FanoutOpt = Annotated[
    int, typer.Option("--fanout", min=1, help="With --hosts: hosts contacted at once.")
]


def _dir(state_dir: Path | None) -> Path:
    return state_dir if state_dir is not None else default_state_dir()


def _live(state_dir: Path, as_json: bool) -> tuple[Any, list[dict[str, Any]], list[str]]:
    """The topology and the status snapshots of every worker (deploy or agent) answering in
    ``state_dir``; exit 2 when none does."""
    from hierclust.runtime.deploy import collect

    if not state_dir.is_dir():
        base.fail(f"{state_dir}: no such state directory", as_json)
    snapshots, errors = collect(state_dir)
    if not snapshots:
        why = f" ({errors[0]})" if errors else ""
        base.fail(
            f"{state_dir}: no worker answers; is a deployment or agent running?{why}", as_json
        )
    topology = base.load_or_fail(Path(snapshots[0]["topology"]), as_json)
    return topology, snapshots, errors


def _status(state_dir: Path, as_json: bool) -> tuple[Any, dict[str, Any], list[Any]]:
    from hierclust.runtime.status import aggregate

    topology, snapshots, errors = _live(state_dir, as_json)
    return topology, aggregate(topology, snapshots, errors), snapshots


def _rank_of(topology: Any, name: str, as_json: bool) -> int:
    try:
        return int(topology.rank(name))
    except KeyError as exc:
        base.fail(str(exc.args[0]), as_json, node=name)


def _worker_of(snapshots: list[dict[str, Any]], rank: int, node: str, as_json: bool) -> Any:
    for snapshot in snapshots:
        if rank in snapshot["ranks"]:
            return snapshot
    base.fail(f"node {node} is not run by any worker answering here", as_json, node=node)


def register(app: typer.Typer) -> None:
    """Add the runtime commands to ``app``."""

    @app.command("agent")
    def agent(
        topology_file: Annotated[Path, typer.Option("--topology", help="Topology file (.toml).")],
        node: Annotated[
            str,
            typer.Option("--node", help="This node's name, or a nodeset (cn[01-16]) to run many."),
        ],
        state_dir: StateDir = None,
        use_uvloop: Annotated[bool, typer.Option("--uvloop", help="Use uvloop.")] = False,
        metrics_port: Annotated[
            int | None, typer.Option("--metrics-port", help="Prometheus metrics on this port.")
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Run one node (or a nodeset) in the foreground: what systemd runs on each host."""
        from hierclust.runtime.deploy import resolve_keyring
        from hierclust.runtime.worker import run, run_worker

        topology = base.load_or_fail(topology_file, as_json)
        ranks = sorted(_target_ranks(topology, node, as_json))
        for rank in ranks:
            if topology.address(rank) is None:
                name = topology.node_name(rank)
                base.fail(f"{topology.source}: addresses: node {name} has no address", as_json)
        directory = _dir(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            keyring = resolve_keyring(topology, topology_file, directory)
        except (DeployError, OSError) as exc:
            base.fail(str(exc), as_json)
        first = topology.node_name(ranks[0])
        where = topology.address(ranks[0]) if len(ranks) == 1 else f"{len(ranks)} nodes"
        base.err.print(f"agent {node} ({where}), state in {directory}", highlight=False)
        try:
            worker = run_worker(
                topology_file.resolve(),
                directory,
                f"agent-{first}",
                ranks,
                keyring,
                metrics_port=metrics_port,
            )
            run(worker, use_uvloop=use_uvloop)
        except OSError as exc:
            base.fail(f"node {node}: {exc}", as_json)
        except KeyboardInterrupt:
            pass

    @app.command("witness")
    def witness_cmd(
        topology_file: Annotated[Path, typer.Option("--topology", help="Topology file (.toml).")],
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Run the topology's witness tie-breakers that live on this host, in the foreground."""
        from hierclust.runtime.deploy import resolve_keyring
        from hierclust.runtime.host import local_witnesses
        from hierclust.runtime.worker import run, run_worker

        topology = base.load_or_fail(topology_file, as_json)
        if not local_witnesses(topology):
            base.fail(f"{topology.source}: no witness tie-breaker on 127.0.0.1", as_json)
        directory = _dir(state_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            keyring = resolve_keyring(topology, topology_file, directory)
            run(
                run_worker(
                    topology_file.resolve(), directory, "witness", [], keyring, witnesses=True
                )
            )
        except (DeployError, OSError) as exc:
            base.fail(str(exc), as_json)
        except KeyboardInterrupt:
            pass

    @app.command("deploy")
    def deploy_cmd(
        file: Annotated[Path, typer.Argument(help="Topology file (.toml).")],
        processes: Annotated[
            int | None, typer.Option("--processes", min=1, help="Worker processes (default: auto).")
        ] = None,
        state_dir: StateDir = None,
        timeout_s: Annotated[
            float, typer.Option("--timeout", help="Seconds to wait for every group's leader.")
        ] = 30.0,
        use_uvloop: Annotated[
            bool | None,
            typer.Option(
                "--uvloop/--no-uvloop",
                help="Run workers on uvloop (default: when installed and over 256 nodes).",
            ),
        ] = None,
        metrics_port: Annotated[
            int | None,
            typer.Option("--metrics-port", help="Prometheus metrics on PORT+i for worker i."),
        ] = None,
        systemd: Annotated[
            Path | None,
            typer.Option("--systemd", help="Write one systemd unit per host to this directory."),
        ] = None,
        hosts: HostsOpt = None,
        ssh: SshFlag = False,
        exec_prefix: ExecOpt = None,
        python: PythonOpt = None,
        fanout: FanoutOpt = 64,
        as_json: JsonFlag = False,
    ) -> None:
        """Start every node of FILE on this host in the background; wait for all leaders.
        With --hosts: one agent per host of the topology, launched with ClusterShell."""
        from hierclust.runtime.deploy import default_processes, deploy, groups_led, wait_ready

        topology = base.load_or_fail(file, as_json)
        if hosts is not None or ssh or exec_prefix is not None:
            launcher = _launcher(hosts, ssh, exec_prefix, fanout, as_json)
            assert hosts is not None
            state = str(state_dir) if state_dir is not None else str(default_state_dir())
            _deploy_hosts(topology, file, hosts, launcher, state, python, timeout_s, as_json)
            return
        if systemd is not None:
            from hierclust.runtime.deploy import write_systemd_units

            try:
                written = write_systemd_units(topology, file, systemd)
            except (DeployError, OSError) as exc:
                base.fail(str(exc), as_json)
            warning = None
            if not topology.secret_file:
                warning = (
                    f"{topology.source}: cluster.secret_file is not set; every host would generate "
                    "its own keyring and drop the others' datagrams: set it and copy the file to "
                    "every host"
                )
            if as_json:
                base.emit_json({"units": [str(p) for p in written], "warning": warning})
            else:
                base.out.print(f"wrote {len(written)} unit file(s) to {systemd}")
                if warning:
                    base.err.print(f"[yellow]warning:[/] {warning}", highlight=False)
            return
        directory = _dir(state_dir)
        if use_uvloop is None:
            use_uvloop = topology.num_nodes > 256 and uvloop_installed()
        started = time.monotonic()
        try:
            deployment, children = deploy(
                topology,
                file,
                directory,
                processes or default_processes(topology.num_nodes),
                use_uvloop=use_uvloop,
                metrics_port=metrics_port,
            )
        except (DeployError, OSError) as exc:
            base.fail(str(exc), as_json)
        groups = len(topology.by_index)
        with base.progress_bar(f"deploy {topology.num_nodes:,} nodes") as bar:
            task = bar.add_task("starting", total=groups)

            def led(answers: list[dict[str, Any]]) -> tuple[int, int]:
                count = groups_led(answers)
                bar.update(task, completed=count, description=f"{count}/{groups} groups led")
                return count, groups

            try:
                ok = wait_ready(deployment, children, timeout_s, None, led)
            except DeployError as exc:
                from hierclust.runtime.deploy import stop

                stop(directory)
                base.fail(str(exc), as_json)
        elapsed = time.monotonic() - started
        result = {
            "state_dir": str(directory),
            "nodes": topology.num_nodes,
            "groups": groups,
            "workers": [
                {"id": w.id, "pid": w.pid, "nodes": len(w.ranks)} for w in deployment.workers
            ],
            "all_led": ok,
            "seconds": round(elapsed, 2),
        }
        if as_json:
            base.emit_json(result)
        elif ok:
            base.out.print(
                f"deployed {topology.num_nodes:,} nodes in {len(deployment.workers)} processes; "
                f"all {groups} groups led after {elapsed:.2f} s (state: {directory})"
            )
        else:
            base.err.print(
                f"[yellow]warning:[/] not every group has a leader after {timeout_s:.0f} s; "
                f"the agents keep running (`hierclust status --state-dir {directory}`)"
            )
        if not ok:
            raise typer.Exit(1)

    @app.command("status")
    def status_cmd(
        state_dir: StateDir = None,
        group: Annotated[
            str | None, typer.Option("--group", help="Only this group's subtree.")
        ] = None,
        raw: Annotated[
            bool,
            typer.Option(
                "--snapshots", hidden=True, help="Raw worker snapshots (for deploy --hosts)."
            ),
        ] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """The tree with each group's leader, term, quorum and failed members."""
        from hierclust.runtime.status import subtree_names

        if raw:
            from hierclust.runtime.deploy import collect

            directory = _dir(state_dir)
            if not directory.is_dir():
                base.emit_json({"snapshots": [], "errors": [f"{directory}: no such directory"]})
                return
            found, errors = collect(directory)
            base.emit_json({"snapshots": found, "errors": errors})
            return
        topology, summary, _ = _status(_dir(state_dir), as_json)
        if group is not None:
            try:
                keep = subtree_names(topology, group)
            except KeyError as exc:
                base.fail(str(exc.args[0]), as_json, group=group)
            summary["group_details"] = [d for d in summary["group_details"] if d["name"] in keep]
        if as_json:
            base.emit_json(summary)
            return
        base.out.print(status_tree(topology, summary, group))

    @app.command("members")
    def members_cmd(
        state_dir: StateDir = None,
        group: Annotated[
            str | None, typer.Option("--group", help="Only nodes under this group.")
        ] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Every node: alive/suspect/failed/left, admin mode, incarnation, groups it leads."""
        topology, summary, snapshots = _status(_dir(state_dir), as_json)
        ranks: range = range(topology.num_nodes)
        if group is not None:
            try:
                ranks = topology.group(group).ranks
            except KeyError as exc:
                base.fail(str(exc.args[0]), as_json, group=group)
        by_rank = {n["rank"]: n for s in snapshots for n in s["nodes"]}
        failed, suspect = set(summary["failed_nodes"]), set(summary["suspect_nodes"])
        left = set(summary["left_nodes"])
        modes = dict.fromkeys(summary["maintenance_nodes"], "maintenance")
        modes.update((n, "drained") for n in summary["drained_nodes"])
        leads: dict[str, list[str]] = {}
        for d in summary["group_details"]:
            if d["led"] and d["leader"]:
                leads.setdefault(d["leader"], []).append(d["name"])
        rows = []
        for r in ranks:
            name = topology.node_name(r)
            state = (
                "failed"
                if name in failed
                else "left"
                if name in left
                else "suspect"
                if name in suspect
                else "alive"
            )
            n = by_rank.get(r, {})
            rows.append(
                {
                    "node": name,
                    "rank": r,
                    "state": state,
                    "mode": modes.get(name, "active"),
                    "incarnation": n.get("incarnation"),
                    "leads": leads.get(name, []),
                    "address": str(topology.address(r)),
                }
            )
        if as_json:
            base.emit_json({"members": rows})
            return
        from rich.table import Table

        table = Table(title=f"{topology.name}: members")
        for col in ("node", "state", "mode", "inc", "address", "leads"):
            table.add_column(col)
        colour = {"alive": "green", "suspect": "yellow", "failed": "red", "left": "blue"}
        for row in rows:
            table.add_row(
                row["node"],
                f"[{colour[row['state']]}]{row['state']}[/]",
                row["mode"] if row["mode"] != "active" else "",
                str(row["incarnation"] or "-"),
                row["address"],
                ", ".join(row["leads"]),
            )
        base.out.print(table)

    @app.command("quorum")
    def quorum_cmd(
        state_dir: StateDir = None,
        node: Annotated[str | None, typer.Option("--node", help="Ask as this node.")] = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Quorum per group, and whether nodes are in the primary component."""
        topology, summary, snapshots = _status(_dir(state_dir), as_json)
        nodes = [n for s in snapshots for n in s["nodes"] if n.get("running")]
        if node is not None:
            rank = _rank_of(topology, node, as_json)
            nodes = [n for n in nodes if n["rank"] == rank]
            if not nodes:
                base.fail(f"node {node} is not running", as_json, node=node)
        result = {
            "groups": len(topology.by_index),
            "groups_quorate": summary["groups_quorate"],
            "in_primary": sum(1 for n in nodes if n.get("in_primary")),
            "nodes": len(nodes),
            "group_quorum": {
                d["name"]: {
                    "quorate": d["quorate"],
                    "votes": d["votes"],
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
            base.emit_json(result)
            return
        base.out.print(
            f"{result['groups_quorate']}/{result['groups']} groups quorate; "
            f"{result['in_primary']}/{result['nodes']} running nodes in the primary component"
        )

    @app.command("kill")
    def kill_cmd(
        node: Annotated[str, typer.Argument(help="Node name.")],
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Crash a node now (socket closed, timers dropped; SIGKILL if it has its own process)."""
        import os
        import signal

        from hierclust.runtime.control import ControlError, request

        topology, snapshots, _ = _live(_dir(state_dir), as_json)
        rank = _rank_of(topology, node, as_json)
        worker = _worker_of(snapshots, rank, node, as_json)
        t_ns = time.monotonic_ns()
        try:
            if worker["ranks"] == [rank]:
                os.kill(int(worker["pid"]), signal.SIGKILL)
                how = "sigkill"
            else:
                answer = request(Path(worker["socket"]), {"op": "kill", "rank": rank})
                t_ns = int(answer["t_ns"])
                how = "crash"
        except (ControlError, ProcessLookupError) as exc:
            base.fail(f"node {node}: cannot kill: {exc}", as_json, node=node)
        result = {"node": node, "rank": rank, "how": how, "t_ns": t_ns}
        if as_json:
            base.emit_json(result)
        else:
            base.out.print(f"killed {node} ({how})")

    @app.command("pause")
    def pause_cmd(
        node: Annotated[str, typer.Argument(help="Node name.")],
        seconds: Annotated[float, typer.Argument(help="How long the node stalls.", min=0.0)],
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Stall a node (no timers, no receive) for SECONDS, like a long GC pause."""
        _node_op(node, {"op": "pause", "seconds": seconds}, state_dir, as_json, "paused")

    @app.command("restart")
    def restart_cmd(
        node: Annotated[str, typer.Argument(help="Node name.")],
        wipe: Annotated[bool, typer.Option("--wipe", help="Lose its state file first.")] = False,
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Restart a killed node in its worker (new incarnation; --wipe: as if it lost its disk)."""
        _node_op(node, {"op": "restart", "wipe": wipe}, state_dir, as_json, "restarted")

    @app.command("partition")
    def partition_cmd(
        target: Annotated[str, typer.Argument(help="A group name or a nodeset (cn[01-04]).")],
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Cut TARGET off from the rest (in-process transport filter in every worker)."""
        directory = _dir(state_dir)
        topology, _, _ = _live(directory, as_json)
        ranks = _target_ranks(topology, target, as_json)
        _broadcast(directory, {"op": "partition", "ranks": sorted(ranks)}, as_json)
        result = {"partitioned": len(ranks), "target": target}
        base.emit_json(result) if as_json else base.out.print(f"isolated {len(ranks)} nodes")

    @app.command("heal")
    def heal_cmd(state_dir: StateDir = None, as_json: JsonFlag = False) -> None:
        """Undo ``partition``."""
        directory = _dir(state_dir)
        _live(directory, as_json)
        _broadcast(directory, {"op": "heal"}, as_json)
        base.emit_json({"healed": True}) if as_json else base.out.print("healed")

    @app.command("maintenance")
    def maintenance_cmd(
        switch: Annotated[str, typer.Argument(help="on: planned work starts; off: it is over.")],
        targets: Targets,
        wait: WaitOpt = 10.0,
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Put TARGETS into maintenance (on) or back to active (off): their leadership moves to
        active members, and their going down is reported as 'left', not 'failed'."""
        if switch not in ("on", "off"):
            base.fail(f"maintenance {switch}: expected 'on' or 'off'", as_json)
        _admin_command(MAINTENANCE if switch == "on" else ACTIVE, targets, wait, state_dir, as_json)

    @app.command("drain")
    def drain_cmd(
        targets: Targets,
        wait: WaitOpt = 10.0,
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Drain TARGETS (groups or nodesets): they hand over what they lead, stand for election
        only when no active member can, and may then be stopped without a failure report."""
        _admin_command(DRAINED, targets, wait, state_dir, as_json)

    @app.command("resume")
    def resume_cmd(
        targets: Targets,
        wait: WaitOpt = 10.0,
        state_dir: StateDir = None,
        as_json: JsonFlag = False,
    ) -> None:
        """Return TARGETS to active service (undoes drain and maintenance)."""
        _admin_command(ACTIVE, targets, wait, state_dir, as_json)

    @app.command("reload-keyring")
    def reload_keyring_cmd(state_dir: StateDir = None, as_json: JsonFlag = False) -> None:
        """Make every worker re-read the keyring file (one step of a key rotation)."""
        directory = _dir(state_dir)
        _live(directory, as_json)
        _broadcast(directory, {"op": "reload-keyring"}, as_json)
        base.emit_json({"reloaded": True}) if as_json else base.out.print("keyring reloaded")

    @app.command("stop")
    def stop_cmd(
        state_dir: StateDir = None,
        hosts: Annotated[
            str | None,
            typer.Option("--hosts", help="Stop on these hosts (nodeset) with ClusterShell."),
        ] = None,
        ssh: SshFlag = False,
        exec_prefix: ExecOpt = None,
        python: PythonOpt = None,
        fanout: FanoutOpt = 64,
        as_json: JsonFlag = False,
    ) -> None:
        """Stop every worker of the deployment (by the PIDs recorded), wait, clean up.
        With --hosts: `hierclust stop` on each host (%h in --state-dir is the host)."""
        from hierclust.runtime.deploy import stop

        if hosts is not None or ssh or exec_prefix is not None:
            _stop_hosts(hosts, ssh, exec_prefix, fanout, state_dir, python, as_json)
            return
        directory = _dir(state_dir)
        if not directory.is_dir():
            base.fail(f"{directory}: no such state directory", as_json)
        result = stop(directory)
        if as_json:
            base.emit_json(result)
        elif result["still_running"]:
            base.fail(f"still running after SIGKILL: {', '.join(result['still_running'])}")
        else:
            base.out.print(f"stopped {len(result['stopped'])} worker(s)")

    @app.command("events")
    def events_cmd(
        state_dir: StateDir = None,
        follow: Annotated[
            bool, typer.Option("--follow", "-f", help="Keep printing new events.")
        ] = False,
        as_json: JsonFlag = False,
    ) -> None:
        """Node events (notices, leaders, views, quorum) as JSON lines, oldest first."""
        directory = _dir(state_dir)
        if not directory.is_dir():
            base.fail(f"{directory}: no such state directory", as_json)
        offsets: dict[Path, int] = {}
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
                    print(json.dumps(record) if as_json else human_event(record), flush=True)
                if not follow:
                    return
                time.sleep(0.2)
        except (KeyboardInterrupt, BrokenPipeError):
            return


def _launcher(
    hosts: str | None, ssh: bool, exec_prefix: str | None, fanout: int, as_json: bool
) -> Any:
    from hierclust.runtime.launch import Launcher

    if hosts is None:
        base.fail("--ssh and --exec go with --hosts HOSTLIST", as_json)
    if ssh and exec_prefix is not None:
        base.fail("give either --ssh or --exec PREFIX, not both", as_json)
    return Launcher(exec_prefix, fanout)


def _deploy_hosts(
    topology: Any,
    file: Path,
    hostlist: str,
    launcher: Any,
    state: str,
    python: str | None,
    timeout_s: float,
    as_json: bool,
) -> None:
    """``deploy --hosts``: one background agent per host, then poll every host's status."""
    from hierclust.runtime.launch import hosts_of, launch, pick_hosts, snapshots
    from hierclust.runtime.status import aggregate

    started_at = time.monotonic()
    try:
        picked = pick_hosts(topology, hostlist)
        started = launch(topology, file, picked, launcher, state, python)
    except DeployError as exc:
        base.fail(str(exc), as_json)
    everywhere = set(picked) == set(hosts_of(topology))
    want = sum(len(ranks) for ranks in picked.values())
    groups = len(topology.by_index)
    summary: dict[str, Any] = {}
    ok = False
    with base.progress_bar(f"deploy on {len(picked)} hosts") as bar:
        task = bar.add_task("starting", total=groups)
        while time.monotonic() - started_at < timeout_s:
            found, errors = snapshots(launcher, list(picked), state, python)
            summary = aggregate(topology, found, errors)
            running = sum(1 for s in found for n in s["nodes"] if n.get("running"))
            led = summary["groups_led"]
            bar.update(task, completed=led, description=f"{running}/{want} up, {led} led")
            if running >= want and (led == groups or not everywhere):
                ok = True
                break
            time.sleep(0.5)
    result = {
        "state_dir": state,
        "launcher": "exec" if launcher.exec_prefix is not None else "ssh",
        "hosts": started,
        "nodes": want,
        "groups": groups,
        "groups_led": summary.get("groups_led", 0),
        "all_led": ok and everywhere,
        "ready": ok,
        "seconds": round(time.monotonic() - started_at, 2),
    }
    if as_json:
        base.emit_json(result)
    elif ok:
        base.out.print(
            f"started {want:,} nodes on {len(started)} hosts; "
            f"{summary.get('groups_led', 0)}/{groups} groups led after {result['seconds']} s"
        )
    else:
        base.err.print(
            f"[yellow]warning:[/] not ready after {timeout_s:.0f} s; the agents keep running "
            f"(`hierclust stop --hosts {hostlist} --state-dir {state}`)"
        )
    if not ok:
        raise typer.Exit(1)


def _stop_hosts(
    hosts: str | None,
    ssh: bool,
    exec_prefix: str | None,
    fanout: int,
    state_dir: Path | None,
    python: str | None,
    as_json: bool,
) -> None:
    from ClusterShell.NodeSet import NodeSet, NodeSetParseError

    from hierclust.runtime.launch import stop_hosts

    launcher = _launcher(hosts, ssh, exec_prefix, fanout, as_json)
    assert hosts is not None
    try:
        names = list(NodeSet(hosts))
    except NodeSetParseError as exc:
        base.fail(f"--hosts {hosts}: not a host list: {exc}", as_json)
    state = str(state_dir) if state_dir is not None else str(default_state_dir())
    answers = stop_hosts(launcher, names, state, python)
    still = {h: a["still_running"] for h, a in answers.items() if a.get("still_running")}
    errors = {h: a["error"] for h, a in answers.items() if "error" in a}
    if as_json:
        base.emit_json({"hosts": answers, "still_running": still, "errors": errors})
    else:
        stopped = sum(len(a.get("stopped", [])) for a in answers.values())
        base.out.print(f"stopped {stopped} worker(s) on {len(answers)} hosts")
        for host, error in errors.items():
            base.err.print(f"[yellow]warning:[/] {host}: {error}", highlight=False)
    if still:
        raise typer.Exit(1)


def uvloop_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def _target_ranks(topology: Any, target: str, as_json: bool) -> set[int]:
    if target in topology.groups:
        return set(topology.group(target).ranks)
    from ClusterShell.NodeSet import NodeSet, NodeSetParseError

    try:
        names = list(NodeSet(target))
    except NodeSetParseError as exc:
        base.fail(f"{target}: not a group or a nodeset: {exc}", as_json)
    return {_rank_of(topology, n, as_json) for n in names}


def _admin_command(
    mode: int, targets: list[str], wait_s: float, state_dir: Path | None, as_json: bool
) -> None:
    """Issue an admin mode change through one worker, then watch it take effect."""
    from hierclust.runtime.admin import leaders, progress, quorum_warnings, rank_ranges
    from hierclust.runtime.control import ControlError, request
    from hierclust.runtime.deploy import collect

    directory = _dir(state_dir)
    topology, snapshots, _ = _live(directory, as_json)
    ranks: set[int] = set()
    for target in targets:
        ranks |= _target_ranks(topology, target, as_json)
    warnings = quorum_warnings(topology, ranks, mode)
    if not as_json:
        for warning in warnings:
            base.err.print(f"[yellow]warning:[/] {warning}")
    before = leaders(snapshots)
    t0 = time.monotonic()
    issuer: int | None = None
    problems: list[str] = []
    for snapshot in snapshots:
        try:
            answer = request(
                Path(snapshot["socket"]),
                {"op": "admin", "mode": mode, "ranges": rank_ranges(ranks)},
            )
        except ControlError as exc:
            problems.append(str(exc))
            continue
        issuer = int(answer["issuer"])
        break
    if issuer is None:
        base.fail(f"no worker could issue the command: {'; '.join(problems)}", as_json)
    # not checked yet (with --wait 0 it stays so: the snapshots above predate the command)
    state: dict[str, Any] = {"pending": [], "still_leading": [], "done": False}
    while time.monotonic() - t0 < wait_s:
        time.sleep(0.1)
        snapshots, _ = collect(directory)
        state = progress(topology, snapshots, ranks, mode)
        if state["done"]:
            break
    after = leaders(snapshots)
    names = topology.node_name
    handed = [
        {"group": topology.by_index[g].name, "from": names(r), "to": names(after[g])}
        for g, r in sorted(before.items())
        if r in ranks and g in after and after[g] != r
    ]
    result = {
        "mode": ADMIN_MODES[mode],
        "targets": targets,
        "nodes": len(ranks),
        "issuer": names(issuer),
        "applied": bool(state["done"]),
        "waited_s": round(time.monotonic() - t0, 3) if wait_s > 0 else 0.0,
        "pending": [names(r) for r in state["pending"]],
        "still_leading": [{"node": names(r), "group": g} for r, g in state["still_leading"]],
        "handed_over": handed,
        "warnings": warnings,
    }
    if as_json:
        base.emit_json(result)
    else:
        base.out.print(
            f"{ADMIN_MODES[mode]}: {len(ranks)} node(s) ({', '.join(targets)}), issued by "
            f"{result['issuer']}"
        )
        for h in handed:
            base.out.print(f"  {h['group']}: leadership {h['from']} -> {h['to']}")
        if wait_s > 0 and state["done"]:
            base.out.print(f"  in effect after {result['waited_s']:.1f} s")
        elif wait_s > 0:
            if state["pending"]:
                base.out.print(f"  not yet in effect on: {', '.join(result['pending'])}")
            for entry in result["still_leading"]:
                base.out.print(f"  {entry['node']} still leads {entry['group']}")
    if wait_s > 0 and state["pending"]:
        raise typer.Exit(1)


def _broadcast(directory: Path, payload: dict[str, Any], as_json: bool) -> None:
    from hierclust.runtime.control import ControlError, request
    from hierclust.runtime.deploy import control_sockets

    sockets = control_sockets(directory)
    if not sockets:
        base.fail(f"{directory}: no worker answers; is the deployment running?", as_json)
    for path in sockets:
        try:
            request(path, payload)
        except ControlError as exc:
            base.fail(str(exc), as_json)


def _node_op(
    node: str, payload: dict[str, Any], state_dir: Path | None, as_json: bool, done: str
) -> None:
    from hierclust.runtime.control import ControlError, request

    topology, snapshots, _ = _live(_dir(state_dir), as_json)
    rank = _rank_of(topology, node, as_json)
    worker = _worker_of(snapshots, rank, node, as_json)
    try:
        request(Path(worker["socket"]), {**payload, "rank": rank})
    except ControlError as exc:
        base.fail(f"node {node}: {exc}", as_json, node=node)
    base.emit_json({"node": node, done: True}) if as_json else base.out.print(f"{done} {node}")


def status_tree(topology: Any, summary: dict[str, Any], only: str | None) -> Any:
    from rich.tree import Tree

    details = {d["name"]: d for d in summary["group_details"]}

    def label(d: dict[str, Any]) -> str:
        mark = "[green]led[/]" if d["led"] else "[red]no leader[/]"
        q = "[green]quorate[/]" if d["quorate"] else "[red]no quorum[/]"
        text = (
            f"[bold]{d['name']}[/] tier {d['tier']}: {mark} {d['leader'] or '-'} "
            f"term {d['term']}, {q} ({d['quorum']} of {d['votes']} votes)"
        )
        if d["members_alive"] is not None:
            text += f", {d['members_alive']} alive"
        if d["failed_members"]:
            text += f", [red]failed: {', '.join(d['failed_members'])}[/]"
        if d.get("left_members"):
            text += f", [blue]left: {', '.join(d['left_members'])}[/]"
        if d.get("admin_members"):
            by_mode: dict[str, list[str]] = {}
            for name, mode in d["admin_members"].items():
                by_mode.setdefault(mode, []).append(name)
            text += "".join(f", {m}: {', '.join(ns)}" for m, ns in sorted(by_mode.items()))
        return text

    top = topology.group(only) if only else topology.root
    tree = Tree(
        f"{topology.name}: {summary['alive']}/{summary['nodes']} alive, {summary['suspect']} "
        f"suspect, {summary['failed']} failed, {summary['left']} left"
        f" ({summary['maintenance']} in maintenance, {summary['drained']} drained); "
        f"{summary['groups_led']}/{summary['groups']} led, "
        f"{summary['groups_quorate']} quorate; {summary['datagrams_dropped']} datagrams dropped"
    )

    def add(node: Any, name: str) -> None:
        branch = node.add(label(details[name]))
        for child in topology.group(name).children:
            if child in details:
                add(branch, child)

    add(tree, top.name)
    for error in summary["errors"]:
        tree.add(f"[red]{error}[/]")
    return tree


def human_event(record: dict[str, Any]) -> str:
    fields = {k: v for k, v in record.items() if k not in ("t_ns", "node", "rank", "event")}
    if "notice" in fields:
        n = fields.pop("notice")
        if n["kind"] == "admin":
            fields["notice"] = f"{n['mode']} ranks {n['node']}+{n['count']} seq {n['seq']}"
        else:
            fields["notice"] = f"{n['kind']} rank {n['node']} inc {n['incarnation']}"
    rest = " ".join(f"{k}={v}" for k, v in fields.items())
    return (
        f"{record.get('t_ns', 0) / 1e9:.3f} {record.get('node', '-')} {record.get('event')} {rest}"
    )


def demo_command(topology_file: Path, as_json: bool) -> None:
    """The body of ``hierclust demo``: deploy, kill a leaf, kill a tier-1 leader, report, stop."""
    from hierclust.runtime.demo import Demo

    topology = base.load_or_fail(topology_file, as_json)
    try:
        from hierclust.runtime.deploy import check_addresses, check_ports_free

        check_addresses(topology)
        check_ports_free(topology)
    except DeployError as exc:
        base.fail(str(exc), as_json)
    demo = Demo(topology, topology_file, processes=2 if topology.num_nodes > 32 else 1)
    report: dict[str, Any] = {}
    failure: str | None = None
    if not as_json:
        base.out.rule(
            f"hierclust demo: {topology.num_nodes} agents on 127.0.0.1 ({topology.source})"
        )
    try:
        with base.progress_bar("demo") as bar:
            task = bar.add_task("deploying", total=1)

            def progress(what: str, done: int, total: int) -> None:
                bar.update(task, completed=done, total=total, description=what)

            report = demo.run(progress)
    except (DeployError, OSError) as exc:
        failure = str(exc)
    finally:
        report.update(demo.finish())
    report.setdefault("nodes", topology.num_nodes)
    if failure is not None:
        report["error"] = failure
    if as_json:
        base.emit_json(report)
    else:
        print_demo(report)
    if failure is not None:
        if not as_json:
            base.err.print(f"[red]error:[/] {failure}", highlight=False)
        raise typer.Exit(1)


def print_demo(report: dict[str, Any]) -> None:
    out = base.out
    out.print(
        f"{report['nodes']} agents in {report.get('processes', '?')} processes; every group led "
        f"after {report.get('all_led_ms')} ms; steady state {report.get('msgs_per_node_per_s')} "
        f"datagrams/node/s ({report.get('bytes_per_datagram')} B each)"
    )
    for kill in report.get("kills", []):
        out.rule(f"kill {kill['victim']} ({kill['victim_role']})")
        out.print(
            f"detected by {kill['detected_by']} after {kill['detect_ms']} ms; "
            f"{kill['notified']}/{kill['survivors']} survivors notified: p50 "
            f"{kill['notify_p50_ms']} ms, p99 {kill['notify_p99_ms']} ms, max "
            f"{kill['notify_max_ms']} ms"
        )
        if kill["reelected"]:
            taken = ", ".join(f"{g} -> {n}" for g, n in kill["reelected"].items())
            out.print(f"re-elected after {kill['reelect_ms']} ms: {taken}")
        out.print(
            f"groups_disturbed {kill['groups_disturbed']}, elections elsewhere "
            f"{kill['elections_elsewhere']}"
        )
        out.print("timeline (ms after the kill, one monotonic clock):")
        cells = [f"{t['node']} +{t['ms']:.0f}" for t in kill["timeline"]]
        for i in range(0, len(cells), 4):
            out.print("  " + "".join(f"{c:<18}" for c in cells[i : i + 4]), highlight=False)
    out.print(
        f"stopped; {report.get('left_running', '?')} processes left running; "
        f"{report.get('seconds')} s in all"
    )
