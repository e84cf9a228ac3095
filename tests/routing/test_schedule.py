"""Debouncing route recomputes: one recompute per burst, bounded delay, bounded rate."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from routing.schedule import (
    DEFAULT_MAX_DELAY_S,
    DEFAULT_MIN_INTERVAL_S,
    DEFAULT_QUIET_S,
    RecomputeSchedule,
)

QUIET, MAX_DELAY, MIN_INTERVAL = 0.05, 1.0, 0.25


def schedule() -> RecomputeSchedule:
    return RecomputeSchedule(quiet_s=QUIET, max_delay_s=MAX_DELAY, min_interval_s=MIN_INTERVAL)


def run(plan: RecomputeSchedule, changes: list[float], until: float) -> list[float]:
    """Drive the schedule like a node: report changes, fire the timer at its deadline."""
    recomputes: list[float] = []
    pending = sorted(changes)
    now = 0.0
    while True:
        deadline = plan.deadline()
        upcoming = [t for t in (deadline, pending[0] if pending else None) if t is not None]
        if not upcoming or min(upcoming) > until:
            return recomputes
        now = max(now, min(upcoming))
        if pending and pending[0] <= now:
            plan.changed(pending.pop(0))
        elif plan.due(now):
            recomputes.append(now)


def test_nothing_pending_means_no_timer() -> None:
    plan = schedule()
    assert plan.deadline() is None
    assert not plan.pending
    assert plan.due(100.0) is False
    plan.changed(100.0)
    assert plan.pending


def test_a_burst_causes_one_recompute_after_it_goes_quiet() -> None:
    plan = schedule()
    for t in (0.0, 0.01, 0.02, 0.03):
        plan.changed(t)
    assert plan.deadline() == pytest.approx(0.03 + QUIET)
    assert plan.due(0.07) is False
    assert plan.due(0.08) is True
    assert not plan.pending
    assert plan.deadline() is None
    assert plan.due(0.09) is False


def test_a_burst_of_random_size_recomputes_once() -> None:
    rng = random.Random(42)
    for _ in range(100):
        start = rng.uniform(0, 10)
        # All within QUIET of the first change, so no gap ends the burst early.
        burst = [start + rng.uniform(0, QUIET) for _ in range(rng.randint(1, 50))]
        assert len(run(schedule(), burst, until=100.0)) == 1


def test_a_steady_trickle_still_recomputes_within_max_delay() -> None:
    changes = [i * 0.04 for i in range(500)]  # every 40 ms for 20 s: never quiet for 50 ms
    times = run(schedule(), changes, until=30.0)
    assert times[0] == pytest.approx(MAX_DELAY)
    gaps = [b - a for a, b in pairwise(times)]
    assert all(gap <= MAX_DELAY + 0.04 + 1e-9 for gap in gaps)
    assert times[-1] == pytest.approx(changes[-1] + QUIET)


def test_recomputes_are_spaced_by_min_interval() -> None:
    changes = [i * 0.06 for i in range(100)]  # each change alone would be a burst
    times = run(schedule(), changes, until=30.0)
    gaps = [b - a for a, b in pairwise(times)]
    assert all(gap >= MIN_INTERVAL - 1e-9 for gap in gaps)
    assert len(times) < len(changes) / 3


def test_the_first_recompute_is_not_held_back() -> None:
    plan = schedule()
    plan.changed(5.0)
    assert plan.deadline() == pytest.approx(5.0 + QUIET)


def test_a_change_after_a_recompute_waits_for_min_interval() -> None:
    plan = schedule()
    plan.changed(0.0)
    assert plan.due(QUIET)
    plan.changed(QUIET + 0.01)
    assert plan.deadline() == pytest.approx(QUIET + MIN_INTERVAL)


def test_a_late_timer_still_fires() -> None:
    plan = schedule()
    plan.changed(0.0)
    assert plan.due(10.0) is True


@pytest.mark.parametrize(
    "kwargs",
    [{"quiet_s": -1.0}, {"min_interval_s": -1.0}, {"quiet_s": 2.0, "max_delay_s": 1.0}],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RecomputeSchedule(**kwargs)


def test_the_defaults_fit_together() -> None:
    plan = RecomputeSchedule()
    plan.changed(0.0)
    assert plan.deadline() == pytest.approx(DEFAULT_QUIET_S)
    assert plan.due(DEFAULT_QUIET_S)
    plan.changed(DEFAULT_QUIET_S)
    assert plan.deadline() == pytest.approx(DEFAULT_QUIET_S + DEFAULT_MIN_INTERVAL_S)
    assert DEFAULT_MAX_DELAY_S >= DEFAULT_MIN_INTERVAL_S
