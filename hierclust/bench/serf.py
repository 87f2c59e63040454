"""The same kill against HashiCorp Serf: N ``serf agent`` processes on 127.0.0.1.

Where it can (root, ``ip`` present) the agents run in a network namespace created for the run
(``hcbench-<pid>``, its own ``lo``): only Serf talks there, so the namespace's UDP counters
(``/proc/<pid>/net/snmp``, ``OutDatagrams``) count exactly Serf's datagrams, and ``lo``'s transmit
bytes (``/proc/<pid>/net/dev``, IP packets with headers, TCP push-pull included) bound its bytes.
Without a namespace the datagram figures are ``None``.

Each agent's stdout is read by one thread that stamps every line with ``time.monotonic_ns()``
as it arrives; a survivor is notified when its ``serf: EventMemberFailed: <victim>`` line is read
(before Serf's event-handler coalescing, so Serf is measured at its fastest) **at or after the
kill**: a failure of the same name logged earlier (a slow join) says nothing about this kill.
The victim gets SIGKILL. Every process is stopped by PID and the namespace deleted at the end.

Fairness with the hierclust side: false positives count from convergence (every agent sees every
member alive), as hierclust's count from "every group led"; and the steady window opens only once
Serf's datagram rate has settled (join gossip over), since the equal-budget heartbeat is derived
from that rate.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hierclust.bench.procio import namespace_counters, pump_lines
from hierclust.bench.report import percentile
from hierclust.core.timeouts import MS

BIND_BASE_PORT = 17946
RPC_BASE_PORT = 15373
MAX_AGENTS = 1000
JOIN_RE = re.compile(rb"EventMemberJoin: (\S+)")
FAILED_RE = re.compile(rb"EventMemberFailed: (\S+)")
GONE_RE = re.compile(rb"EventMember(?:Leave|Reap): (\S+)")
MARKED_RE = re.compile(rb"Marking (\S+) as failed")
AFTER_KILL_S = 60.0  # how long a run waits for every survivor's notice (both systems)
SETTLE_INTERVAL_S = 1.0
SETTLE_TOLERANCE = 0.10
SETTLE_SAMPLES = 5
SETTLE_MAX_S = 60.0
Progress = Callable[[str, float, float], None]


class SerfError(RuntimeError):
    """Serf could not be run or did not converge; one line."""


class SerfNotConverged(SerfError):
    """Not every agent saw every member alive in time: a result (Serf does not converge at this
    size on this box), recorded in the report rather than ending the benchmark."""

    def __init__(self, done: int, nodes: int, timeout_s: float) -> None:
        super().__init__(
            f"serf: only {done} of {nodes} agents saw every member alive within {timeout_s:.0f} s"
        )
        self.done = done
        self.nodes = nodes
        self.timeout_s = timeout_s


def serf_binary() -> str | None:
    return shutil.which("serf")


def serf_version(binary: str) -> str:
    try:
        done = subprocess.run([binary, "version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = done.stdout.strip().splitlines()
    return first[0].removeprefix("Serf ").strip() if first else "unknown"


def skip_reason() -> str | None:
    """Why the Serf comparison cannot run here, or None."""
    if serf_binary() is None:
        return "serf is not installed (`make bench-deps` installs Debian's serf)"
    return None


@dataclass
class AgentLog:
    """What one agent's log said, each fact stamped with the reader's monotonic clock.

    Every failure stamp is kept (not only the first) so a notice can be matched to the kill
    that caused it; ``alive`` is the agent's current view, for convergence."""

    joined: set[str] = field(default_factory=set)
    alive: set[str] = field(default_factory=set)
    failed_at: dict[str, list[int]] = field(default_factory=dict)
    marked_at: dict[str, list[int]] = field(default_factory=dict)

    def feed(self, line: bytes, t_ns: int) -> None:
        if m := JOIN_RE.search(line):
            name = m.group(1).decode()
            self.joined.add(name)
            self.alive.add(name)
        elif m := FAILED_RE.search(line):
            name = m.group(1).decode()
            self.failed_at.setdefault(name, []).append(t_ns)
            self.alive.discard(name)
        elif m := GONE_RE.search(line):
            self.alive.discard(m.group(1).decode())
        elif m := MARKED_RE.search(line):
            self.marked_at.setdefault(m.group(1).decode(), []).append(t_ns)


