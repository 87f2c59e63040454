"""The web view's server: one page, its script, a JSON API and a WebSocket of live updates.

aiohttp serves it: one well-kept library that is at once an HTTP server, a WebSocket server
and a WebSocket client (the browser tests drive Chromium over its DevTools WebSocket with the
same library), on the asyncio loop the rest of hierclust uses.

Routes: ``/`` (the page), ``/app.js``, ``/api/state`` (what the page draws, see
:func:`hierclust.web.model.page_state`), ``/api/spread`` (the last failure's spread),
``/api/search?q=NODESET``, ``/ws`` (``{"type": "state"|"spread"|"events", ...}`` messages,
pushed as the event logs grow and at least every second) and ``POST /api/admin``.

Who may ask:

- with a token (required by the command line when the server listens beyond loopback) every
  request carries it, as ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``; without it, 401;
- a request whose ``Origin`` is not this server's own (another web site in the operator's
  browser) gets 403, and so does one naming another host in ``Host`` while the server listens
  on loopback only (DNS rebinding);
- ``POST /api/admin`` is refused with 403 unless the server was started with ``allow_admin``;
  even then it takes only the operations of :mod:`hierclust.web.actions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import html
import json
import time
from collections import deque
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from aiohttp import WSMsgType, web

from hierclust.topology import Topology
from hierclust.web.actions import ActionError, ActionFailed, perform
from hierclust.web.feed import Deployment, EventFiles
from hierclust.web.model import SearchError, SpreadLog, page_state, search

LOOPBACK = ("127.0.0.1", "::1", "localhost")
SHOWN_EVENTS = {
    "NoticeLearned",
    "LeaderChanged",
    "ElectionStarted",
    "QuorumChanged",
    "SubtreeUnreachable",
    "SubtreeReachable",
    "PrimaryChanged",
    "Booted",
    "Crashed",
    "Failed",
    "Stopped",
}
"""Event-log records that change the picture: they trigger a refresh and go to the page's log."""
EVENTS_KEPT = 200
SEND_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    token: str | None = None
    allow_admin: bool = False
    loopback_only: bool = True
    poll_s: float = 0.2
    refresh_s: float = 1.0


def static_file(name: str) -> bytes:
    return (resources.files("hierclust.web") / "static" / name).read_bytes()


