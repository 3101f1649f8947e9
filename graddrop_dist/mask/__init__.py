"""The GradDrop mask: a pure, counter-based function of (seed, stream, name, global index)."""

from graddrop_dist.mask.counter_hash import (mask_key, reference_keep_mask,
                                             reference_mask_gradient, rescale_factor)
from graddrop_dist.mask.fused import fused_available, keep_mask, mask_gradient
from graddrop_dist.mask.names import canonical_name

__all__ = ["canonical_name", "fused_available", "keep_mask", "mask_gradient", "mask_key",
           "reference_keep_mask", "reference_mask_gradient", "rescale_factor"]
