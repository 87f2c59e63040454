"""The runtime commands end to end: deploy in the background, status, kill, stop."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.runtime.discover import pid_alive
from hierclust.topology import generate_document, load
from tests.runtime.conftest import FAST, free_base_port

runner = CliRunner()


def hierclust(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hierclust", *args], capture_output=True, text=True, timeout=timeout
    )


def write_topology(path: Path, nodes: int, fanout: int, addressed: bool = True) -> Path:
    base = free_base_port(nodes) if addressed else None
    document = generate_document(nodes, fanout, base_port=base, name="clitest")
    document["defaults"] = dict(FAST)
    path.write_text(tomli_w.dumps(document))
    return path


def test_deploy_refuses_a_topology_without_addresses(tmp_path: Path) -> None:
    topology = write_topology(tmp_path / "t.toml", 9, 3, addressed=False)
    result = runner.invoke(app, ["deploy", str(topology), "--state-dir", str(tmp_path / "s")])
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "t.toml: addresses: node cn1 has no address" in lines[0]


@pytest.mark.parametrize("command", [["status"], ["kill", "cn1"], ["events"]])
def test_commands_without_a_deployment_exit_2(tmp_path: Path, command: list[str]) -> None:
    result = runner.invoke(app, [*command, "--state-dir", str(tmp_path / "none"), "--json"])
    assert result.exit_code == 2, result.output
    assert "error" in json.loads(result.stdout)


@pytest.mark.timeout(60)
def test_deploy_status_kill_stop(tmp_path: Path) -> None:
    topology = write_topology(tmp_path / "t.toml", 9, 3)
    state = tmp_path / "s"
    done = hierclust(
        "deploy", str(topology), "--processes", "2", "--state-dir", str(state), "--json"
    )
    pids: list[int] = []
    try:
        assert done.returncode == 0, done.stderr
        deployed = json.loads(done.stdout)
        pids = [w["pid"] for w in deployed["workers"]]
        assert deployed["all_led"] and len(pids) == 2
        status = json.loads(hierclust("status", "--state-dir", str(state), "--json").stdout)
        for key in (
            "nodes",
            "alive",
            "suspect",
            "failed",
            "groups",
            "groups_led",
            "groups_quorate",
            "datagrams_dropped",
        ):
            assert key in status
        assert status["nodes"] == status["alive"] == 9
        assert status["groups_led"] == status["groups"] == 4

        killed = hierclust("kill", "cn9", "--state-dir", str(state), "--json")
        assert killed.returncode == 0, killed.stderr
        deadline = time.monotonic() + 10
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            seen = json.loads(hierclust("status", "--state-dir", str(state), "--json").stdout)
            if seen["failed_nodes"] == ["cn9"] and seen["groups_led"] == 4:
                break
            time.sleep(0.2)
        assert seen["failed_nodes"] == ["cn9"] and seen["alive"] == 8
        events = hierclust("events", "--state-dir", str(state), "--json").stdout.splitlines()
        learned = [json.loads(e) for e in events if '"NoticeLearned"' in e]
        assert {e["node"] for e in learned if e["notice"]["node"] == 8} == {
            f"cn{i}" for i in range(1, 9)
        }
        bad = hierclust("kill", "cn99", "--state-dir", str(state))
        assert bad.returncode == 2 and "cn99" in bad.stderr and "Traceback" not in bad.stderr
        # a power loss: the node stops, its port stays bound (no ICMP); restart takes it back
        power = hierclust("kill", "cn8", "--power", "--state-dir", str(state), "--json")
        assert power.returncode == 0, power.stderr
        assert json.loads(power.stdout)["how"] == "power"
        address = load(topology).address(7)
        assert address is not None
        port = address.port
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with pytest.raises(OSError):
            probe.bind(("127.0.0.1", port))  # still held by the mute node
        probe.close()
        back = hierclust("restart", "cn8", "--state-dir", str(state))
        assert back.returncode == 0, back.stderr
    finally:
        stopped = hierclust("stop", "--state-dir", str(state), "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads(stopped.stdout)["still_running"] == []
    assert not any(pid_alive(pid) for pid in pids)
    assert not list(state.glob("*.sock")) and not (state / "deploy.json").exists()


@pytest.mark.timeout(60)
def test_one_agent_per_process(tmp_path: Path) -> None:
    """`hierclust agent` per node (what systemd runs): status finds them, kill SIGKILLs one."""
    topology = write_topology(tmp_path / "t.toml", 3, 3)
    state = tmp_path / "s"
    agents = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hierclust",
                "agent",
                "--topology",
                str(topology),
                "--node",
                f"cn{i}",
                "--state-dir",
                str(state),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i in (1, 2, 3)
    ]
    try:
        deadline = time.monotonic() + 15
        seen: dict[str, Any] = {}
        while time.monotonic() < deadline:
            done = hierclust("status", "--state-dir", str(state), "--json")
            if done.returncode == 0:
                seen = json.loads(done.stdout)
                if seen["alive"] == 3 and seen["groups_led"] == 1:
                    break
            time.sleep(0.2)
        assert seen.get("groups_led") == 1, seen
        killed = json.loads(hierclust("kill", "cn3", "--state-dir", str(state), "--json").stdout)
        assert killed["how"] == "sigkill"
        assert agents[2].wait(timeout=5) == -9
    finally:
        stopped = hierclust("stop", "--state-dir", str(state), "--json")
        for agent in agents:
            try:
                agent.wait(timeout=5)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
    assert json.loads(stopped.stdout)["still_running"] == []
    assert all(agent.returncode is not None for agent in agents)


def test_systemd_units_one_per_host(tmp_path: Path) -> None:
    document = generate_document(32, 8, base_port=7000, hosts="h[1-2]", name="sd")
    topology = tmp_path / "sd.toml"
    topology.write_text(tomli_w.dumps(document))
    out = tmp_path / "units"
    result = runner.invoke(app, ["deploy", str(topology), "--systemd", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert sorted(Path(p).name for p in report["units"]) == [
        "hierclust-h1.service",
        "hierclust-h2.service",
    ]
    assert "secret_file" in report["warning"]
    unit = (out / "hierclust-h2.service").read_text()
    assert "agent --topology" in unit and "--node cn[17-32]" in unit


def interrupt_while_waiting(monkeypatch: pytest.MonkeyPatch, children: list[Any]) -> None:
    """Ctrl-C arrives while deploy waits for the leaders (the workers are running); the
    worker processes are kept in ``children`` (to be reaped by the test)."""

    def wait_ready(_deployment: Any, started: list[Any], *_args: Any, **_kwargs: Any) -> bool:
        children.extend(started)
        raise KeyboardInterrupt

    monkeypatch.setattr("hierclust.runtime.deploy.wait_ready", wait_ready)


@pytest.mark.timeout(60)
def test_ctrl_c_during_deploy_stops_the_workers_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = write_topology(tmp_path / "t.toml", 9, 3)
    state = tmp_path / "s"
    children: list[subprocess.Popen[bytes]] = []
    interrupt_while_waiting(monkeypatch, children)
    result = runner.invoke(
        app, ["deploy", str(topology), "--processes", "2", "--state-dir", str(state)]
    )
    assert result.exit_code == 130, result.output
    assert "interrupted: stopped the 2 workers this deploy started" in result.stderr
    assert len(children) == 2 and not any(pid_alive(c.pid) for c in children)
    assert [c.wait(timeout=5) for c in children] == [0, 0], "stopped cleanly"
    assert not (state / "deploy.json").exists()


@pytest.mark.timeout(60)
def test_a_second_ctrl_c_names_the_workers_still_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hierclust.runtime.deploy import stop

    topology = write_topology(tmp_path / "t.toml", 9, 3)
    state = tmp_path / "s"
    children: list[subprocess.Popen[bytes]] = []
    interrupt_while_waiting(monkeypatch, children)

    def interrupted_stop(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
        raise KeyboardInterrupt

    monkeypatch.setattr("hierclust.runtime.deploy.stop", interrupted_stop)
    try:
        result = runner.invoke(
            app, ["deploy", str(topology), "--processes", "2", "--state-dir", str(state), "--json"]
        )
        assert result.exit_code == 130, result.output
        assert (
            f"interrupted: 2 workers still running: `hierclust stop --state-dir {state}`"
            in " ".join(result.stderr.split())
        )
        answer = json.loads(result.stdout)
        assert answer["interrupted"] and answer["still_running"] == ["w0", "w1"]
        assert all(c.poll() is None for c in children)
    finally:
        monkeypatch.undo()
        assert stop(state)["still_running"] == []
        for child in children:
            child.wait(timeout=5)


@pytest.mark.timeout(90)
def test_lab_faults_that_would_do_nothing_are_refused(tmp_path: Path) -> None:
    """One deployment: faults that change nothing exit 1, a wrong --state-dir and a busy port
    name the state directory that is live, events read as documented, a clean stop is logged as
    Stopped."""
    topology = write_topology(tmp_path / "t.toml", 9, 3)
    state = tmp_path / "s"
    s = ["--state-dir", str(state)]
    done = hierclust("deploy", str(topology), "--processes", "2", *s, "--json")
    pids: list[int] = []
    try:
        assert done.returncode == 0, done.stderr
        pids = [w["pid"] for w in json.loads(done.stdout)["workers"]]
        assert hierclust("kill", "cn9", *s).returncode == 0
        again = hierclust("kill", "cn9", *s)
        assert again.returncode == 1 and "cn9 is not running" in again.stderr
        paused = hierclust("pause", "cn9", "1", *s)
        assert paused.returncode == 1 and "cn9 is not running" in paused.stderr
        running = hierclust("restart", "cn1", *s)
        assert running.returncode == 1 and "cn1 is running" in running.stderr
        healed = hierclust("heal", *s)
        assert healed.returncode == 1 and "nothing is partitioned" in healed.stderr

        elsewhere = tmp_path / "other"
        elsewhere.mkdir()
        wrong = hierclust("stop", "--state-dir", str(elsewhere))
        assert wrong.returncode == 2 and "no live deployment here" in wrong.stderr
        hint = wrong.stderr.split("; ", 1)[1]  # names every live state dir of this host
        assert "hierclust runs in" in hint and str(state) in hint, hint
        busy = hierclust("deploy", str(topology), "--state-dir", str(elsewhere))
        assert busy.returncode == 2 and "is not free" in busy.stderr
        assert f"of state directory {state} holds it: `hierclust stop --state-dir {state}`" in (
            " ".join(busy.stderr.split())
        )

        leaf = json.loads(hierclust("status", *s, "--json").stdout)["group_details"][1]["name"]
        subtree = json.loads(hierclust("status", "--group", leaf, *s, "--json").stdout)
        assert (subtree["nodes"], subtree["groups"]) == (3, 1)
        lines = hierclust("events", *s).stdout.splitlines()
        assert lines and all(
            re.match(r"^\d\d:\d\d:\d\d\.\d{3} cn\d \w+", line) for line in lines
        ), lines[:3]
    finally:
        stopped = hierclust("stop", *s, "--json")
    assert stopped.returncode == 0, stopped.stderr
    assert not any(pid_alive(pid) for pid in pids)
    records = [json.loads(line) for line in hierclust("events", *s, "--json").stdout.splitlines()]
    ends = {(r["node"], r["event"], r["reason"]) for r in records if "reason" in r}
    assert ends == {("cn9", "Crashed", "killed")} | {
        (f"cn{i}", "Stopped", "stopped") for i in range(1, 9)
    }
