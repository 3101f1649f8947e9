"""examples/accelerate_loop.py: GradDrop attached to what `accelerator.prepare` returns.
On one process it trains what GradDrop on a plain loop trains; on 2 gloo ranks under DDP
and DeepSpeed ZeRO-2/3 it reaches the one-process parameters."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_hf_trainer import assert_close, free_port

from graddrop_dist import GradDrop, GradDropConfig

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "accelerate_loop.py"
BACKENDS = Path(__file__).resolve().parent / "accelerate_backends.py"
TIMEOUT = 240

pytestmark = pytest.mark.timeout(600)


def load_example():
    spec = importlib.util.spec_from_file_location("accelerate_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(argv: list[str], out: Path) -> dict[str, torch.Tensor]:
    """Runs argv (which names `out`) and returns the parameters it wrote there."""
    out.mkdir(parents=True)
    done = subprocess.run(argv, check=False, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:]
    assert "8 optimizer steps, GradDrop seed 1234" in done.stdout, done.stdout[-2000:]
    return load_file(out / "final.safetensors")


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    out = tmp_path_factory.mktemp("accelerate") / "one"
    return run([sys.executable, str(EXAMPLE), str(out)], out)


def test_example_on_one_process_trains_what_a_plain_loop_trains(one_process):
    example = load_example()
    model = example.tiny_model()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, eps=1e-3)
    GradDrop(GradDropConfig(drop_rate=0.5, seed=1234)).attach(model, optimizer)
    loader = torch.utils.data.DataLoader(example.tiny_dataset(), batch_size=4)
    for index, batch in enumerate(loader):
        (model(**batch).loss / 2).backward()
        if index % 2 == 1:
            optimizer.step()
            optimizer.zero_grad()
    reference = {k: v.detach() for k, v in model.state_dict().items()}
    assert_close(one_process, {k: reference[k] for k in one_process}, atol=1e-6)


@pytest.mark.parametrize("backend", ["ddp", "zero2", "zero3"])
def test_example_on_two_ranks_reaches_the_one_process_parameters(backend, one_process,
                                                                  tmp_path):
    out = tmp_path / backend
    trained = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                   "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
                   str(BACKENDS), str(out), backend], out)
    assert_close(trained, one_process, atol=1e-6)
