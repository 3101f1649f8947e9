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


def test_effect_size_is_the_mean_difference_over_its_standard_deviation():
    result = paired_difference({1: 0.50, 2: 0.60, 3: 0.70}, {1: 0.40, 2: 0.45, 3: 0.65})
    assert result["d_z"] == pytest.approx(0.10 / 0.05)


def test_holm_adjustment_against_hand_computed_values():
    from graddrop_dist.study.analysis import holm

    adjusted = holm({"a": 0.01, "b": 0.04, "c": 0.03, "d": 0.005, "e": math.nan})
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max
    assert adjusted == pytest.approx({"d": 0.02, "a": 0.03, "c": 0.06, "b": 0.06})
    assert holm({"a": 0.5, "b": 0.6}) == pytest.approx({"a": 1.0, "b": 1.0})


def test_endpoints_average_the_zero_shot_languages_and_each_group():
    from graddrop_dist.study.analysis import endpoints

    scores = {"en": 0.9, "de": 0.6, "sw": 0.4, "am": 0.2, "chr": 0.1}
    found = endpoints(scores, "en")
    assert found["zero-shot avg"] == pytest.approx((0.6 + 0.4 + 0.2 + 0.1) / 4)
    assert found["xnli avg"] == pytest.approx((0.6 + 0.4) / 2)  # English is not zero-shot
    assert found["low-resource avg"] == pytest.approx(0.2)
    assert "xnli avg" not in endpoints({"en": 0.9, "am": 0.2}, "en")
