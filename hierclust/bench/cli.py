"""``hierclust bench`` and ``hierclust bench sweep``; :func:`register` adds them to the main app.

Thin: options are checked here, the work is in :mod:`hierclust.bench`. Input errors (bad options,
ports taken) print one line and exit 2; a run that fails to reach its state exits 1; Ctrl-C stops
every process the run started and exits 130.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
import signal
import tempfile
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import hierclust.cli as base
from hierclust.bench.report import check_report, document, serf_ratios, summarize

DEFAULT_BASE_PORT = 42000


class Mode(StrEnum):
    sim = "sim"
    udp = "udp"


TopologyOpt = Annotated[
    Path | None, typer.Option("--topology", help="Topology file (.toml); udp needs addresses.")
]
NodesOpt = Annotated[int | None, typer.Option("--nodes", help="Generate N nodes...")]
FanoutOpt = Annotated[int | None, typer.Option("--fanout", help="...in groups of K.")]
JsonOut = Annotated[
    Path | None, typer.Option("--json", help="Write the JSON document here ('-': stdout).")
]
PlotOut = Annotated[Path | None, typer.Option("--plot", help="Write a plot (PNG) here.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Base seed; repeat i uses seed + i.")]
BasePortOpt = Annotated[
    int,
    typer.Option("--base-port", help="udp, generated topologies: first UDP port (one per node)."),
]
ProcessesOpt = Annotated[
    int | None, typer.Option("--processes", min=1, help="udp: worker processes (default: auto).")
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
    typer.Option("--uvloop/--no-uvloop", help="udp: uvloop (default: over 256 nodes)."),
]


def _write_json(payload: dict[str, Any], target: Path | None) -> None:
    if target is None:
        return
    text = json.dumps(payload, indent=2) + "\n"
    if str(target) == "-":
        print(text, end="")
        return
    try:
        target.write_text(text)
    except OSError as exc:
        base.fail(f"{target}: cannot write: {exc.strerror}")


def _console(json_target: Path | None) -> Any:
    """Rich output goes to stderr when the JSON goes to stdout."""
    return base.err if json_target is not None and str(json_target) == "-" else base.out


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
) -> tuple[Any, Path]:
    """The topology and the file the workers will read (a generated one lives in ``workdir``)."""
    from hierclust.topology import TopologyError

    if mode is Mode.sim or topology_file is not None:
        topology = base.topology_from_options(topology_file, nodes, fanout, False)
        return topology, topology_file or Path(topology.source)
    if nodes is None or fanout is None:
        base.fail("give --topology FILE, or --nodes N with --fanout K")
    from hierclust.bench.udp import write_generated

    try:
        topology = write_generated(nodes, fanout, base_port, workdir / name, tuning)
    except TopologyError as exc:
        base.fail(f"{exc} (--base-port {base_port}, --nodes {nodes})")
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
    boot_timeout_s: float = 120.0,
    failures: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    with base.progress_bar(label) as bar:
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
                base.fail(f"{topology.source}: {exc}")
        from hierclust.runtime.cli import uvloop_installed
        from hierclust.runtime.deploy import default_processes

        def udp_step(phase: str, done: float, total: float) -> None:
            bar.update(task, completed=done, total=max(total, 1e-9), description=phase)

        if use_uvloop is None:
            use_uvloop = topology.num_nodes > 256 and uvloop_installed()
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
            after_s=max(10.0, after_ms / 1000),
            boot_timeout_s=boot_timeout_s,
            progress=udp_step,
            failures=failures,
        )


def _terminate_as_interrupt() -> None:
    """SIGTERM unwinds like Ctrl-C, so the ``finally`` blocks stop what the run started (a
    background job ignores SIGINT, so SIGTERM is how it gets stopped)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    with contextlib.suppress(ValueError):  # not the main thread (e.g. some test runners)
        signal.signal(signal.SIGTERM, handler)


