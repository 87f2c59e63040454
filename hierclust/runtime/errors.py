"""The runtime's user-facing errors: what ``deploy``, ``launch`` and their checks raise, and what
a lab or admin operation raises when the node it acted through stopped on an error.

Its own module so that :mod:`hierclust.runtime.deploy` and :mod:`hierclust.runtime.launch` both
raise :class:`DeployError` without importing each other.
"""

from __future__ import annotations


class DeployError(RuntimeError):
    """A deployment that cannot go ahead; ``str()`` is one line naming file/key/node."""


class NodeFailedError(RuntimeError):
    """A node stopped on an error while carrying out an operator's request (its restart, an
    admin command); ``str()`` is the node's stop reason."""
