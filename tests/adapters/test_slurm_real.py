"""The Slurm adapter against a real slurmctld and one slurmd per node (the lab of
:mod:`hierclust.bench.slurmlab`), next to a real deployment of nine nodes on 127.0.0.1.

One deployment and one Slurm for the whole story, to keep it short (about 20 s): a node fails and
Slurm shows it DOWN with a hierclust reason, it comes back and is resumed, an operator's DOWN is
left alone, an adapter that does not lead the root does nothing, a restarted adapter repeats
nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from hierclust.adapters.slurm_plan import SlurmNode
from hierclust.api import Client
from hierclust.bench.slurmlab import SlurmLab
from tests.runtime.test_cli_runtime import write_topology

BOUND_S = 10.0
"""How long Slurm may take to show what hierclust concluded (measured: about 1 s)."""


def hierclust(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "hierclust", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = BOUND_S) -> float:
    """Poll ``check`` until true; the seconds it took. Fails naming ``what``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            pytest.fail(f"after {timeout_s:.0f} s: not yet {what}")
        time.sleep(0.1)
    return time.monotonic() - start


class Story:
    def __init__(self, tmp: Path) -> None:
        self.topology_path = write_topology(tmp / "t.toml", 9, 3)
        self.state = tmp / "state"
        self.names = [f"cn{i}" for i in range(1, 10)]
        self.lab = SlurmLab(self.names, slurmd_timeout=0)
        self.adapter: subprocess.Popen[str] | None = None

    def start(self) -> None:
        done = hierclust(
            "deploy", str(self.topology_path), "--processes", "3", "--state-dir", str(self.state)
        )
        assert done.returncode == 0, done.stderr
        self.lab.start()

    def stop(self) -> None:
        if self.adapter is not None and self.adapter.poll() is None:
            self.adapter.terminate()
            self.adapter.wait(10)
        hierclust("stop", "--state-dir", str(self.state))
        self.lab.stop()

    def leader_and_other(self) -> tuple[str, str]:
        async def ask() -> tuple[str, str]:
            async with Client(self.state) as c:
                root = c.topology.root.name
                members = await c.members()
            lead = [m.name for m in members if root in m.leads]
            assert len(lead) == 1, members
            return lead[0], next(m.name for m in members if not m.leads)

        return asyncio.run(ask())

    def adapter_argv(self, node: str, *extra: str) -> list[str]:
        return [
            sys.executable, "-m", "hierclust", "adapter", "slurm", "--state-dir", str(self.state),
            "--node", node, "--json", *extra,
        ]  # fmt: skip

    def once(self, node: str, *extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.adapter_argv(node, "--once", *extra),
            capture_output=True,
            text=True,
            timeout=30,
            env=self.lab.env,
        )
        assert done.returncode == 0, done.stderr
        return done

    def crash(self, node: str) -> None:
        """The node's hierclust and its slurmd stop at once, as in a power loss."""
        self.lab.kill_slurmd(node)
        done = hierclust("kill", node, "--state-dir", str(self.state))
        assert done.returncode == 0, done.stderr

    def slurm(self, node: str) -> SlurmNode:
        return self.lab.nodes()[node]

    def seen_failed(self, observer: str, node: str) -> bool:
        async def ask() -> bool:
            async with Client(self.state, node=observer) as c:
                return any(m.name == node and m.state == "failed" for m in await c.members())

        return asyncio.run(ask())


@pytest.fixture
def story(tmp_path: Path, slurm_installed: None) -> Iterator[Story]:
    s = Story(tmp_path)
    try:
        s.start()
        yield s
    finally:
        s.stop()
    assert not s.lab.leftovers(), "the lab left processes running"


@pytest.mark.timeout(120)
def test_the_adapter_keeps_slurm_in_step(story: Story) -> None:
    leader, other = story.leader_and_other()
    victims = [n for n in story.names if n not in (leader, other)]
    first, second, operators = victims[0], victims[1], victims[2]

    # an operator takes a node out for their own reason: the adapter must never undo it
    story.lab.scontrol("update", f"NodeName={operators}", "State=DOWN", "Reason=bad DIMM")

    # a node crashes before any adapter runs
    story.crash(first)
    wait_for(f"{first} failed", lambda: story.seen_failed(leader, first))
    wait_for(f"{first} failed", lambda: story.seen_failed(other, first))

    # the adapter of a node that does not lead the root does nothing, though there is work
    idle = story.once(other)
    assert idle.stdout == "", idle.stdout
    assert "does not lead" in idle.stderr
    # dry, the elected one prints what it would run, and runs nothing
    dry = story.once(leader, "--dry-run")
    [record] = [json.loads(line) for line in dry.stdout.splitlines()]
    assert record["dry_run"] and record["nodes"] == first
    assert record["argv"][:4] == ["scontrol", "update", f"NodeName={first}", "State=DOWN"]
    assert not story.slurm(first).down

    # the elected adapter: reconciles at start (first goes DOWN), then follows events
    story.adapter = subprocess.Popen(
        story.adapter_argv(leader),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=story.lab.env,
    )
    wait_for(f"{first} DOWN", lambda: story.slurm(first).down)
    assert story.slurm(first).reason.startswith("hierclust:")

    story.crash(second)
    took = wait_for(f"{second} DOWN", lambda: story.slurm(second).down)
    assert story.slurm(second).reason.startswith("hierclust: node failed"), story.slurm(second)
    assert took < BOUND_S

    # first comes back (hierclust, then its slurmd): resumed, idle again
    story.lab.start_slurmd(first)
    done = hierclust("restart", first, "--state-dir", str(story.state))
    assert done.returncode == 0, done.stderr
    wait_for(f"{first} idle again", lambda: story.slurm(first).idle, timeout_s=20)

    # the operator's node is still theirs
    assert story.slurm(operators).down and story.slurm(operators).reason.startswith("bad DIMM")

    story.adapter.terminate()
    out, errs = story.adapter.communicate(timeout=10)
    ran = [json.loads(line) for line in out.splitlines()]
    assert [(r["action"], r["nodes"]) for r in ran] == [
        ("down", first),
        ("down", second),
        ("resume", first),
    ], errs
    assert all(r["ok"] for r in ran)

    # restarted, the adapter finds Slurm as hierclust wants it: nothing to repeat
    reason_before = story.slurm(second).reason
    again = story.once(leader)
    assert again.stdout == "", again.stdout
    assert "acting" in again.stderr
    assert story.slurm(second).reason == reason_before


def test_clear_errors_without_slurm_or_deployment(tmp_path: Path) -> None:
    env = {**os.environ, "SLURM_CONF": str(tmp_path / "nowhere.conf")}
    done = hierclust("adapter", "slurm", "--state-dir", str(tmp_path), env=env)
    assert done.returncode == 2 and "nowhere.conf" in done.stderr
    conf = tmp_path / "slurm.conf"
    conf.write_text("")
    env["SLURM_CONF"] = str(conf)
    if subprocess.run(["which", "scontrol"], capture_output=True).returncode == 0:
        done = hierclust("adapter", "slurm", "--state-dir", str(tmp_path), env=env)
        assert done.returncode == 2 and "no worker answers" in done.stderr, done.stderr
        bad = hierclust(
            "adapter", "slurm", "--state-dir", str(tmp_path), "--map", "cn[1-2]=x[1-3]", env=env
        )
        assert bad.returncode == 2 and "--map" in bad.stderr
