"""The job: fine-tune on the training language, evaluate every language, checkpoint.

Read top to bottom: build the task and the model, wrap it for the backend, attach
GradDrop, resume if asked, then epochs of optimizer steps with evaluation at the end of
every epoch (and at the end of the run), the best epoch chosen by English dev accuracy.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import torch
from tqdm import tqdm

from graddrop_dist import GradDrop
from graddrop_dist.backends.wrap import wrap
from graddrop_dist.ds_config import load_ds_config
from graddrop_dist.tasks import load_task
from graddrop_dist.trainer.checkpoint import Checkpointer
from graddrop_dist.trainer.config import OFFLINE_MODEL, JobConfig
from graddrop_dist.trainer.data import BatchPlan, collate
from graddrop_dist.trainer.evaluation import evaluate_languages
from graddrop_dist.trainer.kinds import KINDS
from graddrop_dist.trainer.export import export_pretrained
from graddrop_dist.trainer.reporting import MetricsLog, results_table, write_results

_LAYER_PATH = re.compile(r".*encoder\.layers?\.\d+")


def model_source(config: JobConfig) -> str:
    if config.model.name_or_path == OFFLINE_MODEL:
        from graddrop_dist.assets.offline_model import offline_model_dir

        return str(offline_model_dir(config.model.cache_dir))
    return config.model.name_or_path


def build_model(config: JobConfig, kind, task, source: str):
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


def deepspeed_owned_values(config: JobConfig, world_size: int) -> dict:
    """The DeepSpeed JSON values the trainer config owns (one source of truth)."""
    train = config.train
    return {"train_micro_batch_size_per_gpu": train.micro_batch_size,
            "gradient_accumulation_steps": train.gradient_accumulation,
            "train_batch_size": train.micro_batch_size * train.gradient_accumulation
            * world_size,
            "gradient_clipping": train.max_grad_norm,
            "bf16.enabled": train.precision == "bf16",
            "optimizer.params.lr": train.lr,
            "optimizer.params.weight_decay": train.weight_decay}


def make_training_setup(config: JobConfig, model, plan: BatchPlan, total_steps: int,
                        world_size: int):
    from transformers import get_linear_schedule_with_warmup

    train = config.train
    warmup = int(train.warmup_ratio * total_steps)
    ds_config = None
    if config.backend.name == "deepspeed":
        ds_config = load_ds_config(config.backend.ds_config,
                                   deepspeed_owned_values(config, world_size),
                                   client_optimizer=True)
    return wrap(
        model, config.backend.name, accumulation=train.gradient_accumulation,
        make_optimizer=lambda params: torch.optim.AdamW(params, lr=train.lr,
                                                        weight_decay=train.weight_decay),
        make_scheduler=lambda opt: get_linear_schedule_with_warmup(opt, warmup, total_steps),
        max_grad_norm=train.max_grad_norm, nonfinite=train.nonfinite,
        autocast_dtype=torch.bfloat16 if train.precision == "bf16" else None,
        layer_classes=layer_classes(model), fsdp1_strategy=config.backend.fsdp1_strategy,
        ds_config=ds_config)


def agree_on_job(config: JobConfig, train_data, eval_data) -> None:
    """Every rank must run the same job on the same data with the same code."""
    import hashlib

    import deepspeed
    import transformers

    import graddrop_dist
    from graddrop_dist.backends.agreement import mask_code_version, raise_on_disagreement

    digest = hashlib.sha256()
    for feature in train_data.features:
        digest.update(repr(sorted(feature.items())).encode())
    payload = {f"{section}.{key}": value for section, values in config.to_dict().items()
               for key, value in values.items()}
    payload.update({
        "training examples": len(train_data),
        "training data digest": digest.hexdigest()[:16],
        "evaluation examples": {split: sum(len(d) for d in data.values())
                                for split, data in eval_data.items()},
        "code versions": f"graddrop-dist {graddrop_dist.__version__} (mask "
                         f"{mask_code_version()}), torch {torch.__version__}, transformers "
                         f"{transformers.__version__}, deepspeed {deepspeed.__version__}"})
    raise_on_disagreement(payload, "about the job")


def inject_fault(rank: int, step: int) -> None:
    """GRADDROP_FAULT=kill:<rank>:<step> SIGKILLs that rank before that optimizer step:
    how the tests make a rank die mid-run (the way an OOM-killed or lost node does)."""
    import os
    import signal

    fault = os.environ.get("GRADDROP_FAULT", "")
    if fault.startswith("kill:"):
        _, victim, at_step = fault.split(":")
        if int(victim) == rank and int(at_step) == step:
            os.kill(os.getpid(), signal.SIGKILL)


def fault_loss(step: int):
    """GRADDROP_FAULT=nan:<step> makes that step's loss NaN (so are its gradients)."""
    import os

    fault = os.environ.get("GRADDROP_FAULT", "")
    if fault.startswith("nan:") and int(fault.split(":")[1]) == step:
        return lambda output: output.loss * float("nan")
    return lambda output: output.loss


def write_rank_record(output: Path, rank: int, world_size: int, graddrop) -> None:
    """ranks/rank<r>.json: how this rank was found and the fingerprint of its last masks,
    so anyone can check after the fact that every rank drew the same masks."""
    import json
    import os

    from graddrop_dist.backends.agreement import mask_fingerprint

    record = {"rank": rank, "world_size": world_size,
              "discovered_by": os.environ.get("GRADDROP_RANK_SOURCE", "unknown"),
              "host": os.uname().nodename, "optimizer_steps": graddrop.step,
              "seed": graddrop.config.seed,
              "last_mask_fingerprint": mask_fingerprint(graddrop, max(graddrop.step - 1, 0))}
    folder = output / "ranks"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"rank{rank}.json").write_text(json.dumps(record, indent=1))