def first_at_or_after(stamps: list[int], since_ns: int) -> int | None:
    return min((t for t in stamps if t >= since_ns), default=None)


def notified_at(logs: dict[str, AgentLog], victim: str, since_ns: int) -> dict[str, int]:
    """Agent name -> its first ``EventMemberFailed`` for ``victim`` stamped at or after
    ``since_ns`` (the kill); agents with only earlier failures of that name are not notified."""
    seen: dict[str, int] = {}
    for name, log in logs.items():
        t = first_at_or_after(log.failed_at.get(victim, []), since_ns)
        if t is not None:
            seen[name] = t
    return seen


def false_failures(logs: dict[str, AgentLog], victim: str, since_ns: int) -> int:
    """Distinct members other than ``victim`` that some agent declared failed at or after
    ``since_ns`` (convergence, so both systems count from the same point)."""
    return len(
        {
            member
            for log in logs.values()
            for member, stamps in log.failed_at.items()
            if member != victim and any(t >= since_ns for t in stamps)
        }
    )


def all_see_all_alive(logs: dict[str, AgentLog]) -> int:
    """How many agents see every member (themselves included) alive."""
    names = set(logs)
    return sum(1 for log in logs.values() if names <= log.alive)


def wait_rate_settled(
    read: Callable[[], int | None],
    *,
    interval_s: float = SETTLE_INTERVAL_S,
    tolerance: float = SETTLE_TOLERANCE,
    samples: int = SETTLE_SAMPLES,
    max_s: float = SETTLE_MAX_S,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[float | None, list[int]]:
    """Sample the counter ``read`` every ``interval_s`` until the last ``samples`` increments
    all lie within ``tolerance`` of the largest of them; at most ``max_s``.

    Returns (seconds waited, or None when the rate never settled or the counter is unreadable;
    the increments seen). Join gossip makes the first seconds after convergence busier than
    the steady state, so a window opened too early inflates the rate. Two agreeing seconds are
    not enough: at 100 agents the gossip runs on a flat plateau (every agent sending every
    gossip interval) for two or three seconds, about eight times the steady rate, then drops."""
    previous = read()
    if previous is None:
        return None, []
    deltas: list[int] = []
    waited = 0.0
    while waited + interval_s <= max_s + 1e-9:
        sleep(interval_s)
        waited += interval_s
        current = read()
        if current is None:
            return None, deltas
        deltas.append(current - previous)
        previous = current
        if len(deltas) >= samples:
            last = deltas[-samples:]
            if max(last) - min(last) < tolerance * max(*last, 1):
                return round(waited, 3), deltas
    return None, deltas


@dataclass
class Agent:
    index: int
    name: str
    process: subprocess.Popen[bytes]
    log: AgentLog = field(default_factory=AgentLog)


def udp_and_lo_counters(pid: int) -> tuple[int, int] | None:
    """(UDP datagrams sent, lo bytes sent) in the network namespace of ``pid``."""
    return namespace_counters(pid, "lo")


class SerfCluster:
    """N Serf agents, joined into one cluster. Use as a context manager: it always cleans up."""

    def __init__(self, nodes: int, *, namespace: bool = True) -> None:
        if not 2 <= nodes <= MAX_AGENTS:
            raise SerfError(f"--nodes: Serf comparison runs 2..{MAX_AGENTS} agents, got {nodes}")
        binary = serf_binary()
        if binary is None:
            raise SerfError("serf is not installed")
        self.binary = binary
        self.nodes = nodes
        self.want_namespace = namespace and os.geteuid() == 0 and shutil.which("ip") is not None
        self.netns: str | None = None
        self.agents: list[Agent] = []
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.reader: threading.Thread | None = None
        self.stopping = threading.Event()
        self.converged_ns: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> SerfCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def start(self, progress: Progress | None = None) -> None:
        if self.want_namespace:
            name = f"hcbench-{os.getpid()}"
            made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
            if made.returncode == 0:
                self.netns = name
                subprocess.run(
                    ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True
                )
        width = len(str(self.nodes - 1))
        for i in range(self.nodes):
            name = f"s{i:0{width}d}"
            command = [
                *self._prefix(),
                self.binary,
                "agent",
                f"-node={name}",
                f"-bind=127.0.0.1:{BIND_BASE_PORT + i}",
                f"-rpc-addr=127.0.0.1:{RPC_BASE_PORT + i}",
                "-log-level=info",
            ]
            if i > 0:
                # -retry-join, not -join: an agent whose first join times out on a loaded box
                # retries instead of exiting, so Serf gets every chance to converge
                command += [f"-retry-join=127.0.0.1:{BIND_BASE_PORT}", "-retry-interval=1s"]
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            agent = Agent(i, name, process)
            self.agents.append(agent)
            assert process.stdout is not None
            os.set_blocking(process.stdout.fileno(), False)
            self.selector.register(process.stdout, selectors.EVENT_READ, agent)
            if i == 0:
                time.sleep(0.3)  # the seed agent listens before others join it
            if progress is not None:
                progress("starting serf agents", i + 1, self.nodes)
        self.reader = threading.Thread(target=self._read, name="serf-logs", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        """Stamp every agent log line on arrival (one monotonic clock) and keep what matters."""
        pump_lines(self.selector, self.stopping, self.lock)

    def close(self) -> None:
        """SIGTERM every agent by PID, SIGKILL what is left after 3 s, delete the namespace."""
        for agent in self.agents:
            if agent.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for agent in self.agents:
            try:
                agent.process.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(agent.process.pid, signal.SIGKILL)
                agent.process.wait(timeout=5)
        self.stopping.set()
        if self.reader is not None:
            self.reader.join(timeout=2)
        for agent in self.agents:
            if agent.process.stdout is not None:
                agent.process.stdout.close()
        self.selector.close()
        if self.netns is not None:
            subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
            self.netns = None

    # -- measurements ------------------------------------------------------------------------------
    def wait_converged(self, timeout_s: float, progress: Progress | None = None) -> float:
        """Wait until every agent sees every member alive (joined, and not failed since); then
        check one agent's ``serf members -status alive`` says N. Returns the seconds it took;
        :attr:`converged_ns` is the moment, from which false positives count."""
        start = time.monotonic()
        deadline = start + timeout_s
        while True:
            for agent in self.agents:
                if agent.process.poll() is not None:
                    raise SerfError(f"serf agent {agent.name} exited ({agent.process.returncode})")
            with self.lock:
                done = all_see_all_alive(self.logs())
            if progress is not None:
                progress("serf agents converging", done, self.nodes)
            if done == self.nodes:
                self.converged_ns = time.monotonic_ns()
                break
            if time.monotonic() > deadline:
                raise SerfNotConverged(done, self.nodes, timeout_s)
            time.sleep(0.1)
        alive = self.members_alive(0)
        if alive != self.nodes:
            raise SerfError(
                f"serf members on {self.agents[0].name}: {alive} alive, not {self.nodes}"
            )
        return time.monotonic() - start

    def logs(self) -> dict[str, AgentLog]:
        """Every agent's log by name; read under :attr:`lock`."""
        return {a.name: a.log for a in self.agents}

    def members_alive(self, index: int) -> int:
        done = subprocess.run(
            [
                *self._prefix(),
                self.binary,
                "members",
                f"-rpc-addr=127.0.0.1:{RPC_BASE_PORT + index}",
                "-status=alive",
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return len([line for line in done.stdout.splitlines() if line.strip()])

    def counters(self) -> tuple[int, int] | None:
        if self.netns is None:
            return None
        for agent in self.agents:
            if agent.process.poll() is None:
                return udp_and_lo_counters(agent.process.pid)
        return None

    def cpu_seconds(self) -> float:
        from hierclust.bench.hog import cpu_seconds

        return cpu_seconds([a.process.pid for a in self.agents])

    def kill(self, index: int) -> int:
        """SIGKILL agent ``index``; the monotonic time just before the signal."""
        t = time.monotonic_ns()
        os.kill(self.agents[index].process.pid, signal.SIGKILL)
        return t

    def failed_times(self, victim: str, since_ns: int) -> dict[str, int]:
        with self.lock:
            return notified_at(self.logs(), victim, since_ns)

    def false_failures(self, victim: str, since_ns: int) -> int:
        with self.lock:
            return false_failures(self.logs(), victim, since_ns)

    def first_marked(self, victim: str, since_ns: int) -> int | None:
        with self.lock:
            times = [
                first_at_or_after(a.log.marked_at.get(victim, []), since_ns) for a in self.agents
            ]
        return min((t for t in times if t is not None), default=None)

    def datagrams(self) -> int | None:
        got = self.counters()
        return None if got is None else got[0]


def serf_run(
    nodes: int,
    victim_index: int,
    victim_role: str,
    seed: int,
    *,
    steady_s: float = 5.0,
    converge_timeout_s: float = 120.0,
    after_s: float = AFTER_KILL_S,
    settle_max_s: float = SETTLE_MAX_S,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """One Serf run: start, converge, wait for the datagram rate to settle, measure a steady
    window, SIGKILL one agent, wait until every survivor logs ``EventMemberFailed`` for it
    after the kill; a report (docs/architecture.md §5) with mode "serf"."""
    with SerfCluster(nodes) as cluster:
        started = time.monotonic_ns()
        cluster.start(progress)
        try:
            converge_s = cluster.wait_converged(converge_timeout_s, progress)
        except SerfNotConverged as exc:
            return not_converged_report(cluster, exc, victim_role, seed, started)
        converged_ns = cluster.converged_ns or time.monotonic_ns()

        def settle_sleep(seconds: float) -> None:
            if progress is not None:
                progress("serf datagram rate settling", 0, 1)
            time.sleep(seconds)

        settle_start = time.monotonic()
        settle_s, settle_deltas = wait_rate_settled(
            cluster.datagrams, max_s=settle_max_s, sleep=settle_sleep
        )
        if cluster.netns is None:
            time.sleep(1.0)  # no counters to watch: the old fixed pause
        settle_waited_s = time.monotonic() - settle_start
        before, cpu0, t0 = cluster.counters(), cluster.cpu_seconds(), time.monotonic_ns()
        end = time.monotonic() + steady_s
        while time.monotonic() < end:
            if progress is not None:
                progress("serf steady window", steady_s - (end - time.monotonic()), steady_s)
            time.sleep(0.1)
        after, cpu1, t1 = cluster.counters(), cluster.cpu_seconds(), time.monotonic_ns()
        window_s = (t1 - t0) / 1e9
        victim = cluster.agents[victim_index].name
        t_kill = cluster.kill(victim_index)
        survivors = {a.name for a in cluster.agents} - {victim}
        deadline = time.monotonic() + after_s
        while time.monotonic() < deadline:
            seen = cluster.failed_times(victim, t_kill)
            if progress is not None:
                progress(
                    f"serf kill {victim}: notified", len(seen.keys() & survivors), len(survivors)
                )
            if survivors <= seen.keys():
                break
            time.sleep(0.05)
        seen = cluster.failed_times(victim, t_kill)
        delays = sorted((t - t_kill) / MS for n, t in seen.items() if n in survivors)
        marked = cluster.first_marked(victim, t_kill)
        msgs = bytes_rate = None
        if before is not None and after is not None:
            msgs = round((after[0] - before[0]) / nodes / window_s, 3)
            bytes_rate = round((after[1] - before[1]) / nodes / window_s, 1)
        return {
            "mode": "serf",
            "nodes": nodes,
            "fanout": None,
            "depth": None,
            "victim": victim,
            "victim_role": victim_role,
            "kill_at_ms": round((t_kill - started) / MS, 1),
            "detect_ms": round((marked - t_kill) / MS, 1) if marked is not None else None,
            "notify_p50_ms": round(percentile(delays, 0.5), 1) if delays else None,
            "notify_p99_ms": round(percentile(delays, 0.99), 1) if delays else None,
            "notify_max_ms": round(delays[-1], 1) if delays else None,
            "notified": len(delays),
            "survivors": len(survivors),
            "reelect_ms": None,
            "groups_disturbed": None,
            "elections_elsewhere": None,
            "false_positives": cluster.false_failures(victim, converged_ns),
            "msgs_per_node_per_s": msgs,
            "bytes_per_node_per_s": bytes_rate,
            "cpu_cores": round((cpu1 - cpu0) / window_s, 3),
            "seed": seed,
            "version": f"serf {serf_version(cluster.binary)}",
            "serf": {
                "converged": True,
                "converge_s": round(converge_s, 2),
                "converged_ms": round((converged_ns - started) / MS, 1),
                "false_positives_from": "converged: every agent sees every member alive",
                "false_positives_incl_boot": cluster.false_failures(victim, 0),
                "settle_s": settle_s,
                "settle_waited_s": round(settle_waited_s, 3),
                "settle_rule": (
                    f"{SETTLE_SAMPLES} consecutive {SETTLE_INTERVAL_S:g} s datagram counts within "
                    f"{SETTLE_TOLERANCE:.0%} of each other, at most {settle_max_s:g} s"
                    if cluster.netns is not None
                    else "no namespace counters: fixed 1 s pause"
                ),
                "settle_datagrams_per_s_total": [
                    round(d / SETTLE_INTERVAL_S, 1) for d in settle_deltas
                ],
                "window_s": round(window_s, 3),
                "namespace": cluster.netns is not None,
                "datagrams_counted": "UDP OutDatagrams of the run's own network namespace"
                if cluster.netns is not None
                else None,
                "bytes_counted": "lo transmit bytes of that namespace (IP headers, TCP included)"
                if cluster.netns is not None
                else None,
                "notify_ms": [round(d, 1) for d in delays],
            },
        }


def not_converged_report(
    cluster: SerfCluster, why: SerfNotConverged, victim_role: str, seed: int, started: int
) -> dict[str, Any]:
    """The report of a run in which Serf never converged: nothing was killed, no time is
    measured; ``serf.converged`` is false with how far it got, and the failures its agents
    declared meanwhile (members no one killed) are its false positives."""
    return {
        "mode": "serf",
        "nodes": cluster.nodes,
        "fanout": None,
        "depth": None,
        "victim": None,
        "victim_role": victim_role,
        "kill_at_ms": None,
        "detect_ms": None,
        "notify_p50_ms": None,
        "notify_p99_ms": None,
        "notify_max_ms": None,
        "notified": 0,
        "survivors": cluster.nodes - 1,
        "reelect_ms": None,
        "groups_disturbed": None,
        "elections_elsewhere": None,
        "false_positives": cluster.false_failures("", 0),
        "msgs_per_node_per_s": None,
        "bytes_per_node_per_s": None,
        "cpu_cores": None,
        "seed": seed,
        "version": f"serf {serf_version(cluster.binary)}",
        "serf": {
            "converged": False,
            "converged_agents": why.done,
            "converge_timeout_s": why.timeout_s,
            "gave_up_ms": round((time.monotonic_ns() - started) / MS, 1),
            "false_positives_from": "agent start (never converged)",
            "notify_ms": [],
        },
    }
