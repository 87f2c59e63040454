"""Starting and stopping a cluster: ``deploy`` (one host, many hosts, or systemd units),
``agent`` and ``witness`` (foreground, what a supervisor runs), ``stop``, ``reload-keyring``.

A deploy interrupted by Ctrl-C (or SIGTERM) stops the workers it started before it exits 130,
and says so; what it could not stop it names, with the command that stops it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.markup import escape

from hierclust.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_NOT_DONE,
    JsonFlag,
    command_group,
    emit_json,
    err,
    fail,
    load_or_fail,
    out,
    output_dir,
    plural,
    progress_bar,
    refuse,
    terminate_as_interrupt,
    warn,
)
from hierclust.cli.statedir import StateDirOpt, broadcast, live, not_here, resolve
from hierclust.cli.targets import parse_nodeset, target_ranks
from hierclust.runtime.errors import DeployError
from hierclust.topology import Topology

app = command_group()

TopologyFileOpt = Annotated[
    Path, typer.Option("--topology", help="Topology file (.toml).", show_default=False)
]
HostsOpt = Annotated[
    str | None,
    typer.Option(
        "--hosts",
        help="Act on these hosts of the topology's addresses (a nodeset, or 'all'), "
        "through ClusterShell.",
        show_default=False,
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
        show_default=False,
    ),
]
PythonOpt = Annotated[
    str | None,
    typer.Option(
        "--python", help="With --hosts: the Python on the hosts (default: this one).",
        show_default=False,
    ),
]  # fmt: skip
HostFanoutOpt = Annotated[
    int, typer.Option("--host-fanout", min=1, help="With --hosts: hosts contacted at once.")
]


@app.command("agent")
def agent(
    topology_file: TopologyFileOpt,
    node: Annotated[
        str,
        typer.Option(
            "--node",
            help="This node's name, or a nodeset (cn[01-16]) to run many.",
            show_default=False,
        ),
    ],
    state_dir: StateDirOpt = None,
    use_uvloop: Annotated[bool, typer.Option("--uvloop", help="Use uvloop.")] = False,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Serve Prometheus metrics on this port.", show_default=False
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run one node, or a nodeset, in the foreground.

    This is what systemd (or a batch system) runs on each host; Ctrl-C or SIGTERM stops it.
    """
    from hierclust.runtime.deploy import resolve_keyring
    from hierclust.runtime.state import check_state_dir, make_state_dir
    from hierclust.runtime.worker import run, run_worker

    topology = load_or_fail(topology_file, as_json)
    ranks = sorted(target_ranks(topology, node, as_json))
    for rank in ranks:
        if topology.address(rank) is None:
            name = topology.node_name(rank)
            fail(f"{topology.source}: addresses: node {name} has no address", as_json)
    directory = resolve(state_dir, "agent", as_json, must_exist=False)
    try:
        make_state_dir(directory)
        warning = check_state_dir(directory)  # read-only: exit 2 naming it and the fix
        keyring = resolve_keyring(topology, topology_file, directory)
    except (DeployError, OSError) as exc:
        fail(str(exc), as_json)
    if warning is not None:
        err.print(f"warning: {warning}", highlight=False, markup=False)
    first = topology.node_name(ranks[0])
    where = topology.address(ranks[0]) if len(ranks) == 1 else f"{len(ranks)} nodes"
    err.print(f"agent {node} ({where}), state in {directory}", highlight=False, markup=False)
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
        fail(f"node {node}: {exc}", as_json)
    except KeyboardInterrupt:
        pass


