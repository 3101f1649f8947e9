"""graddrop-dist: GradDrop (stochastic gradient masking for fine-tuning) on every backend.

    from graddrop_dist import GradDrop, GradDropConfig
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5)).attach(model, opt)
"""

from graddrop_dist.algorithm import GradDrop
from graddrop_dist.config import GradDropConfig
from graddrop_dist.mask import canonical_name, keep_mask, mask_gradient

__all__ = ["GradDrop", "GradDropConfig", "canonical_name", "keep_mask", "mask_gradient"]
__version__ = "0.1.0"
