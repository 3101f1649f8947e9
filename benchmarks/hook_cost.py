"""What GradDrop's tensor hooks (one process, DeepSpeed, the Hugging Face modules) add to
a backward pass, without the noise of two ranks sharing the cores: three copies of one
model step in a shuffled order each round, one without GradDrop, one with it attached
throughout (what a training run pays) and one attached before and detached after every
step (what backend_overhead.py times). Printed: each copy's backward time (CPU time of
the thread) over the first copy's, and the milliseconds it adds, median over rounds with
a 95% bootstrap interval.

    python benchmarks/hook_cost.py [--rounds 400] [--hidden 128] [--layers 4] [--vocab 16000]
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from graddrop_dist import GradDrop, GradDropConfig  # noqa: E402
from backend_overhead import GATE_MODEL, add_model_arguments, random_batch, xlmr  # noqa: E402
from paired import median_interval  # noqa: E402

WITHOUT, THROUGHOUT, REATTACHED = "without", "attached throughout", "re-attached each step"


def backward_seconds(model, batch) -> float:
    loss = model(**batch).loss
    start = time.thread_time()
    loss.backward()
    seconds = time.thread_time() - start
    model.zero_grad(set_to_none=True)
    return seconds


def measure(rounds: int, hidden: int, layers: int, vocab: int, warmup: int = 5) -> dict:
    """{copy: (time ratio interval, added ms interval)} against the copy without."""
    torch.set_num_threads(1)
    base = xlmr(hidden, layers, vocab)
    models = {WITHOUT: base, THROUGHOUT: copy.deepcopy(base), REATTACHED: copy.deepcopy(base)}
    batch = random_batch(0, vocab)
    config = GradDropConfig(method="graddrop", drop_rate=0.5, seed=0)
    GradDrop(config).attach(models[THROUGHOUT])
    reattached = GradDrop(config)

    def step(name: str) -> float:
        if name != REATTACHED:
            return backward_seconds(models[name], batch)
        reattached.attach(models[name])
        seconds = backward_seconds(models[name], batch)
        reattached.detach()
        return seconds

    order, times = random.Random(0), {name: [] for name in models}
    for index in range(warmup + rounds):
        seconds = {name: step(name) for name in order.sample(list(models), len(models))}
        if index >= warmup:
            for name in models:
                times[name].append(seconds[name])
    return {name: (median_interval([b / a for a, b in zip(times[WITHOUT], times[name])]),
                   median_interval([(b - a) * 1e3 for a, b in zip(times[WITHOUT], times[name])]))
            for name in (THROUGHOUT, REATTACHED)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400)
    add_model_arguments(parser, **GATE_MODEL)
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.hidden, args.layers, args.vocab)
    print("| GradDrop | backward time x without | ms added |\n|---|---|---|")
    for name, (ratio, added) in result.items():
        print(f"| {name} | {ratio} | {added} |")


if __name__ == "__main__":
    main()
