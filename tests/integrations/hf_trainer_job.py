"""A real `transformers.Trainer` run with GradDropCallback: tiny XLM-R, fixed examples in
a fixed order, so one process and any number of ranks see the same global batches.

    python hf_trainer_job.py OUT --backend single|ddp|zero2|zero3
        [--max-steps N] [--save-steps N] [--resume CHECKPOINT] [--seed S|none]

Run by torchrun for the distributed backends. FSDP is left out: accelerate (which the
Trainer runs on) sets FSDP up only on GPUs. Writes OUT/final/ (`trainer.save_model`)
and OUT/graddrop.json (the callback's state at the end) on rank 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_models import fixed_batches, tiny_xlmr

GLOBAL_MICRO_BATCH = 4
ACCUM = 2


def examples(steps: int) -> list[dict]:
    batches = fixed_batches(steps * ACCUM, batch=GLOBAL_MICRO_BATCH)
    return [{key: value[row] for key, value in batch.items()}
            for batch in batches for row in range(GLOBAL_MICRO_BATCH)]


def backend_arguments(backend: str) -> dict:
    if backend in ("zero2", "zero3"):
        stage = int(backend[-1])
        zero = {"stage": stage}
        if stage == 3:
            zero["stage3_gather_16bit_weights_on_model_save"] = True
        return {"deepspeed": {"zero_optimization": zero, "train_micro_batch_size_per_gpu":
                              "auto", "gradient_accumulation_steps": "auto",
                              "gradient_clipping": "auto", "train_batch_size": "auto"}}
    return {}


def main() -> None:
    from transformers import Trainer, TrainingArguments

    from graddrop_dist import GradDropConfig
    from graddrop_dist.integrations.hf import GradDropCallback

    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--backend", default="single")
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--save-steps", type=int, default=0)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--seed", default="1234")
    parser.add_argument("--method", default="graddrop")
    opts = parser.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    args = TrainingArguments(
        output_dir=str(opts.out), use_cpu=True, max_steps=opts.max_steps,
        per_device_train_batch_size=GLOBAL_MICRO_BATCH // world,
        gradient_accumulation_steps=ACCUM, learning_rate=1e-3, adam_epsilon=1e-3,
        weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=0.0,
        train_sampling_strategy="sequential", dataloader_drop_last=True,
        save_strategy="steps" if opts.save_steps else "no", save_steps=opts.save_steps or 500,
        logging_strategy="no", report_to=[], seed=0, data_seed=0,
        ddp_backend="gloo" if world > 1 else None, **backend_arguments(opts.backend))
    seed = None if opts.seed == "none" else int(opts.seed)
    callback = GradDropCallback(GradDropConfig(method=opts.method, drop_rate=0.5, seed=seed,
                                               p_start=0.8, verify_every=1))
    model = tiny_xlmr(seed=0)
    # The sequence-classification loss is a mean and ignores the Trainer's item count, but
    # a model that takes loss kwargs is assumed to have used it: the Trainer would skip
    # dividing by the accumulation steps and multiply by the world size, so gradients
    # would scale with both. Declared off, every backend sees the same mean gradient.
    model.accepts_loss_kwargs = False
    trainer = Trainer(model=model, args=args,
                      train_dataset=examples(8), callbacks=[callback])
    trainer.train(resume_from_checkpoint=opts.resume)
    trainer.save_model(str(opts.out / "final"))
    if trainer.is_world_process_zero():
        state = {**callback.state()["attributes"]["graddrop_state"],
                 "backend": callback.backend}
        (opts.out / "graddrop.json").write_text(json.dumps(state))
    # gloo can abort at interpreter exit while a worker frees a finished job: release
    # everything, meet, tear the group down, and leave without the interpreter's teardown.
    del trainer, model, callback
    gc.collect()
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
