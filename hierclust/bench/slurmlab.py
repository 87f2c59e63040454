"""A real Slurm on one machine, from the Debian packages, in a directory of its own.

What the scheduler benchmark and the adapter's tests run against: one ``munged``, one
``slurmctld`` and one ``slurmd -N NAME`` per node, all in the foreground, all children of this
process, all stopped by PID. Nothing touches the system's own Slurm or munge: the lab has its
own key, socket, ports, configuration, state and spool under one temporary directory, and every
client call (``scontrol``, ``sbatch``) is given ``SLURM_CONF`` explicitly.

Why each piece looks the way it does:

* **munge**: ``auth/none`` is gone from Slurm, so a lab needs a munge daemon. Its key must be
  mode 0600, and clients reach its socket only if every directory above the socket is
  searchable (``o+x``); ``mktemp -d`` makes 0700, hence the ``chmod``.
* **one slurmd per node on one host**: each runs as ``slurmd -D -N NAME`` and listens on the
  ``Port=`` of its ``NodeName`` line; ``NodeAddr`` comes from the caller (127.0.0.1 by default).
* **SlurmdTimeout**: how long Slurm waits before it marks a silent node DOWN by itself; 0 means
  never (the adapter is then the only source of DOWN). The benchmark compares the two.
* **ReturnToService=1**: a node Slurm marked DOWN for not responding comes back by itself when
  its slurmd registers again; a node set DOWN with ``scontrol`` (an operator, or the adapter)
  stays DOWN until resumed. That is what lets the adapter's RESUME be observed at all.
* **select/linear**: one job fills one node, so "where a job runs" is one node name.

Every batch job the lab submits writes its PID and its ``slurmstepd``'s to ``jobs/`` before it
``exec``\\ s its command, so :meth:`SlurmLab.stop` can end, by PID, the job processes and step
daemons a killed ``slurmd`` leaves behind (a step daemon outlives its job, retrying to report it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hierclust.adapters.slurm_plan import SlurmNode, parse_nodes, parse_show

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
PROGRAMS = ("slurmctld", "slurmd", "scontrol", "sbatch", "munged")


class SlurmLabError(RuntimeError):
    """The lab could not start, or Slurm did not reach the state asked for in time."""


def missing_programs() -> list[str]:
    """The Slurm and munge programs this machine lacks (empty: a lab can start)."""
    return [p for p in PROGRAMS if shutil.which(p) is None]


def install_hint() -> str:
    return "apt-get install " + " ".join(PACKAGES)


def free_tcp_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports free on ``host`` now (bound once to check)."""
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            held.append(s)
        return [int(s.getsockname()[1]) for s in held]
    finally:
        for s in held:
            s.close()


@dataclass(frozen=True)
class JobInfo:
    job_id: int
    state: str
    nodes: str
    restarts: int
    reason: str


