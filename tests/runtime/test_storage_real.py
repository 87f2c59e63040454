"""Storage faults on real processes: ``hierclust agent`` with its state directory on a tiny tmpfs
that is full, or on a read-only bind mount. The mounts are made inside ``unshare --mount`` (a
private mount namespace of the agent alone), so nothing leaks to the machine; the test reaches
the agent's files and control socket through ``/proc/PID/root``.

- full at start: the agent starts; its node cannot write its vote, refuses to vote and says why
  (``hierclust status``), stays a member (nobody declares it), and the other two nodes elect a
  leader (no vote granted to cn1; that it never stands is the unit tests' to show: here the
  boot-time rules decide who of three fresh agents leads); once space is freed it recovers;
  when the disk fills again while it runs and the leader dies, the two nodes left cannot elect
  (cn1 refuses its vote) until space is freed, and then they do;
- read-only at start: the agent refuses to start (exit 2), naming the directory and the fix.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hierclust.codec import generate_keyring_file
from hierclust.runtime.deploy import collect
from hierclust.runtime.status import aggregate
from hierclust.topology import generate_document, load
from tests.runtime.conftest import FAST, free_base_port

pytestmark = pytest.mark.timeout(90)


def mount_namespaces_work() -> str | None:
    """None when this process may make a private mount namespace and mount a tmpfs in it, else
    why not."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs -o size=16k hcsf /mnt && umount /mnt"],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    if probe.returncode != 0:
        return f"cannot mount in a private mount namespace: {probe.stderr.strip()}"
    return None


WHY_NOT = mount_namespaces_work()
needs_mounts = pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")


@pytest.fixture
def base() -> Iterator[Path]:
    """A short directory (unix socket paths through /proc/PID/root must stay < 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hcsf", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_topology(base: Path) -> Path:
    document = generate_document(3, 3, base_port=free_base_port(3), name="sf")
    document["defaults"] = dict(FAST)
    document["cluster"]["secret_file"] = "sf.keyring"
    generate_keyring_file(base / "sf.keyring")
    path = base / "sf.toml"
    path.write_text(tomli_w.dumps(document))
    return path


def agent(topology: Path, node: str, state_dir: Path) -> list[str]:
    return [sys.executable, "-m", "hierclust", "agent", "--topology", str(topology),
            "--node", node, "--state-dir", str(state_dir)]  # fmt: skip


def in_namespace(setup: str, command: list[str]) -> list[str]:
    """``command`` run by ``sh`` after ``setup``, in a private mount namespace of its own
    (``exec``: the pid is the agent's)."""
    quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in command)
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            f"set -e; {setup}; exec {quoted}"]  # fmt: skip


