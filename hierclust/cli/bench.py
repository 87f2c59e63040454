"""``hierclust bench`` and ``hierclust bench sweep``: failure-propagation benchmarks.

Thin: options are checked here, the work is in :mod:`hierclust.bench`. ``--json`` prints the
JSON document on stdout (the tables then go to stderr), ``--out PATH`` writes it to a file. Input
errors (bad options, ports taken) print one line and exit 2; a run that fails to reach its state
exits 1; Ctrl-C (or SIGTERM) stops every process the run started and exits 130.
"""

from __future__ import annotations

import gc
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table
from typer.core import TyperGroup

from hierclust.bench.report import check_report, document, serf_ratios, summarize
from hierclust.cli.common import (
    DEFAULT_FANOUT,
    EXIT_INTERRUPTED,
    FanoutOpt,
    JsonFlag,
    NodesOpt,
    OutOpt,
    command_group,
    err,
    fail,
    out,
    output_file,
    progress_bar,
    refuse,
    stepping,
    terminate_as_interrupt,
    topology_from_options,
    write_report,
)

DEFAULT_BASE_PORT = 42000


class Mode(StrEnum):
    sim = "sim"
    udp = "udp"


class KillMode(StrEnum):
    host = "host"
    process = "process"


class BenchCommands(TyperGroup):
    """``bench``'s subcommands; a path where a subcommand would be is most likely the file of
    ``--json PATH``, the spelling before ``--out PATH``: say so."""

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name = args[0] if args else None
        if name is not None and name not in self.commands and ("." in name or "/" in name):
            fail(
                f"{name}: not a bench subcommand; --json is a flag (the JSON goes to stdout): "
                f"write it to a file with --out {name}"
            )
        return super().resolve_command(ctx, args)


app = command_group(cls=BenchCommands)

