"""Locality trial: every Node and its leaf GroupState built in rank order before boot (arg 2: 1),
or not (0); prints CPU seconds, peak RSS and a digest of the report (equal either way).

    PYTHONPATH=TREE python loc.py 100000 0|1
"""
import sys, time, resource
from hierclust.sim.scenario import run_kill, KillPlan
from hierclust.sim import simulator as S
from hierclust.core.node import Node
from hierclust.core.state import NodeState, GroupState
from hierclust.topology import from_dict, generate_document
n = int(sys.argv[1]); patch = sys.argv[2] == "1"
topo = from_dict(generate_document(n, 16), source="x")
if patch:
    pre = {}
    orig_new = NodeState._new_state
    def _new_state(self, level):
        if level == 0:
            gs = pre.pop(self.rank, None)
            if gs is not None and self.votes is None and not self.amnesiac:
                self.states[0] = gs; self.leaf_gs = gs; return gs
        return orig_new(self, level)
    NodeState._new_state = _new_state
    orig_start = S.Simulator.start_all
    nodes_pre = {}
    def start_all(self, spread_ns=0):
        lay = None
        for rank in range(self.topology.num_nodes):
            node = Node(self.topology, rank, rng=self.node_rng)
            gi = node.path[0]
            pre[rank] = GroupState(node.layout, gi, 0, rank - node.layout.first[gi])
            nodes_pre[rank] = node
        orig_start(self, spread_ns)
    S.Simulator.start_all = start_all
    def factory(topology, rank, *, rng, incarnation=1, persisted=None, **kw):
        node = nodes_pre.pop(rank, None)
        if node is not None and incarnation == 1 and persisted is None and not kw:
            return node
        return Node(topology, rank, rng=rng, incarnation=incarnation, persisted=persisted, **kw)
    orig_init = S.Simulator.__init__
    def init(self, *a, **kw):
        kw["node_factory"] = factory
        orig_init(self, *a, **kw)
    S.Simulator.__init__ = init
t0 = time.process_time()
r = run_kill(topo, KillPlan(kill="leaf", seed=3))
r.pop("cpu_cores"); r["sim"].pop("wall_s")
import json, hashlib
print(patch, "cpu", round(time.process_time() - t0, 2), "rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12])