@app.command("witness")
def witness(
    topology_file: TopologyFileOpt,
    state_dir: StateDirOpt = None,
    init: Annotated[
        bool,
        typer.Option(
            "--init",
            help="Create the state files of a new witness (term 0) and exit. Never for a "
            "witness that lost its state: it could grant a term twice.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run this host's witness tie-breakers in the foreground.

    Serves every witness of the topology whose address is on this host (127.0.0.1, or an
    address of one of its interfaces). Each needs its state
    file (nodes/witness-GROUP.json in the state directory): a missing or damaged one is an
    error (exit 2), never a fresh start. A new witness is set up once with --init.
    """
    from hierclust.runtime.context import local_witnesses
    from hierclust.runtime.deploy import resolve_keyring
    from hierclust.runtime.state import StateFileError, make_state_dir
    from hierclust.runtime.worker import run, run_worker

    topology = load_or_fail(topology_file, as_json)
    if not local_witnesses(topology):
        fail(
            f"{topology.source}: no witness tie-breaker on this host (127.0.0.1 or an address "
            "of its interfaces); run it on the host its address names",
            as_json,
        )
    directory = resolve(state_dir, "witness", as_json, must_exist=False)
    if init:
        init_witness(topology, directory, as_json)
        return
    try:
        make_state_dir(directory)
        keyring = resolve_keyring(topology, topology_file, directory)
        run(run_worker(topology_file.resolve(), directory, "witness", [], keyring, witnesses=True))
    except (DeployError, OSError, StateFileError) as exc:
        fail(str(exc), as_json)
    except KeyboardInterrupt:
        pass


def init_witness(topology: Topology, directory: Path, as_json: bool) -> None:
    """``witness --init``: create the missing state files; exit 1 when none was missing."""
    from hierclust.runtime.tiebreak import init_witness_states

    try:
        created, existing = init_witness_states(topology, directory)
    except OSError as exc:
        fail(f"{directory}: cannot create the witness state: {exc.strerror or exc}", as_json)
    if not created:
        refuse(
            "nothing to create: every witness state file exists: "
            + ", ".join(str(p) for p in existing),
            as_json,
            existing=[str(p) for p in existing],
        )
    if as_json:
        emit_json({"created": [str(p) for p in created], "existing": [str(p) for p in existing]})
        return
    for path in created:
        out.print(f"created {path} (term 0)", highlight=False, soft_wrap=True)
    for path in existing:
        out.print(f"kept {path} as it is", highlight=False, soft_wrap=True)


@app.command("deploy")
def deploy(
    file: Annotated[
        Path, typer.Argument(metavar="FILE", help="Topology file (.toml).", show_default=False)
    ],
    processes: Annotated[
        int | None,
        typer.Option(
            "--processes",
            min=1,
            help="Worker processes (default: one per 256 nodes, at most one per core).",
            show_default=False,
        ),
    ] = None,
    state_dir: StateDirOpt = None,
    timeout_s: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for every group's leader.")
    ] = 30.0,
    use_uvloop: Annotated[
        bool | None,
        typer.Option(
            "--uvloop/--no-uvloop",
            help="Run workers on uvloop (default: when installed and over 256 nodes).",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", help="Prometheus metrics on PORT+i for worker i.", show_default=False
        ),
    ] = None,
    systemd: Annotated[
        Path | None,
        typer.Option(
            "--systemd",
            help="Write one systemd unit per host to this directory instead of starting anything.",
            show_default=False,
        ),
    ] = None,
    hosts: HostsOpt = None,
    ssh: SshFlag = False,
    exec_prefix: ExecOpt = None,
    python: PythonOpt = None,
    host_fanout: HostFanoutOpt = 64,
    as_json: JsonFlag = False,
) -> None:
    """Start FILE's nodes in the background; wait for leaders.

    On this host: worker processes, with a progress bar until every group is led (exit 1 if
    not within --timeout; the workers keep running). With --hosts: one agent per host of the
    topology, launched with ClusterShell. Ctrl-C stops the workers started so far.
    """
    topology = load_or_fail(file, as_json)
    if hosts is not None or ssh or exec_prefix is not None:
        launcher = make_launcher(hosts, ssh, exec_prefix, host_fanout, as_json)
        assert hosts is not None
        state = str(resolve(state_dir, "deploy", as_json, must_exist=False))
        deploy_hosts(topology, file, hosts, launcher, state, python, timeout_s, as_json)
        return
    if systemd is not None:
        write_units(topology, file, systemd, as_json)
        return
    deploy_here(topology, file, state_dir, processes, timeout_s, use_uvloop, metrics_port, as_json)


def write_units(topology: Topology, file: Path, outdir: Path, as_json: bool) -> None:
    """``deploy --systemd OUTDIR``: one unit file per host, nothing started."""
    from hierclust.runtime.deploy import write_systemd_units

    output_dir(outdir, "a directory for the unit files", as_json)
    try:
        written = write_systemd_units(topology, file, outdir)
    except (DeployError, OSError) as exc:
        fail(str(exc), as_json)
    warning = None
    if not topology.secret_file:
        warning = (
            f"{topology.source}: cluster.secret_file is not set; every host would generate "
            "its own keyring and drop the others' datagrams: set it and copy the file to "
            "every host"
        )
    if as_json:
        emit_json({"units": [str(p) for p in written], "warning": warning})
        return
    out.print(f"wrote {plural(len(written), 'unit file')} to {outdir}", highlight=False)
    if warning:
        warn(warning)


def deploy_here(
    topology: Topology,
    file: Path,
    state_dir: Path | None,
    processes: int | None,
    timeout_s: float,
    use_uvloop: bool | None,
    metrics_port: int | None,
    as_json: bool,
) -> None:
    """``deploy`` on this host: background workers, then wait until every group is led."""
    from hierclust.runtime import deploy as runtime

    directory = resolve(state_dir, "deploy", as_json, must_exist=False)
    if use_uvloop is None:
        use_uvloop = runtime.default_uvloop(topology.num_nodes)
    groups = len(topology.by_index)
    started = time.monotonic()
    deployment: Any = None
    with terminate_as_interrupt():
        try:
            try:
                deployment, children = runtime.deploy(
                    topology,
                    file,
                    directory,
                    processes or runtime.default_processes(topology.num_nodes),
                    use_uvloop=use_uvloop,
                    metrics_port=metrics_port,
                )
            except (DeployError, OSError) as exc:
                fail(str(exc), as_json)
            with progress_bar(f"deploy {topology.num_nodes:,} nodes") as bar:
                task = bar.add_task("starting", total=groups)

                def led(answers: list[dict[str, Any]]) -> tuple[int, int]:
                    count = runtime.groups_led(answers)
                    bar.update(task, completed=count, description=f"{count}/{groups} groups led")
                    return count, groups

                try:
                    ok = runtime.wait_ready(deployment, children, timeout_s, None, led)
                except DeployError as exc:
                    runtime.stop(directory)
                    fail(str(exc), as_json)
        except KeyboardInterrupt:
            interrupted(directory, deployment, as_json)
    elapsed = time.monotonic() - started
    result = {
        "state_dir": str(directory),
        "nodes": topology.num_nodes,
        "groups": groups,
        "workers": [{"id": w.id, "pid": w.pid, "nodes": len(w.ranks)} for w in deployment.workers],
        "all_led": ok,
        "seconds": round(elapsed, 2),
    }
    if as_json:
        emit_json(result)
    elif ok:
        out.print(
            f"deployed {topology.num_nodes:,} nodes in "
            f"{plural(len(deployment.workers), 'process', 'processes')}; all {groups} groups led "
            f"after {elapsed:.2f} s (state: {directory})",
            highlight=False,
            soft_wrap=True,
        )
    else:
        warn(
            f"not every group has a leader after {timeout_s:.0f} s; the workers keep running "
            f"(`hierclust status --state-dir {directory}`)"
        )
    if not ok:
        raise typer.Exit(EXIT_NOT_DONE)


def interrupted(directory: Path, deployment: Any, as_json: bool) -> NoReturn:
    """Ctrl-C during a local deploy: stop what it started, say what is left, exit 130."""
    from hierclust.runtime.deploy import stop
    from hierclust.runtime.discover import pid_alive

    stopped: list[str] = []
    still: list[str] = []
    if deployment is None:  # deploy() was interrupted itself and ended the workers it had started
        said = "the workers started so far were ended"
    else:
        try:
            result = stop(directory)
            stopped, still = result["stopped"], result["still_running"]
        except KeyboardInterrupt:  # a second Ctrl-C: leave the rest to `hierclust stop`
            still = [w.id for w in deployment.workers if pid_alive(w.pid)]
        said = f"stopped the {plural(len(stopped), 'worker')} this deploy started"
    if still:
        said = (
            f"{plural(len(still), 'worker')} still running: "
            f"`hierclust stop --state-dir {directory}`"
        )
    if as_json:
        emit_json(
            {"interrupted": True, "state_dir": str(directory), "stopped": stopped,
             "still_running": still}
        )  # fmt: skip
    err.print(f"[red]interrupted[/]: {escape(said)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_INTERRUPTED)


def make_launcher(
    hosts: str | None, ssh: bool, exec_prefix: str | None, host_fanout: int, as_json: bool
) -> Any:
    from hierclust.runtime.launch import Launcher

    if hosts is None:
        fail("--ssh and --exec go with --hosts HOSTLIST", as_json)
    if ssh and exec_prefix is not None:
        fail("give either --ssh or --exec PREFIX, not both", as_json)
    if hosts != "all":
        parse_nodeset(hosts, "--hosts", as_json)
    return Launcher(exec_prefix, host_fanout)


def deploy_hosts(
    topology: Topology,
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
    except DeployError as exc:
        fail(str(exc), as_json)
    stop_them = f"`hierclust stop --hosts {hostlist} --state-dir {state}`"
    with terminate_as_interrupt():
        try:
            try:
                started = launch(topology, file, picked, launcher, state, python)
            except DeployError as exc:
                fail(str(exc), as_json)
            everywhere = set(picked) == set(hosts_of(topology))
            want = sum(len(ranks) for ranks in picked.values())
            groups = len(topology.by_index)
            summary: dict[str, Any] = {}
            ok = False
            with progress_bar(f"deploy on {len(picked)} hosts") as bar:
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
        except KeyboardInterrupt:
            if as_json:
                emit_json({"interrupted": True, "state_dir": state, "hosts": list(picked)})
            err.print(
                f"[red]interrupted[/]: agents may still run on {plural(len(picked), 'host')}: "
                f"{stop_them}",
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_INTERRUPTED) from None
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
        emit_json(result)
    elif ok:
        out.print(
            f"started {want:,} nodes on {plural(len(started), 'host')}; "
            f"{summary.get('groups_led', 0)}/{groups} groups led after {result['seconds']} s",
            highlight=False,
        )
    else:
        warn(f"not ready after {timeout_s:.0f} s; the agents keep running ({stop_them})")
    if not ok:
        raise typer.Exit(EXIT_NOT_DONE)


@app.command("stop")
def stop(
    state_dir: StateDirOpt = None,
    hosts: Annotated[
        str | None,
        typer.Option(
            "--hosts",
            help="Stop on these hosts (a nodeset), through ClusterShell.",
            show_default=False,
        ),
    ] = None,
    ssh: SshFlag = False,
    exec_prefix: ExecOpt = None,
    python: PythonOpt = None,
    host_fanout: HostFanoutOpt = 64,
    as_json: JsonFlag = False,
) -> None:
    """Stop every worker of a deployment; wait; clean up.

    Workers are found by the PIDs recorded in the state directory: asked to stop, then
    SIGTERM, then SIGKILL. Exit 2 when the state directory holds no live deployment (it names
    the state directories where hierclust does run), 1 when a worker survives SIGKILL. With
    --hosts: `hierclust stop` on each host (%h in --state-dir is the host).
    """
    from hierclust.runtime.deploy import stop as stop_workers

    if hosts is not None or ssh or exec_prefix is not None:
        stop_hosts(hosts, ssh, exec_prefix, host_fanout, state_dir, python, as_json)
        return
    directory = resolve(state_dir, "stop", as_json)
    result = stop_workers(directory)
    if not result["stopped"]:
        not_here(directory, "no live deployment here (no recorded worker runs)", "stop", as_json)
    if as_json:
        emit_json(result)
        if result["still_running"]:
            raise typer.Exit(EXIT_NOT_DONE)
        return
    if result["still_running"]:
        refuse(f"still running after SIGKILL: {', '.join(result['still_running'])}")
    out.print(f"stopped {plural(len(result['stopped']), 'worker')} of {directory}", highlight=False)


def stop_hosts(
    hosts: str | None,
    ssh: bool,
    exec_prefix: str | None,
    host_fanout: int,
    state_dir: Path | None,
    python: str | None,
    as_json: bool,
) -> None:
    from hierclust.runtime.launch import stop_hosts as stop_on

    launcher = make_launcher(hosts, ssh, exec_prefix, host_fanout, as_json)
    assert hosts is not None
    names = parse_nodeset(hosts, "--hosts", as_json)
    state = str(resolve(state_dir, "stop", as_json, must_exist=False))
    answers = stop_on(launcher, names, state, python)
    still = {h: a["still_running"] for h, a in answers.items() if a.get("still_running")}
    errors = {h: a["error"] for h, a in answers.items() if "error" in a}
    if as_json:
        emit_json({"hosts": answers, "still_running": still, "errors": errors})
    else:
        stopped = sum(len(a.get("stopped", [])) for a in answers.values())
        out.print(
            f"stopped {plural(stopped, 'worker')} on {plural(len(answers), 'host')}",
            highlight=False,
        )
        for host, error in errors.items():
            warn(f"{host}: {error}")
    if still:
        raise typer.Exit(EXIT_NOT_DONE)


@app.command("reload-keyring")
def reload_keyring(state_dir: StateDirOpt = None, as_json: JsonFlag = False) -> None:
    """Make every worker re-read the keyring file.

    One step of a key rotation (see docs/operations.md, Keys).
    """
    directory, _, _, _ = live(state_dir, "reload-keyring", as_json)
    broadcast(directory, {"op": "reload-keyring"}, "reload-keyring", as_json)
    emit_json({"reloaded": True}) if as_json else out.print("keyring reloaded")
