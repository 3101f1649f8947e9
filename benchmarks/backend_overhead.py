"""Step time and peak memory with GradDrop vs without, per backend, on 2 local CPU ranks
(gloo), measured in pairs on the same wrapped model.

    python benchmarks/backend_overhead.py [--pairs 40] [--warmup 3] [--backends ddp,...]

Each rank builds the model once. GradDrop (p = 0.5) is attached for one step and
detached for the next, the order alternating pair by pair (benchmarks/paired.py), after
--warmup unrecorded steps of each, every step started on both ranks together (a barrier
before it). Per pair: the step-time ratio (the slower rank's time: the ranks meet in every
collective) and the peak-memory ratio, where a step's peak is the
resident set's high-water mark during the step (reset before it) less the resident set
the rank had before the model was built. Reported: the medians with 95% bootstrap
intervals over pairs. Goals: step time <= 1.03, peak memory <= 1.02.

The objects that exist once the model is built are frozen out of Python's garbage
collector (gc.freeze): a full collection walks every one of them, tens of milliseconds
landing on whichever step happens to trigger it. The ranks are not bound to cores: bound
one to a core, with their communication threads, 2 ms of work added before a ZeRO
bucket's all-reduce cost 4-8 ms of step time (the threads that move the bucket wait for
the core), against 2-2.3 ms unbound, so binding overstates what GradDrop costs.

DDP cannot unregister a communication hook: from the first attach on, its steps without
GradDrop run through the detached GradDrop's hook, which is the plain all-reduce.
Model: a random XLM-R classifier (embeddings masked too), batch 8 x 64 tokens per rank,
AdamW, gradient accumulation 1.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import torch  # noqa: E402

from graddrop_dist import GradDrop, GradDropConfig  # noqa: E402
from graddrop_dist.backends import TrainSettings, wrap  # noqa: E402
from graddrop_dist.testing.local_ranks import run_ranks  # noqa: E402
from paired import (Goal, alternate, median_interval, ratio_interval,  # noqa: E402
                    resident_kib, timed_with_peak)

DS_CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ds_configs")
BACKENDS = {"ddp": ("ddp", {}), "fsdp1": ("fsdp1", {}), "fsdp2": ("fsdp2", {}),
            "zero1": ("deepspeed", {"stage": 1}), "zero2": ("deepspeed", {"stage": 2}),
            "zero3": ("deepspeed", {"stage": 3})}  # ds_configs/zero<stage>.json
STEP_GOAL, MEMORY_GOAL = 1.03, 1.02
GATE_MODEL = dict(hidden=128, layers=4, vocab=16000)  # make bench-check's, smaller than ours


def xlmr(hidden: int, layers: int, vocab: int):
    """The benchmarks' XLM-R classifier (4 heads, 4 labels), the same weights every time."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    torch.manual_seed(0)
    return XLMRobertaForSequenceClassification(XLMRobertaConfig(
        vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers,
        num_attention_heads=4, intermediate_size=4 * hidden, max_position_embeddings=80,
        num_labels=4))


def add_model_arguments(parser: argparse.ArgumentParser, hidden: int, layers: int,
                        vocab: int) -> None:
    parser.add_argument("--hidden", type=int, default=hidden)
    parser.add_argument("--layers", type=int, default=layers)
    parser.add_argument("--vocab", type=int, default=vocab)


def build(name, hidden, layers, vocab):
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    model = xlmr(hidden, layers, vocab)
    backend, extra = BACKENDS[name]
    if backend == "deepspeed":
        extra = {"ds_config": os.path.join(DS_CONFIGS, f"zero{extra['stage']}.json")}
    return wrap(model, backend, layer_classes=(XLMRobertaLayer,),
                settings=TrainSettings(micro_batch_size=8, lr=1e-5), **extra)


def random_batch(rank: int, vocab: int) -> dict:
    """This rank's batch: 8 sequences of 64 tokens, 4 labels."""
    generator = torch.Generator().manual_seed(rank)
    return {"input_ids": torch.randint(3, vocab, (8, 64), generator=generator),
            "labels": torch.randint(0, 4, (8,), generator=generator)}


