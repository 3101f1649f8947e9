"""graddrop-train RECIPE|JOB.yaml [section.key=value ...] [--resume]

Validates the whole config before any process group starts (a bad value is one line on
stderr and exit status 2), finds its rank from torchrun / deepspeed / mpirun / Slurm
variables, runs the job, and shuts the process group down cleanly. Exit status: 0 done,
2 a bad job (config, data, a resume that does not match), 143 stopped by SIGTERM or
SIGUSR1 after checkpointing (trainer/preemption.py), 1 anything else.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import warnings
from pathlib import Path

from graddrop_dist.cli_errors import OneLineParser

EXAMPLE = "graddrop-train offline-demo"


def parse_args(argv):
    parser = OneLineParser(
        prog="graddrop-train", description=__doc__.splitlines()[0],
        epilog=f"e.g. `{EXAMPLE}` (runs offline), `graddrop-train xglue/xnli "
               "task.data_dir=/data/xglue_full_dataset`; --list-recipes lists the recipes")
    parser.add_argument("config", nargs="?",
                        help="a shipped recipe by name (offline-demo, xglue/xnli, ...) or a "
                             "job YAML file")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=2e-5")
    parser.add_argument("--list-recipes", action="store_true",
                        help="list the shipped recipes (jobs, and sweeps for graddrop-sweep) "
                             "and exit")
    parser.add_argument("--copy-recipe", metavar="DEST",
                        help="copy the recipe named by CONFIG to DEST (a file or folder) "
                             "for editing, and exit")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in output.dir from its latest complete "
                             "checkpoint (an error when there is none)")
    parser.add_argument("--resume-or-start", action="store_true",
                        help="resume when output.dir has a checkpoint, else start (for "
                             "schedulers that requeue a job)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run output.dir holds and start a new one there")
    parser.add_argument("--dry-run", action="store_true",
                        help="check config, rank, device, backend and data files, print the "
                             "plan, and start nothing (no process group, no model)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved job config (and the filled DeepSpeed JSON) "
                             "and start nothing")
    if not argv:  # never a silent run of the defaults
        parser.print_usage(sys.stderr)
        print(f"graddrop-train: error: give a recipe or a job YAML, e.g. `{EXAMPLE}` "
              "(graddrop-train --list-recipes lists the recipes)", file=sys.stderr)
        raise SystemExit(2)
    args = parser.parse_intermixed_args(argv)  # overrides may follow the flags too
    if args.config is None and not args.list_recipes:
        parser.error(f"give a recipe or a job YAML, e.g. `{EXAMPLE}`")
    return args


def list_recipes() -> None:
    from graddrop_dist.recipes import ds_config_names, recipes

    found = recipes()
    width = max(len(name) for name in found)
    for kind, how in (("job", "graddrop-train NAME"), ("sweep", "graddrop-sweep NAME")):
        print(f"# {how}")
        for recipe in found.values():
            if recipe.kind == kind:
                print(f"{recipe.name:<{width}}  {recipe.summary}")
    print(f"# backend.ds_config: NAME\n{'  '.join(ds_config_names())}")


def copy_recipe(name: str, destination: str) -> Path:
    """The recipe's YAML copied out; a file already there is an error, not overwritten."""
    from graddrop_dist.recipes import find_recipe

    recipe = find_recipe(name)
    target = Path(destination)
    if target.is_dir():
        target = target / recipe.path.name
    if target.exists():
        raise FileExistsError(f"--copy-recipe: {target} exists; remove it or name another file")
    shutil.copyfile(recipe.path, target)
    return target


def plan(config, info, device, task) -> str:
    """One line: what graddrop-train would run, after every check that needs no peer."""
    from graddrop_dist.ranks.device import collective_backend

    backend, train = config.backend, config.train
    data = (f"{len(task.train)} training examples, {len(task.languages)} languages"
            if task is not None else f"read from the hub ({config.task.hub_id}) at start, not "
            "checked in a dry run")
    return (f"graddrop-train: dry run: rank {info.rank} of {info.world_size} "
            f"({info.source}) on {device} ({collective_backend(device)}); backend "
            f"{backend.name}{f' ({backend.ds_config})' if backend.ds_config else ''}, "
            f"{config.train.precision}; global batch {train.global_batch(info.world_size)}; model "
            f"{config.model.name_or_path}; task "
            f"{config.task.name}: {data}; graddrop {config.graddrop.method}; output "
            f"{config.output.dir}; nothing started")


