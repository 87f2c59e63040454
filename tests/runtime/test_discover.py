"""Finding hierclust processes, their state directories and the holder of a UDP port, from a
/proc tree written by hand."""

from __future__ import annotations

import os
from pathlib import Path

from hierclust.runtime.discover import (
    default_state_dir,
    live_elsewhere,
    live_state_dirs,
    role_of,
    state_dir_of,
    udp_port_owner,
)

UDP_HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n"


def fake_process(
    proc: Path,
    pid: int,
    argv: list[str],
    cwd: Path,
    env: str = "",
    fds: dict[int, str] | None = None,
) -> None:
    entry = proc / str(pid)
    (entry / "fd").mkdir(parents=True)
    (entry / "cmdline").write_bytes("\0".join(argv).encode() + b"\0")
    (entry / "environ").write_bytes(env.encode())
    os.symlink(cwd, entry / "cwd")
    for fd, target in (fds or {}).items():
        os.symlink(target, entry / "fd" / str(fd))


def test_roles_from_command_lines() -> None:
    assert (
        role_of(["/usr/bin/python3", "-m", "hierclust.runtime.worker", "--worker", "w0"])
        == "worker"
    )
    assert role_of(["python", "-m", "hierclust", "agent", "--node", "cn1"]) == "agent"
    assert role_of(["/opt/py/bin/python", "/opt/py/bin/hierclust", "witness"]) == "witness"
    assert role_of(["python", "-m", "hierclust", "stop", "--state-dir", "/x"]) is None
    assert role_of(["sh", "-c", "setsid python -m hierclust agent &"]) is None


def test_state_dir_from_the_option_the_environment_or_the_default() -> None:
    cwd = Path("/home/op")
    assert state_dir_of(["x", "--state-dir", "/var/hc"], {}, 0, cwd) == Path("/var/hc")
    assert state_dir_of(["x", "--state-dir=rel"], {}, 0, cwd) == Path("/home/op/rel")
    assert state_dir_of(["x"], {"HIERCLUST_STATE_DIR": "/e"}, 0, cwd) == Path("/e")
    assert state_dir_of(["x"], {}, 1234, cwd) == Path("/tmp/hierclust-1234")
    assert default_state_dir({}, 7) == Path("/tmp/hierclust-7")


def test_live_state_dirs_and_the_holder_of_a_port(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "net").mkdir(parents=True)
    (proc / "net" / "udp").write_text(
        UDP_HEADER
        + "  1: 0100007F:4268 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 555 2 0 0\n"
        + "  2: 0100007F:4269 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 0 0\n"
    )
    worker = ["python", "-m", "hierclust.runtime.worker", "--state-dir", "/srv/a", "--worker", "w0"]
    fake_process(proc, 101, worker, tmp_path, fds={3: "socket:[555]", 4: "/dev/null"})
    agent = ["python", "-m", "hierclust", "agent", "--node", "cn1"]
    fake_process(proc, 102, agent, tmp_path, env="HIERCLUST_STATE_DIR=/srv/b\0")
    fake_process(proc, 103, ["python", "-m", "http.server"], tmp_path, fds={3: "socket:[777]"})
    assert live_state_dirs(proc) == {Path("/srv/a"): [101], Path("/srv/b"): [102]}
    owner = udp_port_owner(0x4268, proc)
    assert owner is not None and (owner.pid, owner.state_dir, owner.role) == (
        101,
        Path("/srv/a"),
        "worker",
    )
    assert udp_port_owner(0x4269, proc) is None, "held, but not by hierclust"
    assert udp_port_owner(9, proc) is None


def test_other_live_state_dirs_are_named_newest_first(tmp_path: Path) -> None:
    # a hint names only the first few: the deployment started last is the likeliest meant
    proc = tmp_path / "proc"
    agent = ["python", "-m", "hierclust", "agent", "--node", "cn1", "--state-dir"]
    for pid, where, started in (
        (201, "/srv/old", 1000),
        (202, "/srv/new", 9000),
        (203, "/srv/mid", 5000),
    ):
        fake_process(proc, pid, [*agent, where], tmp_path)
        fields = ["S", "1"] + ["0"] * 17 + [str(started), "0"]
        (proc / str(pid) / "stat").write_text(f"{pid} (python (x)) {' '.join(fields)}\n")
    assert live_elsewhere(Path("/srv/mid"), proc) == ["/srv/new", "/srv/old"]
    assert live_elsewhere(Path("/elsewhere"), proc) == ["/srv/new", "/srv/mid", "/srv/old"]
