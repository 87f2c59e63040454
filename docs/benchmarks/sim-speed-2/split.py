"""Share of CPU in the core: Node.deliver and Node.fire wrapped with a clock (run with the before tree).

    PYTHONPATH=TREE python split.py 20000
"""
import sys, time
from time import perf_counter_ns as pc
from hierclust.sim.scenario import run_kill, KillPlan
from hierclust.topology import from_dict, generate_document
from hierclust.core.node import Node
n = int(sys.argv[1])
topo = from_dict(generate_document(n, 16), source="x")
tot = [0, 0, 0]
od, of = Node.deliver, Node.fire
def deliver(self, now, src, msg):
    t = pc(); r = od(self, now, src, msg); tot[0] += pc() - t; tot[2] += 1; return r
def fire(self, now, key):
    t = pc(); r = of(self, now, key); tot[1] += pc() - t; tot[2] += 1; return r
def empty(self, now, src, msg):
    t = pc(); tot[2] += 1; tot[0] += pc() - t
Node.deliver, Node.fire = deliver, fire
t0 = time.process_time(); w0 = time.perf_counter()
r = run_kill(topo, KillPlan(kill="leaf", seed=3))
cpu = time.process_time() - t0; wall = time.perf_counter() - w0
# overhead of the timing itself
t = pc()
for i in range(100000): empty(None, 0, 0, 0)
over = (pc() - t) / 100000
ev = r["sim"]["events"]
print(f"wall {wall:.2f}s cpu {cpu:.2f}s events {ev} per-event {cpu/ev*1e6:.2f}us deliver {tot[0]/1e9:.2f}s fire {tot[1]/1e9:.2f}s calls {tot[2]} wrapper-overhead/call {over:.0f}ns")
