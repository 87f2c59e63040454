"""What every command family shares: the consoles, one-line errors, JSON output, the common
option types, and reading topology files and path arguments with errors that say what was
expected. Imports no command family.

Exit codes: 0 done; 1 understood but not done (the cluster is not in a state where the command
applies, or did not reach the asked-for state in time); 2 bad input (a file, key, option, node or
state directory that is wrong); 130 interrupted.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from hierclust.topology import Topology, TopologyError, generate_document, load

EXIT_NOT_DONE = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
DEFAULT_FANOUT = 16
"""Group size of generated topologies when ``--fanout`` is not given (topology, sim, bench)."""

out = Console()
err = Console(stderr=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
TopologyOpt = Annotated[
    Path | None, typer.Option("--topology", help="Topology file (.toml).", show_default=False)
]
NodesOpt = Annotated[
    int | None,
    typer.Option(
        "--nodes", help="Generate a topology of this many nodes (instead of --topology).",
        show_default=False,
    ),
]  # fmt: skip
FanoutOpt = Annotated[
    int | None,
    typer.Option(
        "--fanout",
        help=f"Group size of the generated topology, 2..64 (default: {DEFAULT_FANOUT}).",
        show_default=False,
    ),
]


def command_group(**settings: Any) -> typer.Typer:
    """A typer app with the project's settings: plain help (no type column, no boxes),
    no shell-completion options, plain tracebacks."""
    return typer.Typer(
        rich_markup_mode=None, add_completion=False, pretty_exceptions_enable=False, **settings
    )


def fail(message: str, as_json: bool = False, **fields: Any) -> NoReturn:
    """Report bad input: one line (and ``{"error": ...}`` on stdout with --json), exit 2."""
    _report(message, as_json, fields)
    raise typer.Exit(EXIT_BAD_INPUT)


def refuse(message: str, as_json: bool = False, **fields: Any) -> NoReturn:
    """Report a command that was understood but cannot be carried out now: one line, exit 1."""
    _report(message, as_json, fields)
    raise typer.Exit(EXIT_NOT_DONE)


def _report(message: str, as_json: bool, fields: dict[str, Any]) -> None:
    if as_json:
        print(json.dumps({"error": message, **fields}))
    err.print(f"[red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)


def emit_json(payload: Any) -> None:
    print(json.dumps(payload, indent=2))


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 process``, ``2 processes``: the count and the word that goes with it."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def progress_bar(label: str) -> Any:
    """A transient progress bar on stderr, shown only on a terminal."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    )


# -- paths -----------------------------------------------------------------------------------------
def input_file(path: Path, what: str, as_json: bool = False) -> Path:
    """``path`` if it can be a file to read; exit 2 naming it when it is a directory."""
    if path.is_dir():
        fail(f"{path}: is a directory; expected {what}", as_json, file=str(path), key="")
    return path


def output_file(path: Path, what: str, as_json: bool = False) -> Path:
    """``path`` if a file can be written there; exit 2 naming it when it is a directory or its
    directory does not exist."""
    if path.is_dir():
        fail(f"{path}: is a directory; expected {what}", as_json, file=str(path), key="")
    parent = path.parent
    if not parent.is_dir():
        fail(
            f"{path}: {parent} is not a directory; create it first, or write {what} elsewhere",
            as_json,
            file=str(path),
            key="",
        )
    return path


def output_dir(path: Path, what: str, as_json: bool = False) -> Path:
    """``path`` if it is (or can become) a directory; exit 2 when it is a file."""
    if path.exists() and not path.is_dir():
        fail(f"{path}: is a file; expected {what}", as_json, file=str(path), key="")
    return path


# -- topologies ------------------------------------------------------------------------------------
def default_topology_path() -> Path:
    """The embedded default topology (the same file as topologies/demo.toml)."""
    return Path(str(resources.files("hierclust") / "data" / "demo.toml"))


