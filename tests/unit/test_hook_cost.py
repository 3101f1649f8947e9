"""benchmarks/hook_cost.py on a tiny model: both copies with GradDrop are measured over
every round, and on a model this small the hooks' cost shows (the whole interval above 1)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import hook_cost  # noqa: E402


def test_hooks_cost_shows_on_a_tiny_model_and_every_round_counts():
    result = hook_cost.measure(rounds=20, hidden=32, layers=2, vocab=500, warmup=2)
    assert set(result) == {hook_cost.THROUGHOUT, hook_cost.REATTACHED}
    for ratio, added in result.values():
        assert ratio.pairs == added.pairs == 20
        assert ratio.low > 1.0 and added.low > 0.0
