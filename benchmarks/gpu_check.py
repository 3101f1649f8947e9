"""On one CUDA GPU, in under 5 minutes: the Triton mask kernel's bit equality with the CPU
reference, its throughput against the card's copy bandwidth, and one XLM-R-Large-sized
(random init) training step with and without GradDrop.

    python benchmarks/gpu_check.py [--numel 268435456] [--steps 5]

Prints a table of ratios (goal, issue 8: mask throughput >= 0.8 of a copy; step time with
GradDrop <= 1.05 of without) and exits 1 if a bit differs. Needs torch with CUDA and triton.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from graddrop_dist.mask import mask_key, reference_keep_mask, reference_mask_gradient
from graddrop_dist.mask.counter_hash import rescale_factor
from graddrop_dist.mask.triton_kernel import triton_available, triton_keep, triton_mask


def check_bits() -> list[str]:
    """Triton on the GPU vs the reference on the CPU, every dtype, offsets past 2**32."""
    failures = []
    generator = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rate, rescale in ((0.5, False), (0.3, True), (0.9, True)):
            for offset, block in ((0, 1), (2**32 - 1000, 1), (3 * 2**40 + 5, 1), (0, 1024),
                                  (2**33, 4096)):
                grad = torch.randn(1 << 20, generator=generator).to(dtype)
                common = dict(seed=12345, stream=77, name="roberta.encoder.layer.3.w",
                              drop_rate=rate)
                key = mask_key(**common)
                expected = reference_mask_gradient(grad, rescale=rescale, offset=offset,
                                                   block=block, **common)
                got = triton_mask(grad.cuda(), torch.empty_like(grad, device="cuda"), key,
                                  offset=offset, block=block,
                                  scale=rescale_factor(rate, rescale)).cpu()
                keep = triton_keep(grad.numel(), key, offset=offset, block=block,
                                   device=torch.device("cuda")).cpu()
                same = torch.equal(got.view(torch.uint8), expected.view(torch.uint8)) and \
                    torch.equal(keep, reference_keep_mask(grad.numel(), offset=offset,
                                                          block=block, **common))
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
    """(path, seconds, bytes moved / s): read + write of the gradient for each path."""
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        grad = torch.randn(numel, device="cuda").to(dtype)
        out = torch.empty_like(grad)
        key = mask_key(seed=1, stream=2, name="w", drop_rate=0.5)
        moved = 2 * grad.numel() * grad.element_size()
        copy = cuda_median(lambda: out.copy_(grad))
        mask = cuda_median(lambda: triton_mask(grad, grad, key, offset=0, block=1, scale=1.0))
        rescaled = cuda_median(lambda: triton_mask(grad, grad, key, offset=0, block=1,
                                                   scale=2.0))
        rows += [(f"copy {dtype}", copy, moved / copy),
                 (f"mask in place {dtype}", mask, moved / mask),
                 (f"mask + rescale {dtype}", rescaled, moved / rescaled)]
    return rows


def large_step(steps: int) -> tuple[float, float, float]:
    """Median step time of XLM-R-Large (random init, 560M parameters, bf16 autocast),
    batch 8 x 256, AdamW: before, with GradDrop (p=0.5, every tensor but the head), after."""
    from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

    from graddrop_dist import GradDrop, GradDropConfig

    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24,
                              num_attention_heads=16, intermediate_size=4096,
                              max_position_embeddings=514, num_labels=3)
    model = XLMRobertaForSequenceClassification(config).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    batch = {"input_ids": torch.randint(3, 250002, (8, 256), device="cuda"),
             "labels": torch.randint(0, 3, (8,), device="cuda")}

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def median_step():
        return cuda_median(step, repeats=steps)

    before = median_step()
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5)).attach(
        model, optimizer)
    masked = median_step()
    graddrop.detach()
    after = median_step()
    return before, masked, after


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--numel", type=int, default=256 * 2**20)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available() or not triton_available():
        print("gpu_check: needs a CUDA GPU and triton", file=sys.stderr)
        return 2
    begin = time.monotonic()
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}")
    failures = check_bits()
    print(f"bit equality Triton (GPU) vs reference (CPU): "
          f"{'all equal' if not failures else 'DIFFERENT: ' + '; '.join(failures)}")
    rows = throughput(args.numel)
    print(f"\n{args.numel:,} elements | median ms | GB/s | x copy throughput")
    for name, seconds, rate in rows:
        copy = next(r for n, _, r in rows if n == "copy " + name.split()[-1])
        print(f"{name:28s} | {seconds * 1e3:8.3f} | {rate / 1e9:7.1f} | {rate / copy:.3f}")
    before, masked, after = large_step(args.steps)
    baseline = (before + after) / 2
    print(f"\nXLM-R-Large step (bf16 autocast, batch 8 x 256, AdamW): without "
          f"{baseline * 1e3:.1f} ms, with GradDrop {masked * 1e3:.1f} ms, ratio "
          f"{masked / baseline:.3f}")
    print(f"total {time.monotonic() - begin:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
