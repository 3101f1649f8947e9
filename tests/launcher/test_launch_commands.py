"""graddrop-launch builds the exact command per launcher; bad input is one line, exit 2."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from graddrop_launcher.cli import main
from graddrop_launcher.hostfile import LaunchError, parse_hostfile, select_slots


@pytest.fixture(autouse=True)
def job_file(tmp_path, monkeypatch):
    """A valid job.yaml in the working folder: the launcher validates it before launching."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "job.yaml").write_text("train:\n  epochs: 1\n")


def dry_run(capsys, *argv):
    assert main([*argv, "--dry-run", "--", "job.yaml", "train.lr=1e-5"]) == 0
    return capsys.readouterr().out


def test_local_is_torchrun_standalone(capsys):
    out = dry_run(capsys, "--launcher", "local", "--nproc-per-node", "2")
    assert "-m graddrop_launcher.torchrun --standalone --nproc_per_node 2 --shutdown-timeout " \
           "180 -m graddrop_dist.trainer job.yaml train.lr=1e-5" in out


def test_torchrun_prints_one_command_per_node(capsys):
    out = dry_run(capsys, "--launcher", "torchrun", "--nnodes", "2", "--nproc-per-node", "8",
                  "--master-addr", "node01", "--master-port", "29600")
    for rank in (0, 1):
        assert f"--nnodes 2 --node_rank {rank} --rdzv_backend c10d --rdzv_id graddrop " \
               f"--rdzv_endpoint node01:29600 --rdzv_conf is_host={int(rank == 0)}" in out
    assert out.count("--local_addr node01 --nproc_per_node 8") == 1  # node 0 advertises


def test_deepspeed_hostfile_runner_and_env_file(capsys, tmp_path, monkeypatch):
    hosts = tmp_path / "hosts"
    hosts.write_text("worker-0 slots=4\nworker-1 slots=4  # comment\n")
    monkeypatch.setenv("NCCL_SOCKET_IFNAME", "ib0")
    out = dry_run(capsys, "--launcher", "deepspeed", "--hostfile", str(hosts),
                  "--multinode-runner", "openmpi", "--include", "worker-0@worker-1:0,1")
    assert f"--hostfile {hosts} --launcher openmpi --include worker-0@worker-1:0,1 " \
           "--force_multi --master_addr worker-0" in out
    assert "--no_local_rank --module graddrop_dist.trainer job.yaml" in out
    env_file = out.split("# file .deepspeed_env:\n", 1)[1].split("\n# ", 1)[0]
    assert "NCCL_SOCKET_IFNAME=ib0" in env_file.splitlines()


def test_slurm_writes_an_sbatch_script(capsys):
    out = dry_run(capsys, "--launcher", "slurm", "--nnodes", "4", "--nproc-per-node", "8",
                  "--slurm-option=--gres=gpu:8", "--job-name", "xnli")
    assert "#SBATCH --nodes=4" in out and "#SBATCH --gres=gpu:8" in out
    assert "srun --kill-on-bad-exit=1" in out and "--rdzv_endpoint $MASTER_ADDR:29500" in out
    assert "sbatch xnli.sbatch" in out


def test_mpirun_exports_the_master_address(capsys):
    out = dry_run(capsys, "--launcher", "mpirun", "--nproc-per-node", "2")
    assert "mpirun -np 2 --host localhost:2" in out and "-x MASTER_ADDR -x MASTER_PORT" in out


