"""graddrop-launch: start graddrop-train on one machine or many.

    graddrop-launch --launcher local --nproc-per-node 2 -- offline-demo
    graddrop-launch --launcher torchrun --nnodes 2 --nproc-per-node 8 --node-rank 0 \\
        --master-addr node01 -- job.yaml
    graddrop-launch --launcher deepspeed --hostfile hosts -- job.yaml backend.name=deepspeed
    graddrop-launch --launcher slurm --nnodes 4 --nproc-per-node 8 --dry-run -- job.yaml
    graddrop-launch --launcher mpirun --nproc-per-node 2 -- job.yaml

Everything after `--` goes to graddrop-train. --dry-run prints the exact command for
every node (and any file the launch writes) and starts nothing. Bad arguments are one
line on stderr and exit status 2, before anything starts; otherwise the exit status is
the launched job's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import re
import sys
from pathlib import Path

from graddrop_dist.cli_errors import OneLineParser
from graddrop_launcher.hostfile import LaunchError, parse_hostfile, select_slots
from graddrop_launcher.runners import RUNNERS, LaunchPlan, write_files

MULTINODE_RUNNERS = ("pdsh", "openmpi", "slurm")



def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="graddrop-launch", description="Start graddrop-train on one machine or many.",
        epilog="Everything after -- is passed to graddrop-train.")
    parser.add_argument("--launcher", default="local",
                        help=f"one of {', '.join(RUNNERS)} (default: local)")
    parser.add_argument("--nnodes", type=int, default=None)
    parser.add_argument("--nproc-per-node", type=int, default=None)
    parser.add_argument("--node-rank", type=int, default=0,
                        help="torchrun: which node this machine is")
    parser.add_argument("--hostfile", help="DeepSpeed format: one 'host slots=N' per line")
    parser.add_argument("--include", default="", help="deepspeed: NODE[:SLOTS]@...")
    parser.add_argument("--exclude", default="", help="deepspeed: NODE[:SLOTS]@...")
    parser.add_argument("--master-addr", default=None)
    parser.add_argument("--master-port", type=int, default=29500)
    parser.add_argument("--multinode-runner", default="pdsh",
                        help=f"deepspeed: one of {', '.join(MULTINODE_RUNNERS)}")
    parser.add_argument("--job-name", default="graddrop")
    parser.add_argument("--slurm-option", action="append", default=[],
                        help="slurm: an extra #SBATCH line, e.g. --slurm-option=--gres=gpu:8")
    parser.add_argument("--cpus-per-task", type=int, default=None,
                        help="slurm: CPU cores for each node's torchrun and its ranks "
                             "(default: 4 per rank)")
    parser.add_argument("--stop-grace-s", type=int, default=180,
                        help="seconds the ranks get to checkpoint after SIGTERM / SIGUSR1 "
                             "(torchrun's --shutdown-timeout; slurm: USR1 is asked for this "
                             "long before the time limit) (default: 180)")
    parser.add_argument("--python", default=sys.executable,
                        help="the Python that runs graddrop-train on every node (default: "
                             "this one, which suits a shared filesystem)")
    parser.add_argument("--force", action="store_true",
                        help="overwrite a launch file (.deepspeed_env, <job>.sbatch) that "
                             "exists with other content")
    parser.add_argument("--dry-run", action="store_true")
    return parser


def check_job(trainer_args: list[str], world_size: int) -> None:
    """The job config, validated once here for the launch's rank count, instead of once
    per rank after the launch (each with the launcher's traceback around it)."""
    from graddrop_dist.trainer.job_config import ConfigError
    from graddrop_dist.trainer.job_file import load_job_config

    config, *rest = trainer_args
    overrides = [arg for arg in rest if not arg.startswith("--")]
    try:
        load_job_config(config, overrides).for_world_size(world_size)
    except ConfigError as error:
        raise LaunchError(f"job: {error}") from None


def make_plan(args, trainer_args: list[str]) -> LaunchPlan:
    if args.launcher not in RUNNERS:
        raise LaunchError(f"--launcher: expected one of {', '.join(RUNNERS)}, "
                          f"got {args.launcher!r}")
    if args.multinode_runner not in MULTINODE_RUNNERS:
        raise LaunchError(f"--multinode-runner: expected one of "
                          f"{', '.join(MULTINODE_RUNNERS)}, got {args.multinode_runner!r}")
    if not trainer_args:
        raise LaunchError("nothing to run: give the graddrop-train config after --, e.g. "
                          "graddrop-launch -- offline-demo (a recipe or a job YAML)")
    if (args.include or args.exclude) and args.launcher != "deepspeed":
        raise LaunchError("--include/--exclude: only the deepspeed launcher has them")
    hosts = {}
    if args.hostfile:
        hosts = dict(select_slots(parse_hostfile(args.hostfile), args.include, args.exclude))
        slots = {len(s) for s in hosts.values()}
        if len(slots) > 1 and args.launcher != "deepspeed":
            raise LaunchError(f"--hostfile: {args.launcher} needs the same number of slots "
                              f"on every host, got {sorted(slots)}")
        nnodes = len(hosts) if args.nnodes is None else args.nnodes
        if nnodes != len(hosts):
            raise LaunchError(f"--nnodes {nnodes} does not match the {len(hosts)} host(s) "
                              f"of {args.hostfile}")
        nproc = max(slots) if args.nproc_per_node is None else args.nproc_per_node
        if args.launcher == "deepspeed":  # it starts one rank per selected slot
            nproc = max(slots)
        elif nproc > min(slots):
            raise LaunchError(f"--nproc-per-node {nproc} exceeds the {min(slots)} slot(s) "
                              f"of a host in {args.hostfile}")
    elif args.include or args.exclude:
        raise LaunchError("--include/--exclude need --hostfile")
    else:
        nnodes = 1 if args.nnodes is None else args.nnodes
        nproc = 1 if args.nproc_per_node is None else args.nproc_per_node
    if nnodes < 1 or nproc < 1:
        raise LaunchError(f"--nnodes and --nproc-per-node must be >= 1, got {nnodes} and "
                          f"{nproc}")
    if nnodes > 1 and not hosts and args.launcher in ("deepspeed", "mpirun"):
        raise LaunchError(f"--launcher {args.launcher} across {nnodes} nodes needs "
                          "--hostfile (which hosts to start ranks on)")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", args.job_name):
        raise LaunchError(f"--job-name: letters, digits, '.', '_' and '-' (at most 64), got "
                          f"{args.job_name!r}")
    if args.launcher == "local" and nnodes != 1:
        raise LaunchError("--launcher local runs one node; use torchrun, deepspeed, slurm or "
                          "mpirun for several")
    if not 0 <= args.node_rank < nnodes:
        raise LaunchError(f"--node-rank must be in [0, {nnodes}), got {args.node_rank}")
    master = args.master_addr or (next(iter(hosts)) if hosts and nnodes > 1 else "127.0.0.1")
    if nnodes > 1 and args.launcher == "torchrun" and not args.master_addr and not hosts:
        raise LaunchError("--master-addr: required for torchrun across several nodes (the "
                          "address of node 0)")
    check_numbers(args)
    if args.launcher == "slurm" and "--overwrite" in trainer_args:
        raise LaunchError("--overwrite: not with --launcher slurm, whose requeued job would "
                          "delete its own run; remove output.dir before submitting instead")
    check_job(trainer_args, nnodes * nproc)
    return LaunchPlan(nnodes=nnodes, nproc_per_node=nproc, trainer_args=trainer_args,
                      hosts=hosts, hostfile=args.hostfile, master_addr=master,
                      master_port=args.master_port, node_rank=args.node_rank,
                      include=args.include, exclude=args.exclude,
                      multinode_runner=args.multinode_runner, job_name=args.job_name,
                      slurm_options=args.slurm_option, python=args.python,
                      cpus_per_task=args.cpus_per_task or 4 * nproc,
                      stop_grace_s=args.stop_grace_s)


def check_numbers(args) -> None:
    if not 1 <= args.master_port <= 65535:
        raise LaunchError(f"--master-port must be in [1, 65535], got {args.master_port}")
    if args.cpus_per_task is not None and args.cpus_per_task < 1:
        raise LaunchError(f"--cpus-per-task must be >= 1, got {args.cpus_per_task}")
    if not 1 <= args.stop_grace_s <= 86400:
        raise LaunchError(f"--stop-grace-s must be in [1, 86400], got {args.stop_grace_s}")


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        index = argv.index("--")
        return argv[:index], argv[index + 1:]
    return argv, []


def main(argv=None) -> int:
    own, trainer_args = split_argv(sys.argv[1:] if argv is None else list(argv))
    args = build_parser().parse_args(own)
    try:
        plan = make_plan(args, trainer_args)
    except LaunchError as error:
        print(f"graddrop-launch: error: {error}", file=sys.stderr)
        return 2
    runner = RUNNERS[args.launcher](plan)
    if args.dry_run:
        for name, content in runner.files().items():
            print(f"# file {name}:\n{content}")
        for command in runner.commands():
            print(f"# {command.node}\n{command.shell()}")
        return 0
    try:
        write_files(runner, Path.cwd(), force=args.force)
    except LaunchError as error:
        print(f"graddrop-launch: error: {error}", file=sys.stderr)
        return 2
    command = runner.local_command()
    print(f"graddrop-launch ({runner.name}): {command.shell()}", file=sys.stderr, flush=True)
    if shutil.which(command.argv[0]) is None:
        print(f"graddrop-launch: error: {command.argv[0]}: not found on PATH",
              file=sys.stderr)
        return 2
    sys.stdout.flush()
    # Replaced, not waited for: a SIGTERM for graddrop-launch reaches torchrun itself.
    os.execvpe(command.argv[0], command.argv, {**os.environ, **command.env})


if __name__ == "__main__":
    sys.exit(main())
