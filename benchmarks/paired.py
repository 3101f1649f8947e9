"""Paired A/B measurement for the benchmarks: A and B alternate in the same process, so a
change in the machine's load lands on both sides of a pair and cancels in its ratio;
the ratios' median gets a 95% bootstrap interval over pairs; a goal fails only when the
whole interval lies on the wrong side of it.

The order alternates too (A B, B A, A B, ...): a cost one measurement leaves to the next
(a cache, the allocator's free list, a page fault) falls on each side equally often.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 9999


@dataclass(frozen=True)
class Interval:
    """The median of per-pair ratios and its bootstrap interval."""

    median: float
    low: float
    high: float
    pairs: int

    def __str__(self) -> str:
        return f"{self.median:.3f} [{self.low:.3f}, {self.high:.3f}]"


def median_interval(values: Sequence[float], level: float = LEVEL,
                    seed: int = 0) -> Interval:
    """The median of `values` with a percentile bootstrap interval (resampling values,
    i.e. pairs); a fixed seed makes the interval a function of the measurements."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        raise ValueError("no pairs to summarise")
    median = float(np.median(data))
    if data.size == 1 or np.ptp(data) == 0.0:  # nothing to resample (exact counts)
        return Interval(median, median, median, data.size)
    result = stats.bootstrap((data,), np.median, confidence_level=level,
                             n_resamples=RESAMPLES, method="percentile",
                             random_state=np.random.default_rng(seed))
    bounds = result.confidence_interval
    return Interval(median, float(bounds.low), float(bounds.high), data.size)


def ratio_interval(baseline: Sequence[float], treated: Sequence[float]) -> Interval:
    """treated / baseline, pair by pair."""
    if len(baseline) != len(treated):
        raise ValueError(f"{len(baseline)} baseline values for {len(treated)} treated")
    return median_interval([b / a for a, b in zip(baseline, treated)])


def alternate(measure_a: Callable[[], object], measure_b: Callable[[], object],
              pairs: int, warmup: int) -> tuple[list, list]:
    """`warmup` unrecorded rounds of A then B, then `pairs` recorded pairs, A first in
    even pairs and B first in odd ones. Returns (A's values, B's values) in pair order."""
    for _ in range(warmup):
        measure_a()
        measure_b()
    a_values, b_values = [], []
    for index in range(pairs):
        if index % 2 == 0:
            a_values.append(measure_a())
            b_values.append(measure_b())
        else:
            b_values.append(measure_b())
            a_values.append(measure_a())
    return a_values, b_values


@dataclass(frozen=True)
class Goal:
    """A ratio's goal: at most `limit` (or at least, with at_least=True)."""

    name: str
    interval: Interval
    limit: float
    at_least: bool = False

    @property
    def missed(self) -> bool:
        """Only when the whole interval lies past the limit: noise alone cannot fail it."""
        if self.at_least:
            return self.interval.high < self.limit
        return self.interval.low > self.limit

    def row(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "MISSED" if self.missed else "ok"
        return (f"| {self.name} | {self.interval} | {self.interval.pairs} | "
                f"{sign} {self.limit:.3f} | {verdict} |")


def goals_table(goals: Sequence[Goal]) -> str:
    lines = ["| measurement | median [95% interval] | pairs | goal | verdict |",
             "|---|---|---|---|---|"]
    return "\n".join(lines + [goal.row() for goal in goals])


def resident_kib(field: str = "VmRSS") -> int:
    """This process's resident set (VmRSS) or its high-water mark (VmHWM), in KiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def timed_with_peak(fn: Callable[[], object]) -> tuple[float, int]:
    """(seconds, peak resident KiB) of one call: the high-water mark is reset to the
    current resident set first (Linux's /proc/self/clear_refs), so earlier peaks, the
    model's build among them, do not count."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start, resident_kib("VmHWM")
