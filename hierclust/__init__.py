"""hierclust: a hierarchical cluster manager for large MPP installations.

``hierclust.Agent`` and ``hierclust.Client`` are the library API (:mod:`hierclust.api`),
imported when first used so that the command line does not pay for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from hierclust.api import Agent, Client


def __getattr__(name: str) -> Any:
    if name in ("Agent", "Client"):
        import hierclust.api

        return getattr(hierclust.api, name)
    raise AttributeError(f"module 'hierclust' has no attribute {name!r}")


__all__ = ["Agent", "Client", "__version__"]
