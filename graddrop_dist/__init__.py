"""graddrop-dist: GradDrop (stochastic gradient masking for fine-tuning) on every backend.

    from graddrop_dist import GradDrop, GradDropConfig
    graddrop = GradDrop(GradDropConfig(method="graddrop", drop_rate=0.5)).attach(model, opt)

The names below are imported on first use: `import graddrop_dist` (and the launcher, and
validating a job config) loads no torch. The mask checks the torch release when it loads.
"""

from graddrop_dist.lazy import lazy_attributes

__getattr__ = lazy_attributes(__name__, {
    "GradDrop": "graddrop_dist.algorithm",
    "GradDropConfig": "graddrop_dist.config",
    "canonical_name": "graddrop_dist.mask",
    "keep_mask": "graddrop_dist.mask",
    "mask_gradient": "graddrop_dist.mask",
})
__all__ = ["GradDrop", "GradDropConfig", "canonical_name", "keep_mask", "mask_gradient"]
__version__ = "0.1.0"
