"""The scenario of scenario.py on each backend, run inside a rank (graddrop_dist.testing.local_ranks.run_ranks)."""

from __future__ import annotations

import hashlib
import json

import torch

from graddrop_dist import GradDrop
from graddrop_dist.mask import dispatch
from graddrop_dist.backends import Backend, TrainSettings, wrap
from scenario import (ACCUM, DS_CONFIGS, MaskRecorder, graddrop_config, micro_batches,
                      new_model, new_optimizer)

# fsdp1-full uses original parameters (alignment padding inside the flat parameter),
# the other two strategies the classic flat parameter: both layouts are covered.
# ddp-tensor-hooks: a DDP model that already has a comm hook, so GradDrop masks in tensor
# hooks instead of its own comm hook.
# *-compact: GradDropConfig(compact=True), the collectives carry kept elements only.
BACKENDS = ["ddp", "ddp-tensor-hooks", "ddp-compact", "fsdp1-full", "fsdp1-full-compact",
            "fsdp1-grad-op", "fsdp1-no-shard", "fsdp1-no-shard-compact", "fsdp2",
            "fsdp2-compact", "zero1", "zero2", "zero3"]
_FSDP1 = {"fsdp1-full": ("FULL_SHARD", True), "fsdp1-grad-op": ("SHARD_GRAD_OP", False),
          "fsdp1-no-shard": ("NO_SHARD", False)}


def _layer_class():
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    return XLMRobertaLayer


def setup(name: str, world_size: int, **settings) -> Backend:
    """Backend `name` around the scenario's model; `settings`: TrainSettings fields."""
    if name.endswith("-compact"):  # the same setup: compaction is a GradDropConfig option
        return setup(name.removesuffix("-compact"), world_size, **settings)
    model = new_model()
    micro = micro_batches(0, world_size)[0][0]["input_ids"].shape[0]
    common = dict(make_optimizer=new_optimizer, layer_classes=(_layer_class(),),
                  settings=TrainSettings(micro_batch_size=micro, accumulation=ACCUM,
                                         **settings))
    if name in _FSDP1:
        strategy, orig = _FSDP1[name]
        return wrap(model, "fsdp1", fsdp1_strategy=strategy, use_orig_params=orig, **common)
    if name.startswith("zero"):
        config = json.loads((DS_CONFIGS / f"{name}.json").read_text())
        # The shipped first loss scale (2**16) overflows this tiny model's fp16 gradients
        # on the first steps; a smaller one keeps the step count deterministic.
        config["fp16"]["initial_scale_power"] = 8
        return wrap(model, "deepspeed", ds_config=config, **common)
    if name == "ddp-tensor-hooks":
        from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

        run = wrap(model, "ddp", **common)
        run.model.register_comm_hook(None, allreduce_hook)
        return run
    return wrap(model, name, **common)


def attach(run: Backend, graddrop: GradDrop) -> GradDrop:
    return run.attach(graddrop, steps_per_epoch=1)


def train_cases(rank, world_size, backend, cases, sabotage=None, verify_every=0,
                reattach=False):
    """Train every case on `backend`; return [(parameters, masks)] (parameters on rank 0).
    reattach: attach GradDrop, detach it, and attach another before training."""
    results = []
    for case in cases:
        run = setup(backend, world_size)
        config = graddrop_config(case).replace(verify_every=verify_every,
                                               compact=backend.endswith("-compact"))
        if reattach:
            attach(run, GradDrop(config)).detach()
        graddrop = attach(run, GradDrop(config))
        if reattach and backend.startswith("ddp"):  # still masking in DDP's buckets
            assert graddrop._adapter.mode == "comm hook"
        if sabotage == "seed":  # bypass agreement: every rank draws its own masks
            graddrop.config = graddrop.config.replace(seed=1000 + rank)
        elif sabotage == "rng":
            _use_rank_dependent_rng(graddrop, rank)
        recorder = MaskRecorder(graddrop)
        for micro in micro_batches(rank, world_size):
            run.train_step(micro)
        recorder.close()
        parameters = {n: p.float() for n, p in run.full_parameters().items()}
        results.append((parameters if rank == 0 else None, recorder.masks))
        graddrop.detach()
        run.close()
    return results


def _use_rank_dependent_rng(graddrop, rank):
    """The bug the suite must catch: masks from a generator seeded per rank, in place of
    the counter-based mask, wherever a backend applies one."""
    def rank_dependent(spec, grad, *, offset=0, out=None):
        key = json.dumps([rank, spec.name, graddrop.step, offset]).encode()
        generator = torch.Generator().manual_seed(
            int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
        keep = torch.rand(grad.shape, generator=generator) >= spec.rate
        masked = torch.where(keep, grad, torch.zeros((), dtype=grad.dtype))
        dispatch.announce(spec, offset, grad.numel())
        return masked if out is None else out.copy_(masked)

    def rank_dependent_spans(buffer, spans):
        for spec, start, length, offset in spans:
            if spec is not None and length:
                piece = buffer[start:start + length]
                rank_dependent(spec, piece, offset=offset, out=piece)

    # Only in this rank's process (forked): the module attributes the adapters call (one
    # gradient, the spans of a flat buffer, the hooks' in-place masker), and the
    # recorder too, so what it records is what this rank applied.
    dispatch.apply_mask = rank_dependent
    dispatch.mask_spans = rank_dependent_spans
    dispatch.in_place_masker = lambda: lambda spec, grad: rank_dependent(spec, grad, out=grad)
