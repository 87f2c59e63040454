"""Multi-host launch (``deploy --hosts``) with a fake launcher, and ClusterShell's exec worker
for real on this host (no root needed; the namespace version is in test_netns.py)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from hierclust.cli import app
from hierclust.runtime.errors import DeployError
from hierclust.runtime.launch import (
    HostResult,
    Launcher,
    agent_command,
    hosts_of,
    launch,
    pick_hosts,
)
from hierclust.topology import Topology, from_dict, generate_document


def topology(secret: bool = True) -> Topology:
    document = generate_document(32, 8, base_port=7000, hosts="h[1-2]", name="mh")
    if secret:
        document["cluster"]["secret_file"] = "mh.keyring"
    return from_dict(document, source="mh.toml")


class FakeLauncher(Launcher):
    """Records the commands; answers like a host that printed ``answers[host]``."""

    def __init__(self, answers: Mapping[str, tuple[int | None, str]]) -> None:
        super().__init__(exec_prefix=None)
        self.answers = answers
        self.commands: dict[str, str] = {}

    def run(self, commands: Mapping[str, str], timeout_s: float = 30.0) -> dict[str, HostResult]:
        self.commands.update(commands)
        return {h: HostResult(h, *self.answers[h]) for h in commands}


def test_hosts_and_their_nodesets() -> None:
    t = topology()
    assert {h: len(r) for h, r in hosts_of(t).items()} == {"h1": 16, "h2": 16}
    assert list(pick_hosts(t, "all")) == ["h1", "h2"]
    assert list(pick_hosts(t, "h2")) == ["h2"]
    with pytest.raises(DeployError, match="mh.toml: addresses: no node of this topology is on h3"):
        pick_hosts(t, "h[2-3]")


def test_launch_runs_one_background_agent_per_host(tmp_path: Path) -> None:
    fake = FakeLauncher({"h1": (0, "4242\n"), "h2": (0, "4343\n")})
    started = launch(
        topology(), tmp_path / "mh.toml", pick_hosts(topology(), "all"), fake, "/var/x/%h", "py"
    )
    assert started == {
        "h1": {"nodes": "cn[01-16]", "pid": 4242},
        "h2": {"nodes": "cn[17-32]", "pid": 4343},
    }
    command = fake.commands["h2"]
    assert command == agent_command(
        "py", (tmp_path / "mh.toml").resolve(), "cn[17-32]", "/var/x/h2"
    )
    assert "setsid py -m hierclust agent" in command and "'cn[17-32]'" in command
    assert "</dev/null >>/var/x/h2/agent.log 2>&1 & echo $!" in command


def test_launch_failures_name_the_host(tmp_path: Path) -> None:
    fake = FakeLauncher({"h1": (0, "4242\n"), "h2": (255, "")})
    with pytest.raises(DeployError, match="h2: launch failed \\(exit 255\\)"):
        launch(topology(), tmp_path / "mh.toml", pick_hosts(topology(), "all"), fake, "/s")
    with pytest.raises(DeployError, match="cluster.secret_file is not set"):
        launch(topology(False), tmp_path / "mh.toml", {"h1": [0]}, fake, "/s")


def test_clustershell_exec_worker_substitutes_the_host() -> None:
    results = Launcher(exec_prefix="env HC_HOST=%h").run(
        {"a1": 'echo "on $HC_HOST"', "a2": 'echo "on $HC_HOST"; exit 3'}, timeout_s=20
    )
    assert (results["a1"].returncode, results["a1"].output.strip()) == (0, "on a1")
    assert (results["a2"].returncode, results["a2"].output.strip()) == (3, "on a2")


def test_cli_option_errors(tmp_path: Path) -> None:
    path = tmp_path / "mh.toml"
    document = generate_document(32, 8, base_port=7000, hosts="h[1-2]", name="mh")
    path.write_text(tomli_w.dumps(document))
    runner = CliRunner()
    result = runner.invoke(app, ["deploy", str(path), "--ssh", "--json"])
    assert result.exit_code == 2 and "--hosts" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["deploy", str(path), "--hosts", "all", "--json"])
    assert result.exit_code == 2 and "secret_file" in json.loads(result.stdout)["error"]
    result = runner.invoke(app, ["deploy", str(path), "--hosts", "h9", "--exec", "x", "--json"])
    assert result.exit_code == 2 and "h9" in json.loads(result.stdout)["error"]
