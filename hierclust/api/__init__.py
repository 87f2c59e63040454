"""The library API: embed hierclust in a job scheduler (see ``docs/api.md``)."""
