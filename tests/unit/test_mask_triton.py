"""The Triton kernel, bit for bit against the reference, run by Triton's interpreter on
CPU (TRITON_INTERPRET=1, in a subprocess: the flag is read when kernels are defined).
benchmarks/gpu_check.py repeats the comparison on a GPU."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest


CHECK = textwrap.dedent("""
    import torch
    from graddrop_dist.mask import mask_key, reference_keep_mask, reference_mask_gradient
    from graddrop_dist.mask.counter_hash import rescale_factor
    from graddrop_dist.mask.triton_kernel import triton_keep, triton_mask

    torch.manual_seed(0)
    checked = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rate, rescale in ((0.5, False), (0.3, True), (0.9, True), (1e-9, False)):
            for offset, block in ((0, 1), (7, 1), (2**32 - 300, 1), (5 * 2**40 + 3, 1),
                                  (12, 24), (2**32 - 48, 16)):
                grad = torch.randn(3001).to(dtype)
                grad[::97] = -0.0
                common = dict(seed=2**40 + 1, stream=17, name="encoder.w", drop_rate=rate)
                key = mask_key(**common)
                expected = reference_mask_gradient(grad, rescale=rescale, offset=offset,
                                                   block=block, **common)
                got = triton_mask(grad, torch.empty_like(grad), key, offset=offset,
                                  block=block, scale=rescale_factor(rate, rescale))
                assert torch.equal(got.view(torch.int8 if dtype != torch.float32 else
                                            torch.int8), expected.view(torch.int8)), \\
                    (dtype, rate, offset, block)
                keep = triton_keep(3001, key, offset=offset, block=block,
                                   device=torch.device("cpu"))
                assert torch.equal(keep, reference_keep_mask(3001, offset=offset,
                                                             block=block, **common))
                checked += 1
    print("checked", checked)
""")


@pytest.mark.timeout(600)
def test_triton_kernel_is_bitwise_the_reference_under_the_interpreter():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            env={**__import__("os").environ, "TRITON_INTERPRET": "1"},
                            timeout=540, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checked 72" in result.stdout
