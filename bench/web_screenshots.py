"""The screenshots of docs/web.md, taken again in headless Chromium (:mod:`hierclust.web.cdp`).

    python bench/web_screenshots.py [--out docs/web]

Deploys topologies/demo.toml on free ports in a temporary state directory, serves it with
``hierclust web``, and photographs the page: all well; a killed node (dn07) with its failure's
spread replayed (200 times slower, caught half way); a search; a cut-off group (rack-b.t0.1).
Then a UDP benchmark of the demo topology written with ``bench --html`` and its page. Writes
to OUT the PNGs, ``README.md`` (the command and commit), ``shots.json`` (per picture what the
page was showing, ``/api/state`` and the spread, and the provenance: command, commit, load
average) and the benchmark's JSON and HTML.
Everything it starts is ended by PID (the workers by ``hierclust stop``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the deployment helpers are the browser tests' own

from hierclust.bench.provenance import provenance  # noqa: E402
from hierclust.web.cdp import Chromium  # noqa: E402
from tests.web.browser import demo_on_free_ports, demo_site, hierclust  # noqa: E402

CARD = "document.querySelector('.group[data-group=\"{}\"]')?.dataset.{}"


def api(url: str, path: str) -> Any:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=10) as answer:
        return json.loads(answer.read())


async def shoot(out: Path) -> list[dict[str, Any]]:
    shots: list[dict[str, Any]] = []
    with demo_site() as site:
        browser = Chromium(width=1400, height=900)
        await browser.start()
        try:

            async def take(name: str, what: str) -> None:
                path = await browser.screenshot(out / f"{name}.png")
                shots.append(
                    {
                        "file": path.name,
                        "what": what,
                        "state": api(site.url, "/api/state"),
                        "spread": api(site.url, "/api/spread")["spread"],
                    }
                )
                print(f"wrote {path}")

            await browser.navigate(site.url)
            await browser.wait_for("document.querySelectorAll('.group').length === 13", 15)
            await asyncio.sleep(1.0)
            await take("healthy", "demo.toml deployed, every group led and quorate")

            site.run("kill", "dn07")
            await browser.wait_for(CARD.format("rack-a.t0.0", "failed") + " === '1'", 5)
            await browser.wait_for("document.querySelectorAll('#replay-log div').length === 62", 10)
            await browser.evaluate(
                "document.getElementById('replay-speed').value = '0.005';window.hierclust.replay()"
            )
            rows = "document.querySelectorAll('#replay-log div').length"
            await browser.wait_for(f"{rows} >= 30", 60, every_s=0.01)
            await take("kill-replay", "dn07 killed; its failure's spread replayed 200x slower")
            await browser.wait_for(f"{rows} === 62", 60)

            await browser.evaluate(
                "document.getElementById('search').value = 'dn[05-09]';"
                "document.querySelector('#search-form button').click()"
            )
            await browser.wait_for("document.querySelectorAll('#results-table tr').length === 6", 5)
            await take("search", "dn[05-09] searched after dn07's kill")

            await browser.evaluate("document.getElementById('replay-speed').value = '1'")
            site.run("partition", "rack-b.t0.1")
            await browser.wait_for(CARD.format("rack-b.t0.1", "unreachable") + " === '7'", 30)
            await asyncio.sleep(3.0)  # the cut's own notice (its slot holder) replays by then
            await take("cut", "rack-b.t0.1 (dn[29-35]) cut off from the rest")
            site.run("heal")
        finally:
            await browser.close()
    return shots


async def bench_page(out: Path) -> dict[str, Any]:
    """A UDP benchmark of the demo topology with --html, and a picture of its page."""
    with tempfile.TemporaryDirectory(prefix="hcweb-bench-") as tmp:
        topology = demo_on_free_ports(Path(tmp))
        done = hierclust(
            "bench", "--mode", "udp", "--topology", str(topology), "--kill", "leader",
            "--steady-s", "2", "--out", str(out / "bench.json"), "--html", str(out / "bench.html"),
            timeout=240,
        )  # fmt: skip
        if done.returncode != 0:
            raise SystemExit(f"bench: {done.stderr}")
    browser = Chromium(width=1000, height=900)
    await browser.start()
    try:
        await browser.navigate((out / "bench.html").resolve().as_uri())
        path = await browser.screenshot(out / "bench-html.png")
        print(f"wrote {path}")
    finally:
        await browser.close()
    return {"file": "bench-html.png", "what": "bench --html of a UDP run, kill of a leader"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "web")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    origin = provenance()  # before this run rewrites the pictures: the checkout as it was
    started = time.monotonic()
    shots = asyncio.run(shoot(args.out))
    shots.append(asyncio.run(bench_page(args.out)))
    document = {"provenance": origin, "seconds": round(time.monotonic() - started, 1)}
    document["shots"] = shots
    (args.out / "shots.json").write_text(json.dumps(document, indent=2) + "\n")
    listed = "\n".join(f"- `{shot['file']}`: {shot['what']}" for shot in shots)
    (args.out / "README.md").write_text(
        "# Screenshots of the web view\n\n"
        f"Taken by `{origin['command']}` at commit `{origin['commit']}` "
        f"({origin['utc']}, load average {origin['load_avg_1m']}), in headless Chromium driven "
        "over the DevTools protocol (hierclust/web/cdp.py). `shots.json` holds, per picture, "
        "what the page was showing (`/api/state`, the spread); `bench.json` and `bench.html` are "
        "the benchmark run of the last picture.\n\n"
        f"{listed}\n"
    )
    print(f"wrote {args.out / 'shots.json'} and {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
