"""Which hierclust processes run on this host, in which state directory, and who holds a port.

Owns the default state directory and the answers to "is anything of ours running, and where?",
so an operator who points a command at the wrong ``--state-dir`` is told where the live
deployments are, and a port clash names the deployment that holds the port. Read from ``/proc``
(Linux); elsewhere every lookup finds nothing. Never signals or touches a process.

A hierclust process is a deploy worker (``python -m hierclust.runtime.worker ... --state-dir
DIR``) or a foreground ``hierclust agent``/``witness`` (``--state-dir DIR``, or the default state
directory of that process's environment).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
FOREGROUND_COMMANDS = ("agent", "witness")


def default_state_dir(env: Mapping[str, str] | None = None, uid: int | None = None) -> Path:
    """``$HIERCLUST_STATE_DIR``, else ``/tmp/hierclust-UID`` (of this process by default)."""
    env = os.environ if env is None else env
    found = env.get("HIERCLUST_STATE_DIR")
    if found:
        return Path(found)
    return Path(f"/tmp/hierclust-{os.getuid() if uid is None else uid}")


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


@dataclass(frozen=True, slots=True)
class HierclustProcess:
    pid: int
    state_dir: Path
    role: str  # "worker" (started by deploy), "agent" or "witness"


def role_of(argv: list[str]) -> str | None:
    """``worker``, ``agent`` or ``witness`` for a hierclust process's command line, else None."""
    for i, arg in enumerate(argv[:4]):
        if arg == "hierclust.runtime.worker" and i > 0 and argv[i - 1] == "-m":
            return "worker"
        program = (arg == "hierclust" and i > 0 and argv[i - 1] == "-m") or (
            Path(arg).name == "hierclust" and not arg.startswith("-")
        )
        if program and i + 1 < len(argv) and argv[i + 1] in FOREGROUND_COMMANDS:
            return argv[i + 1]
    return None


def state_dir_of(argv: list[str], env: Mapping[str, str], uid: int, cwd: Path | None) -> Path:
    """The ``--state-dir`` of a command line (``%h`` already replaced by the launcher), made
    absolute against the process's working directory, or that process's default."""
    for i, arg in enumerate(argv):
        value: str | None = None
        if arg == "--state-dir" and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--state-dir="):
            value = arg.split("=", 1)[1]
        if value is not None:
            path = Path(value)
            return path if path.is_absolute() or cwd is None else cwd / path
    return default_state_dir(env, uid)


def processes(proc: Path = PROC) -> Iterator[HierclustProcess]:
    """Every hierclust worker, agent and witness process this user can see (not this one)."""
    own = os.getpid()
    try:
        entries = list(proc.iterdir())
    except OSError:
        return
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        role = role_of(argv)
        if role is None:
            continue
        try:
            uid = entry.stat().st_uid
        except OSError:
            continue
        env: dict[str, str] = {}
        cwd: Path | None = None
        try:
            for item in (entry / "environ").read_bytes().decode(errors="replace").split("\0"):
                key, _, value = item.partition("=")
                env[key] = value
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            pass
        state_dir = state_dir_of(argv, env, uid, cwd)
        yield HierclustProcess(int(entry.name), Path(os.path.normpath(state_dir)), role)


def live_elsewhere(state_dir: Path, proc: Path = PROC) -> list[str]:
    """The state directories other than ``state_dir`` with live hierclust processes (what an
    error about a directory without a deployment points to), the most recently started first:
    the one just deployed is the likeliest meant, and hints name only the first few."""
    here = Path(state_dir).resolve()
    found = [(d, pids) for d, pids in live_state_dirs(proc).items() if d.resolve() != here]
    found.sort(key=lambda item: max(_started(pid, proc) for pid in item[1]), reverse=True)
    return [str(d) for d, _ in found]


def _started(pid: int, proc: Path) -> int:
    """When process ``pid`` started, in clock ticks after boot (0 when it cannot be read)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return 0
    # the command name (field 2) may hold spaces and parentheses: count from the last ")"
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 and fields[19].isdigit() else 0


def live_state_dirs(proc: Path = PROC) -> dict[Path, list[int]]:
    """State directory -> PIDs of the hierclust processes running in it."""
    found: dict[Path, list[int]] = {}
    for p in processes(proc):
        found.setdefault(p.state_dir, []).append(p.pid)
    return {d: sorted(pids) for d, pids in sorted(found.items())}


def _udp_inodes(port: int, proc: Path) -> set[str]:
    """Inodes of the UDP sockets bound to ``port`` (any address) in this network namespace."""
    inodes: set[str] = set()
    for table in ("udp", "udp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def udp_port_owner(port: int, proc: Path = PROC) -> HierclustProcess | None:
    """The hierclust process holding UDP ``port``, if one does (only hierclust processes are
    searched, so this stays cheap on a busy host)."""
    inodes = _udp_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for p in processes(proc):
        fds = proc / str(p.pid) / "fd"
        try:
            names = os.listdir(fds)
        except OSError:
            continue
        for fd in names:
            try:
                if os.readlink(fds / fd) in wanted:
                    return p
            except OSError:  # closed meanwhile
                continue
    return None
