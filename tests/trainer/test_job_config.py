"""Job config and CLI errors: one line naming the field, before any process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from graddrop_dist.backends.ds_config import fill_ds_config
from graddrop_dist.backends import TrainSettings
from graddrop_dist.backends.ds_config import deepspeed_config
from graddrop_dist.trainer.job_config import ConfigError
from graddrop_dist.trainer.job_file import load_job_config


def write(tmp_path, data, name="job.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


@pytest.mark.parametrize("data,overrides,message", [
    ({"trainer": {}}, [], "config: unknown section 'trainer' (did you mean 'train'?); "
                           "allowed sections: model"),
    ({"train": {"learning_rate": 1}}, [], "train: unknown field 'learning_rate'; allowed"),
    ({"train": {"lr": "fast"}}, [], "train.lr: expected float, got 'fast'"),
    ({"train": {"epochs": 0}}, [], "train.epochs: must be >= 1, got 0"),
    ({"train": {"precision": "fp64"}}, [], "train.precision: expected one of fp32, bf16, fp16"),
    ({"train": {"device": "tpu"}}, [], "train.device: expected one of auto, cpu, cuda"),
    ({"backend": {"name": "ddp", "ds_config": "x.json"}}, [],
     "backend.ds_config: not used by backend.name ddp; leave it unset"),
    ({"backend": {"name": "fsdp2", "fsdp1_strategy": "NO_SHARD"}}, [],
     "backend.fsdp1_strategy: not used by backend.name fsdp2; leave it at FULL_SHARD"),
    ({"backend": {"name": "horovod"}}, [], "backend.name: expected one of single, ddp"),
    ({"backend": {"name": "deepspeed"}}, [], "backend.ds_config: required when"),
    ({"graddrop": {"method": "dropout"}}, [], "graddrop.method: expected one of full"),
    ({}, ["train.lr"], "expected section.key=value"),
    ({}, ["lr=3"], "expected section.key=value"),
    ({}, ["train.lr=[1"], "the value is not valid YAML"),
    ({}, ["graddrop.drop_rate=2"], "graddrop.drop_rate: must be in [0, 1], got 2.0"),
    ({"backend": {"name": "deepspeed", "ds_config": "zero3"}},
     ["graddrop.compact=true"], "allowed with backend deepspeed: false"),
    ({}, ["train.evaluate=never"], "train.evaluate: expected one of every-epoch, selected, end"),
    ({}, ["task.name=chatterbot-topics", "task.keywords=true"],
     "task.label / task.keywords: cldr-emoji options, not chatterbot-topics's"),
    ({}, ["task.label=topic"], "task.label: expected one of group, subgroup"),
])
def test_config_errors_are_one_line(tmp_path, data, overrides, message):
    with pytest.raises(ConfigError) as error:
        load_job_config(write(tmp_path, data), overrides)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_yaml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, "train:\n  lr: 1\n  epochs: [2\n")
    with pytest.raises(ConfigError, match=r"job.yaml:\d+: invalid YAML"):
        load_job_config(path)


def test_overrides_are_typed_and_win(tmp_path):
    config = load_job_config(write(tmp_path, {"train": {"lr": 1e-5}}),
                             ["train.lr=2e-5", "graddrop.include=[encoder.*]",
                              "backend.name=fsdp2", "graddrop.seed=null"])
    assert config.train.lr == 2e-5 and config.graddrop.include == ("encoder.*",)
    assert config.backend.name == "fsdp2" and config.graddrop.seed is None


def test_cli_rejects_bad_config_before_any_process_group(tmp_path):
    path = write(tmp_path, {"backend": {"name": "ddp"}, "train": {"lr": -1}})
    env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "1"}  # a process group would hang waiting for rank 1
    result = subprocess.run([sys.executable, "-m", "graddrop_dist.trainer", str(path)],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == "graddrop-train: error: train.lr: must be > 0, got -1.0"
    assert not list(tmp_path.glob("runs*"))


SETTINGS = TrainSettings(micro_batch_size=8, accumulation=2, lr=2e-5, weight_decay=0.01,
                         max_grad_norm=1.0, warmup_steps=3, total_steps=30)


def test_ds_config_auto_values_are_filled_and_conflicts_named(tmp_path):
    owned = {"train_micro_batch_size_per_gpu": 8, "optimizer.params.lr": 2e-5}
    filled = fill_ds_config({"train_micro_batch_size_per_gpu": "auto",
                             "optimizer": {"params": {"lr": "auto"}}}, owned)
    assert filled["train_micro_batch_size_per_gpu"] == 8
    assert filled["optimizer"]["params"]["lr"] == 2e-5
    path = tmp_path / "zero.json"
    path.write_text(json.dumps({"train_micro_batch_size_per_gpu": 16}))
    with pytest.raises(ValueError, match="zero.json: train_micro_batch_size_per_gpu is 16 "
                                         "but the trainer config says 8"):
        deepspeed_config(path, SETTINGS, 2)
    path.write_text('{\n  "zero_optimization": {"stage": 3,}\n}')
    with pytest.raises(ValueError, match=r"zero.json:2: invalid JSON"):
        deepspeed_config(path, SETTINGS, 2)
    path.write_text(json.dumps({"zero_optimization": {"stage": "auto"}}))
    with pytest.raises(ValueError, match="no trainer value fills \"auto\" at "
                                         "zero_optimization.stage"):
        deepspeed_config(path, SETTINGS, 2)
    with pytest.raises(ValueError, match="backend.ds_config: file not found"):
        deepspeed_config(tmp_path / "missing.json", SETTINGS, 2)


def test_optimizer_and_scheduler_sections_are_kept_and_filled():
    config = deepspeed_config({
        "optimizer": {"type": "AdamW", "params": {"lr": "auto", "eps": 1e-6}},
        "scheduler": {"type": "WarmupDecayLR",
                      "params": {"warmup_num_steps": "auto", "total_num_steps": 100,
                                 "warmup_max_lr": "auto", "warmup_min_lr": 0}}}, SETTINGS, 2)
    assert config["optimizer"] == {"type": "AdamW", "params": {"lr": 2e-5, "eps": 1e-6}}
    # A schedule's length is the JSON's own choice; "auto" is the trainer's.
    assert config["scheduler"]["params"] == {"warmup_num_steps": 3, "total_num_steps": 100,
                                             "warmup_max_lr": 2e-5, "warmup_min_lr": 0}
    assert config["train_batch_size"] == 32 and config["gradient_clipping"] == 1.0
    with pytest.raises(ValueError, match="scheduler.params.warmup_max_lr is 0.1 but the "
                                         "trainer config says 2e-05"):
        deepspeed_config({"scheduler": {"params": {"warmup_max_lr": 0.1}}}, SETTINGS, 2)


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_precision_sections_follow_train_precision(precision):
    settings = TrainSettings(precision=precision)
    config = deepspeed_config({}, settings, 1)  # a JSON without either section
    assert config.get("bf16", {}).get("enabled", False) == (precision == "bf16")
    assert config.get("fp16", {}).get("enabled", False) == (precision == "fp16")
    with pytest.raises(ValueError, match="fp16.enabled is True but the trainer config says "
                                         "False"):
        deepspeed_config({"fp16": {"enabled": True}}, TrainSettings(precision="bf16"), 1)


def test_shipped_ds_configs_fill_completely():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "ds_configs"
    stages = {}
    for path in sorted(folder.glob("*.json")):
        for precision in ("fp32", "bf16", "fp16"):
            filled = deepspeed_config(path, TrainSettings(precision=precision), 2)
            assert filled["fp16"]["enabled"] == (precision == "fp16")
            assert "optimizer" not in filled  # the trainer's AdamW (CPU Adam if offloaded)
        stages[path.stem] = filled["zero_optimization"]["stage"]
    assert stages == {"zero0": 0, "zero1": 1, "zero2": 2, "zero3": 3, "zero3_offload": 3}
