"""Multi-host launch: start (and stop) one ``hierclust agent`` per host with ClusterShell.

``hierclust deploy FILE --hosts HOSTLIST`` groups the topology's nodes by the host of their
address and runs, on each selected host, one background agent for that host's nodeset::

    mkdir -p DIR && (setsid PYTHON -m hierclust agent --topology FILE --node NODESET \\
        --state-dir DIR </dev/null >>DIR/agent.log 2>&1 & echo $!)

through a ClusterShell task: over ssh (its default distant worker; with a ClusterShell
``topology.conf`` the task goes through the configured gateways, clush's tree mode), or with
``--exec PREFIX`` through its local exec worker, ``PREFIX sh -c '...'``, where ClusterShell
replaces ``%h`` in PREFIX by the host (``--exec 'ip netns exec lab-%h'`` treats network
namespaces as hosts; the tests pass :attr:`~hierclust.runtime.netns.NetnsLab.exec_template`,
which also starts each host's commands on that host's own clock). ``%h`` in the state directory
is replaced by the host too, so hosts sharing a file system keep separate state.

Every host needs the topology file at the same path, the same Python with hierclust installed
(``--python``), and the keyring named by ``cluster.secret_file`` (required here). Readiness is
polled the same way: ``hierclust status --snapshots`` on every host, merged and aggregated here.
"""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hierclust.runtime.errors import DeployError
from hierclust.topology import Topology


@dataclass(frozen=True)
class HostResult:
    host: str
    returncode: int | None  # None: timed out
    output: str
    errors: str = ""

    def json(self) -> dict[str, Any]:
        """The JSON object the command printed on stdout (``ValueError`` if none)."""
        start = self.output.find("{")
        if start < 0:
            raise ValueError("no JSON object")
        value, _ = json.JSONDecoder().raw_decode(self.output[start:])
        if not isinstance(value, dict):
            raise ValueError("not a JSON object")
        return value

    def why(self) -> str:
        how = "timed out" if self.returncode is None else f"exit {self.returncode}"
        last = (self.errors.strip() or self.output.strip()).splitlines()
        return f"{how}: {last[-1]}" if last else how


def text(buffer: Any) -> str:
    return buffer.decode(errors="replace") if isinstance(buffer, bytes) else str(buffer or "")


def hosts_of(topology: Topology) -> dict[str, list[int]]:
    """Host -> ranks of the nodes whose address is on it, in the order hosts first appear."""
    found: dict[str, list[int]] = {}
    for rank in range(topology.num_nodes):
        address = topology.address(rank)
        if address is None:
            raise DeployError(
                f"{topology.source}: addresses: node {topology.node_name(rank)} has no address"
            )
        found.setdefault(address.host, []).append(rank)
    return found


def pick_hosts(topology: Topology, hostlist: str) -> dict[str, list[int]]:
    """The hosts of ``hostlist`` (a ClusterShell nodeset, or ``all``) with their ranks."""
    from ClusterShell.NodeSet import NodeSet, NodeSetParseError

    every = hosts_of(topology)
    if hostlist == "all":
        return every
    try:
        wanted = list(NodeSet(hostlist))
    except NodeSetParseError as exc:
        raise DeployError(f"--hosts {hostlist}: not a host list: {exc}") from None
    unknown = [h for h in wanted if h not in every]
    if unknown:
        raise DeployError(
            f"{topology.source}: addresses: no node of this topology is on {unknown[0]} "
            f"(its hosts: {NodeSet.fromlist(list(every))})"
        )
    return {h: every[h] for h in wanted}


def nodeset(topology: Topology, ranks: list[int]) -> str:
    from ClusterShell.NodeSet import NodeSet

    return str(NodeSet.fromlist([topology.node_name(r) for r in ranks]))


def host_dir(state_dir: str, host: str) -> str:
    """The state directory on ``host``: ``%h`` replaced by the host."""
    return state_dir.replace("%h", host)


def agent_command(
    python: str, topology_path: Path, nodes: str, state_dir: str, extra: list[str] | None = None
) -> str:
    """The shell command that starts one background agent and prints its PID."""
    q = shlex.quote
    agent = [python, "-m", "hierclust", "agent", "--topology", str(topology_path)]
    agent += ["--node", nodes, "--state-dir", state_dir, *(extra or [])]
    log = f"{state_dir}/agent.log"
    return (
        f"mkdir -p {q(state_dir)} && (setsid {' '.join(q(a) for a in agent)} "
        f"</dev/null >>{q(log)} 2>&1 & echo $!)"
    )


