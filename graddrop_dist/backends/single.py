"""One process: the model on its device, no wrapper, no collective."""

from __future__ import annotations

from graddrop_dist.backends.base import Backend


class SingleBackend(Backend):
    name = "single"

    def wrap(self, model, layer_classes):
        return model.to(self.device)
