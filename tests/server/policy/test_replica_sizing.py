"""How many requests a Ray replica holds, from its measured final cost."""

from __future__ import annotations

import pytest

from server.policy.replica_sizing import replica_limits


def test_a_replica_holds_the_finals_it_can_answer_within_the_budget():
    limits = replica_limits(final_cost_s=0.3, budget_s=1.5)
    assert (limits.max_ongoing_requests, limits.target_ongoing_requests) == (5, 2)


def test_batching_multiplies_what_a_replica_holds():
    assert replica_limits(0.3, 1.5, batch_size=4).max_ongoing_requests == 20


def test_a_slow_model_still_holds_a_final_beside_a_running_partial():
    limits = replica_limits(final_cost_s=2.0, budget_s=1.5)
    assert (limits.max_ongoing_requests, limits.target_ongoing_requests) == (2, 1)


@pytest.mark.parametrize(("cost", "budget"), [(0.0, 1.5), (0.5, 0.0), (-1.0, 1.0)])
def test_costs_and_budgets_must_be_positive(cost, budget):
    with pytest.raises(ValueError):
        replica_limits(cost, budget)
