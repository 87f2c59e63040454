"""``Agent``: run a node (or a nodeset) of a topology inside the caller's asyncio loop.

The nodes run exactly as under ``hierclust agent``: a :class:`~hierclust.runtime.host.NodeHost`
with its state files, keyring and event log in ``state_dir``, and its control socket there too,
so ``hierclust status``, ``members`` and other programs' :class:`~hierclust.api.Client` see it.
Requests go straight to that socket's dispatcher, without the socket.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import TracebackType
from typing import Any

from hierclust.api.errors import HierclustError, NoDeployment, RequestFailed, UnknownNode
from hierclust.api.session import Session, raise_for, resolve_ranks
from hierclust.topology import Topology, TopologyError, load


class LocalStream:
    def __init__(self, sub: Any) -> None:
        self.sub = sub

    async def get(self) -> dict[str, Any] | None:
        event: dict[str, Any] | None = await self.sub.get()
        return event

    async def aclose(self) -> None:
        self.sub.close()


class LocalBackend:
    """The host's control dispatcher, called in-process."""

    def __init__(self, control: Any, where: str) -> None:
        self.control = control
        self.where = where

    async def call(self, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = await self.control.handle(json.dumps(request).encode())
        return answer

    async def subscribe(self, request: dict[str, Any]) -> LocalStream:
        sub, answer = self.control.subscription(json.dumps(request).encode())
        raise_for(answer, self.where)
        return LocalStream(sub)


class Agent(Session):
    """Run ``node`` (a name, or a nodeset to run several) of ``topology`` (a file or a loaded
    :class:`~hierclust.topology.Topology`) in this event loop::

        async with Agent("topologies/demo.toml", "dn07") as agent:
            await agent.wait_primary(timeout=10)
            ...

    ``state_dir``: where the nodes keep their state (default: ``$HIERCLUST_STATE_DIR``, else
    ``/tmp/hierclust-UID``); keep it across restarts, or a node boots *amnesiac* and stays mute
    for a couple of election timeouts. ``observer``: which of the nodes the session speaks for
    (default: the first)."""

    def __init__(
        self,
        topology: Topology | Path | str,
        node: str,
        state_dir: Path | str | None = None,
        *,
        observer: str | None = None,
    ) -> None:
        from hierclust.runtime.discover import default_state_dir

        self._topology_arg = topology
        self._nodes = node
        self._observer = observer
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self._serving: Any = None

    async def __aenter__(self) -> Agent:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        from hierclust.runtime.deploy import resolve_keyring
        from hierclust.runtime.errors import DeployError
        from hierclust.runtime.state import StateFileError, make_state_dir
        from hierclust.runtime.worker import Serving

        source = self._topology_arg
        try:
            topology = source if isinstance(source, Topology) else load(Path(source))
        except (OSError, TopologyError) as exc:
            raise NoDeployment(f"{source}: {exc}") from None
        self.topology = topology
        ranks = sorted(resolve_ranks(topology, self._nodes))
        for rank in ranks:
            if topology.address(rank) is None:
                raise UnknownNode(
                    f"{topology.source}: node {topology.node_name(rank)} has no address; give "
                    "it one under [addresses]"
                )
        observer = self._observer
        self.rank = ranks[0] if observer is None else resolve_ranks(topology, observer)[0]
        if self.rank not in ranks:
            raise UnknownNode(f"observer {observer}: not one of the nodes {self._nodes} run here")
        self.node = topology.node_name(self.rank)
        topology_path = Path(topology.source).resolve()
        directory = self.state_dir
        try:
            make_state_dir(directory)
            keyring = resolve_keyring(topology, topology_path, directory)
            self._serving = await Serving.open(
                topology, directory, f"agent-{topology.node_name(ranks[0])}", ranks, keyring
            )
        except (DeployError, StateFileError, OSError) as exc:
            raise RequestFailed(f"{directory}: cannot start {self._nodes}: {exc}") from None
        self._backend = LocalBackend(self._serving.control, str(directory))

    async def stop(self) -> None:
        """Stop the nodes (a clean stop: their peers see them go as a failure)."""
        if self._serving is not None:
            serving, self._serving = self._serving, None
            await serving.close()

    @property
    def host(self) -> Any:
        """The :class:`~hierclust.runtime.host.NodeHost` running the nodes (for tests and lab
        faults: ``agent.host.kill(rank)``)."""
        if self._serving is None:
            raise HierclustError("the agent is not running (use `async with Agent(...)`)")
        return self._serving.host
