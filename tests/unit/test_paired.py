"""benchmarks/paired.py: the pairing order, the bootstrap interval (its coverage checked
by simulation against a known median) and the gate's rule (fail only when the whole
interval lies past the goal)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from paired import Goal, Interval, alternate, median_interval, ratio_interval  # noqa: E402


def test_pairs_alternate_their_order_after_unrecorded_warm_up():
    calls = []

    def measure(side):
        def run():
            calls.append(side)
            return f"{side}{len(calls)}"
        return run

    a, b = alternate(measure("A"), measure("B"), pairs=4, warmup=1)
    assert calls == ["A", "B", "A", "B", "B", "A", "A", "B", "B", "A"]
    assert a == ["A3", "A6", "A7", "A10"] and b == ["B4", "B5", "B8", "B9"]


def test_interval_contains_the_median_and_narrows_with_more_pairs():
    rng = np.random.default_rng(1)
    few = median_interval(rng.lognormal(0.0, 0.05, 10))
    many = median_interval(rng.lognormal(0.0, 0.05, 200))
    for interval in (few, many):
        assert interval.low <= interval.median <= interval.high
    assert many.high - many.low < (few.high - few.low) / 2
    assert median_interval([1.0, 1.1, 0.9, 1.05]) == median_interval([1.0, 1.1, 0.9, 1.05])


def test_interval_covers_the_true_median_about_95_percent_of_the_time():
    # 200 simulated benchmarks of 31 noisy pairs around a true ratio of 1.0: nominal 95%;
    # the binomial spread of 200 trials puts a correct method above 0.89 with
    # overwhelming probability, and a method that ignores the noise far below.
    rng = np.random.default_rng(7)
    covered = sum(interval.low <= 1.0 <= interval.high
                  for interval in (median_interval(rng.lognormal(0.0, 0.05, 31), seed=i)
                                   for i in range(200)))
    assert covered / 200 >= 0.89


def test_exact_counts_give_a_point_interval_and_ratios_need_equal_pairs():
    assert median_interval([0.5, 0.5, 0.5]) == Interval(0.5, 0.5, 0.5, 3)
    assert ratio_interval([2.0, 4.0], [1.0, 2.0]).median == 0.5
    with pytest.raises(ValueError, match="2 baseline values for 1 treated"):
        ratio_interval([1.0, 2.0], [1.0])


@pytest.mark.parametrize("low,high,at_least,missed", [
    (1.06, 1.10, False, True),   # wholly above an upper goal
    (1.04, 1.10, False, False),  # straddles it: noise could explain it
    (0.95, 1.01, False, False),
    (0.40, 0.49, True, True),    # wholly below a lower goal
    (0.45, 0.60, True, False)])
def test_a_goal_is_missed_only_by_a_whole_interval(low, high, at_least, missed):
    limit = 0.5 if at_least else 1.05
    goal = Goal("x", Interval((low + high) / 2, low, high, 30), limit, at_least=at_least)
    assert goal.missed is missed
    assert goal.row().endswith("MISSED |" if missed else "ok |")
