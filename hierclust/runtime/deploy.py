"""Local deployments: start a topology's nodes as background worker processes, watch, stop.

State directory layout (every lab and status command takes the same ``--state-dir``)::

    deploy.json            what was started: topology, keyring, workers (id, pid, ranks)
    keyring.toml           generated when the topology names no cluster.secret_file
    nodes/<name>.json      durable state per node (incarnation, votes)
    nodes/witness-<group>.json  durable state of a local witness (term, holder)
    <worker>.pid/.sock     per worker process: pid file and control socket
    events-<worker>.jsonl  events of that worker's nodes, one JSON object per line
    <worker>.log           the worker's stderr
"""

from __future__ import annotations

import concurrent.futures
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hierclust.codec import KeyringError, generate_keyring_file, load_keyring
from hierclust.core.state import PersistentState
from hierclust.runtime.context import disk_lease_path, local_witnesses
from hierclust.runtime.control import ControlError, request
from hierclust.runtime.discover import pid_alive, udp_port_owner
from hierclust.runtime.errors import DeployError
from hierclust.runtime.launch import hosts_of
from hierclust.runtime.state import make_state_dir, state_to_json
from hierclust.runtime.tiebreak import init_witness_states
from hierclust.topology import Address, Topology

DEPLOY_FILE = "deploy.json"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


@dataclass
class WorkerRecord:
    id: str
    pid: int
    ranks: list[int]

    def socket_path(self, state_dir: Path) -> Path:
        return state_dir / f"{self.id}.sock"


