"""The web server without a browser: token, read-only, bad input, the WebSocket's first
messages. The deployment is faked with hand-written worker snapshots (as in
tests/runtime/test_status.py); control-socket requests are recorded, not sent."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from hierclust.topology import Topology
from hierclust.web import actions
from hierclust.web.server import LIVE, Settings, make_app
from tests.runtime.test_status import demo, snapshots


class FakeDeployment:
    def __init__(self, topology: Topology, snaps: list[dict[str, Any]]) -> None:
        self.topology = topology
        self.snaps = snaps

    def read(self) -> tuple[Topology | None, list[dict[str, Any]], list[str]]:
        return self.topology, self.snaps, []


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Every control request the server sends (none reaches a socket)."""
    calls: list[dict[str, Any]] = []

    def request(path: Path, payload: dict[str, Any], timeout_s: float = 5.0) -> dict[str, Any]:
        calls.append({"path": str(path), **payload})
        return {"ok": True, "issuer": 0}

    monkeypatch.setattr(actions, "request", request)
    monkeypatch.setattr(actions, "control_sockets", lambda d: [d / "w0.sock"])
    return calls


async def client_for(tmp_path: Path, **settings: Any) -> TestClient[Any, Any]:
    topology = demo()
    snaps = snapshots(topology, failed={6: False})  # dn07 declared failed
    for snap in snaps:
        snap["socket"] = str(tmp_path / "w0.sock")
    app = make_app(Settings(state_dir=tmp_path, **settings), FakeDeployment(topology, snaps))
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest_asyncio.fixture
async def client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    c = await client_for(tmp_path)
    yield c
    await c.close()


@pytest_asyncio.fixture
async def admin_client(tmp_path: Path) -> AsyncIterator[TestClient[Any, Any]]:
    c = await client_for(tmp_path, allow_admin=True)
    yield c
    await c.close()


@pytest.mark.asyncio
async def test_state_lists_every_group_top_tier_first(client: TestClient[Any, Any]) -> None:
    answer = await client.get("/api/state")
    assert answer.status == 200
    state = await answer.json()
    assert [t["tier"] for t in state["tiers"]] == [2, 1, 0]
    names = {g["name"] for t in state["tiers"] for g in t["shown"]}
    assert names == {g.name for g in demo().by_index} and len(names) == 13
    groups = {g["name"]: g for t in state["tiers"] for g in t["shown"]}
    assert groups["rack-a.t0.0"]["counts"]["failed"] == 1  # dn07 is in rack-a's first leaf
    assert groups["rack-a"]["counts"]["failed"] == 1 and groups["demo"]["counts"]["failed"] == 1
    assert groups["rack-b"]["counts"]["failed"] == 0
    assert state["totals"]["failed"] == 1 and state["failed_nodes"] == ["dn07"]
    assert state["admin"] is False


@pytest.mark.asyncio
async def test_page_and_script_are_served(client: TestClient[Any, Any]) -> None:
    page = await client.get("/")
    assert page.status == 200 and page.content_type == "text/html"
    assert 'src="app.js"' in await page.text()
    script = await client.get("/app.js")
    assert script.status == 200 and "WebSocket" in await script.text()
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]


@pytest.mark.asyncio
async def test_token_is_required_everywhere(tmp_path: Path) -> None:
    c = await client_for(tmp_path, token="s3cret&x")
    try:
        for path in ("/", "/app.js", "/api/state", "/api/search?q=dn01", "/ws"):
            assert (await c.get(path)).status == 401, path
        assert (await c.get("/api/state?token=wrong")).status == 401
        assert (
            await c.get("/api/state", headers={"Authorization": "Bearer s3cret&x"})
        ).status == 200
        page = await c.get("/?token=s3cret%26x")
        assert page.status == 200
        assert 'src="app.js?token=s3cret%26x"' in await page.text()  # the script can load
        assert (await c.get("/app.js?token=s3cret%26x")).status == 200
        ws = await c.ws_connect("/ws?token=s3cret%26x")
        first = await ws.receive_json(timeout=5)
        assert first["type"] == "state" and first["state"]["cluster"] == "demo"
        await ws.close()
    finally:
        await c.close()


@pytest.mark.asyncio
async def test_read_only_refuses_every_command(
    client: TestClient[Any, Any], sent: list[dict[str, Any]]
) -> None:
    for body in (
        {"op": "kill", "target": "dn07"},
        {"op": "drain", "target": "rack-a"},
        {"op": "heal"},
    ):
        answer = await client.post("/api/admin", json=body)
        assert answer.status == 403
        assert "--allow-admin" in (await answer.json())["error"]
    assert sent == []