class SlurmLab:
    """A Slurm cluster of ``nodes`` (Slurm NodeName -> NodeAddr) under a temporary directory.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``slurmd_timeout``: Slurm's
    ``SlurmdTimeout`` in seconds (0: Slurm never marks a node DOWN by itself). ``cred_expire``
    and ``sched_interval``: how long a requeued job waits before it may start again (its old
    credential's lifetime; Slurm's default is 120 s) and the scheduler's period. ``wrap(node)``:
    the command prefix that runs a program on ``node``'s host (``None``: the controller's, where
    slurmctld and every client command run), e.g. a lab host's ``ip netns exec`` (see
    :class:`hierclust.runtime.netns.NetnsLab`); ``ctld_addr``: the controller's address there.
    """

    def __init__(
        self,
        nodes: Mapping[str, str] | Sequence[str],
        *,
        slurmd_timeout: int = 0,
        root: Path | None = None,
        cred_expire: int = 10,
        sched_interval: int = 2,
        extra_conf: Sequence[str] = (),
        ctld_addr: str = "127.0.0.1",
        wrap: Callable[[str | None], list[str]] | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("nodes: at least one node")
        self.addrs: dict[str, str] = (
            dict(nodes) if isinstance(nodes, Mapping) else dict.fromkeys(nodes, "127.0.0.1")
        )
        self.slurmd_timeout = slurmd_timeout
        self.cred_expire = cred_expire
        self.sched_interval = sched_interval
        self.extra_conf = tuple(extra_conf)
        self.ctld_addr = ctld_addr
        self.weights: dict[str, int] = {}
        """Slurm's ``Weight=`` of some nodes (default 1): the lowest weights get jobs first."""
        self.wrap = wrap or (lambda _node: [])
        self.root = root
        self.dir = Path()
        self.conf = Path()
        self.munge_socket = Path()
        self.ctld_port = 0
        self.ports: dict[str, int] = {}
        self.munged: subprocess.Popen[bytes] | None = None
        self.slurmctld: subprocess.Popen[bytes] | None = None
        self.slurmd: dict[str, subprocess.Popen[bytes]] = {}
        self._made_dir = False

    # -- files -------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment for every Slurm client call: ``SLURM_CONF`` names the lab's file."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def slurm_conf(self) -> str:
        host = socket.gethostname().split(".")[0]
        d = self.dir
        lines = [
            "ClusterName=hclab",
            f"SlurmctldHost={host}({self.ctld_addr})",
            f"SlurmctldPort={self.ctld_port}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}",
            f"SchedulerParameters=sched_interval={self.sched_interval}",
            f"StateSaveLocation={d}/state",
            f"SlurmdSpoolDir={d}/spool/%n",
            f"SlurmctldPidFile={d}/slurmctld.pid",
            f"SlurmdPidFile={d}/slurmd-%n.pid",
            f"SlurmctldLogFile={d}/slurmctld.log",
            f"SlurmdLogFile={d}/slurmd-%n.log",
            "SlurmctldDebug=info",
            "SlurmdDebug=info",
            "ProctrackType=proctrack/pgid",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SelectType=select/linear",
            "SchedulerType=sched/builtin",
            "ReturnToService=1",
            f"SlurmdTimeout={self.slurmd_timeout}",
            "InactiveLimit=0",
            "KillWait=2",
            "MinJobAge=600",
            "PropagateResourceLimits=NONE",
            "MailProg=/bin/true",
            *self.extra_conf,
        ]
        for name, addr in self.addrs.items():
            lines.append(
                f"NodeName={name} NodeHostname={name} NodeAddr={addr} Port={self.ports[name]} "
                f"CPUs=1 RealMemory=100 Weight={self.weights.get(name, 1)} State=UNKNOWN"
            )
        lines.append("PartitionName=lab Nodes=ALL Default=YES MaxTime=INFINITE State=UP")
        return "\n".join(lines) + "\n"

    # -- start / stop ------------------------------------------------------------------------
    def __enter__(self) -> SlurmLab:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 30.0) -> None:
        """Start munged, slurmctld and every slurmd; return once every node is idle."""
        missing = missing_programs()
        if missing:
            raise SlurmLabError(f"missing {', '.join(missing)}: {install_hint()}")
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        if self.root is None:
            self.dir = Path(tempfile.mkdtemp(prefix="hclab-slurm-"))
            self._made_dir = True
        else:
            self.dir = self.root
            self.dir.mkdir(parents=True, exist_ok=True)
        # munge clients must be able to search every directory above the socket
        os.chmod(self.dir, 0o755)
        for sub in ("munge", "state", "spool", "jobs"):
            (self.dir / sub).mkdir(exist_ok=True)
            os.chmod(self.dir / sub, 0o755)
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        self.munge_socket = self.dir / "munge" / "munge.socket"
        ports = free_tcp_ports(1 + len(self.addrs))
        self.ctld_port = ports[0]
        self.ports = dict(zip(self.addrs, ports[1:], strict=True))
        self.conf = self.dir / "slurm.conf"
        self.conf.write_text(self.slurm_conf())
        deadline = time.monotonic() + timeout_s

        self.munged = self._spawn(
            "munged",
            [
                "munged",
                "-F",
                "--force",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--pid-file={self.dir / 'munge' / 'munged.pid'}",
                f"--log-file={self.dir / 'munge' / 'munged.log'}",
                f"--seed-file={self.dir / 'munge' / 'munged.seed'}",
            ],
        )
        self._wait(lambda: self.munge_socket.exists(), deadline, "munged to open its socket")
        self.slurmctld = self._spawn("slurmctld", [*self.wrap(None), "slurmctld", "-D", "-c", "-i"])
        self._wait(self._ctld_answers, deadline, "slurmctld to answer `scontrol ping`")
        for name in self.addrs:
            self.start_slurmd(name)
        self.wait_nodes(self.addrs, lambda n: n.idle, max(1.0, deadline - time.monotonic()))

    def _spawn(self, what: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.dir / f"{what}.out", "ab")  # noqa: SIM115 - the child holds it
        try:
            return subprocess.Popen(
                argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start_slurmd(self, name: str) -> None:
        """(Re)start ``name``'s slurmd (after :meth:`kill_slurmd`)."""
        old = self.slurmd.get(name)
        if old is not None and old.poll() is None:
            raise SlurmLabError(f"{name}: slurmd already runs (pid {old.pid})")
        argv = [*self.wrap(name), "slurmd", "-D", "-N", name]
        self.slurmd[name] = self._spawn(f"slurmd-{name}", argv)

    def kill_slurmd(self, name: str) -> None:
        """SIGKILL ``name``'s slurmd, as a power loss would stop it (its jobs keep running
        until :meth:`stop`: nothing tells them)."""
        proc = self.slurmd.get(name)
        if proc is None or proc.poll() is not None:
            raise SlurmLabError(f"{name}: no slurmd runs")
        proc.kill()
        proc.wait(5)

    def stop(self) -> None:
        """Stop everything this lab started, by PID: job processes, slurmds, slurmctld, munged."""
        recorded: set[int] = set()
        for pid_file in self.dir.glob("jobs/*.pid") if self.dir != Path() else ():
            with contextlib.suppress(ValueError, OSError):
                recorded.update(map(int, pid_file.read_text().split()))
        for pid in recorded | set(self.leftovers()):
            if self._ours(pid):
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
        procs = [*self.slurmd.values(), self.slurmctld, self.munged]
        for proc in procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()
        end = time.monotonic() + 5.0
        for proc in procs:
            if proc is None:
                continue
            try:
                proc.wait(max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.slurmd.clear()
        self.slurmctld = self.munged = None
        if self._made_dir and self.dir != Path():
            shutil.rmtree(self.dir, ignore_errors=True)
            self._made_dir = False

    def _ours(self, pid: int) -> bool:
        """Whether ``pid`` still is a process of this lab (a job or its slurmstepd): its
        environment names this lab's configuration. Guards against a reused PID."""
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            return False
        return f"SLURM_CONF={self.conf}".encode() in environ.split(b"\0")

    def leftovers(self) -> list[int]:
        """Processes of this lab still running other than the daemons it holds: job processes
        and step daemons (their environment names this lab's ``slurm.conf``)."""
        if self.conf == Path():
            return []
        held = {p.pid for p in (*self.slurmd.values(), self.slurmctld, self.munged) if p}
        found: list[int] = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) not in held and self._ours(int(entry.name)):
                found.append(int(entry.name))
        return found

    # -- clients -----------------------------------------------------------------------------
    def run(self, *argv: str, timeout_s: float = 15.0) -> subprocess.CompletedProcess[str]:
        """A Slurm client command with the lab's ``SLURM_CONF``; output as text."""
        return subprocess.run(
            [*self.wrap(None), *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def scontrol(self, *args: str) -> str:
        done = self.run("scontrol", *args)
        if done.returncode != 0:
            raise SlurmLabError(f"scontrol {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def _ctld_answers(self) -> bool:
        return "UP" in self.run("scontrol", "ping").stdout

    def nodes(self) -> dict[str, SlurmNode]:
        """Every node as ``scontrol show node`` has it now."""
        return parse_nodes(self.scontrol("-o", "show", "node"))

    def wait_nodes(
        self,
        names: Iterable[str],
        predicate: Any,
        timeout_s: float,
        poll_s: float = 0.05,
    ) -> dict[str, SlurmNode]:
        """Poll until ``predicate(SlurmNode)`` holds for every node in ``names``; the nodes then.
        :class:`SlurmLabError` naming the nodes that did not get there in ``timeout_s``."""
        wanted = list(names)
        deadline = time.monotonic() + timeout_s
        while True:
            nodes = self.nodes()
            late = [n for n in wanted if n not in nodes or not predicate(nodes[n])]
            if not late:
                return nodes
            if time.monotonic() > deadline:
                states = ", ".join(
                    f"{n}={nodes[n].state}" if n in nodes else f"{n}=?" for n in late[:8]
                )
                raise SlurmLabError(f"after {timeout_s:.0f} s, still {states} ({self.dir})")
            time.sleep(poll_s)

    def _wait(self, ready: Any, deadline: float, what: str) -> None:
        while not ready():
            for what_, proc in (("munged", self.munged), ("slurmctld", self.slurmctld)):
                if proc is not None and proc.poll() is not None:
                    raise SlurmLabError(
                        f"{what_} exited ({proc.returncode}); see {self.dir}/{what_}.out"
                    )
            if time.monotonic() > deadline:
                raise SlurmLabError(f"timed out waiting for {what} ({self.dir})")
            time.sleep(0.05)

    def submit(
        self, command: str = "sleep 900", *, requeue: bool = True, nodelist: str | None = None
    ) -> int:
        """Submit a one-node batch job running ``command``; its job id. The script records its
        PID under ``jobs/`` first, so :meth:`stop` can end it."""
        script = (
            "#!/bin/sh\n"
            f'echo $$ $PPID > {self.dir}/jobs/"$SLURM_JOB_ID.$SLURM_RESTART_COUNT".pid\n'
            f"exec {command}\n"
        )
        argv = ["sbatch", "--parsable", "-N1", f"--chdir={self.dir}/jobs", "-o", "/dev/null"]
        argv.append("--requeue" if requeue else "--no-requeue")
        if nodelist:
            argv.append(f"--nodelist={nodelist}")
        done = subprocess.run(
            [*self.wrap(None), *argv],
            input=script,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=15,
        )
        if done.returncode != 0:
            raise SlurmLabError(f"sbatch: {done.stderr.strip()}")
        return int(done.stdout.strip().split(";")[0])

    def job(self, job_id: int) -> JobInfo:
        """Where and how job ``job_id`` runs now (``nodes`` empty while pending)."""
        f = parse_show(self.scontrol("-o", "show", "job", str(job_id)))
        nodes = f.get("NodeList", "")
        return JobInfo(
            job_id=job_id,
            state=f.get("JobState", "?"),
            nodes="" if nodes == "(null)" else nodes,
            restarts=int(f.get("Restarts", "0") or 0),
            reason=f.get("Reason", ""),
        )
