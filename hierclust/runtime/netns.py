"""A lab of "hosts" on one Linux box: each its own network *and* its own clock.

Root only (or a user namespace that grants ``CAP_NET_ADMIN`` and ``CAP_SYS_ADMIN``). Layout::

    <prefix>-br    a namespace holding bridge br0 and one veth ``v<i>`` per host
    <prefix>-<subnet>.<i>  one namespace per host: ``eth0`` = ``<subnet>.<i>/24``, plus ``lo``

**Clocks.** Real hosts never agree on time: each monotonic clock starts at its host's boot, and
hosts boot days apart. So every command a lab host runs starts in a time namespace of its own,
with that host's offsets added to ``CLOCK_MONOTONIC`` and ``CLOCK_BOOTTIME``::

    ip netns exec <prefix>-<address> unshare --time --monotonic OFFSET --boottime OFFSET CMD...

(:meth:`NetnsLab.command`; a time namespace applies to the children of the process that made it,
so ``unshare`` itself must start the command). Host ``i`` gets ``offsets_s[i % len(offsets_s)]``
seconds, by default :data:`CLOCK_OFFSETS_S`: 0, 7 s, about 1, 3 and 35 days, cycling, so any
protocol that compares one node's instant with another's is caught. ``deploy --hosts --exec``
reaches a host through :attr:`NetnsLab.exec_template`, which runs this module as a program
(``python -m hierclust.runtime.netns``) to find the host's namespace and offset and exec the
same line. *Wall clocks cannot differ*: Linux time namespaces cover only the monotonic and boot
clocks, so every host reads the same ``CLOCK_REALTIME`` (no NTP error, no step); the lab cannot
model a host whose wall clock is wrong.

**Partitions.** An nftables *bridge* table in the bridge namespace drops IPv4 frames whose
``iifname . oifname`` pair is in a set (ARP still passes, so neighbours stay resolved); cutting
and healing are one set update each (~5 ms). Nothing touches the caller's own namespace: the veth
pairs are created inside the bridge namespace. :meth:`NetnsLab.teardown` deletes every namespace
it created; kill the processes running inside them first (:meth:`NetnsLab.teardown` only reports
them, it does not kill anything it did not start). Time namespaces need no teardown: each goes
away with its last process.

**Delay.** This kernel has no ``netem``, and nft's ``queue`` statement is missing too, so
:meth:`NetnsLab.delay` turns on ``bridge-nf-call-iptables`` in the bridge namespace, sends every
bridged IPv4 frame to netfilter queue 0 (``iptables-legacy ... -j NFQUEUE --queue-bypass``) and
starts :mod:`hierclust.runtime.delayq` there, which holds each frame for the delay plus jitter;
:meth:`NetnsLab.undelay` removes the rule and lets every frame still held go.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from hierclust.runtime.delayq import QUEUE

NFT_TABLE = "hclab"
NFT_RULES = """\
table bridge {table} {{
  set cut {{ type ifname . ifname; }}
  chain forward {{
    type filter hook forward priority 0; policy accept;
    ether type ip iifname . oifname @cut drop
  }}
}}
"""


CLOCK_OFFSETS_S = (0, 7, 100_000, 250_000, 3_000_000)
"""Default clock offsets of hosts 0, 1, 2, ... (cycling): seconds added to their monotonic and
boot clocks. Two hosts within seconds of each other, the rest days apart."""


class NetnsError(RuntimeError):
    """The lab cannot be set up or changed; ``str()`` names the command that failed."""


def unavailable() -> str | None:
    """Why the lab cannot run here (None when it can): not root, ``ip``/``nft``/``unshare``
    missing, or a kernel (or ``unshare``) without time namespaces."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run as root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables"), ("unshare", "util-linux")):
        if shutil.which(tool) is None:
            return f"`{tool}` not found; install {package} (apt-get install -y {package})"
    if not os.path.exists("/proc/self/timens_offsets"):
        return "this kernel has no time namespaces (/proc/self/timens_offsets missing; need 5.6+)"
    trial = subprocess.run(
        ["unshare", "--time", "--monotonic", "1", "--boottime", "1", "true"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    if trial.returncode != 0:
        why = trial.stderr.strip() or f"exit {trial.returncode}"
        return f"`unshare --time --monotonic 1 --boottime 1 true` failed: {why}"
    return None


BRIDGE_NF_IPTABLES = "net.bridge.bridge-nf-call-iptables"
NFQUEUE_RULE = (
    f"FORWARD -m physdev --physdev-is-bridged -j NFQUEUE --queue-num {QUEUE} --queue-bypass"
).split()


def delay_unavailable() -> str | None:
    """Why :meth:`NetnsLab.delay` cannot run here (None when it can)."""
    if shutil.which("iptables-legacy") is None:
        return "`iptables-legacy` not found; install iptables (apt-get install -y iptables)"
    try:
        import fnfqueue  # noqa: F401
    except ImportError:
        return "the Python package fnfqueue is missing (pip install fnfqueue)"
    if not os.path.exists("/proc/sys/net/bridge"):
        return "no br_netfilter in this kernel (/proc/sys/net/bridge missing)"
    return None


def clock_prefix(offset_s: int) -> list[str]:
    """Start a command with its monotonic and boot clocks ``offset_s`` seconds ahead."""
    offset = str(offset_s)
    return ["unshare", "--time", "--monotonic", offset, "--boottime", offset]


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


class NetnsLab:
    """``hosts`` host namespaces on one bridge; addresses ``<subnet>.1`` .. ``<subnet>.<hosts>``;
    host ``i`` (0-based) runs every command with its clocks ``offsets_s[i % len(offsets_s)]``
    seconds ahead."""

    def __init__(
        self,
        prefix: str,
        hosts: int,
        subnet: str = "10.200.0",
        offsets_s: Sequence[int] = CLOCK_OFFSETS_S,
    ) -> None:
        if not 1 <= hosts <= 250:
            raise ValueError("hosts: 1..250")
        if not offsets_s or any(o < 0 for o in offsets_s):
            raise ValueError("offsets_s: one or more offsets, each 0 or more seconds")
        self.prefix = prefix
        self.subnet = subnet
        self.bridge_ns = f"{prefix}-br"
        # named after the host's address, so a launcher can map a topology host to its
        # namespace with a template: `... <prefix>-%h` (ClusterShell's exec worker)
        self.host_ns = [f"{prefix}-{subnet}.{i}" for i in range(1, hosts + 1)]
        self.offsets_s = tuple(offsets_s)
        self.created: list[str] = []
        self.holder: subprocess.Popen[str] | None = None  # the delay queue, while a delay is on

    def address(self, host: int) -> str:
        """The IPv4 address of host ``host`` (0-based)."""
        return f"{self.subnet}.{host + 1}"

    @property
    def addresses(self) -> list[str]:
        return [self.address(i) for i in range(len(self.host_ns))]

    def namespace_of(self, address: str) -> str:
        return self.host_ns[self.addresses.index(address)]

    def host_of(self, address: str) -> int:
        """The host (0-based) whose address is ``address``."""
        return self.addresses.index(address)

    def clock_offset_s(self, host: int) -> int:
        """Seconds host ``host``'s monotonic and boot clocks run ahead of the box's own."""
        return self.offsets_s[host % len(self.offsets_s)]

    def exec_prefix(self, host: int) -> list[str]:
        """The command prefix that runs a program on host ``host`` (0-based): in its network
        namespace, with its clocks."""
        return [
            "ip",
            "netns",
            "exec",
            self.host_ns[host],
            *clock_prefix(self.clock_offset_s(host)),
        ]

    def command(self, host: int, argv: Sequence[str]) -> list[str]:
        """``argv`` as run on host ``host``: :meth:`exec_prefix` + ``argv``."""
        return [*self.exec_prefix(host), *argv]

    def popen(self, host: int, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        """Start ``argv`` on host ``host``. Its PID is the program's own (``ip netns exec``
        and ``unshare`` each exec the next without forking), so it can be signalled directly."""
        return subprocess.Popen(self.command(host, argv), **kwargs)

    def run_on(
        self, host: int, argv: Sequence[str], timeout_s: float = 20.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` on host ``host`` to completion; its output as text."""
        return subprocess.run(
            self.command(host, argv), capture_output=True, text=True, timeout=timeout_s
        )

    @property
    def exec_template(self) -> str:
        """The launch prefix for ``deploy --hosts --exec``: ClusterShell puts the host (an
        address of the lab) for ``%h``, and this module, run as a program, execs
        :meth:`command` for it."""
        offsets = ",".join(map(str, self.offsets_s))
        return (
            f"{shlex.quote(sys.executable)} -m hierclust.runtime.netns --prefix {self.prefix} "
            f"--subnet {self.subnet} --offsets-s {offsets} --host %h"
        )

    # -- setup / teardown ---------------------------------------------------------------------
    def setup(self) -> None:
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise

    def _setup(self) -> None:
        br = self.bridge_ns
        for ns in (br, *self.host_ns):
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            sysctls = ["net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0"]
            run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", *sysctls)
        # only exists when br_netfilter is loaded; then it must not hand frames to iptables
        self._bridge_nf(False, check=False)
        run("ip", "-n", br, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", br, "link", "set", "br0", "up")
        for i, ns in enumerate(self.host_ns):
            veth = self.veth(i)
            run(
                "ip",
                "-n",
                br,
                "link",
                "add",
                veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns,
            )
            run("ip", "-n", br, "link", "set", veth, "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "netns", "exec", br, "nft", "-f", "-", stdin=NFT_RULES.format(table=NFT_TABLE))

    def processes(self) -> dict[str, list[int]]:
        """PIDs still running inside each namespace of the lab."""
        found: dict[str, list[int]] = {}
        for ns in self.created:
            done = subprocess.run(
                ["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=10
            )
            pids = [int(p) for p in done.stdout.split()]
            if pids:
                found[ns] = pids
        return found

    def teardown(self) -> dict[str, list[int]]:
        """Delete every namespace created (veths and the bridge go with them). Returns the
        processes that were still running inside (they lose their network, nothing else)."""
        if self.holder is not None:
            self.undelay()
        left = self.processes()
        for ns in reversed(self.created):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
        self.created.clear()
        return left

    # -- partitions -----------------------------------------------------------------------------
    @staticmethod
    def veth(host: int) -> str:
        return f"v{host + 1}"

    def cut(self, side: Iterable[int]) -> None:
        """Drop IPv4 between the hosts in ``side`` (0-based) and all the others, both ways."""
        inside = set(side)
        others = [h for h in range(len(self.host_ns)) if h not in inside]
        pairs = [(a, b) for a in sorted(inside) for b in others]
        self.cut_pairs(pairs + [(b, a) for a, b in pairs])

    def cut_pairs(self, pairs: Sequence[tuple[int, int]]) -> None:
        """Drop IPv4 frames from host ``a`` to host ``b`` for each ``(a, b)`` (one-way)."""
        if not pairs:
            return
        elements = ", ".join(f"{self.veth(a)} . {self.veth(b)}" for a, b in pairs)
        self._nft(f"add element bridge {NFT_TABLE} cut {{ {elements} }}")

    def heal(self) -> None:
        self._nft(f"flush set bridge {NFT_TABLE} cut")

    def _bridge_nf(self, on: bool, *, check: bool) -> None:
        """Whether the bridge hands bridged IPv4 frames to iptables (``check``: raise
        NetnsError if the sysctl cannot be set; else ignore it, as when br_netfilter is not
        loaded)."""
        argv = ["ip", "netns", "exec", self.bridge_ns, "sysctl", "-q", "-w"]
        argv.append(f"{BRIDGE_NF_IPTABLES}={int(on)}")
        if check:
            run(*argv)
        else:
            subprocess.run(argv, capture_output=True, timeout=10)

    def _nft(self, command: str) -> None:
        run("ip", "netns", "exec", self.bridge_ns, "nft", command)

    # -- delay ----------------------------------------------------------------------------------
    def delay(self, delay_ms: float, jitter_ms: float = 0.0, seed: int = 0) -> None:
        """Hold every IPv4 frame between hosts for ``delay_ms`` plus up to ``jitter_ms`` (uniform;
        frames may overtake each other by the jitter), until :meth:`undelay`."""
        if self.holder is not None:
            raise NetnsError("a delay is on already: undelay() first")
        why = delay_unavailable()
        if why is not None:
            raise NetnsError(why)
        br = self.bridge_ns
        argv = [sys.executable, "-m", "hierclust.runtime.delayq", "--delay-ms", str(delay_ms)]
        argv += ["--jitter-ms", str(jitter_ms), "--seed", str(seed)]
        holder = subprocess.Popen(
            ["ip", "netns", "exec", br, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None
        ready, _, _ = select.select([holder.stdout], [], [], 20.0)
        line = holder.stdout.readline().strip() if ready else ""
        if line != "ready":
            holder.kill()
            _, err = holder.communicate(timeout=10)
            raise NetnsError(f"the delay queue did not start: {err.strip() or line or 'timeout'}")
        self.holder = holder
        self._bridge_nf(True, check=True)
        run("ip", "netns", "exec", br, "iptables-legacy", "-w", "-A", *NFQUEUE_RULE)

    def undelay(self) -> dict[str, Any]:
        """End the delay: frames pass unheld again, and every frame still held goes at once.
        Returns what the holder did: ``packets`` held, ``mean_hold_ms``, ``max_hold_ms``."""
        holder = self.holder
        if holder is None:
            return {}
        self.holder = None
        br = self.bridge_ns
        subprocess.run(
            ["ip", "netns", "exec", br, "iptables-legacy", "-w", "-D", *NFQUEUE_RULE],
            capture_output=True,
            timeout=20,
        )
        self._bridge_nf(False, check=False)
        holder.terminate()
        try:
            out, _ = holder.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            holder.kill()
            out, _ = holder.communicate(timeout=10)
        lines = out.strip().splitlines()
        try:
            summary: dict[str, Any] = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            summary = {}
        return summary


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hierclust.runtime.netns --prefix P --subnet S --offsets-s A,B,.. --host ADDRESS
    CMD...``: exec ``CMD`` on the lab host whose address is ``ADDRESS``, with its clocks (what
    :attr:`NetnsLab.exec_template` runs)."""
    parser = argparse.ArgumentParser(
        prog="python -m hierclust.runtime.netns",
        description="Run a command on a lab host, in its network namespace, with its clocks.",
    )
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--subnet", required=True)
    parser.add_argument("--offsets-s", required=True, help="comma-separated seconds, cycling")
    parser.add_argument("--host", required=True, help="the host's address: SUBNET.N")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    subnet, _, number = args.host.rpartition(".")
    if subnet != args.subnet or not number.isdigit() or not 1 <= int(number) <= 250:
        parser.error(f"--host {args.host}: not an address of subnet {args.subnet} (.1 to .250)")
    if not args.command:
        parser.error("no command to run")
    try:
        offsets = [int(o) for o in args.offsets_s.split(",")]
        lab = NetnsLab(args.prefix, int(number), args.subnet, offsets)
    except ValueError as exc:
        parser.error(f"--offsets-s {args.offsets_s}: {exc}")
    line = lab.command(int(number) - 1, args.command)
    os.execvp(line[0], line)


if __name__ == "__main__":
    main(sys.argv[1:])
