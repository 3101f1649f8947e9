"""graddrop-dist: GradDrop (stochastic gradient masking for fine-tuning) on every backend.

    from graddrop_dist import GradDrop, GradDropConfig
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5)).attach(model, opt)
"""

import torch as _torch

from graddrop_dist.versions import check as _check_version

_check_version("torch", _torch.__version__)

from graddrop_dist.algorithm import GradDrop  # noqa: E402
from graddrop_dist.config import GradDropConfig  # noqa: E402
from graddrop_dist.mask import canonical_name, keep_mask, mask_gradient  # noqa: E402

__all__ = ["GradDrop", "GradDropConfig", "canonical_name", "keep_mask", "mask_gradient"]
__version__ = "0.1.0"
