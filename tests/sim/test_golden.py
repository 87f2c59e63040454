"""Golden digests: the protocol's behaviour, pinned.

Every event every node emits (virtual time, rank, the event itself) is hashed in order, together
with the report of a run or the outcome of a fuzz schedule (wall-clock and CPU fields left out).
A refactor must leave every digest as it was. A change that alters behaviour on purpose updates
them in the same commit, and says why:

    HIERCLUST_UPDATE_GOLDEN=1 .venv/bin/pytest tests/sim/test_golden.py

The fuzz seeds are the 200 schedules that ``make test`` ran when the digests were first taken.
The first ten simulator runs use balanced generated groups (the generator's only layout when the
digests were first taken); the last two use the default, odd-sized groups with a witness on an
even top group.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hierclust.sim.fuzz import run_schedule
from hierclust.sim.scenario import KillPlan, deterministic_view, run_kill
from hierclust.sim.simulator import Simulator
from hierclust.topology import from_dict, generate_document, load

GOLDEN = Path(__file__).with_name("golden.json")
UPDATE = os.environ.get("HIERCLUST_UPDATE_GOLDEN") == "1"
REPO = Path(__file__).resolve().parents[2]

# (name, topology: node count or a file under topologies/, fan-out, generated sizes, kill, seed,
# loss, planned)
SIM_RUNS: list[tuple[str, int | str, int, str, str, int, float, bool]] = [
    ("n100-leaf", 100, 8, "balanced", "leaf", 1, 0.0, False),
    ("n100-leader", 100, 8, "balanced", "leader", 2, 0.0, False),
    ("n300-root", 300, 16, "balanced", "root-leader", 3, 0.0, False),
    ("n1000-leaf-loss5", 1000, 16, "balanced", "leaf", 4, 0.05, False),
    ("n1000-leader", 1000, 16, "balanced", "leader", 5, 0.0, False),
    ("n500-f5-leader-loss10", 500, 5, "balanced", "leader", 6, 0.1, False),
    ("n2000-root-loss2", 2000, 16, "balanced", "root-leader", 7, 0.02, False),
    ("n64-f4-leader-loss20", 64, 4, "balanced", "leader", 8, 0.2, False),
    ("seed-leaf", "seed.toml", 0, "", "leaf", 9, 0.0, False),
    ("n1000-leader-planned", 1000, 16, "balanced", "leader", 10, 0.0, True),
    ("odd-n1000-root-loss5", 1000, 16, "odd", "root-leader", 11, 0.05, False),
    ("odd-n300-leader", 300, 8, "odd", "leader", 12, 0.0, False),
]


def _golden() -> dict[str, dict[str, str]]:
    if GOLDEN.exists():
        data: dict[str, dict[str, str]] = json.loads(GOLDEN.read_text())
        return data
    return {"sim": {}, "fuzz": {}}


FUZZ_SEEDS = [int(seed) for seed in _golden()["fuzz"]]


class Transcript:
    """A running hash of every event the simulator sees, in order."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.events = 0

    def add(self, *parts: Any) -> None:
        self.hash.update(repr(parts).encode())
        self.hash.update(b"\n")

    def digest(self) -> str:
        return self.hash.hexdigest()[:24]


@pytest.fixture
def transcript(monkeypatch: pytest.MonkeyPatch) -> Iterator[Transcript]:
    found = Transcript()
    emit = Simulator._event

    def recording(sim: Simulator, rank: int, event: Any) -> None:
        found.events += 1
        found.add(sim.now, rank, event)
        emit(sim, rank, event)

    monkeypatch.setattr(Simulator, "_event", recording)
    yield found


@pytest.fixture(scope="module")
def recorded() -> Iterator[dict[str, dict[str, str]]]:
    """What this run computed; written back to golden.json with HIERCLUST_UPDATE_GOLDEN=1."""
    found: dict[str, dict[str, str]] = {"sim": {}, "fuzz": {}}
    yield found
    if UPDATE:
        data = _golden()
        for part in ("sim", "fuzz"):
            data[part].update(found[part])
        GOLDEN.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")


def _check(part: str, name: str, digest: str, recorded: dict[str, dict[str, str]]) -> None:
    recorded[part][name] = digest
    if UPDATE:
        return
    expected = _golden()[part].get(name)
    assert expected is not None, f"no golden digest for {part}/{name}: run with UPDATE (see top)"
    assert digest == expected, (
        f"{part}/{name}: behaviour changed (digest {digest}, golden {expected}); if on purpose, "
        "update the digests (see the module docstring) and say why in the commit"
    )


def test_golden_file_pins_every_run_and_200_fuzz_seeds() -> None:
    data = _golden()
    assert sorted(data["sim"]) == sorted(run[0] for run in SIM_RUNS)
    assert len(FUZZ_SEEDS) == len(set(FUZZ_SEEDS)) == 200


@pytest.mark.parametrize(
    ("name", "size", "fanout", "sizes", "kill", "seed", "loss", "planned"),
    SIM_RUNS,
    ids=[run[0] for run in SIM_RUNS],
)
def test_sim_report_and_transcript_are_unchanged(
    name: str,
    size: int | str,
    fanout: int,
    sizes: str,
    kill: str,
    seed: int,
    loss: float,
    planned: bool,
    transcript: Transcript,
    recorded: dict[str, dict[str, str]],
) -> None:
    if isinstance(size, str):
        topology = load(REPO / "topologies" / size)
    else:
        document = generate_document(size, fanout, sizes=sizes)
        topology = from_dict(document, source=f"--nodes {size}")
    report = run_kill(topology, KillPlan(kill=kill, seed=seed, loss=loss, planned=planned))
    assert report["notified"] == report["survivors"], report
    assert report["sim"]["violations"] == [], report["sim"]["violations"]
    assert transcript.events > 100  # the recorder sees the run
    transcript.add(json.dumps(deterministic_view(report), sort_keys=True))
    _check("sim", name, transcript.digest(), recorded)


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_fuzz_schedule_transcript_is_unchanged(
    seed: int, transcript: Transcript, recorded: dict[str, dict[str, str]]
) -> None:
    outcome = run_schedule(seed)
    assert outcome.ok, f"seed {seed}: {outcome.violations[:3]} {outcome.liveness[:3]}"
    transcript.add(outcome.faults, outcome.violations, outcome.liveness)
    _check("fuzz", str(seed), transcript.digest(), recorded)
