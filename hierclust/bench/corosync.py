"""Corosync 3 + votequorum on lab hosts: the incumbent, measured beside hierclust.

One ``corosync -f`` per lab host (:class:`~hierclust.runtime.netns.NetnsLab`), each with a
configuration of its own: the knet transport, a nodelist whose ``ring0_addr`` are the lab's
addresses (each instance finds its own node by the one address its namespace holds), the
``corosync_votequorum`` provider, and Corosync's *default* totem timings (token 3000 ms plus
``token_coefficient`` 650 ms per node past two; consensus 1.2 times that), read back from
``corosync-cmapctl`` and reported.

Why each piece looks the way it does:

* **one instance per host.** Corosync locks ``/var/run/corosync.pid`` (a path built in, no option
  moves it), so every instance starts in a private mount namespace with a directory of its own
  bound over ``/run``; its ``state_dir`` (ring ids, blackbox) is its own too. The client tools
  (``corosync-quorumtool``, ``corosync-cmapctl``) reach their instance through libqb's abstract
  unix sockets, which belong to the network namespace: run on a host, they talk to that host's
  instance and no other.
* **what a node knows, when.** Every instance logs to stderr, read by one thread that stamps each
  line with this box's ``time.monotonic_ns()`` as it arrives (never a host's clock, so hosts
  with clocks days apart compare). Two lines matter: ``[QUORUM] Members[k]: ids`` (the membership
  the quorum service just delivered to its clients) and ``This node is within the (non-)primary
  component`` (votequorum's verdict). A line is written when Corosync delivers the change, so its
  arrival is the moment a client of that host could act; :meth:`CorosyncLab.status` polls
  ``corosync-quorumtool -s`` on a host to confirm the state the log says, and runs' reports carry
  both.
* **process priority.** ``sched_rr`` stays at its default (Corosync asks for real-time round
  robin); ``move_to_root_cgroup: no`` keeps the instances in this box's cgroup instead of
  escaping to the root one.

Every process started here is stopped by PID (SIGTERM, then SIGKILL after 5 s).
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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hierclust.bench.procio import pump_lines
from hierclust.runtime.netns import NetnsLab

PROGRAMS = ("corosync", "corosync-quorumtool", "corosync-cmapctl")
MEMBERS_RE = re.compile(rb"\[QUORUM\] Members\[\d+\]:((?: \d+)*)")
PRIMARY_RE = re.compile(rb"This node is within the (non-)?primary component")
Progress = Callable[[str, float, float], None]


class CorosyncError(RuntimeError):
    """Corosync could not start or did not reach the state asked for in time; one line."""


def skip_reason() -> str | None:
    """Why Corosync cannot run here (None when it can)."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return f"{', '.join(missing)} not found; install corosync (apt-get install -y corosync)"
    return None


def corosync_version() -> str:
    try:
        done = subprocess.run(["corosync", "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    found = re.search(r"version '([^']+)'", done.stdout)
    return found.group(1) if found else "unknown"


def config_text(lab: NetnsLab, hosts: Iterable[int], directory: Path) -> str:
    """One host's ``corosync.conf``: every host of ``hosts`` in the nodelist (node id = host
    + 1), default totem timings, votequorum, logs to stderr."""
    nodes = "".join(
        f"  node {{\n    ring0_addr: {lab.address(h)}\n    name: h{h + 1}\n"
        f"    nodeid: {h + 1}\n  }}\n"
        for h in hosts
    )
    return (
        "totem {\n  version: 2\n  cluster_name: hclab\n  transport: knet\n"
        "  crypto_cipher: none\n  crypto_hash: none\n}\n"
        f"nodelist {{\n{nodes}}}\n"
        "quorum {\n  provider: corosync_votequorum\n}\n"
        "logging {\n  to_stderr: yes\n  to_syslog: no\n  to_logfile: no\n  timestamp: hires\n}\n"
        f"system {{\n  state_dir: {directory / 'state'}\n  move_to_root_cgroup: no\n}}\n"
    )


