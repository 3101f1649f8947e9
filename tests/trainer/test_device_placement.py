"""For every backend, through the whole trainer (training, evaluation, export): every tensor
that reaches the model came through the backend's `to_device` and sits where the model's
parameters are, the loss is computed there, and the device was decided for this rank's
LOCAL_RANK. On a CPU machine all of that is the CPU: what these tests catch is a path that
skips the move (the bug that fed CPU batches to a GPU model) or ignores the local rank."""

from __future__ import annotations

import os

import pytest
import torch

from jobs import job_dict
from graddrop_dist.testing.local_ranks import DistributedTest, run_ranks
from graddrop_dist.trainer.job_config import JobConfig

DS_CONFIGS = os.path.join(os.path.dirname(__file__), "..", "..", "ds_configs")
BACKENDS = {"ddp": {"name": "ddp"}, "fsdp1": {"name": "fsdp1"}, "fsdp2": {"name": "fsdp2"},
            "zero2": {"name": "deepspeed", "ds_config": f"{DS_CONFIGS}/zero2.json"},
            "zero3": {"name": "deepspeed", "ds_config": f"{DS_CONFIGS}/zero3.json"},
            "zero3_offload": {"name": "deepspeed",
                              "ds_config": f"{DS_CONFIGS}/zero3_offload.json"}}


class PlacementProbe:
    """Records every forward of `backend.module`: tensors that did not come through
    `backend.to_device`, or sit elsewhere than the parameters and `backend.device`."""

    def __init__(self, backend) -> None:
        self.backend = backend
        self.moved: set[int] = set()
        self.problems: list[str] = []
        self.forwards = {"train": 0, "eval": 0}
        self.loss_devices: set[str] = set()
        to_device = backend.to_device

        def recording_to_device(batch):
            moved = to_device(batch)
            self.moved.update(id(v) for v in moved.values() if isinstance(v, torch.Tensor))
            return moved

        backend.to_device = recording_to_device
        backend.module.register_forward_pre_hook(self.before, with_kwargs=True)
        backend.module.register_forward_hook(self.after)

    def before(self, module, args, kwargs) -> None:
        self.forwards["train" if module.training else "eval"] += 1
        devices = {p.device for p in module.parameters()}
        if devices != {self.backend.device}:
            self.problems.append(f"parameters on {devices}, backend on {self.backend.device}")
        for name, value in [*enumerate(args), *kwargs.items()]:
            if not isinstance(value, torch.Tensor):
                continue
            if id(value) not in self.moved:
                self.problems.append(f"{name} reached the model without to_device")
            if value.device != self.backend.device:
                self.problems.append(f"{name} on {value.device}")

    def after(self, module, args, output) -> None:
        if getattr(output, "loss", None) is not None:
            self.loss_devices.add(str(output.loss.device))


def probed_job(rank, world_size, data) -> dict:
    import graddrop_dist.trainer.job as job

    decided_for, probes = [], []
    resolve, build = job.resolve_device, job.build_backend

    def spy_resolve(choice, *, local_rank=0, **kwargs):
        decided_for.append(local_rank)
        return resolve(choice, local_rank=local_rank, **kwargs)

    def probed_build(*args, **kwargs):
        backend = build(*args, **kwargs)
        probes.append(PlacementProbe(backend))
        return backend

    job.resolve_device, job.build_backend = spy_resolve, probed_build
    job.run_job(JobConfig.from_dict(data), rank=rank, world_size=world_size)
    (probe,) = probes
    return dict(decided_for=decided_for, local_rank=int(os.environ["LOCAL_RANK"]),
                device=str(probe.backend.device), problems=probe.problems,
                forwards=probe.forwards, loss_devices=probe.loss_devices)


def placement_job(checkpoint, tmp_path, backend) -> dict:
    return job_dict(checkpoint, tmp_path / "run", backend=backend,
                    train={"max_steps": 2, "evaluate": "end"},
                    output={"export_hf": False, "report_to": []})


def assert_placed(result: dict) -> None:
    assert result["problems"] == []
    assert result["decided_for"] == [result["local_rank"]]
    assert result["device"] == "cpu" and result["loss_devices"] == {"cpu"}
    # 2 steps x 2 micro-batches trained; every language's dev and test evaluated.
    assert result["forwards"]["train"] == 4 and result["forwards"]["eval"] > 10


@pytest.mark.distributed
class TestEveryBackendPlacesEveryTensor(DistributedTest):
    timeout = 240

    # ZeRO-3 offload: 130 s, most of it building DeepSpeed's CPU Adam op on a fresh cache
    @pytest.mark.parametrize("backend", [
        pytest.param(name, marks=pytest.mark.slow) if name == "zero3_offload" else name
        for name in BACKENDS])
    def test_batches_reach_the_model_through_the_backend(self, tiny_checkpoint, tmp_path,
                                                         backend):
        for result in self.run(probed_job, placement_job(tiny_checkpoint, tmp_path,
                                                         BACKENDS[backend])):
            assert_placed(result)


def test_single_process_places_every_tensor(tiny_checkpoint, tmp_path):
    (result,) = run_ranks(probed_job, 1, placement_job(tiny_checkpoint, tmp_path,
                                                       {"name": "single"}))
    assert_placed(result)


def test_the_probe_catches_a_batch_that_skipped_the_move():
    from tiny_models import fixed_batches, tiny_xlmr

    from graddrop_dist.backends import wrap

    backend = wrap(tiny_xlmr(), "single")
    probe = PlacementProbe(backend)
    moved, skipped = fixed_batches(2)
    backend.train_step([moved])
    assert probe.problems == []
    backend.model(**skipped)  # the bug: straight to the model
    assert probe.problems == [f"{key} reached the model without to_device"
                              for key in skipped]
