"""XLM-R-Large, the real architecture (graddrop_dist/recipes/models/xlm-roberta-large.json, random
weights, nothing downloaded), on 2 CPU ranks under FSDP2 and DeepSpeed ZeRO-3: GradDrop
(p = 0.5, verify_every = 1: the ranks compare their masks every step) against no GradDrop,
paired step by step in the same processes (attached for one step, detached for the
next, the order alternating: benchmarks/paired.py), with each rank's peak memory per step
beside an analytic model. The step ratio's 95% interval is over few pairs: a step takes
15-25 s here.

    python benchmarks/xlmr_large_cpu.py [--backends fsdp2,deepspeed] [--pairs 6]

Peak memory per step is the resident set's high-water mark, reset before each step
(/proc/self/clear_refs), so the model's build does not count. The model, per rank of W,
in fp32: the process before the model (Python, torch, transformers), plus 16 P / W bytes
that stay (parameters, gradients and Adam's two moments, sharded; ZeRO-3 adds its reduce
bucket), plus while a step runs the embedding (the largest unit, 256M parameters)
gathered whole and its full gradient before the reduce-scatter; ZeRO-3 also flattens
that gradient into a second full-size buffer for its coalesced reduce-scatter and keeps
the rank's part. Goals: step time and peak memory with GradDrop <= 1.05 of without.

Two settings keep both ranks well inside 24 GiB. ZeRO-3 runs ds_configs/zero3.json with
a 50M-element reduce bucket and few live gathered parameters (`frugal_zero3`); DeepSpeed's
defaults hold a 2 GB reduce bucket and keep gathered parameters between forward and
backward. And each rank tells glibc to return every freed allocation over 1 MiB at once
(`mallopt(M_MMAP_THRESHOLD)`, as MALLOC_MMAP_THRESHOLD_=1048576 would at start-up): by
default the threshold rises once the model's build frees its full-size tensors, and the
heap then keeps about 2 GB per rank that the sharded run never uses again.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

from paired import alternate, ratio_interval, resident_kib, timed_with_peak  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "graddrop_dist" / "recipes" / "models" / "xlm-roberta-large.json"


def step_with_peak(backend, batch) -> tuple[float, float, float]:
    """(seconds, resident GiB before, peak GiB during) of one optimizer step."""
    before = resident_kib()
    seconds, peak = timed_with_peak(lambda: backend.train_step([batch]))
    return seconds, before / 2**20, peak / 2**20


def model_gib(parameters: int, embedding: int, world: int, backend: str,
              process_gib: float) -> dict:
    """The analytic model of the module docstring, in GiB (fp32)."""
    kept = 16 * parameters / world + process_gib * 2**30
    transient = 4 * embedding * 2  # gathered whole; its full gradient
    if backend == "deepspeed":
        kept += 4 * frugal_zero3()["zero_optimization"]["reduce_bucket_size"]
        transient += 4 * embedding * (1 + 1 / world)  # flattened copy; this rank's part
    return {"kept": kept / 2**30, "step": (kept + transient) / 2**30}


def frugal_zero3() -> dict:
    """ds_configs/zero3.json with the bucket and live-parameter limits a host-memory-bound
    run needs: DeepSpeed's defaults hold a 500M-element (2 GB fp32) reduce bucket and keep
    up to 1e9 gathered parameters alive between forward and backward."""
    config = json.loads((ROOT / "ds_configs" / "zero3.json").read_text())
    config["zero_optimization"].update({
        "reduce_bucket_size": 50_000_000, "stage3_prefetch_bucket_size": 50_000_000,
        "stage3_max_live_parameters": 100_000_000, "stage3_max_reuse_distance": 0})
    return config


def return_freed_memory() -> None:
    """glibc's mallopt(M_MMAP_THRESHOLD, 1 MiB), which also stops the threshold rising."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return  # not glibc: nothing to tune
    libc.mallopt(-3, 2**20)  # M_MMAP_THRESHOLD in malloc.h


def pairs_on_rank(rank, world_size, backend_name, pairs, batch_size, length, config_path):
    return_freed_memory()
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    from graddrop_dist import GradDrop, GradDropConfig
    from graddrop_dist.backends import TrainSettings, wrap

    process_gib = resident_kib() / 2**20  # before the model exists
    config = XLMRobertaConfig.from_json_file(str(config_path))
    config.num_labels = 3
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(config)
    parameters = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for p in model.roberta.embeddings.parameters())
    extra = {"ds_config": frugal_zero3()} if backend_name == "deepspeed" else {}
    backend = wrap(model, backend_name, layer_classes=(XLMRobertaLayer,),
                   settings=TrainSettings(micro_batch_size=batch_size, lr=1e-5), **extra)
    generator = torch.Generator().manual_seed(1 + rank)
    batch = {"input_ids": torch.randint(3, config.vocab_size, (batch_size, length),
                                        generator=generator),
             "labels": torch.randint(0, 3, (batch_size,), generator=generator)}
    # A fixed seed: each re-attach keeps the specs made so far (backend_overhead.py).
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5, verify_every=1,
                                       seed=0))

    def with_graddrop():
        backend.attach(graddrop)
        result = step_with_peak(backend, batch)
        graddrop.detach()
        return result

    # One warm-up step of each: buffers, the optimizer's state, GradDrop's plans.
    without, with_graddrop = alternate(lambda: step_with_peak(backend, batch),
                                       with_graddrop, pairs, warmup=1)
    backend.close()
    return {"parameters": parameters, "embedding": embedding, "without": without,
            "with": with_graddrop, "process_gib": process_gib}


def report(name: str, ranks: list[dict], world: int) -> str:
    first = ranks[0]
    ratio = ratio_interval([s[0] for s in first["without"]], [s[0] for s in first["with"]])
    peak = {key: max(max(step[2] for step in r[key]) for r in ranks)
            for key in ("without", "with")}
    kept = max(statistics.median(step[1] for step in r["without"]) for r in ranks)
    process = max(r["process_gib"] for r in ranks)
    model = model_gib(first["parameters"], first["embedding"], world, name, process)
    return (f"| {name} | {statistics.median(s[0] for s in first['without']):.1f} | "
            f"{ratio} | "
            f"{kept:.2f} ({model['kept']:.2f}) | {peak['without']:.2f} ({model['step']:.2f})"
            f" | {peak['with']:.2f} | "
            f"{peak['with'] / peak['without']:.3f} |")


def main(argv=None) -> None:
    from graddrop_dist.testing.local_ranks import run_ranks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="fsdp2,deepspeed")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--config", default=str(LARGE))
    args = parser.parse_args(argv)
    print(f"2 CPU ranks (gloo), {Path(args.config).name}, fp32, batch {args.batch} x "
          f"{args.length}; GradDrop p = 0.5, verify_every = 1; {args.pairs} pairs after one "
          "warm-up step of each; memory per rank, max over ranks, the model in brackets")
    print("| backend | s/step without | step ratio with/without (median [95% interval]) | "
          "GiB resident between steps | peak GiB without | peak GiB with | peak ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in args.backends.split(","):
        ranks = run_ranks(pairs_on_rank, 2, name, args.pairs, args.batch, args.length,
                          Path(args.config), timeout=1800)
        print(report(name, ranks, 2), flush=True)


if __name__ == "__main__":
    main()