def status(state_dir: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "hierclust", "status", "--state-dir", str(state_dir), "--json"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def wait(condition: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@needs_mounts
def test_an_agent_on_a_full_state_directory_refuses_to_vote_and_the_others_elect(
    base: Path,
) -> None:
    topology_path = write_topology(base)
    topology = load(topology_path)
    good, full = base / "good", base / "full"
    good.mkdir()
    full.mkdir()
    # cn1 (rank 0) would stand first; its vote from an earlier life is on the disk that fills
    state = '{"version":1,"incarnation":3,"votes":[[0,2,0]]}'
    setup = (
        f"mount -t tmpfs -o size=64k,mode=0700 hcsf {full}; mkdir {full}/nodes; "
        f"printf '%s' '{state}' > {full}/nodes/cn1.json; "
        f"dd if=/dev/zero of={full}/fill bs=4k 2>/dev/null || true"
    )
    logs = {name: open(base / f"{name}.log", "wb") for name in ("good", "full")}  # noqa: SIM115
    others: subprocess.Popen[bytes] | None = None
    faulty = subprocess.Popen(
        in_namespace(setup, agent(topology_path, "cn1", full)),
        stdout=logs["full"],
        stderr=subprocess.STDOUT,
    )
    seen = Path(f"/proc/{faulty.pid}/root") / str(full).lstrip("/")
    try:
        # what status says about cn1, through its own control socket
        def refused() -> dict[str, Any] | None:
            if faulty.poll() is not None:
                raise AssertionError((base / "full.log").read_text())
            if not list(seen.glob("*.sock")):
                return None
            summary = status(seen)
            return summary if summary["storage_faults"] else None

        summary = wait(refused, 30.0, "cn1's storage fault in status")
        reason = summary["storage_faults"]["cn1"]
        assert "No space left on device" in reason and "votes for no one" in reason
        assert str(full / "nodes" / "cn1.json") in reason
        # then its peers (it has been waiting for them: alone it has no majority)
        others = subprocess.Popen(
            agent(topology_path, "cn[2-3]", good), stdout=logs["good"], stderr=subprocess.STDOUT
        )

        # the other two elect a leader; cn1 is a member all along, not failed
        def led() -> dict[str, Any] | None:
            snaps = collect(good)[0] + collect(seen)[0]
            merged = aggregate(topology, snaps)
            return merged if merged["groups_led"] == 1 and merged["alive"] == 3 else None

        merged = wait(led, 30.0, "a leader among cn2 and cn3")
        leader = merged["group_details"][0]["leader"]
        assert leader in ("cn2", "cn3"), leader
        time.sleep(3 * FAST["election_timeout_ms"] / 1000)
        merged = aggregate(topology, collect(good)[0] + collect(seen)[0])
        assert merged["failed_nodes"] == [] and merged["alive"] == 3
        assert merged["group_details"][0]["leader"] == leader
        assert list(merged["storage_faults"]) == ["cn1"]
        events = [
            json.loads(line)
            for path in good.glob("events-*.jsonl")
            for line in path.read_text().splitlines()
        ]
        assert not [e for e in events if e["event"] == "VoteGranted" and e["candidate"] == 0]
        assert [e for e in events if e["event"] == "ElectionStarted"], "nobody stood"
        # the vote on the full disk is the one it had (nothing half-written)
        kept = json.loads((seen / "nodes" / "cn1.json").read_text())
        assert kept["votes"] == [[0, 2, 0]]
        text = subprocess.run(
            [sys.executable, "-m", "hierclust", "status", "--state-dir", str(seen)],
            capture_output=True, text=True, timeout=30,
        ).stdout  # fmt: skip
        assert "cn1 cannot write" in " ".join(text.split())

        # space is freed: the next probe writes, the fault clears
        (seen / "fill").unlink()
        wait(lambda: not status(seen)["storage_faults"], 10.0, "the fault to clear")
        kept = json.loads((seen / "nodes" / "cn1.json").read_text())
        assert kept["incarnation"] > 3, "its state was written again"

        # the disk fills while it runs, and then the leader dies: the election needs cn1's vote
        # (2 of 3), which it cannot give; nobody leads until space is freed again
        fd = os.open(seen / "fill", os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass  # full
        finally:
            os.close(fd)
        leader = aggregate(topology, collect(good)[0] + collect(seen)[0])["group_details"][0][
            "leader"
        ]
        assert leader in ("cn2", "cn3"), leader
        killed = subprocess.run(
            [sys.executable, "-m", "hierclust", "kill", leader, "--state-dir", str(good)],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert killed.returncode == 0, killed.stderr
        wait(lambda: status(seen)["storage_faults"], 10.0, "cn1's fault, found by the election")
        time.sleep(3 * FAST["election_timeout_ms"] / 1000)
        merged = aggregate(topology, collect(good)[0] + collect(seen)[0])
        assert merged["groups_led"] == 0, "a leader was elected without cn1's vote"
        (seen / "fill").unlink()

        def led_again() -> str | None:
            merged = aggregate(topology, collect(good)[0] + collect(seen)[0])
            return merged["group_details"][0]["leader"] if merged["groups_led"] == 1 else None

        assert wait(led_again, 15.0, "a leader once cn1 can vote") != leader
        assert not status(seen)["storage_faults"]
    finally:
        stop(faulty)
        if others is not None:
            stop(others)
        for log in logs.values():
            log.close()
    assert not Path(f"/proc/{faulty.pid}").exists()
    assert not (full / "fill").exists(), "the tmpfs was visible outside its namespace"


@needs_mounts
def test_an_agent_on_a_read_only_state_directory_refuses_to_start(base: Path) -> None:
    topology_path = write_topology(base)
    ro = base / "ro"
    ro.mkdir()
    setup = f"mount --bind {ro} {ro}; mount -o remount,bind,ro {ro}"
    out = subprocess.run(
        in_namespace(setup, agent(topology_path, "cn1", ro)),
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    message = " ".join(out.stderr.split())
    assert f"{ro}: cannot create files (Read-only file system)" in message
    assert "remount it read-write" in message and "--state-dir" in message
    assert not os.listdir(ro), "it wrote into the directory"
