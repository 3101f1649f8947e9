"""Runs examples/accelerate_loop.py under torchrun with the backend built in code.

`accelerate launch` sets DeepSpeed up only on GPUs (on CPU processes it leaves every rank
believing it is process 0), so on CPU ranks the example is handed the Accelerator the
Trainer would build with `use_cpu`: the gloo process group first, then the plugin.
FSDP is left out: accelerate sets it up only on GPUs.

    torchrun --nproc_per_node 2 accelerate_backends.py OUT ddp|zero2|zero3
"""

import importlib.util
import os
import sys
from pathlib import Path

from accelerate import Accelerator, PartialState
from accelerate.utils import DeepSpeedPlugin

REPO = Path(__file__).resolve().parents[2]


def accelerator_for(backend: str) -> Accelerator:
    plugins = {}
    if backend.startswith("zero"):
        plugins["deepspeed_plugin"] = DeepSpeedPlugin(
            hf_ds_config=str(REPO / "ds_configs" / f"{backend}.json"))
    # As the Trainer does with use_cpu: the process group on gloo first, then the plugin.
    PartialState(cpu=True, backend="gloo")
    return Accelerator(gradient_accumulation_steps=2, **plugins)


if __name__ == "__main__":
    spec = importlib.util.spec_from_file_location("accelerate_loop",
                                                  REPO / "examples" / "accelerate_loop.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.main(sys.argv[1], accelerator_for(sys.argv[2]))
    # gloo can abort at interpreter exit while a worker frees a finished job.
    sys.stdout.flush()
    os._exit(0)
