"""Swarm fuzzing of the real core: safety during random faults, liveness after healing."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hierclust.sim.fuzz import fuzz, run_schedule


def explain(seed: int) -> str:
    outcome = run_schedule(seed)
    return (
        f"seed {seed}: faults {outcome.faults}; violations {outcome.violations[:3]}; "
        f"liveness {outcome.liveness[:3]}; reproduce: hierclust sim fuzz --schedules 1 --seed {seed}"
    )


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,  # the same 200 seeds on every run; `make fuzz` explores 10,000 more
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=st.integers(min_value=0, max_value=2**31))
def test_random_fault_schedules_keep_safety_and_liveness(seed: int) -> None:
    outcome = run_schedule(seed)
    assert outcome.ok, explain(seed)


def test_a_schedule_is_a_pure_function_of_its_seed() -> None:
    first, second = run_schedule(1234), run_schedule(1234)
    assert (first.faults, first.violations, first.liveness) == (
        second.faults,
        second.violations,
        second.liveness,
    )
    assert first.faults, "schedules do inject faults"


@pytest.mark.fuzz
@pytest.mark.timeout(7200)
def test_ten_thousand_schedules() -> None:
    count = int(os.environ.get("HIERCLUST_FUZZ_SCHEDULES", "10000"))
    seed = int(os.environ.get("HIERCLUST_FUZZ_SEED", "1"))
    result = fuzz(count, seed)
    assert result["failed_seeds"] == [], result["reproduce"][:10]
