"""Peak memory with GradDrop vs without, per backend, on 2 local CPU ranks (gloo).

    python benchmarks/peak_memory.py [--steps 4] [--hidden 256] [--layers 4]

Each configuration runs in fresh rank processes (a process's peak RSS cannot be reset):
the same model as backend_overhead.py, a few steps, then each rank reports its peak
resident set size and how much it grew over the RSS it started with; baseline and
GradDrop alternate `--repeats` times and the medians are compared. The ratio is GradDrop's
growth over the baseline's (goal, issue 8: <= 1.02; GradDrop stores no masks, only
per-call temporaries). glibc's allocator makes single runs vary by a few percent.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

from backend_overhead import build, model_arguments, random_batch  # noqa: E402

from graddrop_dist import GradDrop, GradDropConfig  # noqa: E402
from graddrop_dist.dist.local_ranks import run_ranks  # noqa: E402


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(rank, world_size, name, with_graddrop, compact, steps, hidden, layers, vocab):
    start = rss_bytes()
    setup = build(name, hidden, layers, vocab)
    if with_graddrop:
        setup.attach(GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5,
                                             compact=compact)))
    batch = random_batch(rank, vocab)
    for _ in range(steps):
        setup.train_step([batch])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    setup.close()
    return peak, peak - start


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model_arguments(parser, steps=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print(f"2 ranks (gloo, CPU); XLM-R hidden {args.hidden}, {args.layers} layers, vocab "
          f"{args.vocab}; {args.steps} steps; max over ranks, median of {args.repeats}; "
          f"compact={args.compact}")
    print("| backend | baseline peak MB | GradDrop peak MB | growth baseline MB | "
          "growth GradDrop MB | growth ratio | peak ratio |")
    print("|---|---|---|---|---|---|---|")
    for name in args.backends.split(","):
        common = (args.steps, args.hidden, args.layers, args.vocab)
        runs = {False: [], True: []}
        for _ in range(args.repeats):
            for with_graddrop in (False, True):
                ranks = run_ranks(measure, 2, name, with_graddrop, args.compact, *common,
                                  timeout=600)
                runs[with_graddrop].append(tuple(max(r[i] for r in ranks) for i in range(2)))
        (base_peak, base_growth), (peak, growth) = (
            tuple(statistics.median(run[i] for run in runs[key]) for i in range(2))
            for key in (False, True))
        print(f"| {name} | {base_peak / 2**20:.0f} | {peak / 2**20:.0f} | "
              f"{base_growth / 2**20:.0f} | {growth / 2**20:.0f} | "
              f"{growth / base_growth:.3f} | {peak / base_peak:.3f} |", flush=True)

if __name__ == "__main__":
    main()
