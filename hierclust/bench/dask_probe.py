"""The scheduler side of the Dask benchmark (:mod:`hierclust.bench.sched_dask`), run on a lab host.

``python -m hierclust.bench.dask_probe --host IP --port P --workers N --victim NAME --marker PATH
[--hierclust-node NODE --hierclust-state-dir DIR]`` starts a Dask scheduler (with
:class:`~hierclust.adapters.dask.HierclustPlugin` when a node is given), waits for ``N`` workers,
then submits one task pinned to the worker named ``NAME`` (other workers allowed): there it
creates ``PATH`` and hangs; anywhere else it returns at once. It prints one JSON object per line
on stdout, each with ``t_ns`` from this host's monotonic clock: ``listening``, ``ready``, every
``removed`` worker (with the scheduler's ``stimulus_id``), ``done`` (the task's result: the worker
that ran it) and ``end`` after ``--timeout-s``, or once the victim was removed and the task done.

Its own program, not the benchmark's process: the scheduler must sit on a lab host for the lab's
cut to come between it and the victim.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from distributed import Client, Scheduler, get_worker
from distributed.diagnostics.plugin import SchedulerPlugin

from hierclust.adapters.dask import HierclustPlugin


def emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "t_ns": time.monotonic_ns(), **fields}), flush=True)


def hang_on(victim: str, marker: str, seconds: float) -> str:
    """On the worker named ``victim``: create ``marker`` (the job is running there) and hang for
    ``seconds``. Elsewhere: done at once. Returns the name of the worker that ran it."""
    me = str(get_worker().name)
    if me == victim:
        Path(marker).touch()
        time.sleep(seconds)
    return me


class RemovalLog(SchedulerPlugin):
    """Prints every worker removal the scheduler carries out, with why (its stimulus id)."""

    name = "bench-removals"

    def __init__(self) -> None:
        self.removed: list[str] = []

    def remove_worker(
        self, scheduler: Scheduler, worker: str, *, stimulus_id: str, **kwargs: Any
    ) -> None:
        self.removed.append(worker)
        emit("removed", worker=worker, stimulus_id=stimulus_id)


async def serve(args: argparse.Namespace) -> None:
    log = RemovalLog()
    plugins: list[SchedulerPlugin] = [log]
    hierclust = None
    if args.hierclust_node:
        hierclust = HierclustPlugin(node=args.hierclust_node, state_dir=args.hierclust_state_dir)
        plugins.append(hierclust)
    async with Scheduler(
        host=args.host, port=args.port, dashboard=False, dashboard_address=":0", plugins=plugins
    ) as scheduler:
        emit("listening", address=scheduler.address)
        client_cm = Client(scheduler.address, asynchronous=True)  # type: ignore[no-untyped-call]
        async with client_cm as client:
            await client.wait_for_workers(args.workers, timeout=args.timeout_s)
            if hierclust is not None and not await hierclust.wait_connected(args.timeout_s):
                emit("error", error="the plugin never connected to hierclust")
                return
            by_name = {str(ws.name): a for a, ws in scheduler.workers.items()}
            victim = by_name[args.victim]
            emit("ready", workers=by_name, victim=victim)
            future = client.submit(
                hang_on,
                args.victim,
                args.marker,
                args.hang_s,
                workers=[victim],
                allow_other_workers=True,
                pure=False,
            )
            deadline = time.monotonic() + args.timeout_s
            try:
                ran_on = await asyncio.wait_for(future, args.timeout_s)
                emit("done", worker=ran_on)
            except TimeoutError:
                emit("timeout", what="the task")
            while victim not in log.removed and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            emit("end", removed=log.removed)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hierclust.bench.dask_probe")
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, required=True)
    parser.add_argument("--victim", required=True, help="the name of the worker to lose")
    parser.add_argument("--marker", required=True, help="created when the task runs there")
    parser.add_argument("--hang-s", type=float, default=600.0)
    parser.add_argument("--timeout-s", type=float, default=120.0)
    parser.add_argument("--hierclust-node", default=None)
    parser.add_argument("--hierclust-state-dir", default=None)
    asyncio.run(serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main(sys.argv[1:])
