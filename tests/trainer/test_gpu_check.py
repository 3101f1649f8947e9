"""`make gpu-check` on a machine without a GPU: it says so in one line and exits 2; its
parts (the backend matrix, the XLM-R-Large pairs) run here on the CPU so that they cannot
rot between GPU runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from jobs import job_dict
from graddrop_dist.testing.local_ranks import run_ranks

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def test_without_a_gpu_it_exits_2_in_one_line():
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == "gpu_check: needs a CUDA GPU and triton (torch sees " \
                                    "none here)"


def test_a_bad_job_is_one_line_before_anything_runs(tmp_path):
    job = tmp_path / "job.yaml"
    job.write_text("train:\n  lr: fast\n")
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--job", str(job)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"gpu_check: --job {job}: ") and "train.lr" in line, line
    missing = tmp_path / "absent.yaml"
    result = subprocess.run([sys.executable, str(BENCHMARKS / "gpu_check.py"), "--job",
                             str(missing)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stderr.startswith(f"gpu_check: --job {missing}: ")


def matrix_on_cpu(rank, world_size, base, folder):
    from backend_matrix import run_matrix

    return run_matrix(base, torch.device("cpu"), ["single", "fsdp2", "zero3"], ["bf16"],
                      steps=2, folder=Path(folder))


def test_the_backend_matrix_runs_the_trainer_on_each_backend(tiny_checkpoint, tmp_path):
    base = job_dict(tiny_checkpoint, tmp_path / "unused")
    (rows,) = run_ranks(matrix_on_cpu, 1, base, str(tmp_path), timeout=240)
    assert [(r["backend"], r["ok"], r.get("error")) for r in rows] == \
        [("single", True, None), ("fsdp2", True, None), ("zero3", True, None)]
    assert all(r["steps"] == 2 and r["device"] == "cpu" for r in rows)
    assert all(0.0 <= r["train_language_test"] <= 1.0 for r in rows)


def large_pairs_on_cpu(rank, world_size, config_path):
    from large_model import measure

    return measure(torch.device("cpu"), pairs=2, warmup=1, batch=2, length=8,
                   config_path=Path(config_path))


def test_the_large_model_pairs_run_with_a_small_config(tmp_path):
    from large_model import LARGE

    config = json.loads(LARGE.read_text())
    config.update(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                  intermediate_size=64, max_position_embeddings=24)
    path = tmp_path / "small.json"
    path.write_text(json.dumps(config))
    (result,) = run_ranks(large_pairs_on_cpu, 1, str(path), timeout=240)
    assert result["pairs"] == 2 and result["parameters"] > 0
    assert result["step_s_without"] > 0 and result["step_ratio_median"] > 0
    assert result["peak_ratio"] is None  # CUDA memory only


def test_the_shipped_xlm_r_large_config_is_the_real_architecture():
    from transformers import XLMRobertaConfig
    from large_model import LARGE

    config = XLMRobertaConfig.from_json_file(str(LARGE))
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers,
            config.num_attention_heads, config.intermediate_size) == (250002, 1024, 24, 16,
                                                                      4096)
