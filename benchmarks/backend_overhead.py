"""Step time with GradDrop vs without, per backend, on 2 local CPU ranks (gloo).

    python benchmarks/backend_overhead.py [--steps 8] [--hidden 256] [--layers 4]

In the same ranks and the same run: baseline steps, GradDrop steps, baseline again; the
ratio is GradDrop's median over the mean of the two baseline medians (so drift during
the run does not favour either side). Model: a random XLM-R classifier (embeddings
masked too), batch 8 x 64 tokens per rank, AdamW, gradient accumulation 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

from graddrop_dist import GradDrop, GradDropConfig  # noqa: E402
from graddrop_dist.parallel import TrainSettings, wrap  # noqa: E402
from graddrop_dist.dist.local_ranks import run_ranks  # noqa: E402

DS_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ds_configs")
BACKENDS = {"ddp": ("ddp", {}), "fsdp1": ("fsdp1", {}), "fsdp2": ("fsdp2", {}),
            "zero1": ("deepspeed", {"stage": 1}), "zero2": ("deepspeed", {"stage": 2}),
            "zero3": ("deepspeed", {"stage": 3})}  # ds_configs/zero<stage>.json


def build(name, hidden, layers, vocab):
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(XLMRobertaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=4 * hidden, max_position_embeddings=80,
        num_labels=4))
    backend, extra = BACKENDS[name]
    if backend == "deepspeed":
        extra = {"ds_config": os.path.join(DS_CONFIGS, f"zero{extra['stage']}.json")}
    return wrap(model, backend, layer_classes=(XLMRobertaLayer,),
                settings=TrainSettings(micro_batch_size=8, lr=1e-5), **extra)


def timed_steps(setup, batch, steps):
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        setup.train_step([batch])
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def random_batch(rank: int, vocab: int) -> dict:
    """This rank's batch: 8 sequences of 64 tokens, 4 labels."""
    generator = torch.Generator().manual_seed(rank)
    return {"input_ids": torch.randint(3, vocab, (8, 64), generator=generator),
            "labels": torch.randint(0, 4, (8,), generator=generator)}


def model_arguments(parser: argparse.ArgumentParser, steps: int) -> None:
    """The options both CPU step benchmarks share (this one and peak_memory.py)."""
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--compact", action="store_true",
                        help="GradDrop with compact=True (ddp, fsdp1, fsdp2 only)")


def measure(rank, world_size, name, steps, hidden, layers, vocab, compact=False):
    setup = build(name, hidden, layers, vocab)
    batch = random_batch(rank, vocab)
    timed_steps(setup, batch, 2)  # warm-up: allocations, kernel build, DeepSpeed buffers
    before = timed_steps(setup, batch, steps)
    graddrop = setup.attach(GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5,
                                                    compact=compact)))
    timed_steps(setup, batch, 1)
    with_graddrop = timed_steps(setup, batch, steps)
    graddrop.detach()
    after = timed_steps(setup, batch, steps)
    setup.close()
    return before, with_graddrop, after


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser, steps=8)
    args = parser.parse_args(argv)
    print(f"2 ranks (gloo, CPU, 1 thread each); XLM-R hidden {args.hidden}, {args.layers} "
          f"layers, vocab {args.vocab}; batch 8 x 64 per rank; median of {args.steps} steps; "
          f"compact={args.compact}")
    print("| backend | baseline ms | GradDrop ms | ratio |")
    print("|---|---|---|---|")
    for name in args.backends.split(","):
        results = run_ranks(measure, 2, name, args.steps, args.hidden, args.layers,
                            args.vocab, args.compact, timeout=600)
        before, masked, after = (max(r[i] for r in results) for i in range(3))
        baseline = (before + after) / 2
        print(f"| {name} | {baseline * 1e3:.1f} | {masked * 1e3:.1f} | "
              f"{masked / baseline:.3f} |")


if __name__ == "__main__":
    main()
