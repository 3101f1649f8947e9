"""Every backend honours the trainer's fields as one process does: clipping after masking,
the non-finite policy, and fp16 / bf16 (the kept positions are the fp32 run's; an fp16
overflow is skipped without moving the mask on). 2 ranks against the single backend.

Each backend's 2 ranks start once and run every setting below one after another (the
start-up, not the steps, is most of a run's cost); each test reads its setting's result."""

from __future__ import annotations

import pytest
import torch

from backend_runs import attach, setup
from graddrop_dist import GradDrop
from graddrop_dist.backends import NonFiniteGradient
from graddrop_dist.testing.local_ranks import DistributedTest
from scenario import STEPS, MaskRecorder, compare_masks, compare_parameters, graddrop_config, \
    micro_batches

BACKENDS = ["ddp", "fsdp1-full", "fsdp2", "zero0", "zero1", "zero2", "zero3"]
CASE = dict(method="graddrop", rescale=True)
NAN_STEP = 1


def _nan_loss(output):
    return output.loss * float("nan")


def _allow_deepspeed_fp16_on_cpu() -> None:
    """DeepSpeed's CPU accelerator refuses fp16 unless oneDNN has fp16 kernels; the ops it
    runs work without them, so the fp16 engine can be exercised on any CPU."""
    from deepspeed.accelerator.cpu_accelerator import CPU_Accelerator

    CPU_Accelerator.is_fp16_supported = lambda self: True


def train(rank, world_size, backend, options: dict) -> dict:
    """options: TrainSettings fields, and nan_step (that step's loss is NaN)."""
    settings = dict(options)
    nan_step = settings.pop("nan_step", None)
    max_steps = settings.pop("max_steps", STEPS)
    if backend.startswith("zero") and settings.get("precision") == "fp16":
        _allow_deepspeed_fp16_on_cpu()
    run = setup(backend, world_size, **settings)
    graddrop = attach(run, GradDrop(graddrop_config(CASE)))
    recorder = MaskRecorder(graddrop)
    error, outcomes = None, []
    for step, micro in enumerate(micro_batches(rank, world_size)[:max_steps]):
        try:
            run.train_step(micro, _nan_loss) if step == nan_step else run.train_step(micro)
        except NonFiniteGradient as stopped:
            error = str(stopped)
            break
        outcomes.append(run.last_step)
    recorder.close()
    parameters = {name: p.float() for name, p in run.full_parameters().items()}
    result = dict(parameters=parameters if rank == 0 else None, masks=recorder.masks,
                  step=graddrop.step, skipped=outcomes.count("skipped-nonfinite"),
                  overflows=outcomes.count("skipped-overflow"),
                  error=error, scale=run.scaler.get_scale() if run.scaler else None)
    graddrop.detach()
    run.close()
    return result


# The settings each test checks; the fp16 ones last (the fp16 patch stays for the process).
SETTINGS = {
    "clipped": dict(max_grad_norm=0.02),
    "nan skipped": dict(nan_step=NAN_STEP),
    "nan stops": dict(nan_step=NAN_STEP, nonfinite="stop"),
    "bf16": dict(precision="bf16"),
    "fp16": dict(precision="fp16"),
    "fp16 overflow": dict(precision="fp16", nan_step=NAN_STEP, nonfinite="stop"),
}


def train_every_setting(rank, world_size, backend) -> dict:
    return {name: train(rank, world_size, backend, options)
            for name, options in SETTINGS.items()}


_references: dict = {}


def one_process(**options) -> dict:
    key = repr(sorted(options.items()))
    if key not in _references:
        _references[key] = train(0, 1, "single", options)
    return _references[key]


@pytest.mark.distributed
class TestEveryBackendHonoursTheTrainSettings(DistributedTest):
    timeout = 300

    def ranks(self, backend: str, setting: str) -> list[dict]:
        """Each rank's result for SETTINGS[setting], from one 2-rank run per backend."""
        return [results[setting] for results in self.run_once(train_every_setting, backend)]

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_clipping_after_masking_matches_one_process(self, backend):
        clipped = one_process(max_grad_norm=0.02)
        ranks = self.ranks(backend, "clipped")
        compare_parameters(ranks[0]["parameters"], clipped["parameters"])
        for result in ranks:
            compare_masks(result["masks"], clipped["masks"])
        with pytest.raises(AssertionError):  # control: the clipping changed the run
            compare_parameters(ranks[0]["parameters"], one_process()["parameters"])

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_a_nonfinite_step_is_skipped_like_one_process(self, backend):
        reference = one_process(nan_step=NAN_STEP)
        assert reference["skipped"] == 1 and reference["step"] == STEPS - 1
        ranks = self.ranks(backend, "nan skipped")
        if backend == "zero0":  # DeepSpeed ZeRO-0 in fp32 cannot skip: it stops before
            assert all("cannot skip a step; the run stops before the step is applied"
                       in r["error"] for r in ranks)
            assert ranks[0]["step"] == NAN_STEP
            compare_parameters(ranks[0]["parameters"], one_process(max_steps=NAN_STEP)[
                "parameters"])
            return
        assert [(r["skipped"], r["step"], r["error"]) for r in ranks] == \
            [(1, STEPS - 1, None)] * 2
        compare_parameters(ranks[0]["parameters"], reference["parameters"])
        compare_masks(ranks[1]["masks"], reference["masks"])

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_a_nonfinite_step_stops_the_run_when_asked(self, backend):
        ranks = self.ranks(backend, "nan stops")
        assert all("non-finite gradient norm" in r["error"] for r in ranks)
        assert all(r["step"] == NAN_STEP for r in ranks)  # the mask never moved past it

    @pytest.mark.parametrize("precision", ["bf16", "fp16"])
    @pytest.mark.parametrize("backend", BACKENDS)
    def test_the_kept_positions_are_the_fp32_runs(self, backend, precision):
        ranks = self.ranks(backend, precision)
        for result in ranks:
            compare_masks(result["masks"], one_process()["masks"])
            assert result["skipped"] == result["overflows"] == 0
        parameters = ranks[0]["parameters"]
        assert all(bool(torch.isfinite(p).all()) for p in parameters.values())
        if not backend.startswith("zero"):  # autocast over fp32 weights, as one process
            compare_parameters(parameters, one_process(precision=precision)["parameters"],
                               rtol=1e-2, atol=1e-4)

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_an_fp16_overflow_is_skipped_without_moving_the_mask_on(self, backend):
        # nonfinite=stop: an overflow is the loss scaler's business, not a non-finite stop.
        ranks = self.ranks(backend, "fp16 overflow")
        fp32 = one_process(nan_step=NAN_STEP)
        for result in ranks:
            assert (result["overflows"], result["skipped"], result["error"]) == (1, 0, None)
            assert result["step"] == STEPS - 1
            compare_masks(result["masks"], fp32["masks"])
            if result["scale"] is not None:  # torch's scaler halves it (DeepSpeed waits)
                assert result["scale"] == 2.0 ** 15


def test_one_process_fp16_overflow_halves_the_scale_and_keeps_the_mask_step():
    result = one_process(precision="fp16", nan_step=NAN_STEP, nonfinite="stop")
    assert (result["overflows"], result["skipped"], result["step"]) == (1, 0, STEPS - 1)
    assert result["scale"] == 2.0 ** 15