@pytest.mark.parametrize("argv,message", [
    (["--launcher", "horovod"], "--launcher: expected one of local, torchrun, deepspeed"),
    (["--hostfile", "/no/such/hosts"], "--hostfile: file not found: /no/such/hosts"),
    (["--launcher", "local", "--nnodes", "2"], "--launcher local runs one node"),
    (["--launcher", "torchrun", "--nnodes", "2"], "--master-addr: required"),
    (["--include", "a"], "--include/--exclude: only the deepspeed launcher"),
    (["--launcher", "deepspeed", "--multinode-runner", "ssh"], "--multinode-runner: expected"),
])
def test_bad_arguments_fail_before_anything_starts(capsys, argv, message):
    assert main([*argv, "--", "job.yaml"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("graddrop-launch: error: ") and message in error
    assert "\n" not in error


def test_nothing_to_run_is_an_error(capsys):
    assert main(["--launcher", "local"]) == 2
    assert "give the graddrop-train config after --" in capsys.readouterr().err


@pytest.mark.parametrize("content,message", [
    ("worker-0 slots=two\n", r"hosts:1: expected 'hostname slots=N'"),
    ("worker-0 slots=2\nworker-0 slots=2\n", r"hosts:2: host worker-0 is listed twice"),
    ("# nothing\n", r"hosts: no hosts"),
])
def test_hostfile_errors_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "hosts"
    path.write_text(content)
    with pytest.raises(LaunchError, match=message):
        parse_hostfile(path)


def test_slots_that_do_not_add_up(tmp_path, capsys):
    path = tmp_path / "hosts"
    path.write_text("a slots=2\nb slots=2\n")
    assert main(["--launcher", "torchrun", "--hostfile", str(path), "--nproc-per-node", "4",
                 "--", "job.yaml"]) == 2
    assert "exceeds the 2 slot(s)" in capsys.readouterr().err
    assert main(["--launcher", "torchrun", "--hostfile", str(path), "--nnodes", "3",
                 "--", "job.yaml"]) == 2
    assert "--nnodes 3 does not match the 2 host(s)" in capsys.readouterr().err


def test_include_exclude_selection():
    hosts = {"a": 4, "b": 2}
    assert select_slots(hosts, include="a:1,3") == {"a": [1, 3]}
    assert select_slots(hosts, exclude="a@b:0") == {"b": [1]}
    with pytest.raises(LaunchError, match="b has slots 0-1, got 5"):
        select_slots(hosts, include="b:5")


def test_console_script_is_installed():
    result = subprocess.run([sys.executable, "-m", "graddrop_launcher", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0 and "--launcher" in result.stdout


def test_a_bad_job_is_one_line_before_anything_launches(tmp_path):
    result = subprocess.run([sys.executable, "-m", "graddrop_launcher", "--nproc-per-node",
                             "2", "--", "missing.yaml"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "graddrop-launch: error: job: config: file not found: missing.yaml\n"
    assert not list(tmp_path.glob("torchelastic*"))


def test_the_job_is_validated_for_the_launch_rank_count(capsys):
    (__import__("pathlib").Path("job.yaml")).write_text(
        "train:\n  micro_batch_size: 4\n  global_batch_size: 32\n")
    assert main(["--launcher", "slurm", "--nnodes", "4", "--nproc-per-node", "8",
                 "--dry-run", "--", "job.yaml"]) == 2
    assert "32 is not a multiple of micro_batch_size x ranks = 4 x 32" in \
        capsys.readouterr().err


def test_nodes_get_the_chosen_python_and_never_this_machines_ds_accelerator(capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = dry_run(capsys, "--launcher", "slurm", "--nnodes", "2", "--nproc-per-node", "8",
                  "--python", "python3")
    assert "srun --kill-on-bad-exit=1 python3 -m graddrop_launcher.torchrun" in out
    assert "#SBATCH --cpus-per-task=32" in out
    assert "export OMP_NUM_THREADS=1" in out and "DS_ACCELERATOR" not in out


def test_a_users_deepspeed_env_is_not_overwritten_without_force(tmp_path, capsys):
    from graddrop_launcher.runners import DeepSpeedRunner, LaunchPlan, write_files

    (tmp_path / ".deepspeed_env").write_text("MY_VAR=1\n")
    runner = DeepSpeedRunner(LaunchPlan(nnodes=1, nproc_per_node=2, trainer_args=["job.yaml"]))
    with pytest.raises(LaunchError, match="exists with other content; move it away, or pass "
                                          "--force"):
        write_files(runner, tmp_path)
    assert (tmp_path / ".deepspeed_env").read_text() == "MY_VAR=1\n"
    write_files(runner, tmp_path, force=True)
    assert "MY_VAR" not in (tmp_path / ".deepspeed_env").read_text()


@pytest.mark.parametrize("argv, message", [
    (["--nproc-per-node", "0"], "--nnodes and --nproc-per-node must be >= 1, got 1 and 0"),
    (["--launcher", "torchrun", "--nnodes", "0"], "must be >= 1, got 0 and 1"),
    (["--launcher", "deepspeed", "--nnodes", "2"],
     "--launcher deepspeed across 2 nodes needs --hostfile"),
    (["--launcher", "mpirun", "--nnodes", "2", "--nproc-per-node", "2"],
     "--launcher mpirun across 2 nodes needs --hostfile"),
    (["--launcher", "slurm", "--job-name", "x\n#SBATCH --exclusive"], "--job-name: letters"),
])
def test_impossible_launches_are_one_line(capsys, argv, message):
    assert main([*argv, "--dry-run", "--", "job.yaml"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("content, message", [
    (b"node01 slots=99999999999999999999\n", "slots must be in [1, 1024], got 9999"),
    (bytes(range(256)), "is not a text file"),
])
def test_absurd_hostfiles_are_one_line(tmp_path, content, message):
    (tmp_path / "hosts").write_bytes(content)
    with pytest.raises(LaunchError, match=re.escape(message)):
        parse_hostfile(tmp_path / "hosts")
