"""graddrop-train never surprises: no arguments print the usage, near misses are named,
`--print-config` shows the job as it would run, a stated global batch holds on any rank
count, and a model or data set that needs an unreachable hub is one line at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import yaml

from graddrop_dist.trainer.job_config import ConfigError
from graddrop_dist.trainer.job_file import load_job_config
from jobs import job_dict


def graddrop_train(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "graddrop_dist.trainer", *args],
                          capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


def test_no_arguments_print_the_usage_and_start_nothing(tmp_path):
    result = graddrop_train(cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("usage: graddrop-train")
    assert result.stderr.strip().splitlines()[-1] == (
        "graddrop-train: error: give a recipe or a job YAML, e.g. `graddrop-train "
        "offline-demo` (graddrop-train --list-recipes lists the recipes)")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("override, hint", [
    ("train.lrr=1", "train: unknown field 'lrr' (did you mean 'lr'?)"),
    ("trian.lr=1", "config: unknown section 'trian' (did you mean 'train'?)"),
    ("graddrop.method=gradrop", "got 'gradrop' (did you mean 'graddrop'?)"),
    ("train.precision=bf61", "got 'bf61' (did you mean 'bf16'?)"),
])
def test_near_misses_are_named(tmp_path, override, hint):
    with pytest.raises(ConfigError) as error:
        load_job_config(None, [override])
    assert hint in str(error.value) and "\n" not in str(error.value)


def test_print_config_shows_the_resolved_job_and_the_filled_deepspeed_json(tmp_path):
    job = job_dict("some/model", tmp_path / "run",
                   backend={"name": "deepspeed", "ds_config": "zero3"},
                   train={"global_batch_size": 32, "gradient_accumulation": 1})
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    result = graddrop_train(str(path), "train.lr=3e-5", "--print-config",
                            env={"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert result.returncode == 0, result.stderr
    header, body = result.stdout.split("\n", 1)
    assert header == ("# resolved for 2 rank(s): global batch 32 = micro_batch_size 4 x "
                      "gradient_accumulation 4 x 2 rank(s)")
    yaml_part, json_part = body.split("\n# zero3 (", 1)
    assert json_part.split(")", 1)[0].endswith("ds_configs/zero3.json")
    shown = yaml.safe_load(yaml_part)
    assert shown["train"]["lr"] == 3e-5 and shown["train"]["gradient_accumulation"] == 4
    assert shown["graddrop"] == {**load_job_config(path).graddrop.to_dict()}
    filled = json.loads(json_part.split("\n", 1)[1])
    assert (filled["train_micro_batch_size_per_gpu"], filled["gradient_accumulation_steps"],
            filled["train_batch_size"]) == (4, 4, 32)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("world_size, micro, accumulation, expected", [
    (1, 4, 1, 8), (2, 4, 1, 4), (8, 4, 1, 1), (2, 4, 4, 4),
    (32, 4, 1, "32 is not a multiple of micro_batch_size x ranks = 4 x 32"),
    (3, 4, 1, "32 is not a multiple of micro_batch_size x ranks = 4 x 3"),
    (2, 4, 2, "train.gradient_accumulation: 2 gives a global batch of 16 on 2 ranks"),
])
def test_a_stated_global_batch_derives_the_accumulation(world_size, micro, accumulation,
                                                        expected):
    config = load_job_config(None, ["train.global_batch_size=32",
                                    f"train.micro_batch_size={micro}",
                                    f"train.gradient_accumulation={accumulation}"])
    if isinstance(expected, str):
        with pytest.raises(ConfigError, match=expected):
            config.for_world_size(world_size)
    else:
        assert config.for_world_size(world_size).train.gradient_accumulation == expected


def test_without_a_global_batch_the_config_is_left_alone():
    config = load_job_config(None, ["train.gradient_accumulation=3"])
    assert config.for_world_size(8) is config


UNREACHABLE = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_OFFLINE": "0"}


@pytest.mark.parametrize("overrides, message", [
    (["model.name_or_path=xlm-roberta-large"],
     "graddrop-train: error: model.name_or_path: 'xlm-roberta-large' is not a local "
     "directory and not in the Hugging Face cache, and the hub cannot be reached"),
    (["task.name=xglue-xnli", "task.hub_id=lab/xglue"],
     "graddrop-train: error: task.hub_id: lab/xglue is on the Hugging Face hub, which "
     "cannot be reached"),
])
def test_an_unreachable_hub_is_one_line_before_anything_starts(tiny_checkpoint, tmp_path,
                                                               overrides, message):
    job = job_dict(tiny_checkpoint, tmp_path / "run")
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    started = time.monotonic()
    result = graddrop_train(str(path), *overrides,
                            env={**UNREACHABLE, "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 2
    assert result.stderr.startswith(message) and result.stderr.count("\n") == 1, result.stderr
    assert time.monotonic() - started < 60  # no retry loop
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("make", [lambda p: p.write_bytes(bytes(range(256))), lambda p: p.mkdir()])
def test_a_job_or_sweep_file_that_is_not_text_is_one_line(tmp_path, make):
    from graddrop_dist.study.sweep_config import SweepError, load_sweep

    path = tmp_path / "file.yaml"
    make(path)
    with pytest.raises(ConfigError, match=f"config: {path} is not a text file"):
        load_job_config(path)
    with pytest.raises(SweepError, match=f"sweep: {path} is not a text file"):
        load_sweep(path)
