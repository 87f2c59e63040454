"""Any message the codec accepts, from any sender, never makes a node's step raise.

The decoder checks types and ranges (tests/codec/test_codec_fuzz.py); what it lets through
reaches ``Node.step``, where an exception stops the node (fail-stop). So a datagram signed with
the cluster's key but carrying nonsense (a buggy or older peer, a compromised key) must cost at
most that datagram: here every message kind, with fields drawn anywhere in their ranges, from
any rank or a tie-breaker, to every node of a settled simulated cluster (leaders and members).
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierclust.codec import EncodeError, MessageRegistry
from hierclust.core.node import Node
from hierclust.core.types import Received
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document
from tests.codec.samples import strategy_for

REGISTRY = MessageRegistry.from_module()
TOPOLOGY = from_dict(generate_document(8, 5, base_port=9000), source="core-fuzz")
SECOND = 1_000_000_000


def accepted(msg: Any) -> Any:
    """``msg`` as a receiver would hold it after decoding, or None when the codec refuses it."""
    try:
        kind, body = REGISTRY.encode_body(msg)
    except EncodeError:
        return None
    decode = REGISTRY.decoder(kind)
    assert decode is not None
    try:
        return decode(body)
    except ValueError:
        return None


messages = st.one_of(*(strategy_for(t) for t in REGISTRY.message_types)).map(accepted)


def settled_cluster() -> tuple[list[Node], int]:
    """The 8-node topology run 10 s in the simulator: every group led, members following."""
    sim = Simulator(TOPOLOGY, seed=5, clocks=False)
    sim.start_all()
    sim.run_until(10 * SECOND)
    return list(sim.nodes), sim.now


NODES, SETTLED_NS = settled_cluster()
LEADERS = sorted({r for r, n in enumerate(NODES) for g in n.groups() if n.is_leader(g)})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(messages.filter(lambda m: m is not None), min_size=1, max_size=4),
    st.integers(-4, 9),
    st.integers(0, 7),
)
def test_any_accepted_message_never_makes_step_raise(msgs: list[Any], src: int, rank: int) -> None:
    assert LEADERS, "the simulated cluster elected leaders"
    node = copy.deepcopy(NODES[rank])
    now = SETTLED_NS
    for msg in msgs:
        now += 1000
        node.step(now, Received(src, msg))