def measure(rank, world_size, name, pairs, warmup, hidden, layers, vocab, compact=False):
    """This rank's ([(seconds, peak KiB, CPU seconds) without], [... with]) in pair
    order; CPU seconds: the main thread's, what GradDrop's own work adds to."""
    before_model = resident_kib()
    setup = build(name, hidden, layers, vocab)
    batch = random_batch(rank, vocab)
    gc.collect()
    gc.freeze()
    # A fixed seed, as a job has: each re-attach keeps the masks' specs made so far, as a
    # run that stays attached does (a new seed each attach remade them inside the step).
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5, compact=compact,
                                       seed=0))

    def step(with_graddrop: bool) -> tuple[float, int, float]:
        if with_graddrop:
            setup.attach(graddrop)  # outside the timed step: the seed agreement
        # Every step starts on both ranks at once: otherwise a rank's time includes waiting
        # for the other to finish the previous step, noise that is not this step's.
        torch.distributed.barrier()
        cpu = time.thread_time()
        seconds, peak = timed_with_peak(lambda: setup.train_step([batch]))
        cpu = time.thread_time() - cpu
        if with_graddrop:
            graddrop.detach()
        return seconds, peak - before_model, cpu

    result = alternate(lambda: step(False), lambda: step(True), pairs, warmup)
    setup.close()
    return result


def overhead(name: str, pairs: int, warmup: int, hidden: int = 256, layers: int = 4,
             vocab: int = 30000, compact: bool = False) -> dict:
    """One backend's medians and ratio intervals (both ranks, the larger value per step)."""
    ranks = run_ranks(measure, 2, name, pairs, warmup, hidden, layers, vocab, compact,
                      timeout=900)
    per_step = {side: [tuple(max(r[side][i][k] for r in ranks) for k in (0, 1))
                       for i in range(pairs)] for side in (0, 1)}
    without, with_graddrop = per_step[0], per_step[1]
    # The main thread's CPU time, both ranks' mean per step: what GradDrop's own work
    # adds, without the waiting for the other rank and the network that the step's time
    # holds (and whose noise it carries).
    cpu = [[statistics.fmean(r[side][i][2] for r in ranks) for i in range(pairs)]
           for side in (0, 1)]
    return {"ms": [statistics.median(s[0] for s in side) * 1e3 for side in per_step.values()],
            "mb": [statistics.median(s[1] for s in side) / 1024 for side in per_step.values()],
            "step": ratio_interval([s[0] for s in without], [s[0] for s in with_graddrop]),
            "memory": ratio_interval([s[1] for s in without], [s[1] for s in with_graddrop]),
            "cpu_ms": median_interval([(b - a) * 1e3 for a, b in zip(*cpu)])}


def goals(name: str, result: dict) -> list[Goal]:
    return [Goal(f"{name} step time", result["step"], STEP_GOAL),
            Goal(f"{name} peak memory", result["memory"], MEMORY_GOAL)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=3)
    add_model_arguments(parser, hidden=256, layers=4, vocab=30000)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--compact", action="store_true",
                        help="GradDrop with compact=True (ddp, fsdp1, fsdp2 only)")
    args = parser.parse_args(argv)
    print(f"2 ranks (gloo, CPU, {os.environ['OMP_NUM_THREADS']} thread each); XLM-R hidden "
          f"{args.hidden}, {args.layers} layers, vocab {args.vocab}; batch 8 x 64 per rank; "
          f"GradDrop p = 0.5, compact={args.compact}; {args.pairs} pairs after "
          f"{args.warmup} warm-up steps of each; medians, ratios with 95% intervals")
    print(f"| backend | ms without | ms with | step ratio (goal <= {STEP_GOAL}) | "
          f"main thread's CPU ms added | peak MB without | peak MB with | "
          f"peak ratio (goal <= {MEMORY_GOAL}) |")
    print("|---|---|---|---|---|---|---|---|")
    for name in args.backends.split(","):
        result = overhead(name, args.pairs, args.warmup, args.hidden, args.layers,
                          args.vocab, args.compact)
        (ms_a, ms_b), (mb_a, mb_b) = result["ms"], result["mb"]
        print(f"| {name} | {ms_a:.1f} | {ms_b:.1f} | {result['step']} | {result['cpu_ms']} | "
              f"{mb_a:.0f} | {mb_b:.0f} | {result['memory']} |", flush=True)


if __name__ == "__main__":
    main()
