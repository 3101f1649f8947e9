"""benchmarks/xlmr_large_cpu.py: XLM-R-Large's real architecture on 2 CPU ranks under
FSDP2 and ZeRO-3 with GradDrop checked across ranks every step (slow: about 1 and 2
minutes, and at most 19 GiB),
and the same code on a tiny config in every test run so that it cannot rot."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from graddrop_dist.testing.local_ranks import run_ranks

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

from xlmr_large_cpu import LARGE, main, model_gib, pairs_on_rank  # noqa: E402


def tiny_config(tmp_path) -> Path:
    config = json.loads(LARGE.read_text())
    config.update(vocab_size=1000, hidden_size=32, num_hidden_layers=2,
                  num_attention_heads=2, intermediate_size=64)
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(config))
    return path


@pytest.mark.distributed
def test_the_benchmark_runs_on_a_tiny_config(tmp_path, capsys):
    main(["--config", str(tiny_config(tmp_path)), "--pairs", "1", "--length", "8"])
    rows = capsys.readouterr().out.strip().splitlines()[-2:]
    assert [row.split(" | ")[0] for row in rows] == ["| fsdp2", "| deepspeed"]
    assert all(row.count("|") == 8 for row in rows)


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.parametrize("backend", ["fsdp2", "deepspeed"])
def test_xlmr_large_on_two_cpu_ranks_with_graddrop(backend):
    ranks = run_ranks(pairs_on_rank, 2, backend, 1, 2, 32, LARGE, timeout=1500)
    first = ranks[0]
    assert 559e6 < first["parameters"] < 561e6  # the real architecture, not a stand-in
    peak_without = max(max(s[2] for s in r["without"]) for r in ranks)
    peak_with = max(max(s[2] for s in r["with"]) for r in ranks)
    assert peak_with <= 1.05 * peak_without
    model = model_gib(first["parameters"], first["embedding"], 2, backend,
                      process_gib=max(r["process_gib"] for r in ranks))
    assert model["step"] <= peak_without <= 1.3 * model["step"]  # measured: 1.03-1.15x
    # The ranks share 24 GiB here: each must stay under 11 GiB (measured: 9.3 at most).
    assert peak_with < 11