def quiet_non_zero_rank() -> None:
    warnings.filterwarnings("ignore")
    for name in ("transformers", "deepspeed", "DeepSpeed", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


def recipe_command(args) -> int:
    """--list-recipes, --copy-recipe: about the shipped recipes; nothing runs."""
    try:
        if args.list_recipes:
            list_recipes()
        else:
            print(f"copied {args.config} to {copy_recipe(args.config, args.copy_recipe)}")
    except (ValueError, OSError) as error:
        print(f"graddrop-train: error: {error}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    from graddrop_dist.trainer.run_dir import release_all

    try:
        return run(parse_args(sys.argv[1:] if argv is None else argv))
    finally:  # the job has ended: its output.dir may be claimed again (main called twice)
        release_all()


def run(args) -> int:
    if args.list_recipes or args.copy_recipe:
        return recipe_command(args)
    from graddrop_dist.ranks import process_group

    # DeepSpeed calls torch collectives PyTorch has renamed: one warning per step otherwise.
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=r".*torch\.distributed\.\w+` is deprecated")
    from graddrop_dist.ranks.device import bind, resolve_device
    from graddrop_dist.ranks.discovery import discover_rank, export_rank_env
    from graddrop_dist.backends import backend_spec
    from graddrop_dist.trainer.job_config import ConfigError
    from graddrop_dist.trainer.job_file import load_job_config
    from graddrop_dist.trainer.preflight import preflight
    from graddrop_dist.versions import VersionTooOld

    try:
        config = load_job_config(args.config, args.overrides)
        info = discover_rank()
        config = config.for_world_size(info.world_size)
        device = resolve_device(config.train.device, local_rank=info.local_rank)
        if args.print_config:
            from graddrop_dist.trainer.show_config import print_config

            print_config(config, info.world_size)
            return 0
        asked = "yes" if args.resume else "auto" if args.resume_or_start else "no"
        resume = preflight(config, rank=info.rank, world_size=info.world_size,
                           device=device, dry_run=args.dry_run, resume=asked,
                           overwrite=args.overwrite)
        from graddrop_dist.tasks import reads_the_hub
        from graddrop_dist.trainer.inputs import load_job_task

        task = None  # data files are checked before any process group; a dry run does
        if not (args.dry_run and reads_the_hub(config.task.name, config.task.hub_id)):
            task = load_job_task(config)  # not download
    except (ConfigError, ValueError, FileNotFoundError, VersionTooOld) as error:
        print(f"graddrop-train: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(plan(config, info, device, task))
        return 0
    from graddrop_dist.ranks.launcher_death import end_with_launcher

    end_with_launcher()  # no orphans training on after their agent is killed
    os.environ["GRADDROP_RANK_SOURCE"] = info.source
    if info.rank != 0:
        quiet_non_zero_rank()
    bind(device)
    distributed = backend_spec(config.backend.name).distributed
    if distributed:
        export_rank_env(info)
        process_group.start(device, config.backend.timeout_s)
    from graddrop_dist.ranks.agreement import RankDisagreement
    from graddrop_dist.trainer.job import run_job
    from graddrop_dist.cli_errors import PREEMPTED_EXIT
    from graddrop_dist.trainer.preemption import Preempted

    try:
        run_job(config, rank=info.rank, world_size=info.world_size, resume=resume,
                task=task, device=device)
    except Preempted as stopped:
        if info.rank == 0:
            print(f"graddrop-train: {stopped}", file=sys.stderr, flush=True)
        return PREEMPTED_EXIT
    except (ValueError, RankDisagreement) as error:  # found after start, still one line
        print(f"graddrop-train: error: {error}", file=sys.stderr)
        return 2
    except (RuntimeError, ConnectionError) as error:
        if not distributed or not process_group.is_collective_failure(error):
            raise
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"graddrop-train: error: rank {info.rank}: a collective failed ({first_line}); "
              "another rank has probably died, see its log", file=sys.stderr)
        os._exit(1)  # the process group is broken: do not wait in its destructor
    finally:
        process_group.end()
    return 0


if __name__ == "__main__":
    sys.exit(main())
