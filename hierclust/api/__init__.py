"""The library API: embed hierclust in a job scheduler (``docs/api.md``).

:class:`Agent` runs nodes inside your asyncio loop; :class:`Client` attaches to a running
deployment's node from any process on its host. Both offer the same :class:`Session` methods:
``members()``, ``events(since=...)``, ``in_primary()``, ``wait_primary()``, ``leads()``,
``fencing_token()``, ``primary()``, ``drain()``, ``resume()`` and ``maintenance()``.
"""

from hierclust.api.agent import Agent
from hierclust.api.client import Client
from hierclust.api.errors import (
    ConnectionLost,
    HierclustError,
    NodeDown,
    NoDeployment,
    NotPrimary,
    QuorumLost,
    RequestFailed,
    UnknownNode,
)
from hierclust.api.session import DEFAULT_BUFFER, Session
from hierclust.api.types import (
    ClusterEvent,
    Event,
    EventsLost,
    FencingToken,
    LeaderChanged,
    Member,
    NodeAlive,
    NodeFailed,
    NodeLeft,
    PrimaryChanged,
    QuorumChanged,
    SubtreeReachable,
    SubtreeUnreachable,
)

__all__ = [
    "DEFAULT_BUFFER",
    "Agent",
    "Client",
    "ClusterEvent",
    "ConnectionLost",
    "Event",
    "EventsLost",
    "FencingToken",
    "HierclustError",
    "LeaderChanged",
    "Member",
    "NoDeployment",
    "NodeAlive",
    "NodeDown",
    "NodeFailed",
    "NodeLeft",
    "NotPrimary",
    "PrimaryChanged",
    "QuorumChanged",
    "QuorumLost",
    "RequestFailed",
    "Session",
    "SubtreeReachable",
    "SubtreeUnreachable",
    "UnknownNode",
]
