"""``Client``: attach to a running deployment's node over its worker's control socket.

Any process on the host can use it: ``hierclust deploy`` workers and ``hierclust agent`` (and a
library :class:`~hierclust.api.Agent`) each serve ``<id>.sock`` in their state directory, mode
0600 in a directory only its owner may enter. Each request is one connection (JSON lines, see
:mod:`hierclust.runtime.control`); an event subscription keeps its own connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from types import TracebackType
from typing import Any

from hierclust.api.errors import ConnectionLost, NoDeployment, UnknownNode
from hierclust.api.session import Session, raise_for, rank_of
from hierclust.topology import TopologyError, load

MAX_LINE = 64 << 20
"""The longest answer line accepted (the members of a million nodes fit)."""
CONNECT_TIMEOUT_S = 5.0


class SocketStream:
    """A subscription's connection: one JSON line per event."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def get(self) -> dict[str, Any] | None:
        try:
            line = await self.reader.readline()
        except (ConnectionError, ValueError):
            return None
        if not line:
            return None
        event: dict[str, Any] = json.loads(line)["event"]
        return event

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


class SocketBackend:
    """Requests to one worker's control socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path.parent)

    async def _open(self, request: dict[str, Any]) -> tuple[SocketStream, dict[str, Any]]:
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(self.path), limit=MAX_LINE)
        except (OSError, TimeoutError) as exc:
            raise ConnectionLost(
                f"{self.path}: cannot connect ({exc}); is it still running?"
            ) from None
        stream = SocketStream(reader, writer)
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        except (OSError, ValueError) as exc:
            await stream.aclose()
            raise ConnectionLost(f"{self.path}: {exc}") from None
        if not line:
            await stream.aclose()
            raise ConnectionLost(f"{self.path}: closed without an answer (worker stopping?)")
        answer: dict[str, Any] = json.loads(line)
        return stream, answer

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        stream, answer = await self._open(request)
        await stream.aclose()
        return answer

    async def subscribe(self, request: dict[str, Any]) -> SocketStream:
        stream, answer = await self._open(request)
        try:
            raise_for(answer, self.where)
        except BaseException:
            await stream.aclose()
            raise
        return stream


class Client(Session):
    """Attach to node ``node`` (default: any running local node) of the deployment in
    ``state_dir`` (default: ``$HIERCLUST_STATE_DIR``, else ``/tmp/hierclust-UID``)::

        async with Client() as c:
            async for event in c.events():
                ...

    :class:`NoDeployment` when nothing answers there; :class:`UnknownNode` when no worker there
    runs ``node``."""

    def __init__(self, state_dir: Path | str | None = None, node: str | None = None) -> None:
        from hierclust.runtime.discover import default_state_dir

        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._wanted = node

    async def __aenter__(self) -> Client:
        await self.connect()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def connect(self) -> None:
        """Find the worker that runs the node; :class:`NoDeployment` or :class:`UnknownNode`."""
        directory = self.state_dir
        if not directory.is_dir():
            raise NoDeployment(f"{directory}: no such state directory{_elsewhere(directory)}")
        sockets = sorted(directory.glob("*.sock"))
        answers: list[tuple[SocketBackend, dict[str, Any]]] = []
        errors: list[str] = []
        for path in sockets:
            backend = SocketBackend(path)
            try:
                answer = raise_for(await backend.call({"op": "hello"}), str(path))
            except Exception as exc:  # a stale socket, an older worker: try the next
                errors.append(str(exc))
                continue
            answers.append((backend, answer))
        if not answers:
            why = f" ({errors[0]})" if errors else ""
            raise NoDeployment(f"{directory}: no worker answers here{why}{_elsewhere(directory)}")
        try:
            self.topology = load(Path(answers[0][1]["topology"]))
        except (OSError, TopologyError) as exc:
            raise NoDeployment(f"{directory}: the deployment's topology: {exc}") from None
        if self._wanted is None:
            for backend, answer in answers:
                if answer["running"]:
                    self._attach(backend, int(answer["running"][0]))
                    return
            raise UnknownNode(f"{directory}: no node runs here (all are stopped)")
        rank = rank_of(self.topology, self._wanted)
        for backend, answer in answers:
            if rank in answer["ranks"]:
                self._attach(backend, rank)
                return
        raise UnknownNode(
            f"node {self._wanted}: no worker in {directory} runs it (it runs on another host, "
            "or under another state directory)"
        )

    def _attach(self, backend: SocketBackend, rank: int) -> None:
        self._backend = backend
        self.rank = rank
        self.node = self.topology.node_name(rank)


def _elsewhere(directory: Path) -> str:
    from hierclust.runtime.discover import live_elsewhere

    others = live_elsewhere(directory)
    if others:
        return f"; hierclust runs in {', '.join(others[:3])} (pass it as state_dir)"
    return "; no hierclust deployment runs on this host (`hierclust deploy` starts one)"
