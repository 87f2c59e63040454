"""`hierclust bench hostile`: hostile datagrams against live agents and a witness; none gets in."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from typer.testing import CliRunner

from hierclust.bench.hostile import EITHER_REPLAY, _matches
from hierclust.bench.hostile_forge import KINDS, proc_udp_drops
from hierclust.cli import app
from tests.runtime.conftest import free_base_port

runner = CliRunner()


def capture_forbidden() -> str | None:
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM).close()
    except PermissionError:
        return "capturing loopback traffic needs CAP_NET_RAW"
    return None


@pytest.mark.skipif(capture_forbidden() is not None, reason=str(capture_forbidden()))
def test_twenty_thousand_hostile_datagrams_change_nothing_and_are_all_counted() -> None:
    base = free_base_port(10) + 1  # the witness sits one below the nodes
    result = runner.invoke(
        app,
        ["bench", "hostile", "--datagrams", "20000", "--rate", "10000", "--json",
         "--base-port", str(base)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    s = report["summary"]
    assert s["ok"] and s["datagrams_sent"] == 20_000
    assert s["accepted"] == 0 and s["crashes"] == 0 and s["counters_match"]
    assert s["views_changed"] == [] and not s["witness_changed"]
    assert s["events_during_campaign"] == 0
    assert s["received"] == 20_000 - s["kernel_dropped"] == s["dropped"]
    kinds = report["kinds"]
    assert list(kinds) == list(KINDS)
    assert set(kinds["truncated"]["by_reason"]) == {"truncated"}
    assert set(kinds["oversized"]["by_reason"]) == {"oversized"}
    assert set(kinds["wrong_key"]["by_reason"]) == {"bad_tag", "unknown_key"}
    assert set(kinds["replayed"]["by_reason"]) <= {"replayed", "stale_incarnation"}
    assert kinds["mutated"]["by_reason"]["bad_tag"] > 0
    listeners = report["config"]["listeners"]
    assert {x["role"] for x in listeners} == {"node", "witness"}
    witness = next(x["name"] for x in listeners if x["role"] == "witness")
    for kind in KINDS:  # the witness got (and dropped) its share of every kind
        entry = report["per_listener"][kind][witness]
        assert entry["sent"] > 0 and entry["match"]
        assert sum(entry["dropped"].values()) == entry["sent"] - entry["kernel_dropped"]
        for name, entry in report["per_listener"][kind].items():
            # every arrival at every socket, the cluster's own traffic too, is accounted for
            assert entry["arrived"] == entry["accepted_all"] + sum(entry["dropped"].values()), name


def entry(**fields: Any) -> dict[str, Any]:
    return {"kernel_dropped": 0, **fields}


def test_counters_match_only_when_every_received_datagram_is_dropped_as_predicted() -> None:
    exact = entry(dropped={"bad_tag": 3, "garbage": 2}, predicted={"bad_tag": 3, "garbage": 2})
    assert _matches(exact, 5)
    one_accepted = entry(dropped={"bad_tag": 3, "garbage": 1}, predicted=exact["predicted"])
    assert not _matches(one_accepted, 5)
    wrong_reason = entry(dropped={"bad_tag": 4, "garbage": 1}, predicted=exact["predicted"])
    assert not _matches(wrong_reason, 5)
    forged_valid = entry(dropped={"bad_tag": 3}, predicted={"bad_tag": 3, "accepted": 1})
    assert not _matches(forged_valid, 3)
    # loopback lost two before the socket: each reason may fall short, the total must hold
    lossy = entry(kernel_dropped=2, dropped={"bad_tag": 2, "garbage": 1},
                  predicted=exact["predicted"])  # fmt: skip
    assert _matches(lossy, 3) and not _matches(lossy, 4)
    replay = entry(dropped={"replayed": 4, "stale_incarnation": 1}, predicted={EITHER_REPLAY: 5})
    assert _matches(replay, 5)
    assert not _matches(entry(dropped={"replayed": 4}, predicted={EITHER_REPLAY: 5}), 5)


def test_kernel_drop_counters_are_read_per_local_port(tmp_path: Any) -> None:
    table = tmp_path / "udp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode ref pointer drops\n"
        "  1: 0100007F:5DC0 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 "
        "0000000000000000 7\n"
        "  2: 00000000:5DC1 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 1 2 "
        "0000000000000000 9\n"
    )
    assert proc_udp_drops({0x5DC0, 0x5DC1}, table) == {0x5DC0: 7}
