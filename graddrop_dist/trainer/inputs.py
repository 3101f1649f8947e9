"""What a job trains and evaluates: the task, the model and its tokenizer, the encoded
features and the batch plan, built before anything is wrapped for a backend."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

import torch

from graddrop_dist.tasks import load_task
from graddrop_dist.tasks.heads import KINDS
from graddrop_dist.trainer.job_config import OFFLINE_MODEL, JobConfig
from graddrop_dist.trainer.data import BatchPlan
from graddrop_dist.versions import require

_LAYER_PATH = re.compile(r".*encoder\.layers?\.\d+")


def model_source(config: JobConfig) -> str:
    if config.model.name_or_path == OFFLINE_MODEL:
        from graddrop_dist.assets.offline_model import offline_model_dir

        return str(offline_model_dir(config.model.cache_dir))
    return config.model.name_or_path


def build_model(config: JobConfig, head, task, source: str):
    require("transformers")
    from transformers import AutoTokenizer

    torch.manual_seed(config.train.seed)  # the new head starts the same on every rank
    model = head.model_class().from_pretrained(source, **head.model_kwargs(task))
    for name, param in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.model.freeze):
            param.requires_grad_(False)
    return model, AutoTokenizer.from_pretrained(source)


def layer_classes(model) -> tuple[type, ...]:
    """Encoder layers: each becomes an FSDP unit / fully_shard group."""
    return tuple({type(m) for n, m in model.named_modules() if _LAYER_PATH.fullmatch(n)})


def load_job_task(config: JobConfig):
    task = config.task
    return load_task(task.name, split_seed=task.split_seed, min_examples=task.min_examples,
                     data_dir=task.data_dir, hub_id=task.hub_id,
                     hub_revision=task.hub_revision,
                     languages=None if task.languages is None else list(task.languages),
                     label=task.label, keywords=task.keywords)


@dataclass
class JobInputs:
    task: object  # TaskData
    head: object  # its head (graddrop_dist.tasks.heads)
    model: torch.nn.Module
    tokenizer: object
    train_data: object
    eval_data: dict
    plan: BatchPlan
    total_steps: int


def prepare_inputs(config: JobConfig, world_size: int, task=None) -> JobInputs:
    task = task or load_job_task(config)
    head = KINDS[task.kind]
    model, tokenizer = build_model(config, head, task, model_source(config))
    max_length = config.model.max_length
    train_data = head.encode(tokenizer, task.train, max_length, train=True)
    eval_data = {split: {lang: head.encode(tokenizer, examples, max_length, train=False)
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
    return JobInputs(task, head, model, tokenizer, train_data, eval_data, plan, total_steps)
