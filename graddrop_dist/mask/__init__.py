"""The GradDrop mask: a pure, counter-based function of (seed, stream, name, global index).

| module | what |
|---|---|
| `spec.py` | `MaskSpec`: which bits (seed, stream, name, rate, block, rescale), keyed once |
| `dispatch.py` | the only place choosing Triton / the C kernel / the reference; the recorders |
| `counter_hash.py` | the reference, in plain torch integer ops |
| `fused.py`, `_kernel.c` | the C kernel for the CPU |
| `triton_kernel.py` | the Triton kernel for CUDA |
| `names.py` | `canonical_name`: one key per parameter, whatever wraps the model |
"""

import torch as _torch

from graddrop_dist.versions import check as _check_version

_check_version("torch", _torch.__version__)  # the first module of the package that needs it

from graddrop_dist.mask.counter_hash import (mask_key, reference_keep_mask,  # noqa: E402
                                             reference_mask_gradient, rescale_factor)
from graddrop_dist.mask.dispatch import keep_mask, mask_gradient  # noqa: E402
from graddrop_dist.mask.fused import fused_available  # noqa: E402
from graddrop_dist.mask.names import canonical_name  # noqa: E402
from graddrop_dist.mask.spec import MaskSpec, mask_code_version  # noqa: E402

__all__ = ["MaskSpec", "canonical_name", "fused_available", "keep_mask", "mask_code_version",
           "mask_gradient", "mask_key", "reference_keep_mask", "reference_mask_gradient",
           "rescale_factor"]
