"""What the drivers and witness servers of one process share.

:class:`HostContext` holds the topology, the keyring and message registry, the address table, the
event bus, the loop-lag sampler, the persist thread pool and the lab transport filter
(``partition``/``heal``). It knows nothing of drivers, hosts or witnesses, which all read it.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import socket
from pathlib import Path

from hierclust.codec import Keyring, MessageRegistry
from hierclust.core.timeouts import MS
from hierclust.core.types import witness_group
from hierclust.runtime.events import EventBus
from hierclust.runtime.transport import AddressTuple
from hierclust.topology import Topology

PERSIST_THREADS = 4
"""Threads writing state files (temp, fsync, rename, fsync dir) off the event loop; concurrent
fsyncs on one file system share journal commits. At most one write per node is in flight."""


LAG_BUCKETS_MS = (50, 100, 200, 500, 1000, 2000, 5000)
"""Upper bounds of the loop-lag histogram's buckets (ms)."""


class HostContext:
    """Shared, per-process runtime context of a set of drivers."""

    def __init__(
        self,
        topology: Topology,
        keyring: Keyring,
        state_dir: Path,
        bus: EventBus,
        *,
        registry: MessageRegistry | None = None,
    ) -> None:
        self.topology = topology
        self.keyring = keyring
        self.registry = registry or MessageRegistry.from_module()
        self.state_dir = state_dir
        self.bus = bus
        self.addresses: list[AddressTuple | None] = []
        for rank in range(topology.num_nodes):
            a = topology.address(rank)
            self.addresses.append(None if a is None else (a.host, a.port))
        self.rank_at: dict[AddressTuple, int] = {
            a: r for r, a in enumerate(self.addresses) if a is not None
        }
        self.witness_addresses: dict[int, AddressTuple] = {}
        self.disk_leases: dict[int, Path] = {}
        for g in topology.by_index:
            tb = g.tiebreaker
            if tb is not None and tb.kind == "witness" and tb.address is not None:
                self.witness_addresses[g.index] = (tb.address.host, tb.address.port)
            elif tb is not None and tb.kind == "disk" and tb.path:
                self.disk_leases[g.index] = disk_lease_path(topology, tb.path)
        tuning = topology.tuning
        self.heartbeat_ns = tuning.heartbeat_ms * MS
        election_ms = max(g.tuning.election_timeout_ms for g in topology.by_index)
        lease_ms = max(g.tuning.lease_ms for g in topology.by_index)
        self.quarantine_ns = (2 * election_ms + lease_ms) * MS
        self.lag_max_ns = 0
        self.lag_total_max_ns = 0
        self.last_lag_ms = 0
        # how many lag samples (one per heartbeat) fell at or below each bound of LAG_BUCKETS_MS
        # (the last count: above the last bound); what a benchmark under load reports
        self.lag_hist = [0] * (len(LAG_BUCKETS_MS) + 1)
        self.isolated: frozenset[int] | None = None
        self.persist_pool: concurrent.futures.ThreadPoolExecutor | None = (
            concurrent.futures.ThreadPoolExecutor(PERSIST_THREADS, "persist")
        )

    def state_path(self, rank: int) -> Path:
        return self.state_dir / "nodes" / f"{self.topology.node_name(rank)}.json"

    def address_of(self, dst: int) -> AddressTuple | None:
        if dst >= 0:
            return self.addresses[dst] if dst < len(self.addresses) else None
        return self.witness_addresses.get(witness_group(dst))  # a witness daemon

    def allows(self, src: int, dst: int) -> bool:
        """Lab partition: datagrams never cross the boundary of the isolated set."""
        isolated = self.isolated
        return isolated is None or ((src in isolated) == (dst in isolated))

    def count_lag(self, lag_ms: int) -> None:
        """One heartbeat's lag sample into :attr:`lag_hist`."""
        for i, bound in enumerate(LAG_BUCKETS_MS):
            if lag_ms <= bound:
                self.lag_hist[i] += 1
                return
        self.lag_hist[-1] += 1

    def lag_histogram(self) -> dict[str, int]:
        """:attr:`lag_hist` keyed by bucket (``"<=50"``, ..., ``">5000"``)."""
        keys = [f"<={b}" for b in LAG_BUCKETS_MS] + [f">{LAG_BUCKETS_MS[-1]}"]
        return dict(zip(keys, self.lag_hist, strict=True))

    def note_lag(self, lag_ns: int) -> None:
        if lag_ns > self.lag_max_ns:
            self.lag_max_ns = lag_ns


def disk_lease_path(topology: Topology, path: str) -> Path:
    """A disk tie-breaker's lease file; relative paths are relative to the topology file."""
    lease = Path(path)
    return lease if lease.is_absolute() else Path(topology.source).resolve().parent / lease


LOOPBACK_HOSTS = ("127.0.0.1", "localhost")


def on_this_host(host: str) -> bool:
    """``host`` is this host's: a loopback name, or an IP address one of its interfaces holds
    (the kernel lets a socket bind only such an address)."""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        return False  # a name: never resolved here
    probe = socket.socket(family, socket.SOCK_DGRAM)
    try:
        probe.bind((host, 0))
    except OSError:
        return False
    finally:
        probe.close()
    return True


def local_witnesses(topology: Topology) -> dict[AddressTuple, list[int]]:
    """Witness tie-breakers of ``topology`` whose address is on this host (loopback, or an
    address of one of its interfaces), by address."""
    found: dict[AddressTuple, list[int]] = {}
    here: dict[str, bool] = {}
    for g in topology.by_index:
        tb = g.tiebreaker
        if tb is not None and tb.kind == "witness" and tb.address is not None:
            host = tb.address.host
            if host not in here:
                here[host] = on_this_host(host)
            if here[host]:
                found.setdefault((host, tb.address.port), []).append(g.index)
    return found
