"""hierclust: a hierarchical cluster manager for large MPP installations."""

__version__ = "0.1.0"
