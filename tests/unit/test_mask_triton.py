"""The Triton kernel, bit for bit against the reference, run by Triton's interpreter on
CPU (TRITON_INTERPRET=1, in a subprocess: the flag is read when kernels are defined);
and compiled for an H100 (sm_90) without a GPU, to read in its PTX that every global
load and store is a 128-bit access. benchmarks/gpu_check.py repeats the comparison on a
GPU."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap

import pytest

CHECK = textwrap.dedent("""
    import torch
    from graddrop_dist.mask import reference_keep_mask, reference_mask_gradient
    from graddrop_dist.mask.spec import MaskSpec
    from graddrop_dist.mask.triton_kernel import triton_keep, triton_mask

    torch.manual_seed(0)
    checked = 0
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for rate, rescale, below in ((0.5, False, 1.0), (0.3, True, 1.0), (0.9, True, 1.0),
                                     (1e-9, False, 1.0), (0.2, True, 0.7)):
            for offset, block in ((0, 1), (7, 1), (2**32 - 300, 1), (5 * 2**40 + 3, 1),
                                  (12, 24), (2**32 - 48, 16)):
                grad = torch.randn(3001).to(dtype)
                grad[::97] = -0.0
                common = dict(seed=2**40 + 1, stream=17, name="encoder.w", offset=offset,
                              block=block)
                spec = MaskSpec(2**40 + 1, 17, "encoder.w", rate, block, rescale, below)
                keep = reference_keep_mask(3001, drop_rate=rate, **common)
                if below < 1:
                    keep &= ~reference_keep_mask(3001, drop_rate=below, **common)
                    expected = torch.where(keep, grad * spec.scale, torch.zeros((),
                                           dtype=dtype))
                else:
                    expected = reference_mask_gradient(grad, drop_rate=rate,
                                                       rescale=rescale, **common)
                got = triton_mask(grad, torch.empty_like(grad), spec, offset=offset)
                assert torch.equal(got.view(torch.int8), expected.view(torch.int8)), \\
                    (dtype, rate, below, offset, block)
                assert torch.equal(triton_keep(3001, spec, offset=offset,
                                               device=torch.device("cpu")), keep)
                checked += 1
    print("checked", checked)
""")


@pytest.mark.timeout(600)
def test_triton_kernel_is_bitwise_the_reference_under_the_interpreter():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True,
                            env={**os.environ, "TRITON_INTERPRET": "1"}, timeout=540,
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "checked 90" in result.stdout


PTX = textwrap.dedent("""
    import re, torch, triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend
    from triton.runtime.jit import create_function_from_signature
    from graddrop_dist.mask.triton_kernel import keep_kernel, mask_kernel

    TARGET = GPUTarget("cuda", 90, 32)
    BACKEND = make_backend(TARGET)

    def ptx(kernel, *args, **constants):
        # What a launch would compile, specialised by Triton's own rules on these arguments
        # (CPU tensors stand in for device ones: only their alignment and dtype count).
        binder = create_function_from_signature(kernel.signature, kernel.params, BACKEND)
        bound, specialization, options = binder(*args, **constants)
        options, signature, constexprs, attrs = kernel._pack_args(
            BACKEND, constants, bound, specialization, options)
        source = ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=attrs)
        return triton.compile(source, target=TARGET, options=options.__dict__).asm["ptx"]

    keys = (12345, 1, 67890, 1 << 31, 2**31 + 5, 3)  # k0 k1 hk lo width: 1 is not special
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        x = torch.empty(1 << 16, dtype=dtype)
        for n in (1 << 16, 4096 * 3):
            code = ptx(mask_kernel, x, torch.empty_like(x), n, 0, 1, *keys[:5], 2.0,
                       BLOCK=1024, BLOCKED=False, RESCALE=True,
                       BF16_OUT=dtype == torch.bfloat16)
            print(dtype, n, sorted(set(re.findall(r"(?:ld|st)\\.global[.\\w]*", code))))
    code = ptx(keep_kernel, torch.empty(1 << 16, dtype=torch.int8), 1 << 16, 0, 1, *keys[:5],
               BLOCK=1024, BLOCKED=False)
    print("keep", sorted(set(re.findall(r"(?:ld|st)\\.global[.\\w]*", code))))
""")


def test_the_compiled_kernel_loads_and_stores_128_bits_at_a_time():
    pytest.importorskip("triton")
    result = subprocess.run([sys.executable, "-c", PTX], capture_output=True, text=True,
                            timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 7, result.stdout
    for line in lines[:6]:  # fp32 as v4.b32, 16-bit types as v4.b32 (8 halves) or v2
        accesses = re.findall(r"'([^']+)'", line)
        assert accesses and all(".v" in a for a in accesses), line
    assert all(".v" in a for a in re.findall(r"'([^']+)'", lines[6])), lines[6]
