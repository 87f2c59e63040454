"""How long a crashed node keeps its jobs hostage in Slurm: alone, and with hierclust's adapter.

One run: a real Slurm (:mod:`hierclust.bench.slurmlab`) of ``nodes`` nodes, half of them
running a requeueable batch job; one node that runs a job loses its power. Measured from that
instant:

* ``down_ms``: until ``scontrol show node`` says DOWN;
* ``requeued_ms``: until the job that ran there runs again on another node.

**Slurm alone** learns of the crash only when ``SlurmdTimeout`` passes without an answer from
the slurmd, so ``down_ms`` is at least that. **With hierclust** the same Slurm (same timeout)
runs next to one hierclust agent per node (default tuning) and ``hierclust adapter slurm`` on the
node that leads the root group; the adapter marks the node DOWN as soon as hierclust declares
it failed.

**A power loss** is silence: no FIN, no RST, no ICMP. Where network namespaces are available
(root), every node is a lab host (:class:`~hierclust.runtime.netns.NetnsLab`) running its
``slurmd`` and its hierclust agent, the controller is one more host (slurmctld, the witness of
the root group, every Slurm client command), and the crash *cuts the node's host off* the
bridge (``crash: cut``). Elsewhere, on 127.0.0.1 (``crash: kill``), the node's slurmd is
SIGKILLed and its hierclust node killed as a power loss at the same instant (its port stays
bound and mute, so no ICMP "port unreachable" tells its peers); the kernel still refuses
slurmctld's connections to the dead slurmd, which does not make Slurm any faster. ``config``
says which was measured.

``requeued_ms`` includes Slurm's own delay before a requeued batch job may start again: the
old credential's lifetime (``AuthInfo=cred_expire``; 120 s by default, 10 s in the lab) plus the
scheduler's period (``sched_interval``). Both cases pay it alike; ``config`` records it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from hierclust.bench.slurmlab import SlurmLab, SlurmLabError
from hierclust.codec import generate_keyring_file
from hierclust.runtime.control import request
from hierclust.runtime.deploy import Deployment, init_states, stop
from hierclust.runtime.netns import NetnsLab, unavailable
from hierclust.runtime.transport import free_udp_base
from hierclust.topology import generate_document, load

Progress = Callable[[str], None]
POLL_S = 0.02
"""How often Slurm is asked while a crash is timed (``scontrol`` answers in ~10 ms)."""
SLOW_POLL_S = 0.25
"""... while nothing is expected before ``SlurmdTimeout`` (Slurm alone)."""
FANOUT = 8
BASE_PORT = 7000
SUBNET = "10.213.0"


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def node_names(nodes: int) -> list[str]:
    """The names a generated topology gives (``cn01`` .. ``cn16``)."""
    return [f"cn{i:0{len(str(nodes))}d}" for i in range(1, nodes + 1)]


class Site:
    """Where one run happens: Slurm, optionally hierclust and its adapter, and how a node
    crashes. ``cut``: every node a lab host, the crash cuts it off; else 127.0.0.1 and kills."""

    def __init__(self, nodes: int, slurmd_timeout: int, cut: bool, directory: Path) -> None:
        self.names = node_names(nodes)
        self.cut = cut
        self.directory = directory
        self.procs: list[subprocess.Popen[bytes]] = []
        self.netns: NetnsLab | None = None
        self.state: Path | None = None
        self.topology_path = directory / "sched.toml"
        self.leader = ""
        addrs = dict.fromkeys(self.names, "127.0.0.1")
        wrap: Callable[[str | None], list[str]] | None = None
        ctld = "127.0.0.1"
        if cut:
            self.netns = NetnsLab(f"hcs{os.getpid() % 100000}", nodes + 1, SUBNET, offsets_s=(0,))
            self.netns.setup()
            lab = self.netns
            addrs = {n: lab.address(i + 1) for i, n in enumerate(self.names)}
            ctld = lab.address(0)
            wrap = self._wrap
        self.slurm = SlurmLab(addrs, slurmd_timeout=slurmd_timeout, ctld_addr=ctld, wrap=wrap)

    def host(self, node: str | None) -> int:
        return 0 if node is None else self.names.index(node) + 1

    def _wrap(self, node: str | None) -> list[str]:
        # nsenter, not `ip netns exec`: that one mounts a fresh /sys without the cgroup
        # hierarchies slurmd will not start without; nsenter changes the network namespace only
        assert self.netns is not None
        return ["nsenter", f"--net=/run/netns/{self.netns.host_ns[self.host(node)]}"]

    # -- hierclust ---------------------------------------------------------------------------
    def start_hierclust(self) -> None:
        nodes = len(self.names)
        if self.netns is None:
            document = generate_document(
                nodes, FANOUT, base_port=_free_udp_base(nodes), name="sched"
            )
        else:
            lab = self.netns
            hosts = f"{SUBNET}.[2-{nodes + 1}]"
            document = generate_document(
                nodes, FANOUT, base_port=BASE_PORT, hosts=hosts, name="sched"
            )
            generate_keyring_file(self.directory / "lab.keyring")
            document["cluster"]["secret_file"] = "lab.keyring"
            for group in document["group"].values():  # the witness on the controller's host
                if "tiebreaker" in group:
                    group["tiebreaker"]["address"] = f"{lab.address(0)}:{BASE_PORT - 1}"
        self.topology_path.write_text(tomli_w.dumps(document))
        if self.netns is None:
            self.state = self.directory / "state"
            done = subprocess.run(
                [sys.executable, "-m", "hierclust", "deploy", str(self.topology_path),
                 "--state-dir", str(self.state)],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            if done.returncode != 0:
                raise SlurmLabError(f"hierclust deploy: {done.stderr.strip()}")
        else:
            topology = load(self.topology_path)
            witness = self._hierclust(None, "witness", "--topology", str(self.topology_path))
            if topology.root.tiebreaker is not None:
                done = self.netns.run_on(0, [*witness, "--init"])
                if done.returncode != 0:
                    raise SlurmLabError(f"hierclust witness --init: {done.stderr.strip()}")
                self._popen(None, witness, "witness")
            for name in self.names:
                init_states(topology, self.state_dir(name))
                agent = ["agent", "--topology", str(self.topology_path), "--node", name]
                self._popen(name, self._hierclust(name, *agent), f"agent-{name}")
            self.state = self.state_dir(self.names[0])
        self.leader = self._root_leader()

    def state_dir(self, node: str | None) -> Path:
        if self.netns is None:
            assert self.state is not None
            return self.state
        return self.directory / "state" / self.netns.address(self.host(node))

    def _hierclust(self, node: str | None, *args: str) -> list[str]:
        state = self.directory / "state" / "witness" if node is None else self.state_dir(node)
        return [sys.executable, "-m", "hierclust", *args, "--state-dir", str(state)]

    def _popen(self, node: str | None, argv: list[str], what: str, **kw: Any) -> Any:
        log = open(self.directory / f"{what}.log", "ab")  # noqa: SIM115 - the child holds it
        kw.setdefault("stdout", log)
        kw.setdefault("stderr", log)
        try:
            if self.netns is None:
                proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, **kw)
            else:
                proc = self.netns.popen(self.host(node), argv, stdin=subprocess.DEVNULL, **kw)
        finally:
            log.close()
        self.procs.append(proc)
        return proc

    def _root_leader(self, timeout_s: float = 60.0) -> str:
        """The node that leads the root group (asked of each node: only the root's members see
        its leader), once it sees every node alive and itself in the primary component."""
        from hierclust.api import Client, HierclustError

        async def ask(node: str) -> bool:
            async with Client(self.state_dir(node), node=node) as c:
                if c.topology.root.name not in await c.leads() or not await c.in_primary():
                    return False
                return all(m.state == "alive" for m in await c.members())

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for node in self.names:
                try:
                    if asyncio.run(ask(node)):
                        return node
                except HierclustError:
                    continue
            time.sleep(0.3)
        raise SlurmLabError(f"no node leads the root group after {timeout_s:.0f} s")

    def leads(self) -> dict[str, list[str]]:
        """The groups each node leads, as the root leader sees it."""
        from hierclust.api import Client

        async def ask() -> dict[str, list[str]]:
            async with Client(self.state_dir(self.leader), node=self.leader) as c:
                return {m.name: list(m.leads) for m in await c.members()}

        return asyncio.run(ask())

    def start_adapter(self, node: str) -> subprocess.Popen[str]:
        argv = ["adapter", "slurm", "--node", node, "--json"]
        adapter: subprocess.Popen[str] = self._popen(
            node,
            self._hierclust(node, *argv),
            f"adapter-{node}",
            stdout=subprocess.PIPE,
            env=self.slurm.env,
            text=True,
        )
        return adapter

    # -- the crash ---------------------------------------------------------------------------
    def crash(self, node: str, with_hierclust: bool) -> None:
        if self.netns is not None:
            self.netns.cut([self.host(node)])
            return
        self.slurm.kill_slurmd(node)
        if with_hierclust:
            assert self.state is not None
            rank = self.names.index(node)
            for worker in Deployment.load(self.state).workers:
                if rank in worker.ranks:
                    request(
                        worker.socket_path(self.state), {"op": "kill", "rank": rank, "silent": True}
                    )

    def stop(self) -> None:
        if self.netns is not None:
            self.netns.heal()
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if self.netns is None and self.state is not None and self.state.exists():
            stop(self.state)
        self.slurm.stop()
        if self.netns is not None:
            self.netns.teardown()


def _free_udp_base(count: int) -> int:
    try:
        return free_udp_base(count)
    except OSError as exc:
        raise SlurmLabError(str(exc)) from None


def _fill(lab: SlurmLab, jobs: int, timeout_s: float = 60.0) -> dict[int, str]:
    """Submit ``jobs`` requeueable jobs; once all run, job id -> the node it runs on."""
    ids = [lab.submit("sleep 900", requeue=True) for _ in range(jobs)]
    deadline = time.monotonic() + timeout_s
    while True:
        where = {j: lab.job(j) for j in ids}
        if all(info.state == "RUNNING" for info in where.values()):
            return {j: info.nodes for j, info in where.items()}
        if time.monotonic() > deadline:
            raise SlurmLabError(f"jobs not all running after {timeout_s:.0f} s: {where}")
        time.sleep(0.2)


def one_run(
    nodes: int,
    slurmd_timeout: int,
    with_hierclust: bool,
    cut: bool,
    progress: Progress | None,
    victim_kind: str = "member",
) -> dict[str, Any]:
    """One crash; its figures. ``victim_kind``: ``member`` (a node that does not lead the root:
    one adapter, on the root leader) or ``root-leader`` (the root leader itself, adapter
    included: an adapter runs on every member of the root group, and the one on the new root
    leader takes over)."""
    label = "with hierclust" if with_hierclust else "alone"
    directory = Path(tempfile.mkdtemp(prefix="hierclust-sched-slurm-"))
    site = Site(nodes, slurmd_timeout, cut, directory)
    adapters: dict[str, subprocess.Popen[str]] = {}
    leads: dict[str, list[str]] = {}
    try:
        if with_hierclust:
            _say(progress, f"{label}: starting {nodes} hierclust nodes")
            site.start_hierclust()
            leads = site.leads()
        if with_hierclust and victim_kind == "root-leader":
            # its first job on the root leader: every other node weighs more. (Not --nodelist,
            # which the job would keep when requeued, and could then run nowhere else.)
            site.slurm.weights = {n: 2 for n in site.names if n != site.leader}
        site.slurm.start(timeout_s=60)
        on = [site.leader]
        if with_hierclust and victim_kind == "root-leader":
            on = [n for n, groups in leads.items() if groups]  # the root group's members
        for node in on if with_hierclust else []:
            adapters[node] = site.start_adapter(node)
        placed = _fill(site.slurm, max(1, nodes // 2))
        if with_hierclust and victim_kind == "root-leader":
            job, victim = next((j, n) for j, n in placed.items() if n == site.leader)
        else:
            job, victim = next((j, n) for j, n in placed.items() if n != site.leader)
        _say(progress, f"{label}: {victim} loses its power")
        limit_s = slurmd_timeout * 4 / 3 + site.slurm.cred_expire + 60.0
        t0 = time.monotonic()
        site.crash(victim, with_hierclust)
        down_ms: float | None = None
        requeued_ms: float | None = None
        ran_again_on = ""
        while time.monotonic() - t0 < limit_s:
            now_ms = (time.monotonic() - t0) * 1000
            if down_ms is None and site.slurm.nodes()[victim].down:
                down_ms = now_ms
                _say(progress, f"{label}: {victim} DOWN after {down_ms / 1000:.1f} s")
            if down_ms is not None:
                info = site.slurm.job(job)
                if info.state == "RUNNING" and info.restarts > 0 and info.nodes != victim:
                    requeued_ms, ran_again_on = now_ms, info.nodes
                    break
            slow = down_ms is None and not with_hierclust
            time.sleep(SLOW_POLL_S if slow else POLL_S)
        result: dict[str, Any] = {
            "victim": victim,
            "job": job,
            "down_ms": None if down_ms is None else round(down_ms, 1),
            "requeued_ms": None if requeued_ms is None else round(requeued_ms, 1),
            "ran_again_on": ran_again_on,
            "slurm_reason": site.slurm.nodes()[victim].reason,
        }
        if with_hierclust:
            result["victim_leads"] = leads.get(victim, [])
            result["root_leader"] = site.leader
            result["adapters_on"] = sorted(adapters)
            result["adapter_commands"] = {}
            for node, adapter in adapters.items():
                adapter.terminate()
                out, _ = adapter.communicate(timeout=10)
                ran = [json.loads(line)["argv"] for line in out.splitlines()]
                if ran:
                    result["adapter_commands"][node] = ran
        return result
    finally:
        site.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in ("down_ms", "requeued_ms"):
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = statistics.median(values) if values else None
        out[f"{key}_max"] = max(values) if values else None
        out[f"{key}_missing"] = len(runs) - len(values)
    out["runs"] = runs
    return out


def slurm_version() -> str:
    done = subprocess.run(["slurmctld", "-V"], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


def run(
    nodes: int,
    *,
    slurmd_timeout: int = 300,
    repeats: int = 1,
    progress: Progress | None = None,
    crash: str | None = None,
    victim: str = "member",
) -> dict[str, Any]:
    """Both cases ``repeats`` times each: medians and maxima of ``down_ms`` and ``requeued_ms``,
    with every run's figures. ``crash``: ``cut`` or ``kill`` (default: ``cut`` where network
    namespaces are available). ``victim``: ``member`` or ``root-leader`` (see :func:`one_run`)."""
    if nodes < 3:
        raise ValueError("nodes: at least 3 (a leader, a victim and a node to requeue on)")
    if slurmd_timeout < 1:
        raise ValueError("slurmd_timeout: at least 1 s (0 would leave Slurm alone blind)")
    why_not = unavailable()
    if crash is None:
        crash = "cut" if why_not is None else "kill"
    if crash == "cut" and why_not is not None:
        raise ValueError(f"crash=cut needs network namespaces: {why_not}")
    if victim not in ("member", "root-leader"):
        raise ValueError(f"victim {victim!r}: expected member or root-leader")
    cut = crash == "cut"
    alone = [one_run(nodes, slurmd_timeout, False, cut, progress) for _ in range(repeats)]
    with_hc = [one_run(nodes, slurmd_timeout, True, cut, progress, victim) for _ in range(repeats)]
    probe = SlurmLab(["x"])
    return {
        "scheduler": "slurm",
        "nodes": nodes,
        "alone": _summary(alone),
        "with_hierclust": _summary(with_hc),
        "config": {
            "slurmd_timeout_s": slurmd_timeout,
            "repeats": repeats,
            "crash": crash,
            "crash_means": (
                "the node's lab host cut off the bridge (silence, as a power loss)"
                if cut
                else "the node's slurmd SIGKILLed and its hierclust node killed mute, on 127.0.0.1"
            ),
            "victim": victim,
            "jobs": f"{max(1, nodes // 2)} one-node requeueable batch jobs (select/linear)",
            "cred_expire_s": probe.cred_expire,
            "sched_interval_s": probe.sched_interval,
            "return_to_service": 1,
            "hierclust_tuning": "defaults",
            "fanout": FANOUT,
            "poll_ms": POLL_S * 1000,
            "slurm": slurm_version(),
        },
    }
