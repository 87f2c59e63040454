"""``hierclust web`` refuses bad input with one line and exit 2 before serving anything."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hierclust.cli import app
from tests.runtime.test_status import demo

runner = CliRunner()


def test_missing_state_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["web", "--state-dir", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "none: no such state directory" in result.stderr


def test_empty_state_dir(tmp_path: Path) -> None:
    result = runner.invoke(app, ["web", "--state-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no worker answers here" in result.stderr


@pytest.mark.parametrize("host", ["0.0.0.0", "10.245.0.1", "::"])
def test_beyond_loopback_needs_a_token(tmp_path: Path, host: str) -> None:
    result = runner.invoke(app, ["web", "--state-dir", str(tmp_path), "--host", host])
    assert result.exit_code == 2
    assert f"--host {host}: listening beyond loopback needs --token" in result.stderr


def test_empty_token(tmp_path: Path) -> None:
    result = runner.invoke(app, ["web", "--state-dir", str(tmp_path), "--token", " "])
    assert result.exit_code == 2 and "--token: empty" in result.stderr


def test_port_in_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    topology = demo()

    def live(*_args: Any) -> tuple[Path, Any, list[Any], list[str]]:
        return tmp_path, topology, [{}], []

    monkeypatch.setattr("hierclust.cli.web.live", live)
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    try:
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["web", "--state-dir", str(tmp_path), "--port", str(port)])
    finally:
        busy.close()
    assert result.exit_code == 2
    assert f"127.0.0.1:{port}: port in use" in result.stderr and "--port" in result.stderr
