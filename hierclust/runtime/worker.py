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
from hierclust.runtime.state import StateFileError
from hierclust.topology import load


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
    topology = load(topology_path)
    keyring = load_keyring(keyring_path)
    (state_dir / "nodes").mkdir(parents=True, exist_ok=True)
    bus = EventBus(state_dir / f"events-{worker_id}.jsonl", topology)
    ctx = HostContext(topology, keyring, state_dir, bus)
    try:
        host = NodeHost(ctx, ranks, witnesses=witnesses)
    except StateFileError:
        bus.close()
        raise
    control = ControlServer(host, state_dir / f"{worker_id}.sock", keyring_path)
    pid_file = state_dir / f"{worker_id}.pid"
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(host.stop()))
    metrics: Any = None
    try:
        await host.start()
        if metrics_port is not None:
            from hierclust.runtime.metrics import serve_metrics

            metrics = serve_metrics(host, metrics_port)
        pid_file.write_text(f"{os.getpid()}\n")
        await control.start()
        if ready is not None:
            ready.set()
        await host.stopped.wait()
    finally:
        if metrics is not None:
            from hierclust.runtime.metrics import stop_metrics

            stop_metrics(metrics)
        await control.close()
        if not host.stopped.is_set():
            await host.stop()
        pid_file.unlink(missing_ok=True)
        bus.close()


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