@dataclass
class HostLog:
    """What one instance said, each fact stamped on arrival with this box's monotonic clock:
    ``(t_ns, members)`` and ``(t_ns, quorate)`` in order."""

    members: list[tuple[int, frozenset[int]]] = field(default_factory=list)
    quorate: list[tuple[int, bool]] = field(default_factory=list)
    lines: list[tuple[int, str]] = field(default_factory=list)

    def feed(self, line: bytes, t_ns: int) -> None:
        if m := MEMBERS_RE.search(line):
            self.members.append((t_ns, frozenset(int(x) for x in m.group(1).split())))
        elif m := PRIMARY_RE.search(line):
            self.quorate.append((t_ns, m.group(1) is None))
        if b"[QUORUM]" in line or b"[TOTEM ]" in line or b"[MAIN  ]" in line:
            self.lines.append((t_ns, line.decode(errors="replace").strip()))


def state_at(log: HostLog, t_ns: int) -> tuple[frozenset[int], bool]:
    """The host's membership and quorum as its log stood at ``t_ns``."""
    members = frozenset[int]()
    quorate = False
    for t, m in log.members:
        if t <= t_ns:
            members = m
    for t, q in log.quorate:
        if t <= t_ns:
            quorate = q
    return members, quorate


def first_state(
    log: HostLog, since_ns: int, members: Callable[[frozenset[int]], bool], quorate: bool | None
) -> int | None:
    """The first instant at or after ``since_ns`` at which the host's logged membership passes
    ``members`` and (unless None) its quorum is ``quorate``; None if never."""
    moments = sorted({t for t, _ in log.members} | {t for t, _ in log.quorate} | {since_ns})
    for t in moments:
        if t < since_ns:
            continue
        m, q = state_at(log, t)
        if members(m) and (quorate is None or q == quorate):
            return t
    return None


def parse_quorumtool(text: str) -> dict[str, Any]:
    """``corosync-quorumtool -s`` output: quorate, flags, member node ids, ring id."""
    out: dict[str, Any] = {"quorate": None, "flags": [], "members": [], "ring_id": None}
    in_members = False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "Quorate":
            out["quorate"] = value == "Yes"
        elif key == "Flags":
            out["flags"] = value.split()
        elif key == "Ring ID":
            out["ring_id"] = value
        elif line.strip().startswith("Nodeid"):
            in_members = True
        elif in_members and line.split() and line.split()[0].isdigit():
            out["members"].append(int(line.split()[0]))
    out["blocked"] = out["quorate"] is False  # votequorum blocks activity without quorum
    return out


@dataclass
class Instance:
    host: int
    directory: Path
    process: subprocess.Popen[bytes]
    log: HostLog = field(default_factory=HostLog)


