"""Randomized runs of real daemons and a real hub (issue 10 §3); see :mod:`sim.driver` for one run.

- In the normal suite: the seeds of :data:`CI_SEEDS` (``OAIOD_SIM_SEEDS=N`` takes another count);
- soak: ``OAIOD_SOAK_SEEDS=N`` (and ``OAIOD_SOAK_OFFSET=K``) runs seeds ``K … K+N-1`` in one test and reports
  every failing seed at the end. Run it alone: ``pytest tests/sim -k soak``.

A failure prints the seed, the problems, the plan and every step's outcome, then shrinks the plan by removing
steps (at most ``OAIOD_SIM_SHRINK_RUNS`` re-runs, default 12) and prints the smallest plan that still fails.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import pytest

from sim.driver import Outcome, run_plan, shrink
from sim.workload import make_plan

pytestmark = [pytest.mark.integration, pytest.mark.sim]

CI_SEEDS = int(os.environ.get("OAIOD_SIM_SEEDS", "10"))  # 40-100 s a seed on 2 cores, by load
SOAK_SEEDS = int(os.environ.get("OAIOD_SOAK_SEEDS", "0"))
SOAK_OFFSET = int(os.environ.get("OAIOD_SOAK_OFFSET", "1000"))
SHRINK_RUNS = int(os.environ.get("OAIOD_SIM_SHRINK_RUNS", "12"))


def _summary(seed: int, outcome: Outcome) -> str:
    ops = sum(n for kind, n in outcome.ops.items() if not kind.endswith("skipped"))
    skipped = sum(n for kind, n in outcome.ops.items() if kind.endswith("skipped"))
    faults = ", ".join(f"{k} {n}" for k, n in sorted(outcome.faults.items())) or "none"
    net = ", ".join(f"{k} {n}" for k, n in sorted(outcome.network.items()) if k != "passed")
    return (
        f"sim seed {seed}: {outcome.seconds:.0f} s, {ops} ops done, {skipped} skipped, faults: {faults};"
        f" {outcome.files} files converged, {outcome.contents} contents kept;"
        f" proxy: {net or 'no faults'}"
    )


def _report_failure(seed: int, outcome: Outcome, base: Path) -> str:
    plan = make_plan(seed)
    lines = [f"sim seed {seed} FAILED ({base}):", *(f"  {p}" for p in outcome.problems[:30]), plan.describe()]
    lines += ["steps:", *(f"  {line}" for line in outcome.log)]
    if SHRINK_RUNS > 0:
        small, runs = shrink(plan, outcome.kind(), base / "shrink", SHRINK_RUNS)
        lines += [f"smallest failing plan after {runs} re-runs ({small.steps()} of {plan.steps()} steps):"]
        lines += [small.describe()]
    return "\n".join(lines)


def _run_seed(seed: int, base: Path) -> Outcome:
    outcome = run_plan(make_plan(seed), base)
    print(_summary(seed, outcome))
    return outcome


@pytest.mark.timeout(600 + 300 * SHRINK_RUNS)
@pytest.mark.parametrize("seed", range(1, CI_SEEDS + 1))
def test_random_run_converges_and_loses_nothing(seed: int, tmp_path: Path) -> None:
    outcome = _run_seed(seed, tmp_path / "run")
    if outcome.problems:
        pytest.fail(_report_failure(seed, outcome, tmp_path), pytrace=False)


@pytest.mark.slow
@pytest.mark.timeout(0)
@pytest.mark.skipif(SOAK_SEEDS <= 0, reason="soak runs only with OAIOD_SOAK_SEEDS=N")
def test_soak(tmp_path: Path) -> None:
    failed: dict[int, str] = {}
    totals: Counter[str] = Counter()
    for seed in range(SOAK_OFFSET, SOAK_OFFSET + SOAK_SEEDS):
        base = tmp_path / f"seed-{seed}"
        outcome = _run_seed(seed, base)
        totals.update(outcome.ops)
        totals.update({f"fault {k}": n for k, n in outcome.faults.items()})
        if outcome.problems:
            failed[seed] = "; ".join(outcome.problems[:3])
            print(_report_failure(seed, outcome, base) if SHRINK_RUNS > 0 else f"  {failed[seed]}")
    print(f"soak: {SOAK_SEEDS} seeds from {SOAK_OFFSET}, {len(failed)} failed; totals {dict(sorted(totals.items()))}")
    assert not failed, f"failing seeds: {failed}"