class Live:
    """The current picture and the open WebSockets; a task reads the state directory and pushes
    what changed."""

    def __init__(self, settings: Settings, deployment: Deployment | None = None) -> None:
        self.settings = settings
        self.deployment = deployment or Deployment(settings.state_dir)
        self.files = EventFiles(settings.state_dir)
        self.spreads = SpreadLog()
        self.topology: Topology | None = None
        self.snapshots: list[dict[str, Any]] = []
        self.state: dict[str, Any] | None = None
        self.spread: dict[str, Any] | None = None
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.sockets: set[web.WebSocketResponse] = set()
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.refreshed = 0.0
        self.lock = asyncio.Lock()

    async def refresh(self) -> dict[str, Any]:
        async with self.lock:
            topology, snapshots, errors = await asyncio.to_thread(self.deployment.read)
            self.refreshed = time.monotonic()
            if topology is None:
                self.state = {"cluster": None, "down": True, "errors": errors}
            else:
                self.topology, self.snapshots = topology, snapshots
                self.state = page_state(topology, snapshots, errors)
            self.state["admin"] = self.settings.allow_admin
            self.state["read_at_ms"] = int(time.time() * 1000)
            return self.state

    async def step(self) -> None:
        """Read new log lines; while a page is open, refresh when one matters or a second has
        passed, and push (with no page open the workers are not asked: ``/api/state`` asks)."""
        records = await asyncio.to_thread(self.files.read_new)
        self.spreads.feed(records)
        shown = [r for r in records if r.get("event") in SHOWN_EVENTS]
        stale = time.monotonic() - self.refreshed >= self.settings.refresh_s
        if self.sockets and (shown or stale):
            await self.broadcast({"type": "state", "state": await self.refresh()})
        elif self.topology is None and stale:
            await self.refresh()  # the topology names the spread's nodes
        if self.spreads.changed and self.topology is not None:
            self.spreads.changed = False
            self.spread = self.spreads.last(self.topology)
            await self.broadcast({"type": "spread", "spread": self.spread})
        if shown:
            lines = [self.event_line(r) for r in shown[-EVENTS_KEPT:]]
            self.events.extend(lines)
            await self.broadcast({"type": "events", "events": lines})

    async def run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep serving; the page shows the error
                self.state = {"cluster": None, "down": True, "errors": [f"{exc!r}"]}
            await asyncio.sleep(self.settings.poll_s)

    def event_line(self, record: dict[str, Any]) -> dict[str, Any]:
        """A log record as the page lists it: local wall time, node, event, a short text."""
        topology = self.topology
        t_ns = record.get("t_ns")
        wall_ms = (t_ns + self.wall_offset_ns) // 1_000_000 if isinstance(t_ns, int) else None

        def group(index: Any) -> str:
            if topology is not None and isinstance(index, int):
                if 0 <= index < len(topology.by_index):
                    return topology.by_index[index].name
            return str(index)

        def node(rank: Any) -> str:
            if topology is not None and isinstance(rank, int) and 0 <= rank < topology.num_nodes:
                return topology.node_name(rank)
            return str(rank)

        kind = str(record.get("event"))
        text = ""
        notice = record.get("notice")
        if kind == "NoticeLearned" and isinstance(notice, dict):
            what = notice.get("kind")
            if what in ("unreachable", "reachable"):
                text = f"{what} {notice.get('group_name', group(notice.get('group')))}"
            elif what == "admin":
                text = f"admin {notice.get('mode')}"
            else:
                text = f"{what} {node(notice.get('node'))}"
            via = record.get("via")
            text += " (detected here)" if via is None else f" via {group(via)}"
        elif "group" in record:
            text = group(record.get("group"))
            if "leader" in record:
                leader = record.get("leader")
                text += f" leader {node(leader) if leader is not None else 'none'}"
            if "term" in record:
                text += f" term {record['term']}"
        elif "reason" in record:
            text = str(record.get("reason"))
        return {"wall_ms": wall_ms, "node": record.get("node"), "event": kind, "text": text}

    async def broadcast(self, message: dict[str, Any]) -> None:
        if not self.sockets:
            return
        data = json.dumps(message, separators=(",", ":"))
        for ws in list(self.sockets):
            try:
                await asyncio.wait_for(ws.send_str(data), SEND_TIMEOUT_S)
            except (ConnectionError, TimeoutError, RuntimeError):
                self.sockets.discard(ws)
                with contextlib.suppress(Exception):
                    await ws.close()


SETTINGS = web.AppKey("settings", Settings)
LIVE = web.AppKey("live", Live)


def error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def refused(request: web.Request, settings: Settings) -> web.Response | None:
    """Why ``request`` is refused (a 401/403 answer), or None."""
    if settings.token is not None:
        header = request.headers.get("Authorization", "")
        given = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        given = given or request.query.get("token", "")
        if not hmac.compare_digest(given.encode(), settings.token.encode()):
            return error(401, "this server needs its token: ?token=TOKEN or a Bearer header")
    host = request.headers.get("Host", "")
    origin = request.headers.get("Origin")
    if origin is not None and origin != "null" and urlsplit(origin).netloc != host:
        return error(403, f"cross-site request from {origin} refused")
    if settings.loopback_only:
        hostname = urlsplit(f"//{host}").hostname or ""
        if hostname not in LOOPBACK:
            return error(403, f"Host {host!r} is not this loopback server's")
    return None


