"""The CUDA mask kernel on a GPU: its bits against the CPU reference (fp32, bf16, fp16,
offsets past 2**32, row blocks), and its throughput against the card's own
device-to-device copy (goal: >= 0.8). Part of `make gpu-check` (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import statistics

import torch

from graddrop_dist.mask import mask_gradient, reference_keep_mask, reference_mask_gradient
from graddrop_dist.mask.spec import MaskSpec
from graddrop_dist.mask.triton_kernel import triton_keep, triton_mask


def check_bits() -> list[str]:
    """Triton on the GPU vs the reference on the CPU, every dtype, offsets past 2**32,
    blocks of 1024 and 4096 elements (a row of a matrix under granularity row); also the
    public mask_gradient on a CUDA tensor. The cases that differ (none, when it works)."""
    failures = []
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rate, rescale in ((0.5, False), (0.3, True), (0.9, True)):
            for offset, block in ((0, 1), (2**32 - 1000, 1), (3 * 2**40 + 5, 1), (0, 1024),
                                  (2**33, 4096)):
                grad = torch.randn(1 << 20, generator=generator).to(dtype)
                common = dict(seed=12345, stream=77, name="roberta.encoder.layer.3.w",
                              drop_rate=rate)
                spec = MaskSpec(12345, 77, common["name"], rate, block, rescale)
                expected = reference_mask_gradient(grad, rescale=rescale, offset=offset,
                                                   block=block, **common)
                got = triton_mask(grad.cuda(), torch.empty_like(grad, device="cuda"), spec,
                                  offset=offset).cpu()
                keep = triton_keep(grad.numel(), spec, offset=offset,
                                   device=torch.device("cuda")).cpu()
                same = torch.equal(got.view(torch.uint8), expected.view(torch.uint8)) and \
                    torch.equal(keep, reference_keep_mask(grad.numel(), offset=offset,
                                                          block=block, **common))
                dispatched = mask_gradient(grad.cuda(), rescale=rescale, offset=offset,
                                           block=block, **common).cpu()
                same = same and torch.equal(dispatched.view(torch.uint8),
                                            expected.view(torch.uint8))
                if not same:
                    failures.append(f"{dtype} p={rate} rescale={rescale} offset={offset} "
                                    f"block={block}")
    return failures


def cuda_median(fn, repeats: int = 20) -> float:
    fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(stop) / 1e3)
    return statistics.median(times)


def throughput(numel: int) -> list[tuple[str, float, float]]:
    """(path, seconds, bytes moved / s): read + write of the gradient for each path, the
    copy first for each dtype (the baseline of the ratio)."""
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        grad = torch.randn(numel, device="cuda").to(dtype)
        out = torch.empty_like(grad)
        plain, scaled = MaskSpec(1, 2, "w", 0.5), MaskSpec(1, 2, "w", 0.5, rescale=True)
        moved = 2 * grad.numel() * grad.element_size()
        copy = cuda_median(lambda: out.copy_(grad))
        mask = cuda_median(lambda: triton_mask(grad, grad, plain, offset=0))
        rescaled = cuda_median(lambda: triton_mask(grad, grad, scaled, offset=0))
        rows += [(f"copy {dtype}", copy, moved / copy),
                 (f"mask in place {dtype}", mask, moved / mask),
                 (f"mask + rescale {dtype}", rescaled, moved / rescaled)]
    return rows
