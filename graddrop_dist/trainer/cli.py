"""graddrop-train CONFIG.yaml [section.key=value ...] [--resume]

Validates the whole config before any process group starts (a bad value is one line on
stderr and exit status 2), finds its rank from torchrun / deepspeed / mpirun / Slurm
variables, runs the job, and shuts the process group down cleanly. Exit status: 0 done,
2 a bad job (config, data, a resume that does not match), 143 stopped by SIGTERM or
SIGUSR1 after checkpointing (trainer/preemption.py), 1 anything else.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

from graddrop_dist.cli_errors import OneLineParser



def parse_args(argv):
    parser = OneLineParser(prog="graddrop-train", description=__doc__.splitlines()[0])
    parser.add_argument("config", help="YAML job config (configs/*.yaml; "
                                       "configs/offline_demo.yaml runs offline)")
    parser.add_argument("overrides", nargs="*", help="section.key=value, e.g. train.lr=2e-5")
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
        print("graddrop-train: error: give a job config, e.g. graddrop-train "
              "configs/offline_demo.yaml", file=sys.stderr)
        raise SystemExit(2)
    return parser.parse_args(argv)


def plan(config, info, device, task) -> str:
    """One line: what graddrop-train would run, after every check that needs no peer."""
    from graddrop_dist.dist.device import collective_backend

    backend, train = config.backend, config.train
    global_batch = train.micro_batch_size * train.gradient_accumulation * info.world_size
    data = (f"{len(task.train)} training examples, {len(task.languages)} languages"
            if task is not None else f"read from the hub ({config.task.hub_id}) at start")
    return (f"graddrop-train: dry run: rank {info.rank} of {info.world_size} "
            f"({info.source}) on {device} ({collective_backend(device)}); backend "
            f"{backend.name}{f' ({backend.ds_config})' if backend.ds_config else ''}, "
            f"{config.train.precision}; global batch {global_batch}; model "
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


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from graddrop_dist.dist import process_group

    # DeepSpeed calls torch collectives PyTorch has renamed: one warning per step otherwise.
    warnings.filterwarnings("ignore", category=FutureWarning,
                            message=r".*torch\.distributed\.\w+` is deprecated")
    from graddrop_dist.dist.device import bind, resolve_device
    from graddrop_dist.dist.discovery import discover_rank, export_rank_env
    from graddrop_dist.parallel import backend_class
    from graddrop_dist.trainer.config import ConfigError
    from graddrop_dist.trainer.config_file import load_job_config
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
        if not (args.dry_run and reads_the_hub(config.task.name, config.task.data_dir)):
            task = load_job_task(config)  # not download
    except (ConfigError, ValueError, FileNotFoundError, VersionTooOld) as error:
        print(f"graddrop-train: error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        print(plan(config, info, device, task))
        return 0
    from graddrop_dist.dist.launcher_death import end_with_launcher

    end_with_launcher()  # no orphans training on after their agent is killed
    os.environ["GRADDROP_RANK_SOURCE"] = info.source
    if info.rank != 0:
        quiet_non_zero_rank()
    bind(device)
    distributed = backend_class(config.backend.name).distributed
    if distributed:
        export_rank_env(info)
        process_group.start(device, config.backend.timeout_s)
    from graddrop_dist.dist.agreement import RankDisagreement
    from graddrop_dist.trainer.job import run_job
    from graddrop_dist.trainer.preemption import PREEMPTED_EXIT, Preempted

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
