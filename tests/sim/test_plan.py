"""The plans of the randomized runs: one seed, one plan; steps removed by name for shrinking."""

from __future__ import annotations

from sim.workload import make_plan, step_names, without


def test_a_seed_always_makes_the_same_plan() -> None:
    assert make_plan(7) == make_plan(7)
    assert make_plan(7) != make_plan(8)


def test_removing_steps_keeps_the_rest_in_order() -> None:
    plan = make_plan(3)
    names = step_names(plan)
    assert len(names) == plan.steps()
    smaller = without(plan, set(names[1::2]))
    assert smaller.steps() == len(names) - len(names[1::2])
    kept = [op for rnd in smaller.rounds for op in rnd.ops]
    original = [op for rnd in plan.rounds for op in rnd.ops]
    assert kept == [op for op in original if op in kept]  # a subsequence: order kept
    assert without(plan, set(names)).steps() == 0
