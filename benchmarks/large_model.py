"""XLM-R-Large (the real architecture from graddrop_dist/recipes/models/xlm-roberta-large.json, random
weights) under DeepSpeed ZeRO-3 in bf16: step time and peak memory with GradDrop over
without, measured in pairs on the same engine (GradDrop attached for one step, detached
for the next, the order alternating: benchmarks/paired.py), so drift in the machine's
load lands in both; the step ratio's median comes with a 95% bootstrap interval. Goals on one GPU: step time
<= 1.03, peak memory <= 1.02. Part of `make gpu-check`; the tests run it on the CPU with a
tiny config."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from graddrop_dist import GradDrop, GradDropConfig
from graddrop_dist.backends import TrainSettings, wrap
from paired import alternate, ratio_interval

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "graddrop_dist" / "recipes" / "models" / "xlm-roberta-large.json"


def build(config_path: Path, device: torch.device, batch: int, length: int):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    config = XLMRobertaConfig.from_json_file(str(config_path))
    config.num_labels = 3
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(config)
    backend = wrap(model, "deepspeed", ds_config=ROOT / "ds_configs" / "zero3.json",
                   device=device, layer_classes=(XLMRobertaLayer,),
                   settings=TrainSettings(micro_batch_size=batch, precision="bf16",
                                          lr=1e-5, max_grad_norm=1.0))
    generator = torch.Generator().manual_seed(1)
    data = {"input_ids": torch.randint(3, config.vocab_size, (batch, length),
                                       generator=generator),
            "labels": torch.randint(0, 3, (batch,), generator=generator)}
    return backend, data


def timed_step(backend, batch, device) -> tuple[float, int]:
    """(seconds, peak bytes) of one optimizer step."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    backend.train_step([batch])
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return time.perf_counter() - start, torch.cuda.max_memory_allocated(device)
    return time.perf_counter() - start, 0


def measure(device: torch.device, *, pairs: int = 30, warmup: int = 2, batch: int = 8,
            length: int = 256, config_path: Path = LARGE) -> dict:
    backend, data = build(config_path, device, batch, length)
    parameters = sum(p.ds_numel if hasattr(p, "ds_numel") else p.numel()
                     for p in backend.module.parameters())
    for _ in range(warmup):  # allocator, DeepSpeed buffers, kernel builds
        timed_step(backend, data, device)
    # A fixed seed: each re-attach keeps the specs made so far (backend_overhead.py).
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5, seed=0))

    def with_graddrop_step():
        backend.attach(graddrop)
        result = timed_step(backend, data, device)
        graddrop.detach()
        return result

    without, with_graddrop = alternate(lambda: timed_step(backend, data, device),
                                       with_graddrop_step, pairs, warmup=0)
    backend.close()
    ratio = ratio_interval([b[0] for b in without], [w[0] for w in with_graddrop])
    peak_without = max(b[1] for b in without)
    return {"parameters": parameters, "batch": f"{batch} x {length}", "pairs": pairs,
            "warmup_steps": warmup,
            "step_s_without": statistics.median(b[0] for b in without),
            "step_s_with": statistics.median(w[0] for w in with_graddrop),
            "step_ratio_median": ratio.median,
            "step_ratio_interval_95": (ratio.low, ratio.high),
            "peak_gib_without": peak_without / 2**30,
            "peak_gib_with": max(w[1] for w in with_graddrop) / 2**30,
            "peak_ratio": max(w[1] for w in with_graddrop) / peak_without
            if peak_without else None}
