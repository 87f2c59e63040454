"""A real Slurm for the adapter's tests: the Debian packages, installed here if they are missing
and this machine can install them (root, apt-get); otherwise the tests that need it skip."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from hierclust.bench.slurmlab import PACKAGES, missing_programs


def _try_install() -> str | None:
    """None once Slurm's programs are here; else why they are not."""
    if not missing_programs():
        return None
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return f"Slurm is not installed ({', '.join(missing_programs())}) and cannot be here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "install", "-y", "-qq", *PACKAGES],
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", *PACKAGES],
    ):
        subprocess.run(argv, env=env, capture_output=True, timeout=600, check=False)
        if argv[1] == "install" and not missing_programs():
            return None
    return f"apt-get could not install {' '.join(PACKAGES)}"


@pytest.fixture(scope="session")
def slurm_installed() -> None:
    why = _try_install()
    if why is not None:
        pytest.skip(why)
