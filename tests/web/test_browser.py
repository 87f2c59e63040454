"""The page in a real headless Chromium, against a running deployment of topologies/demo.toml
(on free ports): every group shown, a killed node marked failed within 2 s, the spread
replayed, a group cut off marked unreachable, the search box. Chromium is driven over the
DevTools protocol (:mod:`hierclust.web.cdp`) and ended by its PID."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hierclust.topology import load
from hierclust.web.cdp import BrowserError, Chromium, find_chromium
from tests.web.browser import DEMO, demo_site

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.timeout(90),
    pytest.mark.skipif(
        find_chromium() is None,
        reason="chromium is not installed (.ci/run installs it: apt-get install chromium)",
    ),
]

GROUPS = "[...document.querySelectorAll('.group')].map((g) => g.dataset.group)"


def card(group: str, attribute: str) -> str:
    """JavaScript: a data attribute of ``group``'s card (null while it is not drawn)."""
    return f"document.querySelector('.group[data-group=\"{group}\"]')?.dataset.{attribute}"


async def open_browser() -> Chromium:
    browser = Chromium()
    try:
        await browser.start()
    except BrowserError as exc:
        if "namespace" in str(exc).lower() or "permission" in str(exc).lower():
            pytest.skip(f"Chromium cannot start here: {exc}")
        raise
    return browser


async def test_page_follows_kill_and_cut() -> None:
    topology = load(DEMO)
    with demo_site() as site:
        browser = await open_browser()
        try:
            await browser.navigate(site.url)
            await browser.wait_for(f"{GROUPS}.length === {len(topology.by_index)}", 10)
            shown = await browser.evaluate(GROUPS)
            assert sorted(shown) == sorted(g.name for g in topology.by_index)
            assert await browser.evaluate("document.getElementById('conn').dataset.state") == "live"
            assert await browser.evaluate(card("demo", "quorate")) == "true"
            # tiers top first, the root alone in the first
            tiers = await browser.evaluate(
                "[...document.querySelectorAll('details.tier')].map((d) => d.dataset.tier)"
            )
            assert tiers == ["2", "1", "0"]
            # read-only: the page's own command call is refused and changes nothing
            assert await browser.evaluate("document.getElementById('admin').hidden") is True
            answer: Any = await browser.evaluate(
                "fetch('/api/admin', {method: 'POST', headers: {'Content-Type': "
                "'application/json'}, body: JSON.stringify({op: 'kill', target: 'dn01'})})"
                ".then(async (r) => [r.status, (await r.json()).error])"
            )
            assert answer[0] == 403 and "--allow-admin" in answer[1]

            # kill dn07 (rack-a.t0.0) as a power loss (its port stays bound and mute: no ICMP
            # shortcut, only silence to detect): marked failed within 2 s of the kill, on this
            # host's monotonic clock (the kill's t_ns and ours are the same clock)
            killed = site.run("kill", "dn07", "--power")
            await browser.wait_for(f"{card('rack-a.t0.0', 'failed')} === '1'", 5, every_s=0.02)
            seen_ms = (time.monotonic_ns() - int(killed["t_ns"])) / 1e6
            print(f"dn07 marked failed {seen_ms:.0f} ms after the kill")
            assert seen_ms < 2000, f"dn07 marked failed only {seen_ms:.0f} ms after the kill"
            assert await browser.evaluate(card("rack-a", "failed")) == "1"
            assert await browser.evaluate(card("rack-b", "failed")) == "0"
            total = await browser.evaluate("document.getElementById('total-failed').textContent")
            assert total == "1 failed"

            # the replay: every survivor, in order, through groups; the detector first
            await browser.wait_for("document.querySelectorAll('#replay-log div').length === 62", 10)
            replayed: list[str] = await browser.evaluate(
                "[...document.querySelectorAll('#replay-log div')].map((d) => d.textContent)"
            )
            assert "detected it" in replayed[0]
            assert all(" via " in line for line in replayed[1:])
            times = [float(line.split()[0].removeprefix("+")) for line in replayed]
            assert times == sorted(times) and times[0] >= 0
            assert {line.split()[2] for line in replayed} == {
                topology.node_name(r) for r in range(63) if r != 6
            }
            title = await browser.evaluate("document.getElementById('replay-title').textContent")
            assert title.startswith("dn07") and "62 of 63 nodes" in title

            # the search box: a nodeset, typed and submitted as a user would
            await browser.evaluate(
                "document.getElementById('search').value = 'dn[06-08]';"
                "document.querySelector('#search-form button').click()"
            )
            await browser.wait_for("document.querySelectorAll('#results-table tr').length === 4", 5)
            states = await browser.evaluate(
                "Object.fromEntries([...document.querySelectorAll('#results-table tr[data-node]')]"
                ".map((r) => [r.dataset.node, r.dataset.state]))"
            )
            assert states == {"dn06": "alive", "dn07": "failed", "dn08": "alive"}
            await browser.evaluate(
                "document.getElementById('search').value = 'dn[09-01]';"
                "document.querySelector('#search-form button').click()"
            )
            await browser.wait_for("document.getElementById('search-error').textContent", 5)
            error = await browser.evaluate("document.getElementById('search-error').textContent")
            assert "reversed" in error and "dn[01-09]" in error

            # cut rack-b.t0.1 (dn[29-35]) off: its slot in rack-b is emptied, the subtree held
            # unreachable by the primary component
            site.run("partition", "rack-b.t0.1")
            started = time.monotonic()
            await browser.wait_for(f"{card('rack-b.t0.1', 'unreachable')} === '7'", 20)
            print(
                f"rack-b.t0.1 marked unreachable {time.monotonic() - started:.1f} s after the cut"
            )
            assert await browser.evaluate(card("rack-b.t0.1", "cut")) == "true"
            assert await browser.evaluate(card("rack-b", "unreachable")) == "7"
            assert await browser.evaluate(card("rack-a", "unreachable")) == "0"
            site.run("heal")
        finally:
            await browser.close()


async def test_token_and_commands_from_the_page() -> None:
    """With --token and --allow-admin: the page loads only with its token, shows the commands,
    and its kill button kills the node typed in."""
    with demo_site("--token", "t0k/en", "--allow-admin") as site:
        browser = await open_browser()
        try:
            await browser.navigate(site.url)  # no token: 401, no page
            assert await browser.evaluate("document.querySelectorAll('.group').length") == 0
            await browser.navigate(site.url + "?token=t0k%2Fen")
            await browser.wait_for("document.querySelectorAll('.group').length === 13", 10)
            assert await browser.evaluate("document.getElementById('admin').hidden") is False
            await browser.evaluate(
                "document.getElementById('admin-target').value = 'dn50';"
                "document.querySelector('#admin-buttons button[data-op=kill]').click()"
            )
            await browser.wait_for(f"{card('rack-c.t0.1', 'failed')} === '1'", 5)
            result = await browser.evaluate("document.getElementById('admin-result').textContent")
            assert result == "kill dn50: done"
            status = site.run("status")
            assert status["failed_nodes"] == ["dn50"]
        finally:
            await browser.close()
