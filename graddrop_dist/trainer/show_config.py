"""`graddrop-train JOB.yaml --print-config`: the job as it would run, nothing started.

The resolved job config (file, overrides and defaults, with gradient_accumulation derived
for this rank count when a global batch is stated) as YAML, then, for the deepspeed
backend, the DeepSpeed JSON with every "auto" the trainer owns filled in.
"""

from __future__ import annotations

import json

import yaml

from graddrop_dist.trainer.job_config import JobConfig


def print_config(config: JobConfig, world_size: int) -> None:
    train = config.train
    print(f"# resolved for {world_size} rank(s): global batch "
          f"{train.global_batch(world_size)} = "
          f"micro_batch_size {train.micro_batch_size} x gradient_accumulation "
          f"{train.gradient_accumulation} x {world_size} rank(s)")
    print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
    if config.backend.ds_config:
        from graddrop_dist.backends.ds_config import deepspeed_config

        # The schedule's length comes from the encoded data at start (0 stands in here).
        filled = deepspeed_config(config.backend.ds_config, config.train_settings(0),
                                  world_size)
        from graddrop_dist.recipes import ds_config_file

        shown = config.backend.ds_config
        file = ds_config_file(shown)
        print(f"# {shown}{'' if str(file) == shown else f' ({file})'}, filled from the job "
              "(a scheduler's length, if it has one, is filled at start from the data)")
        print(json.dumps(filled, indent=2))
