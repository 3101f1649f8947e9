"""XLM-R-Large, the real architecture (configs/models/xlm-roberta-large.json, random
weights, nothing downloaded), on 2 CPU ranks under FSDP2 and DeepSpeed ZeRO-3: GradDrop
(p = 0.5, verify_every = 1: the ranks compare their masks every step) against no GradDrop,
paired step by step in the same processes (attached for one step, detached for the
next), with each rank's peak memory per step beside an analytic model.

    python benchmarks/xlmr_large_cpu.py [--backends fsdp2] [--pairs 3]

Peak memory per step is the resident set's high-water mark, reset before each step
(/proc/self/clear_refs), so the model's build does not count. The model, per rank of W:
the process before the model (Python, torch, transformers) plus 16 P / W bytes that
stay (fp32 parameters, gradients and Adam's two moments, sharded) plus, while a step runs, the largest gathered unit (the 256M-parameter embedding,
gathered whole) and the largest unsharded gradient (the embedding's again, before its
reduce-scatter). Goals: step time and peak memory with GradDrop <= 1.05 of without.

`--backends deepspeed` (ZeRO-3) needs more than a 24 GiB machine: every rank first builds
the whole model (2.2 GB) and DeepSpeed's CPU path holds more beside it; on 24 GiB one of
the two ranks was killed for memory at 11 GB during its first steps.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LARGE = ROOT / "configs" / "models" / "xlm-roberta-large.json"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def step_with_peak(backend, batch) -> tuple[float, float, float]:
    """(seconds, resident GiB before, peak GiB during) of one optimizer step."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM to the current resident set
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    backend.train_step([batch])
    seconds = time.perf_counter() - start
    return seconds, before / 2**20, _status_kib("VmHWM") / 2**20


def model_gib(parameters: int, embedding: int, world: int, graddrop_copy: bool,
              process_gib: float) -> dict:
    """The analytic model of the module docstring, in GiB (fp32)."""
    kept = 16 * parameters / world + process_gib * 2**30
    transient = 4 * embedding * (3 if graddrop_copy else 2)
    return {"kept": kept / 2**30, "step": (kept + transient) / 2**30}


def pairs_on_rank(rank, world_size, backend_name, pairs, batch_size, length, config_path):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    from graddrop_dist import GradDrop, GradDropConfig
    from graddrop_dist.parallel import TrainSettings, wrap

    process_gib = _status_kib("VmRSS") / 2**20  # before the model exists
    config = XLMRobertaConfig.from_json_file(str(config_path))
    config.num_labels = 3
    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(config)
    parameters = sum(p.numel() for p in model.parameters())
    embedding = sum(p.numel() for p in model.roberta.embeddings.parameters())
    extra = {"ds_config": ROOT / "ds_configs" / "zero3.json"} \
        if backend_name == "deepspeed" else {}
    backend = wrap(model, backend_name, layer_classes=(XLMRobertaLayer,),
                   settings=TrainSettings(micro_batch_size=batch_size, lr=1e-5), **extra)
    generator = torch.Generator().manual_seed(1 + rank)
    batch = {"input_ids": torch.randint(3, config.vocab_size, (batch_size, length),
                                        generator=generator),
             "labels": torch.randint(0, 3, (batch_size,), generator=generator)}
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5, verify_every=1))
    step_with_peak(backend, batch)  # warm-up: buffers, the optimizer's state
    without, with_graddrop = [], []
    for _ in range(pairs):
        without.append(step_with_peak(backend, batch))
        backend.attach(graddrop)
        with_graddrop.append(step_with_peak(backend, batch))
        graddrop.detach()
    backend.close()
    return {"parameters": parameters, "embedding": embedding, "without": without,
            "with": with_graddrop, "process_gib": process_gib}


def report(name: str, ranks: list[dict], world: int) -> str:
    first = ranks[0]
    ratios = sorted(w[0] / b[0] for w, b in zip(first["with"], first["without"]))
    peak = {key: max(max(step[2] for step in r[key]) for r in ranks)
            for key in ("without", "with")}
    kept = max(statistics.median(step[1] for step in r["without"]) for r in ranks)
    process = max(r["process_gib"] for r in ranks)
    model = model_gib(first["parameters"], first["embedding"], world,
                      graddrop_copy=name == "deepspeed", process_gib=process)
    base = model_gib(first["parameters"], first["embedding"], world, graddrop_copy=False,
                     process_gib=process)
    return (f"| {name} | {statistics.median(s[0] for s in first['without']):.1f} | "
            f"{statistics.median(ratios):.3f} [{ratios[0]:.3f}, {ratios[-1]:.3f}] | "
            f"{kept:.2f} ({base['kept']:.2f}) | {peak['without']:.2f} ({base['step']:.2f})"
            f" | {peak['with']:.2f} ({model['step']:.2f}) | "
            f"{peak['with'] / peak['without']:.3f} |")


def main(argv=None) -> None:
    from graddrop_dist.dist.local_ranks import run_ranks

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="fsdp2")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--config", default=str(LARGE))
    args = parser.parse_args(argv)
    print(f"2 CPU ranks (gloo), {Path(args.config).name}, fp32, batch {args.batch} x "
          f"{args.length}; GradDrop p = 0.5, verify_every = 1; {args.pairs} pairs after one "
          "warm-up step; memory per rank, max over ranks, the model in brackets")
    print("| backend | s/step without | step ratio with/without (median [min, max]) | "
          "GiB resident between steps | peak GiB without | peak GiB with | peak ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in args.backends.split(","):
        ranks = run_ranks(pairs_on_rank, 2, name, args.pairs, args.batch, args.length,
                          Path(args.config), timeout=1800)
        print(report(name, ranks, 2), flush=True)


if __name__ == "__main__":
    main()
