"""Every published figure, taken again: the manifest behind ``make bench``.

    python bench/figures.py [--out DIR] [--only NAME,...] [--heavy] [--list] [--json]

Each entry of :data:`FIGURES` is one folder of ``docs/benchmarks/``: its name, the command that
produces its JSON (and plot), and roughly how long it takes here. Running the manifest writes
``DIR/<name>/<file>`` for every figure (the same file names as the committed ones, so
``--out docs/benchmarks`` regenerates the docs' JSON in place and ``git diff`` shows what moved)
and ``DIR/index.json``: per figure the command, its exit code, its wall time and the
provenance of what it wrote (command, commit, load average; see
:mod:`hierclust.bench.provenance`). A figure that fails is reported and the others still run;
the exit code is 1 if any failed. ``--heavy`` adds the runs that take more than half an hour
(the simulator at 10^6 nodes, 10,000 fuzz schedules, the 30-minute soak and chaos campaign).

Commands are written as a user types them (``hierclust ...``, ``python bench/...``); they run
with this interpreter, so a checkout's ``.venv`` runs its own code. ``{dir}`` in a command is the
figure's output folder, ``{commit}`` the checkout's short commit (for folders that name their
files by commit). A figure whose committed copy lives elsewhere than ``docs/benchmarks/<name>``
says so in ``home`` (the web screenshots live beside docs/web.md).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Figure:
    name: str
    """The folder under docs/benchmarks/ the figure lives in."""
    command: str
    """As a user types it; ``{dir}`` is the output folder."""
    stdout: str | None = None
    """The file the command's standard output goes to (for programs that print their JSON)."""
    minutes: float = 1.0
    """About how long it takes on the reference box (for the progress bar)."""
    heavy: bool = False
    """Only with ``--heavy``: more than half an hour."""
    needs_root: bool = False
    """Runs in network namespaces (or starts other systems' daemons there)."""
    ok_exits: tuple[int, ...] = (0,)
    """Exit codes that count as success (the fuzzer exits 1 when a schedule fails; on hosts
    loaded beyond their CPU some are expected to)."""
    home: str | None = None
    """The committed copy's folder when it is not ``docs/benchmarks/<name>``."""


