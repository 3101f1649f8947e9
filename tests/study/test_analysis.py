"""The study's statistics against closed-form values computed here by hand."""

from __future__ import annotations

import math

import pytest

from graddrop_dist.study.analysis import paired_difference

# Student's t 0.975 quantile with 2 degrees of freedom: 4.302652729911275 (tables).
T_975_DF2 = 4.302652729911275


def test_paired_difference_is_the_paired_t_test():
    cell = {1: 0.50, 2: 0.60, 3: 0.70}
    base = {1: 0.40, 2: 0.45, 3: 0.65, 4: 0.99}  # seed 4 has no partner: not used
    result = paired_difference(cell, base)
    # differences 0.10, 0.15, 0.05: mean 0.10, sample std 0.05, standard error 0.05/sqrt(3)
    se = 0.05 / math.sqrt(3)
    assert result["seeds"] == [1, 2, 3]
    assert result["mean"] == pytest.approx(0.10)
    assert result["ci95"] == pytest.approx([0.10 - T_975_DF2 * se, 0.10 + T_975_DF2 * se])
    t = 0.10 / se  # 3.4641; two-sided p for 2 df: 1 - t / sqrt(t^2 + 2)
    assert result["p"] == pytest.approx(1 - t / math.sqrt(t * t + 2))


def test_no_test_from_one_seed_or_identical_differences():
    assert math.isnan(paired_difference({1: 0.5}, {1: 0.4})["p"])
    same = paired_difference({1: 0.5, 2: 0.6}, {1: 0.4, 2: 0.5})
    assert same["mean"] == pytest.approx(0.1) and math.isnan(same["p"])
