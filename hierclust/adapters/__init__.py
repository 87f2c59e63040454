"""Adapters that feed hierclust events into job schedulers (Slurm, Dask)."""
