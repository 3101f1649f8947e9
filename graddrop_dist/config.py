"""GradDropConfig: which gradients are masked, how often the mask changes, and how much.

GradDrop is the paper's; where the paper is silent the definitions are this project's
choices and say so (README, "Variants and baselines"). Every field is checked at
construction.
"""

from __future__ import annotations

from typing import Literal

from graddrop_dist.typed_config import typed_config

Method = Literal["full", "head-only", "gradual-unfreeze", "graddrop", "graddrop-epoch",
                 "sparse-unfreeze", "layer-graddrop", "childtuning-f"]
Granularity = Literal["element", "row", "tensor"]

# Task heads of Hugging Face sequence/token classification and QA models: new, randomly
# initialised, so they are trained densely and are what `head-only` trains.
DEFAULT_HEAD = ("classifier.*", "qa_outputs.*", "score.*")

MASKED_METHODS = ("graddrop", "graddrop-epoch", "sparse-unfreeze", "layer-graddrop",
                  "childtuning-f")
FREEZING_METHODS = ("head-only", "gradual-unfreeze")

@typed_config
class GradDropConfig:
    SECTION = "graddrop"

    method: Method = "graddrop"
    """Variant or baseline (README, "Variants")."""
    drop_rate: float = 0.5
    """p: probability that one gradient element is dropped (graddrop, childtuning-f, and
    graddrop-epoch with epoch_masks: independent)."""
    seed: int | None = 0
    """Mask seed. null: rank 0 draws one at attach and broadcasts it (recorded in
    GradDrop.config and its state_dict)."""
    rescale: bool | None = None
    """Multiply kept gradients by 1/(1-p). Default: on for childtuning-f, off otherwise."""
    granularity: Granularity = "element"
    """One draw per element, per row (first dimension) or per whole tensor."""
    include: tuple[str, ...] = ("*",)
    """fnmatch patterns of canonical parameter names that may be masked."""
    exclude: tuple[str, ...] = DEFAULT_HEAD
    """Patterns never masked; by default the task head."""
    head: tuple[str, ...] = DEFAULT_HEAD
    """Patterns of the task head (what head-only trains, what gradual-unfreeze starts with)."""
    p_start: float = 0.9
    """sparse-unfreeze and graddrop-epoch (disjoint): the drop rate of epoch 0; it falls
    linearly to 0 at `unfreeze_epochs`."""
    unfreeze_epochs: int | None = None
    """sparse-unfreeze, gradual-unfreeze (layers_per_epoch null) and graddrop-epoch
    (disjoint): the epoch from which every parameter trains. null: the run's last epoch
    (graddrop-train fills it in from train.epochs; in your own loop, set it)."""
    p_bottom: float = 0.7
    """layer-graddrop: drop rate of the embeddings (the bottom of the encoder)."""
    p_top: float = 0.3
    """layer-graddrop: drop rate of the top encoder layer; linear in depth in between."""
    layers_per_epoch: int | None = None
    """gradual-unfreeze: layer groups unfrozen per epoch, top down (embeddings last). null:
    spread them so that everything trains from `unfreeze_epochs` on (ULMFiT); 1: one layer
    per epoch, whatever the run's length."""
    epoch_masks: Literal["disjoint", "independent"] = "disjoint"
    """graddrop-epoch: each epoch trains a new slice [p_e, p_(e-1)) of one draw per element,
    disjoint from the earlier epochs' slices (their union is sparse-unfreeze's kept set, as
    in the authors' figure), or an independent mask per epoch at drop_rate."""
    compact: bool = False
    """DDP, FSDP1 and FSDP2: send only the kept elements through the gradient collective
    (every rank knows the mask), then expand; the result equals the dense path. With
    `granularity: row` packing is a gather of whole rows. DeepSpeed reduces densely
    whatever this says (README, "Communication compaction")."""
    verify_every: int = 0
    """Distributed: every K optimizer steps, gather a fingerprint of the masks from every
    rank and raise on divergence (0: only the check at attach)."""

    def __post_init__(self) -> None:
        for name in ("drop_rate", "p_start", "p_bottom", "p_top"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"graddrop.{name}: must be in [0, 1], got {value}")
        if self.seed is not None and not 0 <= self.seed < 2**63:
            raise ValueError(f"graddrop.seed: must be in [0, 2**63), got {self.seed}")
        if self.verify_every < 0:
            raise ValueError(f"graddrop.verify_every: must be >= 0, got {self.verify_every}")
        for name in ("unfreeze_epochs", "layers_per_epoch"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"graddrop.{name}: must be >= 1 or null, got "
                                 f"{getattr(self, name)}")
        if self.method == "childtuning-f" and self.rescale is False:
            raise ValueError("graddrop.rescale: childtuning-f always rescales by 1/(1-p); "
                             "allowed values for this method: true or null")
        if self.method == "childtuning-f" and self.drop_rate == 1.0:
            raise ValueError("graddrop.drop_rate: childtuning-f rescales by 1/(1-p), so "
                             "drop_rate must be in [0, 1)")

    @property
    def rescales(self) -> bool:
        """The effective rescale flag (the method's default when `rescale` is null)."""
        return self.method == "childtuning-f" if self.rescale is None else self.rescale

    def for_epochs(self, epochs: int) -> GradDropConfig:
        """This config for a run of `epochs` epochs: `unfreeze_epochs: null` becomes the
        run's last epoch (the one owner of that rule: graddrop-train and the Hugging Face
        callback both call it)."""
        if self.unfreeze_epochs is not None:
            return self
        return self.replace(unfreeze_epochs=max(1, epochs - 1))

    @property
    def needs_unfreeze_epochs(self) -> bool:
        """Whether the schedule depends on the epoch by which everything trains."""
        return self.method == "sparse-unfreeze" or (
            self.method == "gradual-unfreeze" and self.layers_per_epoch is None) or (
            self.method == "graddrop-epoch" and self.epoch_masks == "disjoint")

    @property
    def masks(self) -> bool:
        return self.method in MASKED_METHODS

    @property
    def freezes(self) -> bool:
        return self.method in FREEZING_METHODS