def load_job_task(config: JobConfig):
    return load_task(config.task.name, split_seed=config.task.split_seed,
                     min_examples=config.task.min_examples, data_dir=config.task.data_dir,
                     hub_id=config.task.hub_id)


def run_job(config: JobConfig, *, rank: int, world_size: int, resume: bool = False,
            task=None) -> dict:
    """`task`: the loaded TaskData when the caller read it already (graddrop-train reads
    it before the process group starts, so a bad data file is a one-line error)."""
    output = Path(config.output.dir)
    task = task or load_job_task(config)
    source = model_source(config)
    kind = KINDS[task.kind]
    model, tokenizer = build_model(config, kind, task, source)
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
    if world_size > 1:  # the first collective of the job: nothing else can hang first
        agree_on_job(config, train_data, eval_data)
    setup = make_training_setup(config, model, plan, total_steps, world_size)
    graddrop = GradDrop(config.graddrop).attach(setup.model, setup.graddrop_optimizer(),
                                                steps_per_epoch=plan.steps_per_epoch)
    checkpoints = Checkpointer(output / "checkpoints", rank=rank, world_size=world_size,
                               keep=config.output.keep_checkpoints)
    state = {"global_step": 0, "epoch": 0, "step_in_epoch": 0, "history": [], "best": None}
    if resume and (latest := checkpoints.latest()) is not None:
        state = checkpoints.load(setup, latest, plan.global_batch)
        graddrop.load_state_dict(state["graddrop"])
        setup.skipped_steps = state.get("skipped_nonfinite_steps", 0)
    metrics = MetricsLog(output, enabled=rank == 0, tensorboard=config.output.tensorboard)
    pad_id = tokenizer.pad_token_id
    eval_kwargs = dict(batch_size=config.train.eval_batch_size, pad_id=pad_id, rank=rank,
                       world_size=world_size, autocast_dtype=setup.autocast_dtype)
    if rank == 0:
        print(f"task {task.name} ({task.metric}): {len(task.labels)} labels, "
              f"{len(train_data)} training features, {len(task.languages)} languages; "
              f"{plan.steps_per_epoch} steps/epoch of {plan.global_batch} features; backend {config.backend.name} on "
              f"{world_size} rank(s); graddrop {config.graddrop.method}", flush=True)

    def evaluate_and_record(epoch: int) -> None:
        scores = {split: evaluate_languages(setup.model, kind, task, getattr(task, split),
                                            eval_data[split], **eval_kwargs)
                  for split in ("dev", "test")}
        record = {"epoch": epoch, "global_step": state["global_step"], **scores}
        state["history"].append(record)
        metrics.log(state["global_step"], eval=scores)
        best = state["best"]
        english = task.train_language
        if best is None or scores["dev"].get(english, 0) > best["dev"].get(english, 0):
            state["best"] = record
            if config.output.export_hf:
                export_pretrained(setup, tokenizer, output / "best_model", rank=rank)

    def save_checkpoint() -> None:
        state["graddrop"] = graddrop.state_dict()
        state["global_batch"] = plan.global_batch
        state["skipped_nonfinite_steps"] = setup.skipped_steps
        checkpoints.save(setup, state["global_step"], state)

    progress = tqdm(total=total_steps, initial=state["global_step"], disable=rank != 0,
                    desc="train", dynamic_ncols=True)
    setup.model.train()
    finished = state["global_step"] >= total_steps
    while not finished and state["epoch"] < config.train.epochs:
        epoch = state["epoch"]
        for step in range(state["step_in_epoch"], plan.steps_per_epoch):
            micro = [collate(train_data, rows, pad_id)
                     for rows in plan.micro_batches(epoch, step, rank)]
            inject_fault(rank, state["global_step"])
            loss = setup.train_step(micro, fault_loss(state["global_step"]))
            state["global_step"] += 1
            state["step_in_epoch"] = step + 1
            progress.update(1)
            progress.set_postfix(loss=f"{loss:.3f}", epoch=epoch, refresh=False)
            metrics.log(state["global_step"], loss=loss, lr=setup.current_lr(), epoch=epoch)
            every = config.output.checkpoint_every
            if every and state["global_step"] % every == 0:
                save_checkpoint()
            if state["global_step"] >= total_steps:
                finished = True
                break
        if state["step_in_epoch"] >= plan.steps_per_epoch:
            if config.train.evaluate == "every-epoch":
                evaluate_and_record(epoch)
            state["epoch"], state["step_in_epoch"] = epoch + 1, 0
        save_checkpoint()
    progress.close()
    if not state["history"] or state["history"][-1]["global_step"] != state["global_step"]:
        # train.evaluate=end, or a run cut by max_steps: label it with the last epoch trained
        whole_epochs_done = state["step_in_epoch"] == 0 and state["epoch"] > 0
        evaluate_and_record(state["epoch"] - 1 if whole_epochs_done else state["epoch"])
    final = state["history"][-1]
    write_rank_record(output, rank, world_size, graddrop)
    if config.output.export_final:
        export_pretrained(setup, tokenizer, output / "final_model", rank=rank)
    results = {"task": task.summary(), "config": config.to_dict(),
               "world_size": world_size, "steps": state["global_step"],
               "skipped_nonfinite_steps": setup.skipped_steps,
               "best_epoch": state["best"]["epoch"], "best": state["best"], "final": final,
               "history": state["history"]}
    table = results_table(task.languages, state["best"], final)
    if rank == 0:
        write_results(output, results, table)
        print(f"\nzero-shot accuracy (%), best epoch by {task.train_language} dev = "
              f"{state['best']['epoch']}\n{table}\nresults in {output}/results.json", flush=True)
    metrics.close()
    graddrop.detach()
    setup.close()
    return results
