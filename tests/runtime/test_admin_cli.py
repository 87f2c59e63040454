"""Per-subtree administration end to end: drain, maintenance on|off, resume on a real deployment."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from hierclust.runtime.admin import quorum_warnings, rank_ranges
from hierclust.runtime.discover import pid_alive
from hierclust.topology import from_dict, generate_document
from tests.runtime.test_cli_runtime import hierclust, write_topology


def test_rank_ranges_fold_runs() -> None:
    assert rank_ranges([7, 1, 2, 3, 2]) == [(1, 3), (7, 1)]
    assert rank_ranges([]) == []


def test_quorum_warning_names_the_group_that_would_lose_quorum() -> None:
    topology = from_dict(generate_document(9, 3, name="w"))
    leaf = topology.leaf_of(0)
    assert quorum_warnings(topology, {0}, 1) == []
    (warning,) = quorum_warnings(topology, {0, 1}, 2)
    assert leaf.name in warning and "2 of 3" in warning and "drained" in warning
    assert quorum_warnings(topology, {0, 1}, 0) == [], "going back to active risks nothing"


def status(state: Path) -> dict[str, Any]:
    return json.loads(hierclust("status", "--state-dir", str(state), "--json").stdout)


@pytest.mark.timeout(90)
def test_drain_maintenance_resume_on_a_deployment(tmp_path: Path) -> None:
    topology_file = write_topology(tmp_path / "t.toml", 9, 3)
    state = tmp_path / "s"
    s = ["--state-dir", str(state)]
    done = hierclust("deploy", str(topology_file), "--processes", "2", *s, "--json")
    pids: list[int] = []
    try:
        assert done.returncode == 0, done.stderr
        pids = [w["pid"] for w in json.loads(done.stdout)["workers"]]
        before = status(state)
        leaf = next(d for d in before["group_details"] if d["tier"] == 0 and d["led"])
        leader = leaf["leader"]

        # drain a leaf group's leader: it hands the group over at once, nobody is reported
        drained = hierclust("drain", leader, *s, "--json")
        assert drained.returncode == 0, drained.stderr
        answer = json.loads(drained.stdout)
        assert answer["applied"] and answer["mode"] == "drained" and answer["nodes"] == 1
        moved = {h["group"]: h for h in answer["handed_over"]}
        assert leaf["name"] in moved and moved[leaf["name"]]["from"] == leader
        assert moved[leaf["name"]]["to"] != leader
        seen = status(state)
        assert seen["drained_nodes"] == [leader] and seen["drained"] == 1
        assert seen["failed"] == seen["left"] == 0 and seen["alive"] == 9
        members = json.loads(hierclust("members", *s, "--json").stdout)["members"]
        assert {m["node"]: m["mode"] for m in members}[leader] == "drained"

        # maintenance on a node, then it goes down: 'left', not 'failed'
        target = "cn9" if leader != "cn9" else "cn8"
        on = hierclust("maintenance", "on", target, *s, "--json")
        assert on.returncode == 0 and json.loads(on.stdout)["applied"], on.stderr
        assert hierclust("kill", target, *s).returncode == 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            seen = status(state)
            if seen["left_nodes"] == [target]:
                break
            time.sleep(0.2)
        assert seen["left_nodes"] == [target] and seen["failed_nodes"] == []
        assert seen["maintenance_nodes"] == [target] and seen["alive"] == 8
        rank = int(target[2:]) - 1
        learned = [json.loads(e) for e in hierclust("events", *s, "--json").stdout.splitlines()]
        kinds = {
            e["notice"]["kind"]
            for e in learned
            if e["event"] == "NoticeLearned" and e["notice"]["node"] == rank
        }
        assert kinds == {"left", "admin"}

        # resume: modes clear everywhere (the killed target has nothing to wait for)
        back = hierclust("resume", leader, target, *s, "--json")
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["applied"]
        seen = status(state)
        assert seen["drained_nodes"] == [] and seen["maintenance_nodes"] == []

        # bad input: exit 2, one line naming what is wrong
        bad = hierclust("maintenance", "sideways", "cn1", *s)
        assert bad.returncode == 2 and "sideways" in bad.stderr and "Traceback" not in bad.stderr
        bad = hierclust("drain", "nosuch[1-2]", *s)
        assert bad.returncode == 2 and "nosuch" in bad.stderr and "Traceback" not in bad.stderr
    finally:
        stopped = hierclust("stop", *s, "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(pid_alive(pid) for pid in pids)
