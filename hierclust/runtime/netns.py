"""A network-namespace lab: "hosts" on one Linux box, joined by a bridge that can be cut.

Root only (or a user namespace that grants ``CAP_NET_ADMIN``). Layout::

    <prefix>-br    a namespace holding bridge br0 and one veth ``v<i>`` per host
    <prefix>-<subnet>.<i>  one namespace per host: ``eth0`` = ``<subnet>.<i>/24``, plus ``lo``

A partition is an nftables *bridge* table in the bridge namespace that drops IPv4 frames whose
``iifname . oifname`` pair is in a set (ARP still passes, so neighbours stay resolved); cutting
and healing are one set update each (~5 ms). Nothing touches the caller's own namespace: the veth
pairs are created inside the bridge namespace. :meth:`NetnsLab.teardown` deletes every namespace
it created; kill the processes running inside them first (:meth:`NetnsLab.teardown` only reports
them, it does not kill anything it did not start).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

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


class NetnsError(RuntimeError):
    """The lab cannot be set up or changed; ``str()`` names the command that failed."""


def unavailable() -> str | None:
    """Why the lab cannot run here (None when it can): not root, or ``ip``/``nft`` missing."""
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); run as root"
    for tool, package in (("ip", "iproute2"), ("nft", "nftables")):
        if shutil.which(tool) is None:
            return f"`{tool}` not found; install {package} (apt-get install -y {package})"
    return None


def run(*argv: str, stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=20)
    if done.returncode != 0:
        raise NetnsError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


class NetnsLab:
    """``hosts`` host namespaces on one bridge; addresses ``<subnet>.1`` .. ``<subnet>.<hosts>``."""

    def __init__(self, prefix: str, hosts: int, subnet: str = "10.200.0") -> None:
        if not 1 <= hosts <= 250:
            raise ValueError("hosts: 1..250")
        self.prefix = prefix
        self.subnet = subnet
        self.bridge_ns = f"{prefix}-br"
        # named after the host's address, so a launcher can map a topology host to its
        # namespace with a template: `ip netns exec <prefix>-%h` (ClusterShell's exec worker)
        self.host_ns = [f"{prefix}-{subnet}.{i}" for i in range(1, hosts + 1)]
        self.created: list[str] = []

    def address(self, host: int) -> str:
        """The IPv4 address of host ``host`` (0-based)."""
        return f"{self.subnet}.{host + 1}"

    @property
    def addresses(self) -> list[str]:
        return [self.address(i) for i in range(len(self.host_ns))]

    def namespace_of(self, address: str) -> str:
        return self.host_ns[self.addresses.index(address)]

    def exec_prefix(self, host: int) -> list[str]:
        """The command prefix that runs a program inside host ``host`` (0-based)."""
        return ["ip", "netns", "exec", self.host_ns[host]]

    @property
    def exec_template(self) -> str:
        """``ip netns exec <prefix>-%h``: the launch prefix for ``deploy --hosts --exec``."""
        return f"ip netns exec {self.prefix}-%h"

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
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                br,
                "sysctl",
                "-q",
                "-w",
                "net.bridge.bridge-nf-call-iptables=0",
            ],
            capture_output=True,
            timeout=10,
        )
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

    def _nft(self, command: str) -> None:
        run("ip", "netns", "exec", self.bridge_ns, "nft", command)