def register(app: typer.Typer) -> None:
    """Add ``bench`` (and ``bench sweep``) to ``app``."""
    bench_app = typer.Typer(
        help="Failure-propagation benchmarks (sim or real UDP; --vs serf); prints JSON reports."
    )
    app.add_typer(bench_app, name="bench")

    @bench_app.callback(invoke_without_command=True)
    def bench(
        ctx: typer.Context,
        mode: Annotated[Mode, typer.Option("--mode", help="sim or udp.")] = Mode.sim,
        topology_file: TopologyOpt = None,
        nodes: NodesOpt = None,
        fanout: FanoutOpt = None,
        kill: Annotated[
            str, typer.Option("--kill", help="leaf, leader, root-leader, or a node name.")
        ] = "leaf",
        repeats: Annotated[int, typer.Option("--repeats", min=1, max=100)] = 1,
        seed: SeedOpt = 7,
        json_out: JsonOut = None,
        plot: PlotOut = None,
        vs: Annotated[
            str | None, typer.Option("--vs", help="Compare with another system: serf.")
        ] = None,
        processes: ProcessesOpt = None,
        one_process_per_node: OneProcOpt = False,
        base_port: BasePortOpt = DEFAULT_BASE_PORT,
        steady_s: SteadyOpt = 3.0,
        boot_timeout_s: BootOpt = 120.0,
        after_ms: AfterOpt = 3000,
        use_uvloop: UvloopOpt = None,
        budget: Annotated[
            bool,
            typer.Option(
                "--budget/--no-budget",
                help="--vs serf: also run hierclust tuned to Serf's datagram budget.",
            ),
        ] = True,
    ) -> None:
        """Boot a cluster, measure a steady window, kill one node, report (DESIGN §5)."""
        if ctx.invoked_subcommand is not None:
            return
        if vs not in (None, "serf"):
            base.fail(f"--vs: expected serf, got {vs!r}")
        _terminate_as_interrupt()
        console = _console(json_out)
        failures: list[dict[str, Any]] = []
        workdir = Path(tempfile.mkdtemp(prefix="hcbench-topo-", dir="/tmp"))
        try:
            topology, path = _topology(mode, topology_file, nodes, fanout, base_port, workdir)
            options: dict[str, Any] = {
                "processes": processes,
                "one_process_per_node": one_process_per_node,
                "use_uvloop": use_uvloop,
                "steady_s": steady_s,
                "after_ms": after_ms,
                "boot_timeout_s": boot_timeout_s,
                "failures": failures,
            }
            runs = _run_or_fail(
                mode, topology, path, kill, repeats, seed, label=f"{mode.value} bench", **options
            )
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
            base.err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(130) from None
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        if failures:
            result["failed_repeats"] = failures
            for failure in failures:
                console.print(f"[yellow]repeat skipped:[/] {failure['error']}", highlight=False)
        _write_json(result, json_out)
        title = (
            f"{mode.value}: {topology.num_nodes:,} nodes, kill {kill}, {repeats} repeat(s), medians"
        )
        console.print(summary_table(title, columns))
        serf = result["summary"].get("serf")
        if isinstance(serf, dict) and "skipped" in serf:
            console.print(f"serf: skipped, {serf['skipped']}", highlight=False)
        if plot is not None:
            _plot(plot, mode, runs, series, title)
            console.print(f"wrote {plot}")

    @bench_app.command("sweep")
    def sweep(
        mode: Annotated[Mode, typer.Option("--mode", help="sim or udp.")] = Mode.sim,
        sizes: Annotated[
            str, typer.Option("--sizes", help="Comma-separated node counts (10k, 1m allowed).")
        ] = "1000,10000",
        fanout: Annotated[int, typer.Option("--fanout", help="Group size.")] = 16,
        kills: Annotated[str, typer.Option("--kills", help="Kinds of kill, comma-separated.")] = (
            "leaf,leader"
        ),
        seed: SeedOpt = 7,
        json_out: JsonOut = None,
        plot: PlotOut = None,
        processes: ProcessesOpt = None,
        base_port: BasePortOpt = DEFAULT_BASE_PORT,
        steady_s: SteadyOpt = 3.0,
        boot_timeout_s: BootOpt = 120.0,
        after_ms: AfterOpt = 3000,
        use_uvloop: UvloopOpt = None,
    ) -> None:
        """Notify time and datagrams per node against N, one run per size and kill."""
        from hierclust.bench.sweep import flatness, parse_sizes

        try:
            size_list = parse_sizes(sizes)
        except ValueError as exc:
            base.fail(str(exc))
        kill_list = [k.strip() for k in kills.split(",") if k.strip()]
        for k in kill_list:
            if k not in ("leaf", "leader", "root-leader"):
                base.fail(f"--kills: expected leaf, leader or root-leader, got {k!r}")
        from hierclust.bench.udp import BenchError
        from hierclust.runtime.errors import DeployError

        _terminate_as_interrupt()
        console = _console(json_out)
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        workdir = Path(tempfile.mkdtemp(prefix="hcbench-topo-", dir="/tmp"))
        try:
            for size in size_list:
                topology, path = _topology(
                    mode, None, size, fanout, base_port, workdir, name=f"t{size}.toml"
                )
                for k in kill_list:
                    try:
                        (run,) = _runs(
                            mode, topology, path, k, 1, seed,
                            processes=processes, one_process_per_node=False, use_uvloop=use_uvloop,
                            steady_s=steady_s, after_ms=after_ms, boot_timeout_s=boot_timeout_s,
                            label=f"{mode.value} {size:,} {k}",
                        )  # fmt: skip
                    except DeployError as exc:
                        base.fail(str(exc))
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
            base.err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(130) from None
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
        _write_json(result, json_out)
        console.print(
            f"datagrams per node per second: largest deviation from the mean {spread}",
            highlight=False,
        )
        if plot is not None:
            from hierclust.bench.plots import sweep_plot

            sweep_plot(plot, rows, f"{mode.value} sweep, fan-out {fanout}, seed {seed}")
            console.print(f"wrote {plot}")