class Launcher:
    """Runs one shell command per host through a ClusterShell task (ssh, or a local exec
    ``prefix`` with ``%h`` for the host); at most ``fanout`` at once."""

    def __init__(self, exec_prefix: str | None = None, fanout: int = 64) -> None:
        self.exec_prefix = exec_prefix
        self.fanout = fanout

    def run(self, commands: Mapping[str, str], timeout_s: float = 30.0) -> dict[str, HostResult]:
        from ClusterShell.Task import task_self

        task = task_self()
        task.set_info("fanout", self.fanout)
        workers = []
        for host, command in commands.items():
            if self.exec_prefix is None:
                worker = task.shell(command, nodes=host, timeout=timeout_s, stderr=True)
            else:
                local = f"{self.exec_prefix} sh -c {shlex.quote(command)}"
                worker = task.shell(
                    local, nodes=host, remote=False, tree=False, timeout=timeout_s, stderr=True
                )
            workers.append((host, worker))
        task.run()
        results: dict[str, HostResult] = {}
        for host, worker in workers:
            rc = worker.node_retcode(host) if worker.num_timeout() == 0 else None
            results[host] = HostResult(
                host, rc, text(worker.node_buffer(host)), text(worker.node_error(host))
            )
        return results


def launch(
    topology: Topology,
    topology_path: Path,
    hosts: dict[str, list[int]],
    launcher: Launcher,
    state_dir: str,
    python: str | None = None,
    extra: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Start the agents of ``hosts``; host -> ``{nodes, pid}``. ``DeployError`` names the first
    host that failed (the others keep running: stop them with :func:`stop_hosts`)."""
    if not topology.secret_file:
        raise DeployError(
            f"{topology.source}: cluster.secret_file is not set; every host would generate its "
            "own keyring and drop the others' datagrams: set it and copy the file to every host"
        )
    python = python or sys.executable
    sets = {h: nodeset(topology, ranks) for h, ranks in hosts.items()}
    commands = {
        h: agent_command(python, topology_path.resolve(), sets[h], host_dir(state_dir, h), extra)
        for h in hosts
    }
    results = launcher.run(commands)
    started: dict[str, dict[str, Any]] = {}
    failed: list[str] = []
    for host, result in results.items():
        lines = result.output.strip().splitlines()
        if result.returncode == 0 and lines and lines[-1].strip().isdigit():
            started[host] = {"nodes": sets[host], "pid": int(lines[-1])}
        else:
            failed.append(f"{host}: launch failed ({result.why()})")
    if failed:
        raise DeployError(failed[0])
    return started


def snapshots(
    launcher: Launcher, hosts: list[str], state_dir: str, python: str | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every host's worker snapshots (``hierclust status --snapshots`` there) and the errors."""
    python = python or sys.executable
    q = shlex.quote
    commands = {
        h: f"{q(python)} -m hierclust status --snapshots --state-dir {q(host_dir(state_dir, h))}"
        for h in hosts
    }
    found: list[dict[str, Any]] = []
    errors: list[str] = []
    for host, result in launcher.run(commands).items():
        try:
            answer = result.json()
        except ValueError:
            errors.append(f"{host}: no status ({result.why()})")
            continue
        found.extend(answer.get("snapshots", []))
        errors.extend(f"{host}: {e}" for e in answer.get("errors", []))
        if "error" in answer:
            errors.append(f"{host}: {answer['error']}")
    return found, errors


def stop_hosts(
    launcher: Launcher, hosts: list[str], state_dir: str, python: str | None = None
) -> dict[str, Any]:
    """``hierclust stop`` on every host; host -> its answer (or the error)."""
    python = python or sys.executable
    q = shlex.quote
    commands = {
        h: f"{q(python)} -m hierclust stop --json --state-dir {q(host_dir(state_dir, h))}"
        for h in hosts
    }
    answers: dict[str, Any] = {}
    for host, result in launcher.run(commands).items():
        try:
            answers[host] = result.json()
        except ValueError:
            answers[host] = {"error": result.why()}
    return answers
