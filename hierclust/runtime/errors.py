"""The runtime's user-facing error: what ``deploy``, ``launch`` and their checks raise.

Its own module so that :mod:`hierclust.runtime.deploy` and :mod:`hierclust.runtime.launch` both
raise it without importing each other.
"""

from __future__ import annotations


class DeployError(RuntimeError):
    """A deployment that cannot go ahead; ``str()`` is one line naming file/key/node."""
