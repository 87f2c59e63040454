"""Compile the protocol core with mypyc, in place (an experiment; see README.md beside this file).

    cd TREE && git apply docs/benchmarks/sim-mypyc/traits.patch
    /work/main/.venv/bin/python docs/benchmarks/sim-mypyc/build.py [MODULE.py ...]

Run from the root of the tree to compile. It leaves ``hierclust/core/*.cpython-*.so`` and one
``*__mypyc.cpython-*.so`` at the root of the tree, and its C sources in build/mypyc; remove those to
get the pure-Python core back. Needs gcc and the Python headers.

Not through the ``mypyc`` command: that one reads pyproject.toml twice and stops on both, the
mypy section (``warn_unused_configs`` on an override section that a partial build never uses) and
the project table (setuptools 65 in the venv rejects the SPDX ``license`` string). This builds the
extensions with a setuptools Distribution made here and a mypy configuration of its own.
"""

import os
import sys
import tempfile

from mypyc.build import mypycify
from setuptools import Distribution
from setuptools.command.build_ext import build_ext

CORE = [
    f"hierclust/core/{m}.py"
    for m in (
        "heartbeats state detection elections slots reach flood modes node fast timeouts quorum "
        "layout"
    ).split()
]

modules = sys.argv[1:] or CORE
with tempfile.NamedTemporaryFile("w", suffix=".ini", delete=False) as f:
    f.write("[mypy]\npython_version = 3.11\nignore_missing_imports = True\n")
    config = f.name
try:
    extensions = mypycify(
        ["--config-file", config, *modules], opt_level="3", target_dir="build/mypyc"
    )
finally:
    os.unlink(config)
command = build_ext(Distribution({"name": "hierclust-core-mypyc", "ext_modules": extensions}))
command.inplace = True
command.build_temp = "build/mypyc/obj"
command.ensure_finalized()
command.run()
