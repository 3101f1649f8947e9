"""The scenario of scenario.py on each backend, run inside a rank (see multirank.py)."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json

import torch

from graddrop_dist import GradDrop
from scenario import (ACCUM, DS_CONFIGS, MaskRecorder, canonical_state, graddrop_config,
                      micro_batches, new_model, new_optimizer)

BACKENDS = ["ddp", "fsdp1-full", "fsdp1-grad-op", "fsdp1-no-shard", "fsdp2", "zero1",
            "zero2", "zero3"]


def _layer_class():
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    return XLMRobertaLayer


class Run:
    """Wraps a fresh tiny model for `backend`; exposes micro-step, step and parameters."""

    def __init__(self, backend: str, world_size: int, steps_per_epoch: int = 1) -> None:
        self.backend = backend
        model = new_model()
        if backend == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            self.model = DistributedDataParallel(model)
            self.optimizer = new_optimizer(self.model.parameters())
        elif backend.startswith("fsdp1"):
            from torch.distributed.fsdp import FullyShardedDataParallel, ShardingStrategy
            from torch.distributed.fsdp.wrap import ModuleWrapPolicy

            strategy = {"full": ShardingStrategy.FULL_SHARD,
                        "grad-op": ShardingStrategy.SHARD_GRAD_OP,
                        "no-shard": ShardingStrategy.NO_SHARD}[backend.split("-", 1)[1]]
            self.model = FullyShardedDataParallel(
                model, sharding_strategy=strategy, device_id=torch.device("cpu"),
                auto_wrap_policy=ModuleWrapPolicy({_layer_class()}))
            self.optimizer = new_optimizer(self.model.parameters())
        elif backend == "fsdp2":
            from torch.distributed.fsdp import fully_shard

            for layer in model.roberta.encoder.layer:
                fully_shard(layer)
            self.model = fully_shard(model)
            self.optimizer = new_optimizer(self.model.parameters())
        elif backend.startswith("zero"):
            import deepspeed

            from graddrop_dist.ds_config import load_ds_config

            config = load_ds_config(DS_CONFIGS / f"{backend}.json", {
                "train_micro_batch_size_per_gpu": micro_batches(0, world_size)[0][0][
                    "input_ids"].shape[0],
                "gradient_accumulation_steps": ACCUM, "gradient_clipping": 0.0,
                "bf16.enabled": False}, client_optimizer=True)
            self.model, self.optimizer, _, _ = deepspeed.initialize(
                model=model, optimizer=new_optimizer(model.parameters()), config=config)
        else:
            raise ValueError(backend)
        self.steps_per_epoch = steps_per_epoch

    def attach(self, graddrop: GradDrop) -> GradDrop:
        optimizer = None if self.backend.startswith("zero") else self.optimizer
        return graddrop.attach(self.model, optimizer, steps_per_epoch=self.steps_per_epoch)

    def train_step(self, micro) -> None:
        if self.backend.startswith("zero"):
            for batch in micro:
                self.model.backward(self.model(**batch).loss)
                self.model.step()
            return
        self.optimizer.zero_grad()
        for index, batch in enumerate(micro):
            last = index == len(micro) - 1
            with self._accumulate(last):
                (self.model(**batch).loss / ACCUM).backward()
        self.optimizer.step()

    def _accumulate(self, last: bool):
        """Skip the reduction on all but the last micro-batch where the backend can."""
        if last:
            return contextlib.nullcontext()
        if self.backend == "ddp" or self.backend.startswith("fsdp1"):
            return self.model.no_sync()
        if self.backend == "fsdp2":
            return _fsdp2_no_sync(self.model)
        return contextlib.nullcontext()

    def parameters(self) -> dict[str, torch.Tensor]:
        if self.backend == "ddp":
            return canonical_state(self.model.module.named_parameters())
        if self.backend.startswith("fsdp"):
            from torch.distributed.checkpoint.state_dict import (StateDictOptions,
                                                                 get_model_state_dict)

            state = get_model_state_dict(self.model, options=StateDictOptions(
                full_state_dict=True))
            return canonical_state(state.items())
        if self.backend == "zero3":
            import deepspeed

            params = list(self.model.module.parameters())
            with deepspeed.zero.GatheredParameters(params):
                return canonical_state(self.model.module.named_parameters())
        return canonical_state(self.model.module.named_parameters())

    def close(self) -> None:
        if self.backend.startswith("zero"):
            self.model.destroy()
        del self.model, self.optimizer
        gc.collect()


@contextlib.contextmanager
def _fsdp2_no_sync(model):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def train_cases(rank, world_size, backend, cases, sabotage=None, verify_every=0):
    """Train every case on `backend`; return [(parameters, masks)] (parameters on rank 0)."""
    results = []
    for case in cases:
        run = Run(backend, world_size)
        config = graddrop_config(case).replace(verify_every=verify_every)
        graddrop = run.attach(GradDrop(config))
        if sabotage == "seed":  # bypass agreement: every rank draws its own masks
            graddrop.config = graddrop.config.replace(seed=1000 + rank)
        elif sabotage == "rng":
            _use_rank_dependent_rng(graddrop, rank)
        recorder = MaskRecorder(graddrop)
        for micro in micro_batches(rank, world_size):
            run.train_step(micro)
        parameters = run.parameters()
        results.append((parameters if rank == 0 else None, recorder.masks))
        graddrop.detach()
        run.close()
    return results


def _use_rank_dependent_rng(graddrop, rank):
    """The bug the suite must catch: masks from a generator seeded per rank."""

    def mask_(name, grad, *, offset=0, out=None):
        stream, rate = graddrop.schedule(name)
        if rate == 0.0:
            return grad if out is None else out.copy_(grad)
        key = json.dumps([rank, name, graddrop.step, offset]).encode()
        generator = torch.Generator().manual_seed(
            int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1)
        keep = torch.rand(grad.shape, generator=generator) >= rate
        masked = torch.where(keep, grad, torch.zeros((), dtype=grad.dtype))
        return masked if out is None else out.copy_(masked)

    graddrop.mask_ = mask_