def load_or_fail(path: Path, as_json: bool = False) -> Topology:
    """The topology in ``path``; exit 2 with one line naming the file and key when it is bad."""
    input_file(path, "a topology file (.toml)", as_json)
    try:
        return load(path)
    except TopologyError as exc:
        fail(str(exc), as_json, file=exc.source, key=exc.key)


def topology_from_options(
    topology_file: Path | None, nodes: int | None, fanout: int | None, as_json: bool
) -> Topology:
    """``--topology FILE`` or ``--nodes N [--fanout K]`` (a generated topology), exactly one."""
    from hierclust.topology import from_dict

    if topology_file is not None:
        if nodes is not None or fanout is not None:
            fail("give either --topology FILE or --nodes N (with --fanout K), not both", as_json)
        return load_or_fail(topology_file, as_json)
    if nodes is None:
        if fanout is not None:
            fail(
                f"--fanout {fanout} needs --nodes N (the size of the topology to generate)", as_json
            )
        fail(
            f"give --topology FILE, or --nodes N (groups of --fanout K, default {DEFAULT_FANOUT})",
            as_json,
        )
    fanout = DEFAULT_FANOUT if fanout is None else fanout
    try:
        return from_dict(generate_document(nodes, fanout), source=f"--nodes {nodes}")
    except TopologyError as exc:
        fail(str(exc), as_json, file=exc.source, key=exc.key)


def print_warnings(topology: Topology) -> None:
    for warning in topology.warnings:
        warn(f"{topology.source}: {warning}")


def warn(message: str) -> None:
    err.print(f"[yellow]warning:[/] {escape(message)}", highlight=False, soft_wrap=True)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within: SIGTERM unwinds like Ctrl-C, so a command's cleanup stops what it started (a
    background job ignores SIGINT, so SIGTERM is how it gets stopped)."""

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (e.g. some test runners)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Write the JSON document to this file.", show_default=False),
]


# -- measuring commands ----------------------------------------------------------------------------
@contextlib.contextmanager
def stepping(label: str, total: float | None = None) -> Iterator[Any]:
    """A transient progress bar for one phase of a run; yields ``progress(phase, done, total)``
    (the callback the bench modules take)."""
    with progress_bar(label) as bar:
        task = bar.add_task("starting", total=total)

        def progress(phase: str, done: float | None = None, of: float | None = None) -> None:
            bar.update(task, description=phase, completed=done, total=of)

        yield progress


@contextlib.contextmanager
def measuring(
    label: str,
    total: float | None,
    as_json: bool,
    refused: tuple[type[Exception], ...] = (),
    unable: tuple[type[Exception], ...] = (),
) -> Iterator[Any]:
    """The frame of a command that runs a measurement: SIGTERM unwinds as Ctrl-C, a transient
    progress bar, an exception of ``refused`` (bad input met on the way) exits 2 with its
    message, one of ``unable`` (the run could not be carried out, e.g. a lab that did not form)
    exits 1 with its message, an interrupt exits 130 once the run's own cleanup stopped what it
    started. Yields ``progress(phase, done, total)``."""
    from hierclust.bench.provenance import checkout

    checkout()  # the commit as the run starts (cached): the tree may move on during a long run
    with terminate_as_interrupt(), stepping(label, total) as progress:
        try:
            yield progress
        except refused as exc:
            fail(str(exc), as_json)
        except unable as exc:
            refuse(str(exc), as_json)
        except KeyboardInterrupt:
            err.print("[red]interrupted[/]: every process this run started was stopped")
            raise typer.Exit(EXIT_INTERRUPTED) from None


def write_report(report: dict[str, Any], as_json: bool, out_path: Path | None) -> None:
    """A measurement's JSON document: on stdout with ``--json``, in ``out_path`` when given;
    stamped with its provenance (the command, the commit, the machine's load)."""
    from hierclust.bench.provenance import stamped

    text = json.dumps(stamped(report), indent=2) + "\n"
    if as_json:
        print(text, end="")
    if out_path is not None:
        try:
            out_path.write_text(text, encoding="utf-8")
        except OSError as exc:
            fail(f"{out_path}: cannot write: {exc.strerror}", as_json)
