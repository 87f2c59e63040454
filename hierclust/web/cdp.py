"""A small driver of headless Chromium over the DevTools protocol (the browser tests, the
screenshots in docs/web/).

Chromium is started with ``--remote-debugging-port=0`` and a fresh ``--user-data-dir``; it picks
a free port and writes it, with the browser's WebSocket path, to ``DevToolsActivePort`` in that
directory. The driver opens one page target over an aiohttp WebSocket and sends commands
(``Runtime.evaluate``, ``Page.navigate``, ``Page.captureScreenshot``), each with a timeout. It
ends the browser by its PID (SIGTERM, then SIGKILL) and removes the directory.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
START_TIMEOUT_S = 20.0
COMMAND_TIMEOUT_S = 10.0


class BrowserError(RuntimeError):
    """Chromium could not be started, or a command failed or timed out."""


def find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path is not None:
            return path
    return None


class Chromium:
    """One headless browser with one page: ``async with Chromium() as browser: ...``."""

    def __init__(self, executable: str | None = None, width: int = 1280, height: int = 900) -> None:
        self.executable = executable or find_chromium()
        self.width, self.height = width, height
        self.process: subprocess.Popen[bytes] | None = None
        self.profile: Path | None = None
        self.session: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.reader: asyncio.Task[None] | None = None
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.events: list[dict[str, Any]] = []
        self.event_seen = asyncio.Event()
        self.next_id = 0

    async def __aenter__(self) -> Chromium:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self.executable is None:
            raise BrowserError(f"no Chromium found (looked for {', '.join(CHROMIUM_NAMES)})")
        self.profile = Path(tempfile.mkdtemp(prefix="hierclust-chromium-"))
        args = [
            self.executable,
            "--headless",
            "--remote-debugging-port=0",
            f"--user-data-dir={self.profile}",
            f"--window-size={self.width},{self.height}",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-gpu",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--mute-audio",
            "about:blank",
        ]
        if os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run its sandbox as root
        log = self.profile / "chromium.log"
        with open(log, "wb") as stderr:  # a file, not a pipe: Chromium talks a lot
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,  # its helpers (renderer, zygote) share its group
            )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not port_file.exists() or len(port_file.read_text().splitlines()) < 2:
            if self.process.poll() is not None:
                said = log.read_text(errors="replace")[-500:]
                await self.close()
                raise BrowserError(f"{self.executable} exited at start: {said}")
            if time.monotonic() > deadline:
                await self.close()
                raise BrowserError(
                    f"{self.executable}: no DevToolsActivePort after {START_TIMEOUT_S} s"
                )
            await asyncio.sleep(0.05)
        port = int(port_file.read_text().splitlines()[0])
        timeout = aiohttp.ClientTimeout(total=COMMAND_TIMEOUT_S)
        self.session = aiohttp.ClientSession(timeout=timeout)
        async with self.session.get(f"http://127.0.0.1:{port}/json/list") as answer:
            targets = await answer.json()
        pages = [t for t in targets if t.get("type") == "page"]
        if not pages:
            raise BrowserError("Chromium shows no page target")
        self.ws = await self.session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        self.reader = asyncio.get_running_loop().create_task(self._read())
        await self.send("Page.enable")
        await self.send("Runtime.enable")

    async def _read(self) -> None:
        assert self.ws is not None
        async for message in self.ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            future = self.pending.pop(data.get("id", -1), None)
            if future is not None and not future.done():
                future.set_result(data)
            elif "method" in data:
                self.events.append(data)
                self.event_seen.set()
        for future in self.pending.values():
            if not future.done():
                future.set_exception(BrowserError("the DevTools connection closed"))

    async def send(self, method: str, timeout_s: float = COMMAND_TIMEOUT_S, **params: Any) -> Any:
        """One DevTools command; its ``result``, or :class:`BrowserError`."""
        if self.ws is None:
            raise BrowserError("the browser is not started")
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_str(json.dumps({"id": self.next_id, "method": method, "params": params}))
        try:
            answer = await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise BrowserError(f"{method}: no answer within {timeout_s} s") from None
        finally:
            self.pending.pop(self.next_id, None)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')}")
        return answer.get("result", {})

    async def navigate(self, url: str, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        """Open ``url`` and wait for its load event."""
        self.events.clear()
        await self.send("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        while not any(e["method"] == "Page.loadEventFired" for e in self.events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"{url}: not loaded within {timeout_s} s")
            self.event_seen.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.event_seen.wait(), left)

    async def evaluate(self, expression: str, timeout_s: float = COMMAND_TIMEOUT_S) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = await self.send(
            "Runtime.evaluate",
            timeout_s,
            expression=expression,
            returnByValue=True,
            awaitPromise=True,
        )
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise BrowserError(f"{expression[:60]}: {text}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float, every_s: float = 0.05) -> float:
        """Seconds until ``expression`` is truthy in the page; :class:`BrowserError` with the
        expression if it is not within ``timeout_s``."""
        start = time.monotonic()
        while True:
            if await self.evaluate(expression):
                return time.monotonic() - start
            if time.monotonic() - start > timeout_s:
                raise BrowserError(f"not true within {timeout_s} s: {expression}")
            await asyncio.sleep(every_s)

    async def screenshot(self, path: Path, full_page: bool = True) -> Path:
        """A PNG of the page (the whole document, not just the window, with ``full_page``)."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = await self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params["clip"] = {
                "x": 0,
                "y": 0,
                "width": max(self.width, int(size["width"])),
                "height": int(size["height"]),
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        result = await self.send("Page.captureScreenshot", **params)
        path.write_bytes(base64.b64decode(result["data"]))
        return path

    async def close(self) -> None:
        """Close the connection, end the browser by its PID, remove its profile."""
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader
            self.reader = None
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await self.ws.close()
            self.ws = None
        if self.session is not None:
            await self.session.close()
            self.session = None
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
            try:
                await asyncio.to_thread(process.wait, 5)
            except subprocess.TimeoutExpired:
                # the browser's own process group (start_new_session): it and its helpers
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await asyncio.to_thread(process.wait, 5)
        self.process = None
        if self.profile is not None:
            for _ in range(20):  # a helper that outlived the browser may still be writing
                shutil.rmtree(self.profile, ignore_errors=True)
                if not self.profile.exists():
                    break
                await asyncio.sleep(0.05)
            self.profile = None