FIGURES: tuple[Figure, ...] = (
    Figure(
        "topology-scale",
        "python bench/topology_scale.py --sizes 1000,10000,100000,1000000 --fanout 16",
        stdout="topology-scale.json",
    ),
    Figure(
        "sim-speed",
        "hierclust sim --nodes 100000 --fanout 16 --kill leaf --seed 3 --json",
        stdout="after-1.json",
        minutes=2,
    ),
    Figure(
        "sim-speed",
        "python bench/sim_scale.py --sizes 1000,10000,100000 --million",
        stdout="sweep-after.json",
        minutes=30,
        heavy=True,
    ),
    Figure(
        "sim-speed-2",
        "python bench/sim_events.py --nodes 20000 --fanout 16 --kill leaf --seed 3",
        stdout="events-20k.json",
        minutes=1,
    ),
    Figure(
        "sim-speed-2",
        "hierclust sim --nodes 100000 --fanout 16 --kill leaf --seed 3 --json",
        stdout="after-1.json",
        minutes=2,
    ),
    Figure(
        "sim-speed-2",
        "python bench/sim_scale.py --sizes 1000,10000,100000",
        stdout="sweep-after.json",
        minutes=3,
    ),
    Figure(
        "sim-speed-2",
        "python bench/sim_scale.py --one 1000000 --fanout 16 --kill leaf --seed 3 --after-ms 3000",
        stdout="after-1m.json",
        minutes=25,
        heavy=True,
    ),
    Figure(
        "sim-speed-3",
        "hierclust sim --nodes 100000 --fanout 16 --kill leaf --seed 3 --json",
        stdout="after-1.json",
        minutes=2,
    ),
    Figure(
        "sim-speed-3",
        "python bench/sim_scale.py --sizes 1000,10000,100000 --million",
        stdout="sweep-after.json",
        minutes=35,
        heavy=True,
    ),
    Figure(
        "sim100k-clocks",
        "hierclust sim --topology docs/benchmarks/sim100k-clocks/topology.toml --kill leaf "
        "--seed 3 --json",
        stdout="after-1.json",
        minutes=2,
    ),
    Figure(
        "sim100k-core-split",
        "hierclust sim --nodes 100000 --fanout 16 --kill leaf --seed 3 --json",
        stdout="after-1.json",
        minutes=2,
    ),
    Figure(
        "fuzz",
        "hierclust sim fuzz --schedules 10000 --seed 1 --json",
        stdout="seeds-1-10000.json",
        minutes=60,
        heavy=True,
    ),
    Figure(
        "fuzz",
        "hierclust sim fuzz --schedules 5000 --seed 1000000 --json",
        stdout="seeds-1000000-1004999.json",
        minutes=30,
        heavy=True,
    ),
    Figure(
        "udp1000-early-probe",
        "hierclust bench --mode udp --nodes 1000 --fanout 16 --kill leaf --repeats 5 "
        "--out {dir}/leaf.json --plot {dir}/leaf.png",
        minutes=3,
    ),
    Figure(
        "udp1000-early-probe",
        "hierclust bench --mode udp --nodes 1000 --fanout 16 --kill leader --repeats 5 "
        "--out {dir}/leader.json --plot {dir}/leader.png",
        minutes=3,
    ),
    Figure(
        "udp1000-early-probe",
        "hierclust bench --mode udp --nodes 1000 --fanout 16 --kill leaf --repeats 5 --hog 2 "
        "--out {dir}/leaf-hog2.json",
        minutes=3,
    ),
    Figure(
        "udp-sweep",
        "hierclust bench sweep --mode udp --sizes 250,500,1000,2000 --fanout 16 "
        "--kills leaf,leader --uvloop --out {dir}/sweep-udp.json --plot {dir}/sweep-udp.png",
        minutes=8,
    ),
    Figure(
        "serf-fair",
        "hierclust bench --mode udp --nodes 100 --vs serf --repeats 3 --uvloop "
        "--out {dir}/serf100-timeouts.json --plot {dir}/serf100-timeouts.png",
        minutes=6,
        needs_root=True,
    ),
    Figure(
        "serf-fair",
        "hierclust bench --mode udp --nodes 200 --vs serf --repeats 2 --uvloop --base-port 44000 "
        "--out {dir}/serf200-timeouts.json",
        minutes=6,
        needs_root=True,
    ),
    Figure(
        "serf-fair",
        "hierclust bench --mode udp --nodes 200 --vs serf --repeats 2 --base-port 44000 "
        "--out {dir}/serf200.json",
        minutes=5,
        needs_root=True,
    ),
    Figure(
        "serf-fair",
        "hierclust bench --mode udp --nodes 500 --vs serf --repeats 1 --no-budget "
        "--base-port 44000 --out {dir}/serf500.json",
        minutes=10,
        needs_root=True,
    ),
    Figure(
        "soak-1000",
        "python bench/udp_soak.py --topology docs/benchmarks/soak-1000/topology.toml "
        "--processes 2 --steady-s 1800 --rss-s 60 --samples --nice -10 "
        "--out {dir}/soak-1000.json",
        minutes=32,
        heavy=True,
        needs_root=True,
    ),
    Figure(
        "api-latency",
        "hierclust bench api --nodes 64 --subscribers 16 --kills 10 --out {dir}/api-64.json",
        minutes=1,
    ),
    Figure(
        "hostile",
        "hierclust bench hostile --datagrams 1000000 --rate 10000 --base-port 25100 "
        "--out {dir}/hostile-1e6.json",
        minutes=4,
        needs_root=True,
    ),
    Figure(
        "scheduler-slurm",
        "hierclust bench scheduler --slurm --nodes 16 --slurmd-timeout 30 --repeats 3 "
        "--out {dir}/slurm16-30x3.json",
        minutes=5,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench --mode udp --nodes 16 --kill leaf --vs corosync --repeats 3 "
        "--out {dir}/kill16.json",
        minutes=4,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench --mode udp --nodes 16 --fanout 4 --kill leaf --vs corosync --repeats 3 "
        "--out {dir}/kill16-fanout4.json",
        minutes=4,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench --mode udp --nodes 8 --kill leaf --vs corosync --repeats 3 "
        "--out {dir}/kill8.json",
        minutes=3,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench partition --nodes 8 --minority 3 --vs corosync --repeats 3 "
        "--out {dir}/partition-3of8.json",
        minutes=3,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench partition --nodes 8 --minority 4 --witness --vs corosync --repeats 3 "
        "--out {dir}/partition-4of8-witness.json",
        minutes=3,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench partition --nodes 8 --minority 3 --repeats 3 --tuning heartbeat_ms=100 "
        "--tuning suspect_after_ms=400 --tuning confirm_ms=50 --tuning election_timeout_ms=400 "
        "--tuning lease_ms=250 --tuning slot_grace_ms=400 --out {dir}/partition-3of8-fast.json",
        minutes=1,
        needs_root=True,
    ),
    Figure(
        "corosync",
        "hierclust bench partition --nodes 8 --minority 3 --fanout 4 --witness "
        "--out {dir}/partition-3of8-split.json",
        minutes=1,
        needs_root=True,
    ),
    Figure(
        "scheduler-dask",
        "python -m hierclust.bench.sched_dask --nodes 8 --repeats 3 --json {dir}/dask8.json",
        minutes=3,
        needs_root=True,
    ),
    *(
        Figure(
            "overload",
            "hierclust bench --mode udp --nodes 2000 --fanout 16 --kill leaf --hog 2 "
            f"--base-port 50000 --boot-timeout 120 --seed {6 + run} --json "
            f"--out {{dir}}/after-2000-hog2-run{run}.json",
            minutes=4,
        )
        for run in range(1, 6)
    ),
    Figure(
        "overload",
        "hierclust bench --mode udp --nodes 2000 --fanout 16 --kill leaf --base-port 50000 "
        "--boot-timeout 120 --json --out {dir}/nohog2000-after-run1.json",
        minutes=3,
    ),
    *(
        Figure(
            "overload",
            "hierclust bench --mode udp --nodes 1000 --fanout 16 --kill leaf --base-port 52000 "
            f"--json --out {{dir}}/idle1000-after-run{run}.json",
            minutes=2,
        )
        for run in (4, 5)
    ),
    *(
        Figure(
            "overload",
            f"hierclust sim --nodes 2000 --fanout 16 --slow {slow} --per-host 1000 "
            "--boot-limit-ms 60000 --seed 1 --json",
            stdout=f"sim/after-slow{slow}.json",
            minutes=2,
        )
        for slow in ("2.5", "3", "4", "6")
    ),
    *(
        Figure(
            "overload",
            f"hierclust sim fuzz --schedules 300 --seed 1 --load {load} --json",
            stdout=f"fuzz/after-load{load}.json",
            minutes=10,
            ok_exits=(0, 1),
        )
        for load in ("0.8", "1.2")
    ),
    Figure(
        "chaos",
        "hierclust chaos --minutes 30 --seed 1 --sites 4 --nodes-per-site 25 "
        "--out {dir}/seed1-30min-{commit}.json",
        minutes=40,
        heavy=True,
        needs_root=True,
    ),
    Figure(
        "web",
        "python bench/web_screenshots.py --out {dir}",
        minutes=3,
        home="docs/web",
    ),
)


