"""Local interfaces are their owner's alone: control socket mode and peer check, state directory
mode. (The keyring file's mode is checked in tests/codec/test_codec_keyring.py.)"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from hierclust.runtime.control import ControlServer, peer_refused, peer_uid
from hierclust.runtime.state import make_state_dir

NOBODY = 65534
CLIENT = """
import json, os, socket, sys
os.setgid({uid}); os.setuid({uid})
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
try:
    s.connect(sys.argv[1])
except OSError as exc:
    print(json.dumps({{"connect": exc.strerror}})); sys.exit(0)
try:
    s.sendall(b'{{"op": "status"}}\\n')
except BrokenPipeError:
    pass  # refused and closed before the request: its answer is still there to read
s.settimeout(5)
print(s.recv(65536).decode().strip() or json.dumps({{"closed": True}}))
"""


class FakeHost:
    """What the control server asks of a host for ``status``."""

    api: Any = None

    def snapshot(self) -> dict[str, Any]:
        return {"nodes": []}


def as_user(uid: int, path: Path) -> dict[str, Any]:
    """Ask ``status`` on ``path`` from a process running as ``uid``; what it got."""
    done = subprocess.run(
        [sys.executable, "-c", CLIENT.format(uid=uid), str(path)],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@pytest.fixture
def open_dir() -> Any:
    """A directory every user can enter (pytest's tmp_path is private to us)."""
    with tempfile.TemporaryDirectory(prefix="hcaccess-", dir="/tmp") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def serve_and(path: Path, action: Any) -> Any:
    async def main() -> Any:
        server = ControlServer(FakeHost(), path)  # type: ignore[arg-type]
        await server.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, action)
        finally:
            await server.close()

    return asyncio.run(main())


def test_control_socket_is_mode_0600_and_answers_its_owner(open_dir: Path) -> None:
    path = open_dir / "w0.sock"

    def check() -> dict[str, Any]:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(path))
            assert peer_uid(s) == os.geteuid()
            s.sendall(b'{"op": "status"}\n')
            return json.loads(s.recv(65536))  # type: ignore[no-any-return]

    old = os.umask(0)  # even with a permissive umask the socket ends up private
    try:
        answer = serve_and(path, check)
    finally:
        os.umask(old)
    assert answer == {"ok": True, "nodes": []}


needs_root = pytest.mark.skipif(
    os.geteuid() != 0, reason="running a client as another user needs root"
)


@needs_root
def test_another_user_cannot_connect_to_the_socket(open_dir: Path) -> None:
    got = serve_and(open_dir / "w0.sock", lambda: as_user(NOBODY, open_dir / "w0.sock"))
    assert got == {"connect": "Permission denied"}


@needs_root
def test_another_user_is_refused_by_peer_credentials_even_on_an_open_socket(
    open_dir: Path,
) -> None:
    """The second lock: with the socket file opened up (the moment between bind and chmod, or a
    mistake), a process of another user connects but gets one refusal and no answer."""
    path = open_dir / "w0.sock"

    def attack() -> dict[str, Any]:
        os.chmod(path, 0o777)
        return as_user(NOBODY, path)

    got = serve_and(path, attack)
    assert got == {
        "ok": False,
        "error": f"refused: the control socket serves user id {os.geteuid()} only (and root); "
        f"this connection is from user id {NOBODY}",
    }


def test_peer_refused_allows_the_owner_and_root_only() -> None:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        me = os.geteuid()
        assert peer_refused(a) is None
        other = me + 1 if me != 0 else 4242
        if me == 0:  # root may always connect: nothing else to check from this side
            assert peer_refused(a, own_uid=other) is None
        else:
            assert f"from user id {me}" in str(peer_refused(a, own_uid=other))


def test_state_directory_created_private_existing_left_alone(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        made = make_state_dir(tmp_path / "a" / "state")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(made).st_mode) == 0o700
    existing = tmp_path / "ops"
    existing.mkdir(mode=0o750)
    existing.chmod(0o750)
    make_state_dir(existing)
    assert stat.S_IMODE(os.stat(existing).st_mode) == 0o750


def test_deploy_creates_a_private_state_directory(tmp_path: Path) -> None:
    """`hierclust deploy` into a new directory (one node, stopped at once)."""
    import tomli_w

    from hierclust.runtime.deploy import deploy, stop
    from hierclust.topology import generate_document, load
    from tests.runtime.conftest import free_base_port

    path = tmp_path / "t.toml"
    path.write_text(tomli_w.dumps(generate_document(1, 2, base_port=free_base_port(1), name="t")))
    state_dir = tmp_path / "new" / "state"
    _, children = deploy(load(path), path, state_dir, 1)
    try:
        assert stat.S_IMODE(os.stat(state_dir).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(state_dir / "keyring.toml").st_mode) == 0o600
    finally:
        stop(state_dir)
        for child in children:
            child.wait(10)
