"""One fine-tuning scenario, run by a single process (the reference) and by every backend
on several ranks: tiny XLM-R, fixed global batches, AdamW, gradient accumulation 2."""

from __future__ import annotations

from pathlib import Path

import torch

from graddrop_dist import GradDrop, GradDropConfig
from graddrop_dist.mask import dispatch
from graddrop_dist.testing.recording import recording
from tiny_models import fixed_batches, tiny_xlmr

STEPS = 3
ACCUM = 2
GLOBAL_MICRO_BATCH = 8  # examples per micro-batch summed over ranks (1 each on 8 ranks)
LR = 1e-3
DS_CONFIGS = Path(__file__).resolve().parents[2] / "ds_configs"

# Every masked method with and without rescaling, plus the freezing baselines.
MASKED_CASES = [dict(method=m, rescale=r) for m in ("graddrop", "layer-graddrop",
                                                   "sparse-unfreeze") for r in (False, True)]
FREEZING_CASES = [dict(method="head-only"), dict(method="gradual-unfreeze")]
# Options that interact with how a backend cuts a parameter into shards.
OPTION_CASES = [dict(method="graddrop", granularity="row"),
                dict(method="graddrop", granularity="tensor", drop_rate=0.3),
                dict(method="graddrop", include=["*.encoder.*"], exclude=["*.LayerNorm.*"]),
                dict(method="graddrop-epoch"), dict(method="childtuning-f")]


def graddrop_config(case: dict) -> GradDropConfig:
    return GradDropConfig(**{**dict(seed=1234, drop_rate=0.5, p_start=0.8, unfreeze_epochs=2),
                             **case})


def micro_batches(rank: int = 0, world_size: int = 1):
    """[step][micro] -> this rank's rows of the global micro-batch."""
    batches = fixed_batches(STEPS * ACCUM, batch=GLOBAL_MICRO_BATCH)
    per_rank = GLOBAL_MICRO_BATCH // world_size
    rows = slice(rank * per_rank, (rank + 1) * per_rank)
    return [[{k: v[rows] for k, v in batches[s * ACCUM + m].items()} for m in range(ACCUM)]
            for s in range(STEPS)]


class MaskRecorder:
    """Records the keep bits GradDrop actually applies, whatever implementation and
    whatever backend path is active (masked in place, out of place, or packed for a
    compacted collective): the mask dispatch announces every span, and the recorder masks a
    tensor of ones with the same call to see its bits. {(step, name): bool[numel]}."""

    def __init__(self, graddrop: GradDrop) -> None:
        self.graddrop = graddrop
        self.masks: dict = {}
        self._busy = False
        self._recording = recording(self._record)
        self._recording.__enter__()

    def _record(self, spec, offset, length) -> None:
        if self._busy:  # the probe below is announced too
            return
        self._busy = True
        try:
            probe = dispatch.apply_mask(spec, torch.ones(length), offset=offset)
        finally:
            self._busy = False
        key = (self.graddrop.step, spec.name)
        if key not in self.masks:
            self.masks[key] = torch.ones(self.graddrop.plans[spec.name].numel, dtype=torch.bool)
        self.masks[key][offset:offset + length] = probe != 0

    def close(self) -> None:
        self._recording.__exit__(None, None, None)


def new_model():
    return tiny_xlmr(seed=0)


def new_optimizer(params):
    # eps=1e-3 keeps Adam's update linear in tiny gradients: with eps=1e-8, an element
    # whose gradient nearly cancels (LayerNorm biases) turns the harmless difference in
    # summation order between 1 and N ranks into a 1% change of its update.
    return torch.optim.AdamW(params, lr=LR, eps=1e-3, weight_decay=0.0)


def train_reference(case: dict):
    """(final parameters, recorded masks) of the single-process run."""
    model = new_model()
    optimizer = new_optimizer(model.parameters())
    graddrop = GradDrop(graddrop_config(case)).attach(model, optimizer, steps_per_epoch=1)
    recorder = MaskRecorder(graddrop)
    for step in micro_batches():
        optimizer.zero_grad()
        for batch in step:
            (model(**batch).loss / ACCUM).backward()
        optimizer.step()
    recorder.close()
    return {n: p.detach().clone() for n, p in model.named_parameters()}, recorder.masks


def compare_parameters(params, reference, rtol=1e-5, atol=1e-6) -> None:
    assert params.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(params[name], reference[name], rtol=rtol, atol=atol,
                                   msg=lambda m, n=name: f"{n}: {m}")


def compare_masks(masks, reference) -> None:
    assert masks.keys() == reference.keys(), sorted(set(masks) ^ set(reference))[:5]
    for key in reference:
        assert torch.equal(masks[key], reference[key]), f"mask differs at {key}"


__all__ = ["ACCUM", "DS_CONFIGS", "FREEZING_CASES", "LR", "MASKED_CASES", "MaskRecorder", "OPTION_CASES",
           "STEPS", "compare_masks", "compare_parameters",
           "graddrop_config", "micro_batches", "new_model", "new_optimizer",
           "train_reference"]
