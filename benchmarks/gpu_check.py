"""`make gpu-check`: everything that needs a CUDA GPU, in one script (under 5 minutes on one
GPU).

1. The CUDA mask kernel's bits equal the CPU reference (benchmarks/gpu_kernel.py).
2. Its throughput as a ratio of the card's device-to-device copy (goal >= 0.8).
3. The main job (the offline-demo recipe) for 10 steps on CUDA with every backend at world
   size 1 under NCCL (single, DDP, FSDP1, FSDP2, ZeRO-1/2/3, ZeRO-3 offload), in bf16 and
   fp16 (benchmarks/backend_matrix.py).
4. XLM-R-Large (real architecture, random weights) under ZeRO-3: step time and peak GPU
   memory with GradDrop over without (goals <= 1.03, <= 1.02; benchmarks/large_model.py).

    python benchmarks/gpu_check.py [--out runs/gpu_check.json] [--skip-large] [--job JOB.yaml]

--job runs the matrix on another job than the offline-demo recipe (its backend, precision,
steps and output replaced per row): a node without the offline model's wheel, say. The job
is checked first: a bad one is one line and exit 2, before any GPU work.

Prints each part as it finishes, writes every figure to --out, and exits 1 when a bit
differs or a backend run fails (goals missed are reported, not fatal), 2 without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
GOALS = {"mask throughput / copy": ">= 0.8", "step time ratio": "<= 1.03",
         "peak memory ratio": "<= 1.02"}


def start_process_group() -> torch.device:
    """World size 1 under NCCL on GPU 0: what every backend needs to wrap."""
    import torch.distributed as dist

    from graddrop_dist.ranks.device import bind, resolve_device

    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29555")
    device = resolve_device("cuda", local_rank=0)
    bind(device)
    dist.init_process_group("nccl", device_id=device)
    return device


def kernel_part(report: dict, numel: int) -> bool:
    from gpu_kernel import check_bits, throughput

    failures = check_bits()
    report["bits"] = failures or "all equal"
    print(f"bits, CUDA kernel vs CPU reference: {report['bits']}", flush=True)
    rows = throughput(numel)
    report["throughput"] = {}
    for name, seconds, rate in rows:
        copy = next(r for n, _, r in rows if n == "copy " + name.split()[-1])
        report["throughput"][name] = {"ms": seconds * 1e3, "GB/s": rate / 1e9,
                                      "x copy": rate / copy}
        print(f"  {name:28s} {seconds * 1e3:8.3f} ms {rate / 1e9:7.1f} GB/s "
              f"{rate / copy:.3f} x copy", flush=True)
    return not failures


def read_job(job: Path) -> dict:
    """The matrix's job, read as graddrop-train reads a job file and validated; a
    ConfigError (one line) where it cannot run."""
    from graddrop_dist.trainer.job_config import JobConfig
    from graddrop_dist.trainer.job_file import read_job_file

    base = read_job_file(job)
    JobConfig.from_dict(base)
    return base


def matrix_part(report: dict, steps: int, job: Path, base: dict) -> bool:
    from backend_matrix import BACKENDS, run_matrix

    report["job"] = str(job)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as folder:
        rows = run_matrix(base, torch.device("cuda", 0), list(BACKENDS), ["bf16", "fp16"],
                          steps, Path(folder))
    report["backends"] = rows
    return all(row["ok"] for row in rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "gpu_check.json"))
    parser.add_argument("--numel", type=int, default=256 * 2**20)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--job", type=Path,
                        default=ROOT / "graddrop_dist" / "recipes" / "offline_demo.yaml")
    args = parser.parse_args(argv)
    from graddrop_dist.trainer.job_config import ConfigError

    try:  # before minutes of kernel checks, not after
        base = read_job(args.job)
    except ConfigError as error:
        print(f"gpu_check: --job {args.job}: {error}", file=sys.stderr)
        return 2
    from graddrop_dist.mask.triton_kernel import triton_available

    if not torch.cuda.is_available() or not triton_available():
        print("gpu_check: needs a CUDA GPU and triton (torch sees none here)", file=sys.stderr)
        return 2
    begin = time.monotonic()
    device = start_process_group()
    report = {"card": torch.cuda.get_device_name(device), "torch": torch.__version__,
              "cuda": torch.version.cuda, "goals": GOALS}
    print(f"{report['card']}, torch {report['torch']}, CUDA {report['cuda']}", flush=True)
    passed = kernel_part(report, args.numel)
    passed = matrix_part(report, args.steps, args.job, base) and passed
    if not args.skip_large:
        from large_model import measure

        report["xlm_r_large_zero3"] = measure(device, pairs=args.pairs)
        print(f"XLM-R-Large ZeRO-3 bf16: {report['xlm_r_large_zero3']}", flush=True)
    report["seconds"] = round(time.monotonic() - begin)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=1, default=str))
    print(f"{'passed' if passed else 'FAILED'} in {report['seconds']} s; figures in {args.out}")
    torch.distributed.destroy_process_group()
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
