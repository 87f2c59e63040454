"""Helpers of the browser tests and of the screenshot script (docs/web/shoot.py): a deployment
of topologies/demo.toml on free ports, ``hierclust web`` in front of it, both ended by PID."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hierclust.runtime.transport import free_udp_base

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "topologies" / "demo.toml"


def hierclust(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hierclust", *args], capture_output=True, text=True, timeout=timeout
    )


def demo_on_free_ports(directory: Path) -> Path:
    """topologies/demo.toml as shipped, but for its base port: a free one (never 17000)."""
    text = DEMO.read_text()
    base = free_udp_base(63)
    moved, count = re.subn(r"(?m)^base_port = \d+", f"base_port = {base}", text)
    assert count == 1, "topologies/demo.toml has no base_port line"
    path = directory / "demo.toml"
    path.write_text(moved)
    return path


@dataclass
class Site:
    state_dir: Path
    url: str
    web: subprocess.Popen[str]

    def run(self, *args: str) -> dict[str, Any]:
        """A hierclust command on this deployment, its JSON answer (it must succeed)."""
        done = hierclust(*args, "--state-dir", str(self.state_dir), "--json")
        assert done.returncode == 0, f"hierclust {' '.join(args)}: {done.stderr}"
        answer: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
        return answer


def start_web(
    state_dir: Path, *extra: str, timeout_s: float = 20.0
) -> tuple[subprocess.Popen[str], str]:
    """``hierclust web --port 0 --json`` and the URL it prints once it listens."""
    web = subprocess.Popen(
        [sys.executable, "-m", "hierclust", "web", "--state-dir", str(state_dir), "--port", "0",
         "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert web.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(web.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout_s)
    except queue.Empty:
        line = ""
    if not line:
        end(web)
        raise RuntimeError(f"hierclust web printed no URL within {timeout_s} s")
    return web, str(json.loads(line)["url"])


def end(process: subprocess.Popen[str]) -> None:
    """End a process this module started, by its PID."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
    for stream in (process.stdout, process.stderr):
        if stream is not None:
            stream.close()


@contextlib.contextmanager
def demo_site(*web_args: str) -> Iterator[Site]:
    """A running demo deployment in a fresh state directory with ``hierclust web`` serving it;
    both stopped at the end (the workers by ``hierclust stop``, which ends them by PID)."""
    with tempfile.TemporaryDirectory(prefix="hcweb-") as tmp:
        directory = Path(tmp)
        state_dir = directory / "state"
        topology = demo_on_free_ports(directory)
        deployed = hierclust("deploy", str(topology), "--state-dir", str(state_dir), "--json")
        web: subprocess.Popen[str] | None = None
        try:
            assert deployed.returncode == 0, f"deploy: {deployed.stderr}"
            web, url = start_web(state_dir, *web_args)
            yield Site(state_dir, url, web)
        finally:
            if web is not None:
                end(web)
            hierclust("stop", "--state-dir", str(state_dir), "--json")
