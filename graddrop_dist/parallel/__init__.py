"""The former name of graddrop_dist.backends (the trainer's backends), kept so code written
against it keeps working: `from graddrop_dist.parallel import wrap, TrainSettings`."""

from graddrop_dist.backends import (BACKEND_NAMES, Backend, NonFiniteGradient,  # noqa: F401
                                    TrainSettings, backend_class, wrap)

__all__ = ["BACKEND_NAMES", "Backend", "NonFiniteGradient", "TrainSettings", "backend_class",
           "wrap"]