class CorosyncLab:
    """Corosync on ``hosts`` of ``lab`` (all of them by default), in ``directory``. A context
    manager: it always stops what it started."""

    def __init__(self, lab: NetnsLab, directory: Path, hosts: Iterable[int] | None = None) -> None:
        reason = skip_reason()
        if reason is not None:
            raise CorosyncError(reason)
        self.lab = lab
        self.directory = directory
        self.hosts = sorted(range(len(lab.host_ns)) if hosts is None else set(hosts))
        self.instances: dict[int, Instance] = {}
        self.lock = threading.Lock()
        self.selector = selectors.DefaultSelector()
        self.stopping = threading.Event()
        self.reader: threading.Thread | None = None

    def __enter__(self) -> CorosyncLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def node_id(host: int) -> int:
        return host + 1

    def start(self, progress: Progress | None = None) -> None:
        for i, host in enumerate(self.hosts):
            where = self.directory / f"h{host + 1}"
            for sub in ("run", "state"):
                (where / sub).mkdir(parents=True, exist_ok=True)
            conf = where / "corosync.conf"
            conf.write_text(config_text(self.lab, self.hosts, where))
            script = f"mount --bind {where / 'run'} /run && exec corosync -f -c {conf}"
            process = self.lab.popen(
                host,
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            instance = Instance(host, where, process)
            self.instances[host] = instance
            assert process.stdout is not None
            os.set_blocking(process.stdout.fileno(), False)
            self.selector.register(process.stdout, selectors.EVENT_READ, instance)
            if progress is not None:
                progress("starting corosync", i + 1, len(self.hosts))
        self.reader = threading.Thread(target=self._read, name="corosync-logs", daemon=True)
        self.reader.start()

    def _read(self) -> None:
        pump_lines(self.selector, self.stopping, self.lock)

    def close(self) -> None:
        """SIGTERM every instance by PID, SIGKILL what is left after 5 s."""
        for inst in self.instances.values():
            if inst.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(inst.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for inst in self.instances.values():
            try:
                inst.process.wait(timeout=max(0.01, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(inst.process.pid, signal.SIGKILL)
                inst.process.wait(timeout=5)
        self.stopping.set()
        if self.reader is not None:
            self.reader.join(timeout=2)
            self.reader = None
        for inst in self.instances.values():
            if inst.process.stdout is not None:
                inst.process.stdout.close()
        with contextlib.suppress(Exception):
            self.selector.close()

    # -- observing ---------------------------------------------------------------------------------
    def logs(self) -> dict[int, HostLog]:
        """Every instance's log by host: a copy, safe to read while the reader runs."""
        with self.lock:
            return {
                h: HostLog(list(i.log.members), list(i.log.quorate), list(i.log.lines))
                for h, i in self.instances.items()
            }

    def status(self, host: int) -> dict[str, Any]:
        """``corosync-quorumtool -s`` run on ``host``: its instance's quorum and membership."""
        try:
            done = self.lab.run_on(host, ["corosync-quorumtool", "-s"], timeout_s=30)
        except subprocess.TimeoutExpired:
            # a box loaded far past its cores can take that long to start a program: the poll
            # is a cross-check of the log, so say it failed instead of ending the run
            return {**parse_quorumtool(""), "exit": None, "error": "no answer within 30 s"}
        status = parse_quorumtool(done.stdout)
        status["exit"] = done.returncode  # 0 quorate, 2 not quorate, 1 error
        return status

    def totem(self, host: int) -> dict[str, int]:
        """The running totem timings of ``host``'s instance (``corosync-cmapctl``), ms."""
        done = self.lab.run_on(host, ["corosync-cmapctl", "runtime.config.totem"], timeout_s=10)
        found: dict[str, int] = {}
        for line in done.stdout.splitlines():
            key, _, value = line.partition("=")
            name = key.split("(")[0].strip().removeprefix("runtime.config.totem.")
            if name in ("token", "consensus", "join", "merge", "token_retransmit"):
                found[name] = int(value.strip())
        return found

    def check_running(self) -> None:
        for inst in self.instances.values():
            if inst.process.poll() is not None:
                tail = " / ".join(line for _, line in inst.log.lines[-3:])
                raise CorosyncError(
                    f"corosync on {self.lab.address(inst.host)} exited "
                    f"({inst.process.returncode}): {tail}"
                )

    def wait_state(
        self,
        hosts: Iterable[int],
        members: Callable[[frozenset[int]], bool],
        quorate: bool | None,
        since_ns: int,
        timeout_s: float,
        what: str,
        progress: Progress | None = None,
    ) -> dict[int, int]:
        """Wait until every host of ``hosts`` has logged, at or after ``since_ns``, a state
        passing ``members`` and ``quorate``; host -> the first such instant. On timeout, the
        hosts that got there (the caller decides whether that is an error)."""
        wanted = sorted(hosts)
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_running()
            logs = self.logs()
            reached: dict[int, int] = {}
            for h in wanted:
                t = first_state(logs[h], since_ns, members, quorate)
                if t is not None:
                    reached[h] = t
            if progress is not None:
                progress(f"corosync: {what}", len(reached), len(wanted))
            if len(reached) == len(wanted) or time.monotonic() > deadline:
                return reached
            time.sleep(0.05)

    def wait_formed(self, timeout_s: float = 120.0, progress: Progress | None = None) -> float:
        """Wait until every instance logs one membership of every host, quorate; seconds."""
        start = time.monotonic()
        everyone = frozenset(self.node_id(h) for h in self.hosts)
        got = self.wait_state(
            self.hosts, lambda m: m == everyone, True, 0, timeout_s, "membership of all", progress
        )
        if len(got) < len(self.hosts):
            raise CorosyncError(
                f"corosync: only {len(got)} of {len(self.hosts)} instances saw all "
                f"{len(self.hosts)} members, quorate, within {timeout_s:.0f} s"
            )
        polled = self.status(self.hosts[0])
        if sorted(polled["members"]) != sorted(everyone) or not polled["quorate"]:
            raise CorosyncError(f"corosync-quorumtool on h{self.hosts[0] + 1}: {polled}")
        return time.monotonic() - start
