"""The hot handlers alone, in a booted 1,000-node cluster (fan-out 16, seed 3): one member's Ack
handler, its leader's Ping handler and the leader's heartbeat tick, each called 200,000 times
on the same input (ns per call; the loop's own cost apart).

    PYTHONPATH=TREE python micro.py
"""

import random
import time

from hierclust.core.messages import Ack, Ping
from hierclust.core.node import handlers
from hierclust.sim.network import Network
from hierclust.sim.scenario import all_led
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document

topo = from_dict(generate_document(1000, 16), source="x")
sim = Simulator(
    topo, seed=3, network=Network(random.Random(3), latency_ns=200000, jitter_ns=300000)
)
sim.start_all(spread_ns=100_000_000)
while not all_led(sim):
    sim.run_until(sim.now + 100_000_000)
sim.run_until(sim.now + 500_000_000)
H = handlers()
# a member of group of rank 5, and its leader
m = sim.nodes[5]
gs = m.leaf_gs
ldr = sim.nodes[gs.leader]
lgs = ldr.leaf_gs
now = sim.now
ack = ldr._ack(now, lgs, 0)
N = 200000
out = []
f = H[Ack]
t = time.perf_counter_ns()
for i in range(N):
    f(m, now, gs.leader, ack, out)
    if len(out) > 1000:
        out.clear()
ta = (time.perf_counter_ns() - t) / N
ping = None
out = []
f(m, now, gs.leader, ack, out)
ping = out[-1].msg
g = H[Ping]
out = []
t = time.perf_counter_ns()
for i in range(N):
    g(ldr, now, 5, ping, out)
    if len(out) > 1000:
        out.clear()
tp = (time.perf_counter_ns() - t) / N
t = time.perf_counter_ns()
for i in range(N):
    out = []
    ldr._on_timer(now, lgs.key_tick, out)
tt = (time.perf_counter_ns() - t) / N


# empty loop cost
def e(a, b, c, d, o):
    pass


t = time.perf_counter_ns()
for i in range(N):
    e(m, now, 0, ack, out)
    if len(out) > 1000:
        out.clear()
te = (time.perf_counter_ns() - t) / N
import hierclust.core.node as node_module

compiled = node_module.__file__.endswith(".so")
print(
    f"ack {ta:.0f} ns  ping {tp:.0f} ns  leader tick {tt:.0f} ns  loop {te:.0f} ns  "
    f"({'compiled' if compiled else 'pure'})"
)
