"""GradDropCallback in the real `transformers.Trainer`: on one process it trains exactly
what GradDrop attached to a plain loop trains; on 2 gloo ranks under DDP and DeepSpeed
ZeRO-2/3 it reaches the one-process parameters, masking where that backend needs; a run
resumed from a Trainer checkpoint continues the same mask stream (and keeps a drawn
seed). FSDP is not here: accelerate, which the Trainer runs on, sets it up only on GPUs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import tiny_xlmr

from graddrop_dist import GradDrop, GradDropConfig

HERE = Path(__file__).resolve().parent
JOB = HERE / "hf_trainer_job.py"
TIMEOUT = 240
sys.path.insert(0, str(HERE))
from hf_trainer_job import ACCUM, GLOBAL_MICRO_BATCH, examples

pytestmark = pytest.mark.timeout(600)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_job(out: Path, *args: str, ranks: int = 1) -> Path:
    launcher = [sys.executable] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
        "--master_addr", "127.0.0.1", "--master_port", str(free_port())]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, str(JOB), str(out), *args], check=False, env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:]
    return out


def final_parameters(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "final" / "model.safetensors")


def assert_close(actual: dict, expected: dict, atol: float) -> None:
    assert actual.keys() == expected.keys()
    worst = max((actual[k] - expected[k]).abs().max().item() for k in expected)
    assert worst <= atol, f"largest difference {worst:.3g} > {atol}"


def plain_loop_reference(steps: int) -> dict[str, torch.Tensor]:
    """GradDrop attached to a plain PyTorch loop with the Trainer's settings."""
    model = tiny_xlmr(seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-3, weight_decay=0.0)
    GradDrop(GradDropConfig(drop_rate=0.5, seed=1234, p_start=0.8)).attach(model, optimizer)
    rows = examples(8)
    for step in range(steps):
        for micro in range(ACCUM):
            first = (step * ACCUM + micro) * GLOBAL_MICRO_BATCH
            batch = {key: torch.stack([row[key] for row in rows[first:first + 4]])
                     for key in rows[0]}
            (model(**batch).loss / ACCUM).backward()
        optimizer.step()
        optimizer.zero_grad()
    return {name: value.detach() for name, value in model.state_dict().items()}


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    return run_job(tmp_path_factory.mktemp("hf") / "single")


def test_trainer_callback_trains_what_a_plain_loop_trains(single_run, tmp_path):
    reference = plain_loop_reference(steps=4)
    trained = final_parameters(single_run)
    assert json.loads((single_run / "graddrop.json").read_text())["backend"] == "single"
    assert_close(trained, {k: reference[k] for k in trained}, atol=1e-6)
    dense = final_parameters(run_job(tmp_path / "full", "--method", "full"))
    moved = max((dense[k] - trained[k]).abs().max().item() for k in trained)
    assert moved > 1e-4, "the callback did not mask anything"


@pytest.mark.parametrize("backend, masked_as", [("ddp", "ddp"), ("zero2", "deepspeed"),
                                               ("zero3", "deepspeed")])
def test_two_ranks_reach_the_single_process_parameters(backend, masked_as, single_run,
                                                       tmp_path):
    out = run_job(tmp_path / backend, "--backend", backend, ranks=2)
    assert_close(final_parameters(out), final_parameters(single_run), atol=1e-6)
    state = json.loads((out / "graddrop.json").read_text())
    assert (state["step"], state["config"]["seed"], state["backend"]) == (4, 1234, masked_as)


def test_resumed_trainer_continues_the_mask_stream(single_run, tmp_path):
    first = run_job(tmp_path / "resumed", "--max-steps", "2", "--save-steps", "2")
    checkpoint = first / "checkpoint-2"
    saved = json.loads((checkpoint / "trainer_state.json").read_text())
    assert saved["stateful_callbacks"]["GradDropCallback"]["attributes"][
        "graddrop_state"]["step"] == 2
    run_job(first, "--resume", str(checkpoint))
    assert_close(final_parameters(first), final_parameters(single_run), atol=1e-6)


def test_resume_keeps_a_drawn_seed_across_ranks(tmp_path):
    first = run_job(tmp_path / "drawn", "--seed", "none", "--backend", "ddp",
                    "--max-steps", "2", "--save-steps", "2", ranks=2)
    saved = json.loads((first / "checkpoint-2" / "trainer_state.json").read_text())
    drawn = saved["stateful_callbacks"]["GradDropCallback"]["attributes"]["graddrop_state"]
    run_job(first, "--seed", "none", "--backend", "ddp", "--resume",
            str(first / "checkpoint-2"), ranks=2)
    final = json.loads((first / "graddrop.json").read_text())
    assert final["config"]["seed"] == drawn["config"]["seed"] is not None
    assert final["step"] == 4
