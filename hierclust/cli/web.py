"""``hierclust web``: the live web view of a deployment (:mod:`hierclust.web`)."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import json
import socket
from typing import Annotated

import typer

from hierclust.cli.common import EXIT_INTERRUPTED, JsonFlag, command_group, fail, out
from hierclust.cli.statedir import StateDirOpt, live

app = command_group()

DEFAULT_PORT = 8470
TOKEN_ENV = "HIERCLUST_WEB_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int, as_json: bool) -> socket.socket:
    """A listening socket on ``host:port``; exit 2 naming the problem (a port in use, an
    address this host does not have)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        fail(f"--host {host}: {exc.strerror}", as_json, host=host)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"{host}:{port}: port in use (another hierclust web?); pick another with "
                "--port, or --port 0 for any free one",
                as_json,
                host=host,
                port=port,
            )
        fail(f"{host}:{port}: cannot listen: {exc.strerror or exc}", as_json, host=host)
    sock.setblocking(False)
    return sock


@app.command("web")
def web(
    state_dir: StateDirOpt = None,
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (beyond loopback: needs --token).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="TCP port (0: any free port).")
    ] = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar=TOKEN_ENV,
            help=f"Every request must carry it (?token= or a Bearer header); also ${TOKEN_ENV}.",
            show_default=False,
        ),
    ] = None,
    allow_admin: Annotated[
        bool,
        typer.Option(
            "--allow-admin",
            help="Accept kill, restart, drain, maintenance, resume, partition and heal from "
            "the page (default: read-only, such requests get 403).",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Serve a live view of the deployment in a browser.

    The page shows the groups tier by tier (leader, term, quorum, counts of failed, suspect,
    unreachable, left, maintenance and drained nodes), finds nodes by name or nodeset, follows
    the event logs over a WebSocket and replays the last failure's spread. It listens on
    127.0.0.1 unless --host says otherwise, and then only with --token. Read-only unless
    --allow-admin. With --json, one line with its url once it listens. Ctrl-C stops it.
    """
    from hierclust.web.server import Settings, make_app

    if token is not None and not token.strip():
        fail("--token: empty; give a secret string (or leave it out on loopback)", as_json)
    loopback = is_loopback(host)
    if not loopback and token is None:
        fail(
            f"--host {host}: listening beyond loopback needs --token TOKEN (or ${TOKEN_ENV}): "
            "anyone who can reach the port would see the cluster",
            as_json,
            host=host,
        )
    directory, topology, _, _ = live(state_dir, "web", as_json)
    sock = bind(host, port, as_json)
    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{bound_port}/"
    settings = Settings(
        state_dir=directory, token=token, allow_admin=allow_admin, loopback_only=loopback
    )
    mode = "commands allowed" if allow_admin else "read-only"
    if as_json:
        ready = {"url": url, "port": bound_port, "admin": allow_admin, "cluster": topology.name}
        print(json.dumps(ready), flush=True)  # one line, at once: callers wait for it
    else:
        with_token = f"{url}?token=<TOKEN>" if token else url
        out.print(f"{topology.name}: serving {with_token} ({mode}); Ctrl-C stops", highlight=False)
    try:
        asyncio.run(_serve(make_app(settings), sock))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None


async def _serve(application: object, sock: socket.socket) -> None:
    from aiohttp import web

    assert isinstance(application, web.Application)
    runner = web.AppRunner(application, access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
