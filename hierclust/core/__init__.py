"""The pure protocol core: no I/O, no clocks, no global randomness (see types.py)."""
