"""Masking a 64M-element fp32 gradient: fused kernel vs a plain copy vs one mul_.

    python benchmarks/mask_throughput.py [--numel N] [--threads T] [--repeats R]

Prints medians, the time ratio against `grad.mul_(scalar)` (goal, issue 2: fused <= 2x)
and the throughput ratio against a plain copy of the same gradient into another buffer
(goal, issue 8: >= 0.5 on CPU), all in one run. The last rows mask an embedding-like
gradient whose rows are 95% zeros (tokens absent from the batch): the kernel skips
all-zero tiles without hashing them.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from graddrop_dist.mask import mask_gradient, reference_mask_gradient
from graddrop_dist.mask.fused import fused_available


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up: page faults, kernel build, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=64 * 2**20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--drop-rate", type=float, default=0.5)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not fused_available():
        raise SystemExit("fused kernel unavailable (no C compiler?): nothing to compare")
    grad = torch.randn(args.numel)
    key = dict(seed=0, stream=1, name="bench.weight", drop_rate=args.drop_rate)

    baseline = median_seconds(lambda: grad.mul_(1.0001), args.repeats)
    target = torch.empty_like(grad)
    copy = median_seconds(lambda: target.copy_(grad), args.repeats)
    rows = [("mul_ (one pass, baseline)", baseline), ("copy into another buffer", copy)]
    rows.append(("fused, in place", median_seconds(
        lambda: mask_gradient(grad, **key, out=grad), args.repeats)))
    rows.append(("fused, in place, rescale", median_seconds(
        lambda: mask_gradient(grad, **key, rescale=True, out=grad), args.repeats)))
    rows.append(("fused, into another buffer", median_seconds(
        lambda: mask_gradient(grad, **key, out=target), args.repeats)))
    # The tensor hook must return a new tensor: compare it with torch's own out-of-place
    # pass, which pays the same fresh-allocation page faults on CPU.
    rows.append(("mul (out of place)", median_seconds(lambda: grad * 1.0001, args.repeats)))
    rows.append(("fused, out of place (hook path)", median_seconds(
        lambda: mask_gradient(grad, **key), args.repeats)))
    embedding = torch.randn(args.numel // 1024, 1024)
    embedding[torch.rand(embedding.shape[0]) < 0.95] = 0.0
    embedding = embedding.view(-1)
    rows.append(("fused, in place, 95% zero rows", median_seconds(
        lambda: mask_gradient(embedding, **key, out=embedding), args.repeats)))
    rows.append(("reference torch path", median_seconds(
        lambda: grad.copy_(reference_mask_gradient(grad, **key)), 1)))

    print(f"{args.numel:,} fp32 elements, {args.threads} thread(s), p={args.drop_rate}")
    print("| path | median ms | time x mul_ | throughput x copy |")
    print("|---|---|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds * 1e3:.1f} | {seconds / baseline:.2f} | "
              f"{copy / seconds:.2f} |")


if __name__ == "__main__":
    main()
