"""Bytes handed to the gradient collectives per optimizer step (DDP's all-reduce, FSDP1's
and FSDP2's reduce-scatter): GradDrop compacted (`GradDropConfig(compact=True)`: only
kept elements travel) vs GradDrop dense (masked zeros travel), on 2 local CPU ranks, for
element and row granularity.

    python benchmarks/communication_bytes.py [--rates 0.5,0.9] [--steps 6]

Paired in the same ranks: a dense and a compacted GradDrop with the same seed are
attached on alternate steps (benchmarks/paired.py), so pair i of both draws the same mask
and its ratio is exact; the interval runs over the pairs' masks. Goal:
compacted <= (1 - p) of dense + 3%. The new task head is never masked, so its share of
the model sets the floor (printed as "head share").
"""

from __future__ import annotations

import argparse
import os
import statistics
from contextlib import contextmanager

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402

from graddrop_dist import GradDrop, GradDropConfig  # noqa: E402
from graddrop_dist.backends import TrainSettings, wrap  # noqa: E402
from graddrop_dist.testing.local_ranks import run_ranks  # noqa: E402
from paired import Goal, alternate, ratio_interval  # noqa: E402


COLLECTIVES = ("all_reduce", "reduce_scatter_single")


@contextmanager
def counted_collectives(setup):
    """Yields a list that collects the bytes each gradient collective is handed while the
    block runs (DDP's reducer routed through Python so that it can be counted)."""
    if setup.name == "ddp":
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        if not setup.model._comm_hooks:
            setup.model.register_comm_hook(None, allreduce_hook)
    sent: list[int] = []
    originals = {name: getattr(dist, name) for name in COLLECTIVES}

    def counting(name):
        def collective(*args, **kwargs):
            if name == "reduce_scatter_single":  # (output, input, ...): count the input
                tensor = kwargs["input"] if "input" in kwargs else args[1]
            else:
                tensor = kwargs["tensor"] if "tensor" in kwargs else args[0]
            sent.append(tensor.numel() * tensor.element_size())
            return originals[name](*args, **kwargs)
        return collective

    for name in COLLECTIVES:
        setattr(dist, name, counting(name))
    try:
        yield sent
    finally:
        for name, original in originals.items():
            setattr(dist, name, original)


def count_bytes(rank, world_size, backend, rates, granularities, steps):
    """Per (rate, granularity): bytes sent per step, ([dense], [compacted]) in pair order,
    and the head's share of the parameters."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    torch.manual_seed(0)
    model = XLMRobertaForSequenceClassification(XLMRobertaConfig(
        vocab_size=8000, hidden_size=128, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=512, max_position_embeddings=72, num_labels=4))
    head = sum(p.numel() for n, p in model.named_parameters() if n.startswith("classifier."))
    total = sum(p.numel() for p in model.parameters())
    setup = wrap(model, backend, layer_classes=(XLMRobertaLayer,),
                 settings=TrainSettings(lr=1e-5))
    generator = torch.Generator().manual_seed(rank)
    results = {}

    def step(graddrop) -> int:
        setup.attach(graddrop)  # before counting: DDP then has GradDrop's comm hook
        batch = {"input_ids": torch.randint(3, 8000, (4, 64), generator=generator),
                 "labels": torch.randint(0, 4, (4,), generator=generator)}
        with counted_collectives(setup) as sent:
            setup.train_step([batch])
        graddrop.detach()
        return sum(sent)

    for rate in rates:
        for granularity in granularities:
            dense, compacted = (GradDrop(GradDropConfig(
                drop_rate=rate, granularity=granularity, seed=7, compact=compact))
                for compact in (False, True))
            results[rate, granularity] = alternate(lambda: step(dense),
                                                   lambda: step(compacted), steps, 0)
    setup.close()
    return results, head / total


def compaction(backend: str, rates, granularities, steps: int):
    """{(rate, granularity): Interval of compacted / dense bytes}, the head's share."""
    results, head = run_ranks(count_bytes, 2, backend, rates, granularities, steps,
                              timeout=600)[0]
    return {key: (ratio_interval(*sides), statistics.median(sides[0]))
            for key, sides in results.items()}, head


def goal(backend: str, rate: float, granularity: str, interval) -> Goal:
    return Goal(f"{backend} compacted bytes, p = {rate}, {granularity}", interval,
                1 - rate + 0.03)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="0.5,0.9")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--backends", default="ddp,fsdp1,fsdp2")
    parser.add_argument("--granularities", default="element,row")
    args = parser.parse_args(argv)
    rates = [float(r) for r in args.rates.split(",")]
    granularities = args.granularities.split(",")
    print(f"2 ranks, XLM-R hidden 128 x 4 layers, vocab 8000; bytes per optimizer step; "
          f"{args.steps} pairs (dense and compacted steps alternating, same masks)")
    print("| backend | granularity | p | dense MB | compacted / dense (95% interval) | "
          "goal (1-p)+3% | head share |")
    print("|---|---|---|---|---|---|---|")
    for backend in args.backends.split(","):
        ratios, head = compaction(backend, rates, granularities, args.steps)
        for (rate, granularity), (interval, dense) in ratios.items():
            print(f"| {backend} | {granularity} | {rate} | {dense / 1e6:.2f} | {interval} | "
                  f"{1 - rate + 0.03:.3f} | {head:.4f} |", flush=True)


if __name__ == "__main__":
    main()