def short_commit() -> str:
    """The checkout's commit, as the folders that name files by commit spell it."""
    done = subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    return done.stdout.strip() or "unknown"


def expanded(command: str, folder: Path) -> str:
    """The command with its output folder (and, where it asks for it, the commit) filled in."""
    command = command.replace("{dir}", str(folder))
    if "{commit}" in command:
        command = command.replace("{commit}", short_commit())
    return command


def argv_of(command: str, folder: Path) -> list[str]:
    """The command as this interpreter runs it."""
    argv = shlex.split(expanded(command, folder))
    if argv[0] == "hierclust":
        return [sys.executable, "-m", "hierclust", *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


def written_provenance(folder: Path, started: float) -> list[dict[str, Any]]:
    """The provenance of each JSON document the figure's command wrote (files newer than its
    start)."""
    found = []
    for path in sorted(folder.rglob("*.json")):
        if path.stat().st_mtime < started:
            continue
        try:
            document = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(document, dict):
            name = str(path.relative_to(folder))
            found.append({"file": name, "provenance": document.get("provenance")})
    return found


def run_figure(figure: Figure, out: Path) -> dict[str, Any]:
    from hierclust.bench.provenance import stamped

    folder = out / figure.name
    folder.mkdir(parents=True, exist_ok=True)
    argv = argv_of(figure.command, folder)
    started = time.time()
    shown = expanded(figure.command, folder)
    if figure.stdout is None:
        done = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    else:
        done = subprocess.run(argv, cwd=REPO, capture_output=True)
        try:
            document = json.loads(done.stdout)
        except ValueError:
            document = None
        # a document printed by a failing run (the fuzzer's failed schedules) is kept too
        if isinstance(document, dict):
            document = stamped(document, shown)
            target = folder / figure.stdout
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(document, indent=2) + "\n")
    entry: dict[str, Any] = {
        "figure": figure.name,
        "command": shown,
        "exit_code": done.returncode,
        "ok": done.returncode in figure.ok_exits,
        "wall_s": round(time.time() - started, 1),
        "written": written_provenance(folder, started),
    }
    if figure.home is not None:
        entry["home"] = figure.home
    if done.returncode != 0:
        entry["stderr_tail"] = done.stderr.decode(errors="replace").strip().splitlines()[-5:]
    return entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/hierclust-bench"))
    parser.add_argument("--only", default="", help="comma-separated figure names")
    parser.add_argument("--heavy", action="store_true", help="also the runs over half an hour")
    parser.add_argument("--list", action="store_true", help="list the figures and exit")
    parser.add_argument("--json", action="store_true", help="print the index on stdout")
    args = parser.parse_args()
    names = {f.name for f in FIGURES}
    only = {n for n in args.only.split(",") if n}
    unknown = sorted(only - names)
    if unknown:
        parser.error(
            f"--only: no figure named {', '.join(unknown)}; known: {', '.join(sorted(names))}"
        )
    chosen = [f for f in FIGURES if (f.name in only if only else (args.heavy or not f.heavy))]
    if args.list:
        for f in FIGURES:
            tags = " ".join(t for t, on in (("heavy", f.heavy), ("root", f.needs_root)) if on)
            home = f" (committed in {f.home})" if f.home else ""
            into = f" > {f.stdout}" if f.stdout else ""
            print(f"{f.name:22} ~{f.minutes:g} min {tags:10} {f.command}{into}{home}")
        return 0

    from rich.progress import Progress

    entries = []
    with Progress(transient=True) as bar:
        task = bar.add_task("figures", total=sum(f.minutes for f in chosen))
        for figure in chosen:
            bar.update(task, description=figure.name)
            entry = run_figure(figure, args.out)
            entries.append(entry)
            status = "ok" if entry["ok"] else f"FAILED (exit {entry['exit_code']})"
            if entry["ok"] and entry["exit_code"] != 0:
                status = f"ok (exit {entry['exit_code']})"
            bar.console.print(f"{figure.name}: {status} in {entry['wall_s']} s: {entry['command']}")
            bar.advance(task, figure.minutes)
    index = {"bench": "figures", "out": str(args.out), "figures": entries}
    (args.out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    if args.json:
        print(json.dumps(index, indent=2))
    return 1 if any(not e["ok"] for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