TopologyOpt = Annotated[
    Path | None,
    typer.Option(
        "--topology", help="Topology file (.toml); udp needs addresses.", show_default=False
    ),
]
PlotOut = Annotated[
    Path | None, typer.Option("--plot", help="Write a plot (PNG) here.", show_default=False)
]
HtmlOut = Annotated[
    Path | None,
    typer.Option(
        "--html",
        help="Write the report as one self-contained HTML page here (CDF, timeline, tree).",
        show_default=False,
    ),
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Base seed; repeat i uses seed + i.")]
BasePortOpt = Annotated[
    int,
    typer.Option("--base-port", help="udp, generated topologies: first UDP port (one per node)."),
]
ProcessesOpt = Annotated[
    int | None,
    typer.Option(
        "--processes",
        min=1,
        help="udp: worker processes (default: one per 256 nodes).",
        show_default=False,
    ),
]
OneProcOpt = Annotated[
    bool,
    typer.Option(
        "--one-process-per-node", help="udp: one worker process per node (small N; SIGKILL kill)."
    ),
]
BootOpt = Annotated[
    float, typer.Option("--boot-timeout", min=1.0, help="udp: seconds to wait for all leaders.")
]
SteadyOpt = Annotated[
    float, typer.Option("--steady-s", min=0.5, help="udp/serf: steady window measured.")
]
AfterOpt = Annotated[
    int, typer.Option("--after-ms", min=100, help="sim: virtual time after the kill.")
]
UvloopOpt = Annotated[
    bool | None,
    typer.Option(
        "--uvloop/--no-uvloop",
        help="udp: uvloop (default: when installed, over 256 nodes).",
        show_default=False,
    ),
]


def check_outputs(out_path: Path | None, plot: Path | None, as_json: bool) -> None:
    """Exit 2 before a long run whose results could not be written."""
    if out_path is not None:
        output_file(out_path, "a file for the JSON document", as_json)
    if plot is not None:
        output_file(plot, "a PNG file for the plot", as_json)


def console_for(as_json: bool) -> Any:
    """Tables go to stderr when the JSON goes to stdout."""
    return err if as_json else out


def summary_table(title: str, columns: dict[str, dict[str, Any]]) -> Table:
    from hierclust.sim.scenario import REPORT_FIELDS

    table = Table(title=title)
    table.add_column("measure")
    for name in columns:
        table.add_column(name, justify="right")
    for key in (*REPORT_FIELDS, "notify_max_ratio", "datagrams_ratio"):
        cells = [columns[c].get(key) for c in columns]
        if all(v is None for v in cells):
            continue
        table.add_row(key, *("-" if v is None else str(v) for v in cells))
    return table


def _topology(
    mode: Mode,
    topology_file: Path | None,
    nodes: int | None,
    fanout: int | None,
    base_port: int,
    workdir: Path,
    tuning: dict[str, int] | None = None,
    name: str = "topology.toml",
    as_json: bool = False,
) -> tuple[Any, Path]:
    """The topology and the file the workers will read (a generated one lives in ``workdir``)."""
    from hierclust.topology import TopologyError

    if mode is Mode.sim or topology_file is not None:
        topology = topology_from_options(topology_file, nodes, fanout, as_json)
        return topology, topology_file or Path(topology.source)
    if nodes is None:
        fail(
            f"give --topology FILE, or --nodes N (groups of --fanout K, default {DEFAULT_FANOUT})",
            as_json,
        )
    fanout = DEFAULT_FANOUT if fanout is None else fanout
    from hierclust.bench.udp import write_generated

    try:
        topology = write_generated(nodes, fanout, base_port, workdir / name, tuning)
    except TopologyError as exc:
        fail(f"{exc} (--base-port {base_port}, --nodes {nodes})", as_json)
    return topology, workdir / name


def _runs(
    mode: Mode,
    topology: Any,
    path: Path,
    kill: str,
    repeats: int,
    seed: int,
    *,
    processes: int | None,
    one_process_per_node: bool,
    use_uvloop: bool | None,
    steady_s: float,
    after_ms: int,
    label: str,
    kill_mode: str = "host",
    boot_timeout_s: float = 120.0,
    after_s_min: float = 10.0,
    failures: list[dict[str, Any]] | None = None,
    as_json: bool = False,
    hog: int = 0,
) -> list[dict[str, Any]]:
    with progress_bar(label) as bar:
        task = bar.add_task("starting", total=1.0)
        if mode is Mode.sim:
            from hierclust.bench.sim import sim_runs
            from hierclust.sim.scenario import ScenarioError

            def sim_step(done: int, total: int, phase: str) -> None:
                bar.update(task, completed=done, total=total, description=phase)

            gc.collect()
            try:
                return sim_runs(topology, kill, repeats, seed, after_ms=after_ms, progress=sim_step)
            except ScenarioError as exc:
                fail(f"{topology.source}: {exc}", as_json)
        from hierclust.runtime.deploy import default_processes, default_uvloop

        def udp_step(phase: str, done: float, total: float) -> None:
            bar.update(task, completed=done, total=max(total, 1e-9), description=phase)

        if use_uvloop is None:
            use_uvloop = default_uvloop(topology.num_nodes)
        from hierclust.bench.udp import udp_runs

        return udp_runs(
            topology,
            path,
            kill,
            repeats,
            seed,
            processes=processes or default_processes(topology.num_nodes),
            one_process_per_node=one_process_per_node,
            use_uvloop=use_uvloop,
            steady_s=steady_s,
            after_s=max(after_s_min, after_ms / 1000),
            boot_timeout_s=boot_timeout_s,
            progress=udp_step,
            failures=failures,
            kill_mode=kill_mode,
            hog=hog,
        )


@app.callback(invoke_without_command=True)
def bench(
    ctx: typer.Context,
    mode: Annotated[Mode, typer.Option("--mode", help="sim or udp.")] = Mode.sim,
    topology_file: TopologyOpt = None,
    nodes: NodesOpt = None,
    fanout: FanoutOpt = None,
    kill: Annotated[
        str, typer.Option("--kill", help="The victim: leaf, leader, root-leader, or a node name.")
    ] = "leaf",
    repeats: Annotated[
        int,
        typer.Option(
            "--repeats",
            min=1,
            max=100,
            help="Runs, seeds seed, seed+1 and so on; the summary holds their medians.",
        ),
    ] = 1,
    seed: SeedOpt = 7,
    as_json: JsonFlag = False,
    out_path: OutOpt = None,
    plot: PlotOut = None,
    html_out: HtmlOut = None,
    vs: Annotated[
        str | None,
        typer.Option(
            "--vs",
            help="Compare with another system: serf, or corosync (udp: one node per lab host).",
        ),
    ] = None,
    processes: ProcessesOpt = None,
    one_process_per_node: OneProcOpt = False,
    kill_mode: Annotated[
        KillMode,
        typer.Option(
            "--kill-mode",
            help="udp: host (power loss: silence, no ICMP) or process (its port closes).",
        ),
    ] = KillMode.host,
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
    steady_s: SteadyOpt = 3.0,
    boot_timeout_s: BootOpt = 120.0,
    after_ms: AfterOpt = 3000,
    use_uvloop: UvloopOpt = None,
    hog: Annotated[
        int,
        typer.Option(
            "--hog",
            min=0,
            max=64,
            help="udp: N busy-loop processes (nice 0) through each whole repeat: boot under "
            "a starved CPU. The report gives their CPU use and the load average.",
        ),
    ] = 0,
    budget: Annotated[
        bool,
        typer.Option(
            "--budget/--no-budget",
            help="--vs serf: also run hierclust tuned to Serf's datagram budget.",
        ),
    ] = True,
) -> None:
    """Failure-propagation benchmarks: JSON reports and plots.

    Without a subcommand: boot a cluster (in the simulator, or real agents over UDP on this
    host), measure a steady window, kill one node and report (the schema is in
    docs/architecture.md §5);
    --vs serf runs Serf on the same box for comparison; --vs corosync runs both on lab hosts
    (one node per network namespace) and cuts the victim's host off. --json prints the document
    (every run's report under "runs", their medians under "summary") on stdout, --out writes it
    to a file.
    """
    from hierclust.bench.provenance import checkout

    checkout()  # every bench command's commit as it starts (cached): the tree may move on
    if ctx.invoked_subcommand is not None:
        return
    if vs not in (None, "serf", "corosync"):
        fail(f"--vs: expected serf or corosync, got {vs!r}", as_json)
    if hog and mode is not Mode.udp:
        fail("--hog starves real agents of CPU: use it with --mode udp", as_json)
    if hog and vs is not None:
        fail("--hog and --vs: compare systems on an idle box (give one of them)", as_json)
    check_outputs(out_path, plot, as_json)
    if html_out is not None:
        if vs == "corosync":
            fail("--html: not for --vs corosync yet (use --out and --plot)", as_json)
        output_file(html_out, "an HTML file for the report", as_json)
    if vs == "corosync":
        from hierclust.cli.bench_corosync import kill_vs_corosync

        kill_vs_corosync(
            mode=mode.value, topology_file=topology_file, nodes=nodes,
            fanout=DEFAULT_FANOUT if fanout is None else fanout, kill=kill, repeats=repeats,
            seed=seed, steady_s=steady_s, as_json=as_json, out_path=out_path, plot=plot,
        )  # fmt: skip
        return
    with terminate_as_interrupt():
        console = console_for(as_json)
        failures: list[dict[str, Any]] = []
        workdir = Path(tempfile.mkdtemp(prefix="hcbench-topo-", dir="/tmp"))
        try:
            topology, path = _topology(
                mode, topology_file, nodes, fanout, base_port, workdir, as_json=as_json
            )
            options: dict[str, Any] = {
                "processes": processes,
                "one_process_per_node": one_process_per_node,
                "use_uvloop": use_uvloop,
                "steady_s": steady_s,
                "after_ms": after_ms,
                "boot_timeout_s": boot_timeout_s,
                "failures": failures,
                "as_json": as_json,
                "kill_mode": kill_mode.value,
                "hog": hog,
            }
            if vs == "serf":
                from hierclust.bench.serf import AFTER_KILL_S

                # the same bound on the wait for every survivor's notice as Serf gets: a shorter
                # one could cut hierclust's slowest survivors off and shrink its notify_max
                options["after_s_min"] = AFTER_KILL_S
            runs = _run_or_fail(
                mode, topology, path, kill, repeats, seed, label=f"{mode.value} bench",
                failed_to=out_path, **options,
            )  # fmt: skip
            result = document(runs)
            columns: dict[str, dict[str, Any]] = {"hierclust": result["summary"]}
            series = {
                f"hierclust {mode.value}": [
                    v for r in runs for v in r.get("udp", {}).get("notify_ms", [])
                ]
            }
            if vs == "serf":
                serf_part = _vs_serf(
                    mode, topology, runs, repeats, seed, steady_s, nodes, fanout, base_port,
                    workdir, topology_file, budget, options, kill,
                )  # fmt: skip
                result["summary"].update(serf_part["summary"])
                result["serf_runs"] = serf_part["serf_runs"]
                if serf_part.get("budget_runs"):
                    result["budget_runs"] = serf_part["budget_runs"]
                columns.update(serf_part["columns"])
                series.update(serf_part["series"])
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        result["failed_repeats"] = failures
        for failure in failures:
            console.print(f"[yellow]repeat skipped:[/] {failure['error']}", highlight=False)
    write_report(result, as_json, out_path)
    title = f"{mode.value}: {topology.num_nodes:,} nodes, kill {kill}, {repeats} repeat(s), medians"
    console.print(summary_table(title, columns))
    serf = result["summary"].get("serf")
    if isinstance(serf, dict) and "skipped" in serf:
        console.print(f"serf: skipped, {serf['skipped']}", highlight=False)
    if "ratio_invalid" in result["summary"]:
        console.print(
            f"notify_max_ratio: none, {result['summary']['ratio_invalid']}", highlight=False
        )
    if plot is not None:
        _plot(plot, mode, runs, series, title)
        console.print(f"wrote {plot}")
    if html_out is not None:
        _html(html_out, result, topology, as_json)
        console.print(f"wrote {html_out}")


def _html(path: Path, result: dict[str, Any], topology: Any, as_json: bool) -> None:
    """The report as one HTML page (:mod:`hierclust.web.report`), provenance included."""
    from hierclust.bench.provenance import stamped
    from hierclust.web.report import bench_html

    try:
        path.write_text(bench_html(stamped(result), topology), encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror}", as_json)


@app.command("sweep")
def sweep(
    mode: Annotated[Mode, typer.Option("--mode", help="sim or udp.")] = Mode.sim,
    sizes: Annotated[
        str, typer.Option("--sizes", help="Comma-separated node counts (10k, 1m allowed).")
    ] = "1000,10000",
    fanout: Annotated[int, typer.Option("--fanout", help="Group size, 2..64.")] = DEFAULT_FANOUT,
    kills: Annotated[str, typer.Option("--kills", help="Kinds of kill, comma-separated.")] = (
        "leaf,leader"
    ),
    seed: Annotated[int, typer.Option("--seed", help="Seed of every run.")] = 7,
    as_json: JsonFlag = False,
    out_path: OutOpt = None,
    plot: PlotOut = None,
    processes: ProcessesOpt = None,
    base_port: BasePortOpt = DEFAULT_BASE_PORT,
    steady_s: SteadyOpt = 3.0,
    boot_timeout_s: BootOpt = 120.0,
    after_ms: AfterOpt = 3000,
    use_uvloop: UvloopOpt = None,
) -> None:
    """Notify time and datagrams per node against N.

    One run per size and kind of kill; --json prints the document on stdout, --out writes it.
    """
    from hierclust.bench.sweep import flatness, parse_sizes

    check_outputs(out_path, plot, as_json)

    try:
        size_list = parse_sizes(sizes)
    except ValueError as exc:
        fail(str(exc), as_json)
    kill_list = [k.strip() for k in kills.split(",") if k.strip()]
    for k in kill_list:
        if k not in ("leaf", "leader", "root-leader"):
            fail(f"--kills: expected leaf, leader or root-leader, got {k!r}", as_json)
    from hierclust.bench.udp import BenchError
    from hierclust.runtime.errors import DeployError

    with terminate_as_interrupt():
        console = console_for(as_json)
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        workdir = Path(tempfile.mkdtemp(prefix="hcbench-topo-", dir="/tmp"))
        try:
            for size in size_list:
                topology, path = _topology(
                    mode, None, size, fanout, base_port, workdir, name=f"t{size}.toml",
                    as_json=as_json,
                )  # fmt: skip
                for k in kill_list:
                    try:
                        (run,) = _runs(
                            mode, topology, path, k, 1, seed,
                            processes=processes, one_process_per_node=False, use_uvloop=use_uvloop,
                            steady_s=steady_s, after_ms=after_ms, boot_timeout_s=boot_timeout_s,
                            label=f"{mode.value} {size:,} {k}", as_json=as_json,
                        )  # fmt: skip
                    except DeployError as exc:
                        fail(str(exc), as_json)
                    except BenchError as exc:
                        skipped.append({"nodes": size, "kill": k, "error": str(exc)})
                        console.print(f"{size:>9,} {k:<11} [yellow]failed:[/] {exc}")
                        continue
                    rows.append(run)
                    console.print(
                        f"{size:>9,} {k:<11} notify_max {run['notify_max_ms']} ms, "
                        f"p50 {run['notify_p50_ms']} ms, msgs/node/s "
                        f"{run['msgs_per_node_per_s']}, {run['notified']}/{run['survivors']} "
                        "notified",
                        highlight=False,
                    )
                del topology
                gc.collect()
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    for row in rows:
        check_report(row)
    spread = flatness(rows)
    result: dict[str, Any] = {
        "runs": rows,
        "summary": {
            "mode": mode.value,
            "sizes": size_list,
            "fanout": fanout,
            "kills": kill_list,
            "msgs_per_node_spread": spread,
        },
    }
    if skipped:
        result["failed"] = skipped
    write_report(result, as_json, out_path)
    console.print(
        f"datagrams per node per second: largest deviation from the mean {spread}",
        highlight=False,
    )
    if plot is not None:
        from hierclust.bench.plots import sweep_plot

        sweep_plot(plot, rows, f"{mode.value} sweep, fan-out {fanout}, seed {seed}")
        console.print(f"wrote {plot}")


def _run_or_fail(*args: Any, failed_to: Path | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`_runs`, or exit with its error; when every repeat failed and ``failed_to`` is
    given, the failed repeats (what each boot did) are written there first."""
    from hierclust.bench.udp import BenchError
    from hierclust.runtime.errors import DeployError

    try:
        return _runs(*args, **kwargs)
    except DeployError as exc:
        fail(str(exc), bool(kwargs.get("as_json")))
    except BenchError as exc:
        failures = kwargs.get("failures")
        if failed_to is not None and failures:
            write_report({"runs": [], "failed_repeats": failures}, False, failed_to)
        refuse(str(exc), bool(kwargs.get("as_json")))


def _vs_serf(
    mode: Mode,
    topology: Any,
    runs: list[dict[str, Any]],
    repeats: int,
    seed: int,
    steady_s: float,
    nodes: int | None,
    fanout: int | None,
    base_port: int,
    workdir: Path,
    topology_file: Path | None,
    budget: bool,
    options: dict[str, Any],
    kill: str,
) -> dict[str, Any]:
    """Serf on the same box with the same victim, then (optionally) hierclust at Serf's
    datagram budget; the summary keys ``serf``, both ratios and ``equal_budget``."""
    from hierclust.bench.serf import AFTER_KILL_S, SerfError, serf_run, skip_reason

    reason = skip_reason()
    if reason is not None:
        return {
            "summary": {"serf": {"skipped": reason}},
            "serf_runs": [],
            "columns": {},
            "series": {},
        }
    serf_runs: list[dict[str, Any]] = []
    with stepping("serf", 1.0) as step:
        for i, run in enumerate(runs):
            victim = topology.rank(run["victim"]) % topology.num_nodes
            try:
                serf_runs.append(
                    serf_run(
                        topology.num_nodes,
                        victim,
                        run["victim_role"],
                        seed + i,
                        steady_s=max(steady_s, 5.0),
                        after_s=AFTER_KILL_S,
                        progress=step,
                    )  # fmt: skip
                )
            except SerfError as exc:
                refuse(str(exc), bool(options.get("as_json")))
    serf_summary = summarize(serf_runs)
    # a run in which Serf never converged is a result too (it kills nothing and times nothing)
    converged = sum(1 for r in serf_runs if r["serf"].get("converged", True))
    serf_summary["converged_runs"] = f"{converged} of {len(serf_runs)}"
    hier = summarize(runs)
    ratios = serf_ratios(hier, serf_summary, hierclust_runs=runs, serf_runs=serf_runs)
    part: dict[str, Any] = {
        "summary": {"serf": serf_summary, **ratios},
        "serf_runs": serf_runs,
        "columns": {"serf": serf_summary},
        "series": {"serf": [v for r in serf_runs for v in r["serf"]["notify_ms"]]},
    }
    serf_rate = serf_summary.get("msgs_per_node_per_s")
    hier_rate = hier.get("msgs_per_node_per_s")
    if not budget:
        return part
    if not serf_rate or not hier_rate or topology_file is not None or nodes is None:
        part["summary"]["equal_budget"] = {
            "skipped": "needs --nodes/--fanout and Serf's datagram count"
        }
        return part
    from hierclust.bench.udp import serf_budget_tuning

    heartbeat_ms = round(topology.tuning.heartbeat_ms * hier_rate / serf_rate)
    tuning = serf_budget_tuning(heartbeat_ms)
    tuned, path = _topology(
        mode, None, nodes, fanout, base_port, workdir, tuning, name="budget.toml",
        as_json=bool(options.get("as_json")),
    )  # fmt: skip
    if mode is Mode.sim:
        from hierclust.topology import from_dict, generate_document

        document_ = generate_document(nodes, fanout or DEFAULT_FANOUT)
        document_["defaults"] = tuning
        tuned = from_dict(document_, source=f"--nodes {nodes} (serf budget)")
    budget_runs = _run_or_fail(
        mode, tuned, path, kill, repeats, seed, label="hierclust at serf's budget", **options
    )
    budget_summary = summarize(budget_runs)
    budget_summary.update(
        serf_ratios(budget_summary, serf_summary, hierclust_runs=budget_runs, serf_runs=serf_runs)
    )
    budget_summary["tuning"] = tuning
    # the heartbeat comes from Serf's steady window, which opens once its rate has settled
    budget_summary["serf_msgs_per_node_per_s"] = serf_rate
    budget_summary["serf_settle_s"] = [r["serf"].get("settle_s") for r in serf_runs]
    part["summary"]["equal_budget"] = budget_summary
    part["budget_runs"] = budget_runs
    part["columns"][f"hierclust hb {heartbeat_ms} ms"] = budget_summary
    part["series"][f"hierclust, heartbeat {heartbeat_ms} ms"] = [
        v for r in budget_runs for v in r.get("udp", {}).get("notify_ms", [])
    ]
    return part


def _plot(
    path: Path, mode: Mode, runs: list[dict[str, Any]], series: dict[str, list[float]], title: str
) -> None:
    from hierclust.bench.plots import notify_cdf, repeat_bars

    if any(series.values()):
        notify_cdf(path, series, f"notification time per survivor: {title}")
    else:
        repeat_bars(path, runs, title)


def _register_embedding_benchmarks() -> None:
    from hierclust.cli.bench_corosync import partition
    from hierclust.cli.bench_embed import api, scheduler
    from hierclust.cli.bench_hostile import hostile

    app.command("api")(api)
    app.command("scheduler")(scheduler)
    app.command("hostile")(hostile)
    app.command("partition")(partition)


_register_embedding_benchmarks()