def _run_or_fail(*args: Any, **kwargs: Any) -> list[dict[str, Any]]:
    from hierclust.bench.udp import BenchError
    from hierclust.runtime.errors import DeployError

    try:
        return _runs(*args, **kwargs)
    except DeployError as exc:
        base.fail(str(exc))
    except BenchError as exc:
        base.err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(1) from None


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
    from hierclust.bench.serf import SerfError, serf_run, skip_reason

    reason = skip_reason()
    if reason is not None:
        return {
            "summary": {"serf": {"skipped": reason}},
            "serf_runs": [],
            "columns": {},
            "series": {},
        }
    serf_runs: list[dict[str, Any]] = []
    with base.progress_bar("serf") as bar:
        task = bar.add_task("starting", total=1.0)

        def step(phase: str, done: float, total: float) -> None:
            bar.update(task, completed=done, total=max(total, 1e-9), description=phase)

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
                        progress=step,
                    )  # fmt: skip
                )
            except SerfError as exc:
                base.err.print(f"[red]error:[/] {exc}", highlight=False)
                raise typer.Exit(1) from None
    serf_summary = summarize(serf_runs)
    hier = summarize(runs)
    ratios = serf_ratios(hier, serf_summary)
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
        mode, None, nodes, fanout, base_port, workdir, tuning, name="budget.toml"
    )
    if mode is Mode.sim:
        from hierclust.topology import from_dict, generate_document

        document_ = generate_document(nodes, fanout or 16)
        document_["defaults"] = tuning
        tuned = from_dict(document_, source=f"--nodes {nodes} (serf budget)")
    budget_runs = _run_or_fail(
        mode, tuned, path, kill, repeats, seed, label="hierclust at serf's budget", **options
    )
    budget_summary = summarize(budget_runs)
    budget_summary.update(serf_ratios(budget_summary, serf_summary))
    budget_summary["tuning"] = tuning
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
