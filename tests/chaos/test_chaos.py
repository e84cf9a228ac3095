"""The short chaos run (issue 8): 8 node processes in network namespaces, under load, through about
a minute of seeded faults (kill -9 and restart, SIGSTOP/SIGCONT, partitions, a throttled or lossy
link, a double spend across a partition), then the checker's seven invariants.

The seed is printed first; ``LIBERATION_CHAOS_SEED=S`` replays a run's schedule. The run's
stores, histories, logs and manifest stay in pytest's tmp directory (printed on failure), and
``python -m tests.chaos.checker DIR/manifest.json`` checks them again. The long run is
``bench/chaos.py``.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from tests.chaos.checker import ChaosViolation, check
from tests.chaos.netns import cannot_make_namespaces
from tests.chaos.runner import ChaosRun, RunConfig, new_seed

pytestmark = [pytest.mark.slow, pytest.mark.netns]

SEED_VARIABLE = "LIBERATION_CHAOS_SEED"


async def test_short_chaos_run_loses_nothing_and_converges(tmp_path: Path) -> None:
    reason = await asyncio.to_thread(cannot_make_namespaces)
    if reason:
        pytest.skip(f"chaos run needs network namespaces: {reason}")
    seed = int(os.environ.get(SEED_VARIABLE) or new_seed())
    print(f"\n[chaos] seed {seed} (replay: {SEED_VARIABLE}={seed})")
    config = RunConfig(
        seed=seed,
        workdir=tmp_path / "chaos",
        nodes=8,
        duration_s=60.0,
        fault_every_s=8.0,
        quiet_s=12.0,
    )
    # The run and the check block (processes, sleeps of the schedule, SQLite): off the loop.
    outcome = await asyncio.to_thread(ChaosRun(config).run)
    report = await asyncio.to_thread(check, outcome.manifest)
    print(report.render())
    print(f"[chaos] stores, histories and logs in {config.workdir}")
    if not report.ok:
        raise ChaosViolation(report)
