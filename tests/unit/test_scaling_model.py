"""docs/SCALING.md's model: its byte counts by hand for small cases, its cluster table
equal to what benchmarks/scaling_model.py prints (so the page cannot drift from the
formulas), and the slow-link benchmark's link arithmetic."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from scaling_model import cluster_step, main, step_seconds, wire_bytes  # noqa: E402
from slow_link import link_bytes_per_s  # noqa: E402


def test_bytes_on_the_wire_by_hand():
    # 4 ranks, gradient 8 bytes, parameters 8 bytes.
    assert wire_bytes("ddp", 8, 8, 4) == pytest.approx(12)  # 2 x 3/4 x 8
    assert wire_bytes("ddp", 8, 8, 4, 0.75, compact=True) == pytest.approx(3)
    assert wire_bytes("fsdp2", 8, 8, 4) == pytest.approx(6 + 12)  # 3/4 x 8 + 2 x 3/4 x 8
    assert wire_bytes("fsdp2", 8, 8, 4, 0.5, compact=True) == pytest.approx(3 + 12)
    assert wire_bytes("fsdp2", 8, 8, 2, reduce_scatter_like_all_reduce=True) == \
        pytest.approx(8 + 8)
    assert step_seconds(1.0, 100.0, 50.0) == pytest.approx(3.0)


def test_compaction_pays_across_nodes_and_little_inside_one():
    def ratio(nodes, backend, rate):
        return cluster_step(nodes, backend, rate, True)["step_ms"] / \
            cluster_step(nodes, backend, rate, False)["step_ms"]

    assert ratio(2, "ddp", 0.9) < 0.2 and ratio(2, "ddp", 0.5) < 0.6
    assert 0.65 < ratio(2, "fsdp2", 0.9) < 0.75  # the parameter all-gathers stay
    assert ratio(1, "fsdp2", 0.5) > 0.9
    assert ratio(2, "ddp", 0.05) < 1.0  # pays from small drop rates on


def test_the_scaling_page_holds_the_models_table(capsys):
    main([])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    page = (ROOT / "docs" / "SCALING.md").read_text()
    assert len(rows) == 21 and all(row in page for row in rows)


def test_link_rates_in_payload_bytes():
    assert link_bytes_per_s("100mbit") == pytest.approx(12.5e6 * 1448 / 1514)
    assert link_bytes_per_s("1gbit") == pytest.approx(125e6 * 1448 / 1514)
