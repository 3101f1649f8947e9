"""The job: fine-tune on the training language, evaluate every language, checkpoint.

Read top to bottom: build the task and the model, wrap it for the backend, attach
GradDrop, resume if asked, then epochs of optimizer steps with evaluation at the end of
every epoch (and at the end of the run), the best epoch chosen by English dev accuracy.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from graddrop_dist import GradDrop
from graddrop_dist.parallel import backend_class
from graddrop_dist.dist.device import resolve_device
from graddrop_dist.tasks import load_task
from graddrop_dist.trainer.checkpoint import Checkpointer
from graddrop_dist.trainer.config import OFFLINE_MODEL, JobConfig
from graddrop_dist.trainer.data import BatchPlan, collate
from graddrop_dist.trainer.evaluation import evaluate_languages
from graddrop_dist.trainer.kinds import KINDS
from graddrop_dist.trainer.export import export_pretrained
from graddrop_dist.trainer.faults import fault_loss, inject_fault
from graddrop_dist.trainer.rank_checks import agree_on_job, write_rank_record
from graddrop_dist.trainer.reporting import MetricsLog, results_table, write_results
from graddrop_dist.versions import require

_LAYER_PATH = re.compile(r".*encoder\.layers?\.\d+")


def model_source(config: JobConfig) -> str:
    if config.model.name_or_path == OFFLINE_MODEL:
        from graddrop_dist.assets.offline_model import offline_model_dir

        return str(offline_model_dir(config.model.cache_dir))
    return config.model.name_or_path


def build_model(config: JobConfig, kind, task, source: str):
    require("transformers")
    from transformers import AutoTokenizer

    torch.manual_seed(config.train.seed)  # the new head starts the same on every rank
    model = kind.model_class().from_pretrained(source, **kind.model_kwargs(task))
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.model.freeze):
            param.requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(source)


def layer_classes(model) -> tuple[type, ...]:
    """Encoder layers: each becomes an FSDP unit / fully_shard group."""
    return tuple({type(m) for n, m in model.named_modules() if _LAYER_PATH.fullmatch(n)})


def build_backend(config: JobConfig, model, total_steps: int, device):
    """The model wrapped on `device` by the backend the config names."""
    backend = backend_class(config.backend.name)
    return backend(model, settings=config.train_settings(total_steps), device=device,
                   layer_classes=layer_classes(model), **backend.options_from(config.backend))


def load_job_task(config: JobConfig):
    return load_task(config.task.name, split_seed=config.task.split_seed,
                     min_examples=config.task.min_examples, data_dir=config.task.data_dir,
                     hub_id=config.task.hub_id)


@dataclass
class JobInputs:
    """What a job trains and evaluates, encoded, before anything is wrapped."""

    task: object
    kind: object
    model: torch.nn.Module
    tokenizer: object
    train_data: object
    eval_data: dict
    plan: BatchPlan
    total_steps: int


def prepare_inputs(config: JobConfig, world_size: int, task=None) -> JobInputs:
    task = task or load_job_task(config)
    kind = KINDS[task.kind]
    model, tokenizer = build_model(config, kind, task, model_source(config))
    max_length = config.model.max_length
    train_data = kind.encode(tokenizer, task.train, max_length, train=True)
    eval_data = {split: {lang: kind.encode(tokenizer, examples, max_length, train=False)
                         for lang, examples in getattr(task, split).items()}
                 for split in ("dev", "test")}
    plan = BatchPlan(len(train_data), config.train.micro_batch_size,
                     config.train.gradient_accumulation, world_size, config.train.seed)
    if plan.steps_per_epoch == 0:
        raise ValueError(f"train: {len(train_data)} training examples make no global batch "
                         f"of {plan.global_batch}; lower train.micro_batch_size")
    total_steps = plan.steps_per_epoch * config.train.epochs
    if config.train.max_steps:
        total_steps = min(total_steps, config.train.max_steps)
    return JobInputs(task, kind, model, tokenizer, train_data, eval_data, plan, total_steps)


def announce(config: JobConfig, job: JobInputs, backend, world_size: int) -> None:
    task, plan = job.task, job.plan
    print(f"task {task.name} ({task.metric}): {len(task.labels)} labels, "
          f"{len(job.train_data)} training features, {len(task.languages)} languages; "
          f"{plan.steps_per_epoch} steps/epoch of {plan.global_batch} features; backend "
          f"{config.backend.name} on {world_size} rank(s), {backend.device}, "
          f"{config.train.precision}; graddrop {config.graddrop.method}", flush=True)


def run_job(config: JobConfig, *, rank: int, world_size: int, resume: bool = False,
            task=None, device=None) -> dict:
    """`task`: the loaded TaskData when the caller read it already (graddrop-train reads
    it before the process group starts, so a bad data file is a one-line error).
    `device`: where this rank computes (default: train.device for this LOCAL_RANK)."""
    output = Path(config.output.dir)
    device = device or resolve_device(config.train.device,
                                      local_rank=int(os.environ.get("LOCAL_RANK", 0)))
    job = prepare_inputs(config, world_size, task)
    if world_size > 1:  # the first collective of the job: nothing else can hang first
        agree_on_job(config, job.train_data, job.eval_data)
    backend = build_backend(config, job.model, job.total_steps, device)
    graddrop = backend.attach(GradDrop(config.graddrop), steps_per_epoch=job.plan.steps_per_epoch)
    checkpoints = Checkpointer(output / "checkpoints", rank=rank, world_size=world_size,
                               keep=config.output.keep_checkpoints)
    state = (resume and restore(checkpoints, backend, graddrop, job.plan.global_batch)) or \
        {"global_step": 0, "epoch": 0, "step_in_epoch": 0, "history": [], "best": None}
    metrics = MetricsLog(output, enabled=rank == 0, tensorboard=config.output.tensorboard)
    pad_id = job.tokenizer.pad_token_id
    if rank == 0:
        announce(config, job, backend, world_size)

    def evaluate_and_record(epoch: int) -> None:
        scores = {split: evaluate_languages(
            backend, job.kind, job.task, getattr(job.task, split), job.eval_data[split],
            batch_size=config.train.eval_batch_size, pad_id=pad_id, rank=rank,
            world_size=world_size) for split in ("dev", "test")}
        record = {"epoch": epoch, "global_step": state["global_step"], **scores}
        state["history"].append(record)
        metrics.log(state["global_step"], eval=scores)
        best, english = state["best"], job.task.train_language
        if best is None or scores["dev"].get(english, 0) > best["dev"].get(english, 0):
            state["best"] = record
            if config.output.export_hf:
                export_pretrained(backend, job.tokenizer, output / "best_model", rank=rank)

    def save_checkpoint() -> None:
        state.update(graddrop=graddrop.state_dict(), global_batch=job.plan.global_batch,
                     skipped_nonfinite_steps=backend.skipped_steps,
                     skipped_overflow_steps=backend.overflow_steps)
        checkpoints.save(backend, state["global_step"], state)

    progress = tqdm(total=job.total_steps, initial=state["global_step"], disable=rank != 0,
                    desc="train", dynamic_ncols=True)
    backend.model.train()
    finished = state["global_step"] >= job.total_steps
    while not finished and state["epoch"] < config.train.epochs:
        epoch = state["epoch"]
        for step in range(state["step_in_epoch"], job.plan.steps_per_epoch):
            micro = [collate(job.train_data, rows, pad_id)
                     for rows in job.plan.micro_batches(epoch, step, rank)]
            inject_fault(rank, state["global_step"])
            loss = backend.train_step(micro, fault_loss(state["global_step"]))
            state["global_step"] += 1
            state["step_in_epoch"] = step + 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", epoch=epoch, refresh=False)
            metrics.log(state["global_step"], loss=loss, lr=backend.current_lr(), epoch=epoch)
            every = config.output.checkpoint_every
            if every and state["global_step"] % every == 0:
                save_checkpoint()
            if state["global_step"] >= job.total_steps:
                finished = True
                break
        if state["step_in_epoch"] >= job.plan.steps_per_epoch:
            if config.train.evaluate == "every-epoch":
                evaluate_and_record(epoch)
            state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        save_checkpoint()
    progress.close()
    if (last_epoch := unevaluated_epoch(state)) is not None:
        evaluate_and_record(last_epoch)
    write_rank_record(output, rank, world_size, graddrop, device)
    if config.output.export_final:
        export_pretrained(backend, job.tokenizer, output / "final_model", rank=rank)
    results = finish(config, job.task, state, backend, world_size, output, rank)
    metrics.close()
    graddrop.detach()
    backend.close()
    return results


def restore(checkpoints: Checkpointer, backend, graddrop, global_batch: int) -> dict | None:
    """The trainer state of the latest complete checkpoint, with backend and GradDrop
    restored to it; None when there is none."""
    latest = checkpoints.latest()
    if latest is None:
        return None
    state = checkpoints.load(backend, latest, global_batch)
    graddrop.load_state_dict(state["graddrop"])
    backend.skipped_steps = state.get("skipped_nonfinite_steps", 0)
    backend.overflow_steps = state.get("skipped_overflow_steps", 0)
    return state


def unevaluated_epoch(state: dict) -> int | None:
    """The epoch label of a final evaluation the run still needs (train.evaluate=end, or a
    run cut by max_steps: the last epoch trained), or None."""
    if state["history"] and state["history"][-1]["global_step"] == state["global_step"]:
        return None
    whole_epochs_done = state["step_in_epoch"] == 0 and state["epoch"] > 0
    return state["epoch"] - 1 if whole_epochs_done else state["epoch"]


def finish(config: JobConfig, task, state: dict, backend, world_size: int, output: Path,
           rank: int) -> dict:
    """results.json, results.md and the table on stdout (rank 0); the results."""
    final = state["history"][-1]
    results = {"task": task.summary(), "config": config.to_dict(),
               "world_size": world_size, "device": str(backend.device),
               "steps": state["global_step"],
               "skipped_nonfinite_steps": backend.skipped_steps,
               "skipped_overflow_steps": backend.overflow_steps,
               "best_epoch": state["best"]["epoch"], "best": state["best"], "final": final,
               "history": state["history"]}
    table = results_table(task.languages, state["best"], final)
    if rank == 0:
        write_results(output, results, table)
        print(f"\nzero-shot accuracy (%), best epoch by {task.train_language} dev = "
              f"{state['best']['epoch']}\n{table}\nresults in {output}/results.json", flush=True)
    return results