@pytest.mark.asyncio
async def test_allowed_commands_reach_the_workers(
    admin_client: TestClient[Any, Any], sent: list[dict[str, Any]]
) -> None:
    answer = await admin_client.post("/api/admin", json={"op": "kill", "target": "dn08"})
    assert answer.status == 200, await answer.text()
    assert sent[-1]["op"] == "kill" and sent[-1]["rank"] == 7
    answer = await admin_client.post("/api/admin", json={"op": "drain", "target": "rack-b.t0.0"})
    assert answer.status == 200
    assert sent[-1] == {"path": sent[-1]["path"], "op": "admin", "mode": 2, "ranges": [(21, 7)]}
    answer = await admin_client.post("/api/admin", json={"op": "partition", "target": "dn[22-28]"})
    assert answer.status == 200 and sent[-1]["ranks"] == list(range(21, 28))


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"op": "stop"}, 400, "expected one of"),
        ({"op": "kill", "target": "dn99"}, 400, "dn99: no node"),
        ({"op": "kill", "target": "dn[01-02]"}, 400, "name one node"),
        ({"op": "kill", "target": "dn[05-01]"}, 400, "reversed"),
        ({"op": "kill"}, 400, "give a target"),
        ({"op": "partition", "target": "demo"}, 400, "every node"),
        ({"op": "kill", "target": "dn07"}, 409, "not running"),
        (["kill"], 400, "JSON object"),
    ],
)
async def test_bad_commands_are_refused(
    admin_client: TestClient[Any, Any],
    sent: list[dict[str, Any]],
    body: Any,
    status: int,
    words: str,
) -> None:
    if status == 409:  # dn07 declared failed; make its worker say it is not running
        snaps = admin_client.server.app[LIVE].deployment.snaps  # type: ignore[attr-defined]
        for node in snaps[0]["nodes"]:
            if node["rank"] == 6:
                node["running"] = False
    answer = await admin_client.post("/api/admin", json=body)
    assert answer.status == status
    assert words in (await answer.json())["error"]
    assert sent == []


@pytest.mark.asyncio
async def test_malformed_command_bodies(admin_client: TestClient[Any, Any]) -> None:
    raw = await admin_client.post(
        "/api/admin", data="{not json", headers={"Content-Type": "application/json"}
    )
    assert raw.status == 400
    form = await admin_client.post("/api/admin", data={"op": "kill"})
    assert form.status == 415


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("query", "status", "found"),
    [
        ("dn[01-03]", 200, ["dn01", "dn02", "dn03"]),
        ("dn07", 200, ["dn07"]),
        ("rack-c.t0.2", 200, [f"dn{i}" for i in range(57, 64)]),
        ("dn[05-01]", 400, "reversed"),
        ("zz9", 400, "no node of that name"),
        ("dn[1-99999]", 400, "at most"),
        ("", 400, "empty search"),
        ("dn[01-", 400, "not a nodeset"),
    ],
)
async def test_search(client: TestClient[Any, Any], query: str, status: int, found: Any) -> None:
    answer = await client.get("/api/search", params={"q": query})
    body = await answer.json()
    assert answer.status == status, body
    if status == 200:
        assert [row["node"] for row in body["nodes"]] == found
        states = {row["node"]: row["state"] for row in body["nodes"]}
        if "dn07" in states:
            assert states["dn07"] == "failed"
    else:
        assert found in body["error"]


@pytest.mark.asyncio
async def test_cross_site_and_rebinding_requests_are_refused(client: TestClient[Any, Any]) -> None:
    evil = await client.get("/api/state", headers={"Origin": "http://evil.example"})
    assert evil.status == 403
    same = await client.get("/api/state", headers={"Origin": f"http://127.0.0.1:{client.port}"})
    assert same.status == 200
    rebound = await client.get("/api/state", headers={"Host": f"evil.example:{client.port}"})
    assert rebound.status == 403


@pytest.mark.asyncio
async def test_websocket_sends_the_picture_first(client: TestClient[Any, Any]) -> None:
    ws = await client.ws_connect("/ws")
    kinds = [(await ws.receive_json(timeout=5))["type"] for _ in range(3)]
    assert kinds == ["state", "spread", "events"]
    await ws.close()


@pytest.mark.asyncio
async def test_spread_and_events_from_the_logs_reach_the_page(tmp_path: Path) -> None:
    """Lines appended to an event log arrive over the WebSocket: the spread of the notice and
    the events, named with the topology."""
    c = await client_for(tmp_path)
    try:
        ws = await c.ws_connect("/ws")
        for _ in range(3):
            await ws.receive_json(timeout=5)
        lines = [
            {"t_ns": 10_000_000, "event": "Crashed", "node": "dn07", "rank": 6},
            {"t_ns": 900_000_000, "node": "dn01", "rank": 0, "event": "NoticeLearned",
             "notice": {"kind": "failed", "node": 6, "incarnation": 1}, "via": None},
            {"t_ns": 910_000_000, "node": "dn02", "rank": 1, "event": "NoticeLearned",
             "notice": {"kind": "failed", "node": 6, "incarnation": 1}, "via": 4},
        ]  # fmt: skip
        (tmp_path / "events-w0.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
        seen: dict[str, Any] = {}
        while "spread" not in seen or "events" not in seen:
            message = await ws.receive_json(timeout=5)
            if message["type"] in ("spread", "events"):
                seen[message["type"]] = message[message["type"]]
        spread = seen["spread"]
        assert (spread["victim"], spread["origin"], spread["detect_ms"]) == ("dn07", "crash", 890.0)
        assert [(r["node"], r["ms"]) for r in spread["learned"]] == [
            ("dn01", 890.0),
            ("dn02", 900.0),
        ]
        texts = [(e["node"], e["event"], e["text"]) for e in seen["events"]]
        group4 = demo().by_index[4].name
        assert texts == [
            ("dn07", "Crashed", ""),
            ("dn01", "NoticeLearned", "failed dn07 (detected here)"),
            ("dn02", "NoticeLearned", f"failed dn07 via {group4}"),
        ]
        assert (await (await c.get("/api/spread")).json())["spread"] == spread
        await ws.close()
    finally:
        await c.close()
