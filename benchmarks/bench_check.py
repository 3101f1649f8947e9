"""The regression gate (`make bench-check`, a few minutes on 2 cores): short, paired
versions of the CPU benchmarks, each ratio with its 95% interval beside its goal. It exits
1 when a whole interval lies past its goal, which noise alone does not do; an interval
that straddles the goal passes, and says so.

    python benchmarks/bench_check.py [--pairs 150] [--backends ddp,fsdp1,...]

- step time and peak memory with GradDrop over without, every backend
  (backend_overhead.py; goals 1.03 and 1.02), on a smaller model than `make bench`'s,
  where GradDrop's share of a step is larger; 150 pairs, since a step-time interval on
  two ranks sharing two cores is about +-0.02 wide there (+-0.04 at 30 pairs);
- compacted over dense bytes for DDP, FSDP1 and FSDP2 at p = 0.5 and 0.9
  (communication_bytes.py; goal (1 - p) + 3%);
- the fused mask's time against a `mul_` of the same tensor (mask_throughput.py):
  fp32 at 4M, 16M and 64M elements on one thread, 64M on two (also between a mul_ and a
  copy, as a backward pass interleaves them), bf16 at 64M on one and two; goals 1.7 at
  4M, 1.25 on one thread, 1.15 on two, or 1.1 x the hash alone where the CPU's vector
  unit makes hashing the slower half (the instruction set is in each row's name).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")

import backend_overhead  # noqa: E402
from backend_overhead import GATE_MODEL  # noqa: E402
import communication_bytes  # noqa: E402
import mask_throughput  # noqa: E402
from paired import goals_table  # noqa: E402



def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min), {five:.2f} (5 min) on {os.cpu_count()} CPUs"


# Millions of elements, threads, dtype.
MASK_CASES = "4:1:float32,16:1:float32,64:1:float32,64:2:float32,64:1:bfloat16,64:2:bfloat16"


def mask_goals(cases: str, processes: int) -> list:
    goals = []
    for case in cases.split(","):
        millions, threads, dtype = case.split(":")
        numel, threads = int(millions) * 2**20, int(threads)
        paths = (mask_throughput.FUSED, mask_throughput.HASH) + \
            ((mask_throughput.BETWEEN,) if threads > 1 else ())
        goals += mask_throughput.goals(mask_throughput.measure(
            numel, threads, 4, only=paths, processes=processes, dtype=dtype))
    return goals


def run(args) -> list:
    goals = mask_goals(args.mask_cases, args.mask_processes)
    for name in args.backends.split(","):
        result = backend_overhead.overhead(name, args.pairs, args.warmup, **GATE_MODEL)
        goals += backend_overhead.goals(name, result)
    for name in filter(None, args.compacted.split(",")):
        ratios, _ = communication_bytes.compaction(name, (0.5, 0.9), ("element",),
                                                   args.byte_pairs)
        goals += [communication_bytes.goal(name, rate, granularity, interval)
                  for (rate, granularity), (interval, _) in ratios.items()]
    return goals


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--byte-pairs", type=int, default=4)
    parser.add_argument("--mask-processes", type=int, default=4)
    parser.add_argument("--mask-cases", default=MASK_CASES,
                        help="millions of elements:threads:dtype, comma-separated")
    parser.add_argument("--backends", default=",".join(backend_overhead.BACKENDS))
    parser.add_argument("--compacted", default="ddp,fsdp1,fsdp2")
    args = parser.parse_args(argv)
    start = time.monotonic()
    print(f"bench-check: {args.pairs} pairs per step ratio ({args.byte_pairs} for bytes, "
          f"which are exact per pair; {args.mask_processes} processes for the mask); XLM-R "
          f"hidden {GATE_MODEL['hidden']}, {GATE_MODEL['layers']} layers, vocab "
          f"{GATE_MODEL['vocab']}, 1 thread per rank; "
          f"mask cases {args.mask_cases}; {load()}",
          flush=True)
    goals = run(args)
    print(goals_table(goals))
    missed = [goal for goal in goals if goal.missed]
    print(f"{len(goals) - len(missed)} of {len(goals)} goals met in "
          f"{time.monotonic() - start:.0f} s; {load()}")
    for goal in missed:
        print(f"bench-check: {goal.name}: the whole interval {goal.interval} lies past the "
              f"goal {goal.limit:.3f}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
