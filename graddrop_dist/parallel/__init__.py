"""The former name of graddrop_dist.backends (the trainer's backends), kept so code written
against it keeps working: `from graddrop_dist.parallel import wrap, TrainSettings`."""

from graddrop_dist.backends import (BACKEND_NAMES, TrainSettings, backend_class,  # noqa: F401
                                    wrap)
from graddrop_dist.lazy import lazy_attributes

__getattr__ = lazy_attributes(__name__, {"Backend": "graddrop_dist.backends.base",
                                         "NonFiniteGradient": "graddrop_dist.backends.base"})
__all__ = ["BACKEND_NAMES", "Backend", "NonFiniteGradient", "TrainSettings", "backend_class",
           "wrap"]