@web.middleware
async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
    answer = refused(request, request.app[SETTINGS])
    if answer is not None:
        return answer
    response: web.StreamResponse = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self' "
        "'unsafe-inline'; frame-ancestors 'none'",
    )
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def index(request: web.Request) -> web.Response:
    """The page; with a token, its script's address carries it (the browser fetches it
    without the page's query string)."""
    body = static_file("index.html")
    token = request.app[SETTINGS].token
    if token is not None:
        src = html.escape("app.js?token=" + quote(token, safe=""))
        body = body.replace(b'src="app.js"', f'src="{src}"'.encode())
    return web.Response(body=body, content_type="text/html")


async def script(request: web.Request) -> web.Response:
    return web.Response(body=static_file("app.js"), content_type="text/javascript")


async def state(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    fresh = time.monotonic() - live.refreshed < live.settings.refresh_s
    return web.json_response(live.state if live.state and fresh else await live.refresh())


async def spread(request: web.Request) -> web.Response:
    return web.json_response({"spread": request.app[LIVE].spread})


async def find(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    query = request.query.get("q", "")
    if len(query) > 4096:
        return error(400, "search too long")
    topology, snapshots, errors = await asyncio.to_thread(live.deployment.read)
    if topology is None:
        return error(503, "; ".join(errors) or "no worker answers")
    try:
        rows = search(topology, snapshots, query)
    except SearchError as exc:
        return error(400, str(exc))
    return web.json_response({"query": query, "nodes": rows})


async def admin(request: web.Request) -> web.Response:
    live = request.app[LIVE]
    if not request.app[SETTINGS].allow_admin:
        return error(403, "read-only: start `hierclust web` with --allow-admin to send commands")
    if request.content_type != "application/json":
        return error(415, "send the command as application/json")
    try:
        body = await request.json()
    except ValueError:
        return error(400, 'expected a JSON object {"op": ..., "target": ...}')
    topology, snapshots, errors = await asyncio.to_thread(live.deployment.read)
    if topology is None:
        return error(503, "; ".join(errors) or "no worker answers")
    state_dir = request.app[SETTINGS].state_dir
    try:
        done = await asyncio.to_thread(perform, topology, snapshots, state_dir, body)
    except ActionError as exc:
        return error(400, str(exc))
    except ActionFailed as exc:
        return error(409, str(exc))
    return web.json_response({"ok": True, **done})


async def socket(request: web.Request) -> web.WebSocketResponse:
    live = request.app[LIVE]
    ws = web.WebSocketResponse(heartbeat=20.0)
    await ws.prepare(request)
    try:
        fresh = time.monotonic() - live.refreshed < live.settings.refresh_s
        state = live.state if live.state and fresh else await live.refresh()
        await ws.send_json({"type": "state", "state": state})
        await ws.send_json({"type": "spread", "spread": live.spread})
        await ws.send_json({"type": "events", "events": list(live.events)})
        live.sockets.add(ws)  # broadcasts from now on: the first three messages come first
        async for message in ws:  # the page sends nothing; read until it closes
            if message.type == WSMsgType.ERROR:
                break
    finally:
        live.sockets.discard(ws)
    return ws


async def _run_live(app: web.Application) -> Any:
    task = asyncio.get_running_loop().create_task(app[LIVE].run())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for ws in list(app[LIVE].sockets):
        await ws.close()


def make_app(settings: Settings, deployment: Deployment | None = None) -> web.Application:
    app = web.Application(middlewares=[guard], client_max_size=64 * 1024)
    app[SETTINGS] = settings
    app[LIVE] = Live(settings, deployment)
    app.router.add_get("/", index)
    app.router.add_get("/app.js", script)
    app.router.add_get("/api/state", state)
    app.router.add_get("/api/spread", spread)
    app.router.add_get("/api/search", find)
    app.router.add_post("/api/admin", admin)
    app.router.add_get("/ws", socket)
    app.cleanup_ctx.append(_run_live)
    return app
