"""A worker process: one :class:`NodeHost` running a slice of a topology's ranks.

Started by ``hierclust deploy`` (``python -m hierclust.runtime.worker ...``) and by
``hierclust agent`` (in the foreground, one rank). Writes ``<id>.pid`` and serves ``<id>.sock`` in
the state directory, appends events to ``events-<id>.jsonl``, and exits cleanly on SIGTERM/SIGINT or
a ``stop`` request.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from hierclust.codec import load_keyring
from hierclust.runtime.context import HostContext
from hierclust.runtime.control import ControlServer
from hierclust.runtime.events import EventBus
from hierclust.runtime.host import NodeHost
from hierclust.runtime.state import FULL_ERRNOS, StateFileError, make_state_dir
from hierclust.topology import Topology, load

_LOG = logging.getLogger("hierclust.runtime")


def parse_ranks(text: str) -> list[int]:
    """``"0-31,40,42-43"`` -> ranks (inclusive ranges); ``"none"`` -> no ranks."""
    ranks: list[int] = []
    if text == "none":
        return ranks
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            ranks.extend(range(int(a), int(b) + 1))
        elif part:
            ranks.append(int(part))
    return ranks


class Serving:
    """One process's share of a cluster, serving: its :class:`NodeHost` booted, its control
    socket ``<id>.sock`` and its pid file ``<id>.pid`` in the state directory, its events
    appended to ``events-<id>.jsonl``. What a deploy worker, ``hierclust agent`` and the library's
    ``Agent`` all run; :meth:`open` starts it, :meth:`close` stops it."""

    def __init__(
        self, host: NodeHost, control: ControlServer, bus: EventBus, pid_file: Path
    ) -> None:
        self.host = host
        self.control = control
        self.bus = bus
        self.pid_file = pid_file
        self.metrics: Any = None

    @classmethod
    async def open(
        cls,
        topology_path: Path | Topology,
        state_dir: Path,
        worker_id: str,
        ranks: list[int],
        keyring_path: Path,
        *,
        metrics_port: int | None = None,
        witnesses: bool = False,
    ) -> Serving:
        """Boot ``ranks`` of the topology (a file, or one already loaded) and serve them."""
        topology = topology_path if isinstance(topology_path, Topology) else load(topology_path)
        keyring = load_keyring(keyring_path)
        make_state_dir(state_dir)
        (state_dir / "nodes").mkdir(parents=True, exist_ok=True)
        bus = EventBus(state_dir / f"events-{worker_id}.jsonl", topology)
        ctx = HostContext(topology, keyring, state_dir, bus)
        try:
            host = NodeHost(ctx, ranks, witnesses=witnesses)
        except StateFileError:
            bus.close()
            raise
        control = ControlServer(host, state_dir / f"{worker_id}.sock", keyring_path)
        serving = cls(host, control, bus, state_dir / f"{worker_id}.pid")
        try:
            await host.start()
            if metrics_port is not None:
                from hierclust.runtime.metrics import serve_metrics

                serving.metrics = serve_metrics(host, metrics_port)
            try:
                serving.pid_file.write_text(f"{os.getpid()}\n")
            except OSError as exc:
                if exc.errno not in FULL_ERRNOS:
                    raise
                # a full state directory: the nodes run without their votes (storage faults);
                # the control socket, not the pid file, is how the tools find the worker
                _LOG.error("%s: %s; no pid file", serving.pid_file, exc.strerror)
            await control.start()
        except BaseException:
            await serving.close()
            raise
        return serving

    async def close(self) -> None:
        if self.metrics is not None:
            from hierclust.runtime.metrics import stop_metrics

            stop_metrics(self.metrics)
            self.metrics = None
        await self.control.close()
        if not self.host.stopped.is_set():
            await self.host.stop()
        self.pid_file.unlink(missing_ok=True)
        self.bus.close()


async def run_worker(
    topology_path: Path,
    state_dir: Path,
    worker_id: str,
    ranks: list[int],
    keyring_path: Path,
    *,
    metrics_port: int | None = None,
    ready: asyncio.Event | None = None,
    witnesses: bool = False,
) -> None:
    stopping = asyncio.Event()  # SIGTERM/SIGINT, also while booting
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    serving = await Serving.open(
        topology_path,
        state_dir,
        worker_id,
        ranks,
        keyring_path,
        metrics_port=metrics_port,
        witnesses=witnesses,
    )
    try:
        if ready is not None:
            ready.set()
        waits = {
            asyncio.ensure_future(serving.host.stopped.wait()),
            asyncio.ensure_future(stopping.wait()),
        }
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
    finally:
        await serving.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hierclust.runtime.worker")
    parser.add_argument("--topology", required=True, type=Path)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--worker", required=True)
    parser.add_argument("--ranks", required=True)
    parser.add_argument("--keyring", required=True, type=Path)
    parser.add_argument("--metrics-port", type=int, default=None)
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--witnesses", action="store_true", help="also serve local witnesses")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    coro = run_worker(
        args.topology,
        args.state_dir,
        args.worker,
        parse_ranks(args.ranks),
        args.keyring,
        metrics_port=args.metrics_port,
        witnesses=args.witnesses,
    )
    try:
        run(coro, use_uvloop=args.uvloop)
    except (OSError, StateFileError) as exc:
        print(f"worker {args.worker}: {exc}", file=sys.stderr)
        return 2
    return 0


def run(coro: object, *, use_uvloop: bool = False) -> None:
    """``asyncio.run`` with uvloop when asked for and installed."""
    if use_uvloop:
        try:
            import uvloop

            uvloop.run(coro)  # type: ignore[arg-type]
            return
        except ImportError:
            pass
    asyncio.run(coro)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
