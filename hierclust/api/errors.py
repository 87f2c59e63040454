"""Every error the library API raises: one base class, one subclass per cause, each message
naming what was wrong and how to fix it."""

from __future__ import annotations


class HierclustError(Exception):
    """Base of every error the API raises."""


class NoDeployment(HierclustError):
    """No deployment answers at that state directory (none deployed, or its workers stopped)."""


class UnknownNode(HierclustError):
    """The node is not in the topology, or no local worker or agent runs it."""


class NodeDown(HierclustError):
    """The node exists and its worker answers, but the node itself is not running (killed,
    crashed, stopped on an error)."""


class NotPrimary(HierclustError):
    """The node is not in the primary component (or no quorate leader of the group is known),
    so it must not act: no fencing token is given out."""


class QuorumLost(HierclustError):
    """Raised into the body of ``async with primary():`` when the node leaves the primary
    component."""


class ConnectionLost(HierclustError):
    """The control socket closed under the client: the worker stopped or restarted. Reconnect
    and pass the last cursor to ``events(since=...)``."""


class RequestFailed(HierclustError):
    """The node refused a request (a bad argument, an admin command it could not carry out)."""
