"""Real network partitions: agents in network namespaces, cut apart by an nftables bridge filter.

Root only (skipped with the reason otherwise). Three lab hosts on one bridge namespace, each with
its own clock (monotonic 0, 7 s and ~1.2 days ahead: :class:`~hierclust.runtime.netns.NetnsLab`'s
default offsets); the nine nodes of a 3x3 topology are dealt round-robin over the hosts, so every
leaf group has one member on each host. Cutting one host off leaves it a minority in every group
it is in.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from hierclust.codec import generate_keyring_file
from hierclust.runtime.deploy import collect, init_states
from hierclust.runtime.discover import pid_alive
from hierclust.runtime.netns import NetnsLab, unavailable
from hierclust.runtime.status import aggregate
from hierclust.topology import Topology, generate_document, load
from tests.runtime.conftest import FAST
from tests.runtime.netns_lab import netns_lab, stop_processes, wait_until

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(unavailable() is not None, reason=str(unavailable())),
]

TAG = "hct"  # namespaces hct<pid>-...; test_lab_clocks.py uses hcc
SUBNET = "10.200.0"  # test_lab_clocks.py uses 10.201.0
HOSTS = 3
NODES = 9
BASE_PORT = 7000


def host_of(rank: int) -> int:
    return rank % HOSTS


def write_topology(directory: Path, lab: NetnsLab) -> Path:
    """9 nodes, fanout 3; node of rank r on host r % 3 (so each leaf spans the three hosts)."""
    generate_keyring_file(directory / "lab.keyring")
    document: dict[str, Any] = generate_document(NODES, 3, name="netns")
    document["cluster"]["secret_file"] = "lab.keyring"
    document["defaults"] = dict(FAST)
    document["addresses"] = {"host": lab.address(0), "base_port": BASE_PORT}
    document["node"] = {
        f"cn{r + 1}": {"host": lab.address(host_of(r)), "port": BASE_PORT + r} for r in range(NODES)
    }
    path = directory / "netns.toml"
    path.write_text(tomli_w.dumps(document))
    return path


@pytest.fixture
def lab() -> Iterator[NetnsLab]:
    with netns_lab(TAG, HOSTS, SUBNET) as lab:
        yield lab


def snapshot(topology: Topology, state: Path) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    snaps, errors = collect(state, timeout_s=2.0)
    nodes = {n["rank"]: n for s in snaps for n in s["nodes"]}
    return aggregate(topology, snaps, errors), nodes


def leases(nodes: dict[int, dict[str, Any]], ranks: set[int]) -> dict[int, list[int]]:
    """group -> ranks (of ``ranks``) holding its leadership lease now."""
    found: dict[int, list[int]] = {}
    for r in ranks:
        for g in nodes.get(r, {}).get("groups", []):
            if g["leading"] and g["lease"]:
                found.setdefault(g["group"], []).append(r)
    return found


def test_partition_of_a_host_in_real_namespaces(tmp_path: Path, lab: NetnsLab) -> None:
    path = write_topology(tmp_path, lab)
    topology = load(path)
    state = tmp_path / "s"
    init_states(topology, state)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for h in range(HOSTS):
            nodeset = "cn[" + ",".join(str(r + 1) for r in range(h, NODES, HOSTS)) + "]"
            log = open(tmp_path / f"agent-h{h}.log", "wb")  # noqa: SIM115
            argv = [sys.executable, "-m", "hierclust", "agent", "--topology", str(path)]
            argv += ["--node", nodeset, "--state-dir", str(state)]
            procs.append(lab.popen(h, argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log))
            log.close()
        groups = len(topology.by_index)
        everyone = set(range(NODES))

        def all_led() -> bool:
            summary, _ = snapshot(topology, state)
            return bool(summary["alive"] == NODES and summary["groups_led"] == groups)

        wait_until(all_led, 20, "every group led on the three hosts")
        _, nodes = snapshot(topology, state)
        root_leader = leases(nodes, everyone)[topology.root.index][0]
        cut_host = host_of(root_leader)  # the root's leader is on the minority side
        minority = {r for r in everyone if host_of(r) == cut_host}
        majority = everyone - minority

        t_cut = time.monotonic()
        lab.cut([cut_host])

        def minority_silent_majority_led() -> bool:
            _, nodes = snapshot(topology, state)
            led = leases(nodes, majority)
            return (
                not leases(nodes, minority)
                and all(len(led.get(g.index, [])) == 1 for g in topology.by_index)
                and all(nodes[r].get("in_primary") for r in majority)
            )

        wait_until(
            minority_silent_majority_led,
            10,
            "the minority to stop, the majority to lead and be primary",
        )
        took = time.monotonic() - t_cut
        _, nodes = snapshot(topology, state)
        assert not any(nodes[r].get("in_primary") for r in minority), "minority in primary"
        # it stays that way: the cut-off host never takes a lease back while cut
        for _ in range(5):
            time.sleep(0.2)
            _, nodes = snapshot(topology, state)
            assert not leases(nodes, minority), leases(nodes, minority)

        lab.heal()

        def converged() -> bool:
            summary, nodes = snapshot(topology, state)
            return (
                summary["alive"] == NODES
                and summary["failed"] == 0
                and summary["groups_led"] == groups
                and summary["groups_quorate"] == groups
                and all(n.get("in_primary") for n in nodes.values())
            )

        wait_until(converged, 20, "one cluster again after healing")
        print(json.dumps({"minority": sorted(minority), "cut_to_majority_led_s": round(took, 2)}))
    finally:
        stop_processes(procs)
    assert not any(pid_alive(p.pid) for p in procs)


def test_deploy_on_hosts_through_clustershell_exec(tmp_path: Path, lab: NetnsLab) -> None:
    """`deploy --hosts all --exec LAB_TEMPLATE`: one agent per lab host (its network namespace
    and its clock), launched and polled through ClusterShell's exec worker; `stop --hosts` ends
    them."""
    generate_keyring_file(tmp_path / "lab.keyring")
    document: dict[str, Any] = generate_document(NODES, 3, name="hosts")
    document["cluster"]["secret_file"] = "lab.keyring"
    document["defaults"] = dict(FAST)
    first, last = lab.addresses[0], lab.addresses[-1]
    document["addresses"] = {
        "hosts": f"{lab.subnet}.[{first.rsplit('.', 1)[1]}-{last.rsplit('.', 1)[1]}]",
        "base_port": BASE_PORT,
    }
    path = tmp_path / "hosts.toml"
    path.write_text(tomli_w.dumps(document))
    state = f"{tmp_path}/state-%h"
    common = ["--exec", lab.exec_template, "--state-dir", state, "--json"]
    pids: list[int] = []
    try:
        done = subprocess.run(
            [sys.executable, "-m", "hierclust", "deploy", str(path), "--hosts", "all", *common],
            capture_output=True,
            text=True,
            timeout=45,
        )
        assert done.returncode == 0, done.stderr + done.stdout
        report = json.loads(done.stdout)
        pids = [h["pid"] for h in report["hosts"].values()]
        assert report["all_led"] and report["launcher"] == "exec"
        assert {h: v["nodes"] for h, v in report["hosts"].items()} == {
            lab.address(0): "cn[1-3]",
            lab.address(1): "cn[4-6]",
            lab.address(2): "cn[7-9]",
        }
        for host, info in report["hosts"].items():
            where = subprocess.run(
                ["ip", "netns", "identify", str(info["pid"])], capture_output=True, text=True
            ).stdout.strip()
            assert where == lab.namespace_of(host)
            offset = lab.clock_offset_s(lab.host_of(host))
            clocks = Path(f"/proc/{info['pid']}/timens_offsets").read_text().split()
            assert clocks == ["monotonic", str(offset), "0", "boottime", str(offset), "0"]
            assert (Path(state.replace("%h", host)) / "nodes" / "cn1.json").exists() == (
                host == lab.address(0)
            )
        hosts = ",".join(lab.addresses)
        stopped = subprocess.run(
            [sys.executable, "-m", "hierclust", "stop", "--hosts", hosts, *common],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert stopped.returncode == 0, stopped.stderr + stopped.stdout
        answer = json.loads(stopped.stdout)
        assert answer["still_running"] == {} and answer["errors"] == {}
        deadline = time.monotonic() + 5
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(pid_alive(p) for p in pids)
    finally:
        for pid in pids:  # only the agents this test launched, by PID
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