@dataclass
class Deployment:
    state_dir: Path
    topology: str
    keyring: str
    workers: list[WorkerRecord]
    started_ns: int

    def save(self) -> None:
        data = {
            "topology": self.topology,
            "keyring": self.keyring,
            "started_ns": self.started_ns,
            "workers": [asdict(w) for w in self.workers],
        }
        (self.state_dir / DEPLOY_FILE).write_text(json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, state_dir: Path) -> Deployment:
        path = state_dir / DEPLOY_FILE
        try:
            data = json.loads(path.read_text())
            workers = [
                WorkerRecord(w["id"], int(w["pid"]), list(w["ranks"])) for w in data["workers"]
            ]
            return cls(state_dir, data["topology"], data["keyring"], workers, data["started_ns"])
        except FileNotFoundError:
            raise DeployError(
                f"{state_dir}: no deployment here (no {DEPLOY_FILE}); start one with "
                "`hierclust deploy FILE --state-dir DIR`"
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DeployError(f"{path}: unreadable: {exc}") from None


# -- process helpers -------------------------------------------------------------------------------
def control_sockets(state_dir: Path) -> list[Path]:
    return sorted(state_dir.glob("*.sock"))


# -- checks ----------------------------------------------------------------------------------------
def check_addresses(topology: Topology) -> None:
    """Every node needs a local address (this host) to be deployed here."""
    for rank in range(topology.num_nodes):
        address = topology.address(rank)
        name = topology.node_name(rank)
        if address is None:
            raise DeployError(
                f"{topology.source}: addresses: node {name} has no address; deploy needs "
                "[addresses] base_port (or per-node addresses)"
            )
        if address.host not in LOCAL_HOSTS:
            raise DeployError(
                f"{topology.source}: addresses: node {name} is on {address.host}; local deploy "
                "runs 127.0.0.1 addresses only (use `hierclust agent` on each host)"
            )


def check_ports_free(topology: Topology) -> None:
    wanted = [(topology.node_name(r), topology.address(r)) for r in range(topology.num_nodes)]
    for where, groups in local_witnesses(topology).items():
        names = ", ".join(topology.by_index[g].name for g in groups)
        wanted.append((f"the witness of {names}", Address(*where)))
    for who, address in wanted:
        assert address is not None
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            probe.bind((address.host, address.port))
        except OSError as exc:
            raise DeployError(
                f"{topology.source}: {who}: UDP {address} is not free ({exc.strerror}); "
                + port_holder(address.port)
            ) from None
        finally:
            probe.close()


def port_holder(port: int) -> str:
    """Who holds a busy port, and how to free it, for an error message."""
    owner = udp_port_owner(port)
    if owner is None:
        return "another program uses it (not a hierclust process this user can see)"
    return (
        f"the hierclust {owner.role} {owner.pid} of state directory {owner.state_dir} holds it: "
        f"`hierclust stop --state-dir {owner.state_dir}`"
    )


def check_disk_leases(topology: Topology) -> None:
    """Disk tie-breakers need an existing, writable directory for their lease file."""
    for g in topology.by_index:
        tb = g.tiebreaker
        if tb is None or tb.kind != "disk" or not tb.path:
            continue
        path = disk_lease_path(topology, tb.path)
        if not os.access(path.parent, os.W_OK):
            raise DeployError(
                f"{topology.source}: group.{g.name}.tiebreaker.path: {path.parent} is not a "
                "writable directory; create it (shared storage for every host of the group)"
            )


def resolve_keyring(topology: Topology, topology_path: Path, state_dir: Path) -> Path:
    """The topology's ``cluster.secret_file`` (relative to the topology file), or a keyring
    generated once in the state directory."""
    if topology.secret_file:
        path = Path(topology.secret_file)
        if not path.is_absolute():
            path = topology_path.resolve().parent / path
    else:
        path = state_dir / "keyring.toml"
        if not path.exists():
            try:
                generate_keyring_file(path)
            except KeyringError as exc:
                raise DeployError(str(exc)) from None
            return path
    try:
        load_keyring(path)
    except KeyringError as exc:
        raise DeployError(f"{exc} (cluster.secret_file in {topology.source})") from None
    return path


def init_states(topology: Topology, state_dir: Path) -> None:
    """A first boot: every node gets a state file (incarnation 0, no votes), so a missing file
    later means a lost state directory, not a new node.

    Written like :func:`~hierclust.runtime.state.save_state` (temp, rename), but fsync'd together
    at the end from a few threads and the directory once: 1,024 files one by one (two fsyncs
    each) took ~10 s on a busy disk, about 1 s this way."""
    nodes = state_dir / "nodes"
    nodes.mkdir(parents=True, exist_ok=True)
    payload = json.dumps(state_to_json(PersistentState(0)), separators=(",", ":")).encode()
    written: list[Path] = []
    for rank in range(topology.num_nodes):
        path = nodes / f"{topology.node_name(rank)}.json"
        if not path.exists():
            temp = path.with_name(f".{path.name}.tmp")
            temp.write_bytes(payload)
            os.replace(temp, path)
            written.append(path)
    if not written:
        return

    def sync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        list(pool.map(sync, written))
    sync(nodes)


def default_processes(num_nodes: int) -> int:
    return max(1, min(os.cpu_count() or 1, math.ceil(num_nodes / 256)))


def uvloop_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("uvloop") is not None


def default_uvloop(num_nodes: int) -> bool:
    """Workers run on uvloop above 256 nodes when it is installed (it costs less per datagram)."""
    return num_nodes > 256 and uvloop_installed()


def slices(num_nodes: int, processes: int) -> list[list[int]]:
    per = math.ceil(num_nodes / processes)
    return [list(range(i, min(i + per, num_nodes))) for i in range(0, num_nodes, per)]


def ranks_arg(ranks: list[int]) -> str:
    return (
        f"{ranks[0]}-{ranks[-1]}"
        if ranks == list(range(ranks[0], ranks[-1] + 1))
        else (",".join(map(str, ranks)))
    )


# -- deploy / stop ---------------------------------------------------------------------------------
def running_deployment(state_dir: Path) -> Deployment | None:
    try:
        deployment = Deployment.load(state_dir)
    except DeployError:
        return None
    return deployment if any(pid_alive(w.pid) for w in deployment.workers) else None


def deploy(
    topology: Topology,
    topology_path: Path,
    state_dir: Path,
    processes: int,
    *,
    use_uvloop: bool = False,
    metrics_port: int | None = None,
) -> tuple[Deployment, list[subprocess.Popen[bytes]]]:
    """Start every node of ``topology`` on this host in ``processes`` background workers."""
    check_addresses(topology)
    make_state_dir(state_dir)
    if running_deployment(state_dir) is not None:
        raise DeployError(
            f"{state_dir}: a deployment is already running; `hierclust stop --state-dir "
            f"{state_dir}` first"
        )
    check_ports_free(topology)
    check_disk_leases(topology)
    keyring = resolve_keyring(topology, topology_path, state_dir)
    # A state directory that never held nodes is a new deployment: its witnesses are new too.
    # Anywhere else a missing witness state file may be a lost one, and worker w0 refuses it.
    new_deployment = not (state_dir / "nodes").exists()
    init_states(topology, state_dir)
    if new_deployment:
        init_witness_states(topology, state_dir)
    for stale in control_sockets(state_dir):
        stale.unlink(missing_ok=True)
    processes = max(1, min(processes, topology.num_nodes))
    children: list[subprocess.Popen[bytes]] = []
    records: list[WorkerRecord] = []
    try:
        for i, ranks in enumerate(slices(topology.num_nodes, processes)):
            worker_id = f"w{i}"
            command = [
                sys.executable,
                "-m",
                "hierclust.runtime.worker",
                "--topology",
                str(topology_path.resolve()),
                "--state-dir",
                str(state_dir.resolve()),
                "--worker",
                worker_id,
                "--ranks",
                ranks_arg(ranks),
                "--keyring",
                str(keyring.resolve()),
            ]
            if use_uvloop:
                command.append("--uvloop")
            if i == 0 and local_witnesses(topology):
                command.append("--witnesses")
            if metrics_port is not None:
                command += ["--metrics-port", str(metrics_port + i)]
            with open(state_dir / f"{worker_id}.log", "ab") as log:
                child = subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            children.append(child)
            records.append(WorkerRecord(worker_id, child.pid, ranks))
        deployment = Deployment(
            state_dir,
            str(topology_path.resolve()),
            str(keyring.resolve()),
            records,
            time.monotonic_ns(),
        )
        deployment.save()
    except BaseException:
        # interrupted or failed half-way: nothing records these workers yet, so end them here
        for child in children:
            child.kill()
            child.wait()
        raise
    return deployment, children


def collect(
    state_dir: Path, timeout_s: float = 5.0, op: str = "status"
) -> tuple[list[dict[str, Any]], list[str]]:
    """Answers to ``op`` (status snapshots by default) of every worker answering in
    ``state_dir``, and the errors of the rest."""
    snapshots: list[dict[str, Any]] = []
    errors: list[str] = []
    for path in control_sockets(state_dir):
        try:
            snapshot = request(path, {"op": op}, timeout_s)
            snapshot["socket"] = str(path)
            snapshots.append(snapshot)
        except ControlError as exc:
            errors.append(str(exc))
    return snapshots, errors


def groups_led(answers: list[dict[str, Any]]) -> int:
    """Groups led by exactly one node, from ``leaders`` answers."""
    holders: dict[int, int] = {}
    for answer in answers:
        for _rank, group in answer.get("leading", []):
            holders[group] = holders.get(group, 0) + 1
    return sum(1 for n in holders.values() if n == 1)


def wait_ready(
    deployment: Deployment,
    children: list[subprocess.Popen[bytes]],
    timeout_s: float,
    progress: Callable[[int, int], None] | None = None,
    condition: Callable[[list[dict[str, Any]]], tuple[int, int]] | None = None,
    op: str = "leaders",
) -> bool:
    """Poll the workers with ``op`` until ``condition(answers)`` returns (done, total) with
    done == total. The default ``leaders`` op is cheap: a full status of 512 nodes costs a
    worker ~25 ms of loop time, too much to ask ten times a second while it elects."""
    deadline = time.monotonic() + timeout_s
    state_dir = deployment.state_dir
    while time.monotonic() < deadline:
        for child, record in zip(children, deployment.workers, strict=True):
            if child.poll() is not None:
                log = (state_dir / f"{record.id}.log").read_text(errors="replace").strip()
                last = log.splitlines()[-1] if log else f"exit code {child.returncode}"
                raise DeployError(f"worker {record.id} exited at start: {last}")
        sockets = control_sockets(state_dir)
        if len(sockets) == len(deployment.workers) and condition is not None:
            snapshots, errors = collect(state_dir, op=op)
            if not errors:
                done, total = condition(snapshots)
                if progress is not None:
                    progress(done, total)
                if done >= total:
                    return True
        time.sleep(0.1)
    return False


def stop(state_dir: Path, timeout_s: float = 5.0) -> dict[str, Any]:
    """Stop every worker of ``state_dir``: ask, wait, then SIGTERM and SIGKILL what is left."""
    pids: dict[str, int] = {}
    try:
        for w in Deployment.load(state_dir).workers:
            pids[w.id] = w.pid
    except DeployError:
        pass
    for pid_file in state_dir.glob("*.pid"):
        try:
            pids[pid_file.stem] = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            continue
    live = {wid: pid for wid, pid in pids.items() if pid_alive(pid)}
    for wid in live:
        try:
            request(state_dir / f"{wid}.sock", {"op": "stop"}, 2.0)
        except ControlError:
            pass
    escalated: list[str] = []
    left = dict(live)
    for sig in (None, signal.SIGTERM, signal.SIGKILL):
        if sig is not None:
            for wid, pid in left.items():
                try:
                    os.kill(pid, sig)
                    escalated.append(f"{wid}:{sig.name}")
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout_s / 3
        while time.monotonic() < deadline and any(pid_alive(p) for p in left.values()):
            time.sleep(0.05)
        left = {wid: pid for wid, pid in left.items() if pid_alive(pid)}
        if not left:
            break
    time.sleep(0.05)
    still = sorted(wid for wid, pid in live.items() if pid_alive(pid))
    for path in [*control_sockets(state_dir), *state_dir.glob("*.pid")]:
        path.unlink(missing_ok=True)
    if not still:
        (state_dir / DEPLOY_FILE).unlink(missing_ok=True)
    return {"stopped": sorted(live), "escalated": escalated, "still_running": still}


SYSTEMD_UNIT = """\
# Written by `hierclust deploy {topology} --systemd`: the hierclust agents of host {host}.
[Unit]
Description=hierclust agents {nodes} ({cluster})
After=network-online.target
Wants=network-online.target

[Service]
ExecStart={python} -m hierclust agent --topology {topology} --node {nodes} --state-dir {state}
Restart=always
RestartSec=2
KillMode=mixed

[Install]
WantedBy=multi-user.target
"""


def write_systemd_units(
    topology: Topology, topology_path: Path, outdir: Path, state_dir: str = "/var/lib/hierclust"
) -> list[Path]:
    """One unit file per host, running that host's nodes as one agent process (a nodeset)."""
    from ClusterShell.NodeSet import NodeSet

    by_host = {
        host: [topology.node_name(r) for r in ranks] for host, ranks in hosts_of(topology).items()
    }
    outdir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for host, names in sorted(by_host.items()):
        path = outdir / f"hierclust-{host}.service"
        path.write_text(
            SYSTEMD_UNIT.format(
                topology=topology_path.resolve(),
                host=host,
                nodes=str(NodeSet.fromlist(names)),
                cluster=topology.name,
                python=sys.executable,
                state=state_dir,
            )
        )
        written.append(path)
    return written
