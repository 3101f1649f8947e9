"""Every code block of the README and of the documentation site (docs/) runs here: each
command as a dry run where it would start a job or a cluster launch (`make -n`,
`--dry-run`), each Python example on a tiny model, each YAML job or sweep validated; and
the site builds strictly (a broken link or anchor fails). Neither can drift from the code."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jobs import job_dict

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
BIN = Path(sys.executable).parent


def blocks(language: str) -> list[tuple[str, str]]:
    """(page, body) of every ```language block of every page."""
    return [(str(page.relative_to(REPO)), body) for page in PAGES
            for body in re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S)]


def shell_commands() -> list[str]:
    """Each command of every ```bash block (continuation lines joined, comments dropped),
    once however many pages show it."""
    commands = {}
    for _, block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.setdefault(line, None)
    return list(commands)


# Paths the README's examples name, and where they point here.
PLACES = {"/data/xglue_full_dataset": str(REPO / "tests" / "fixtures" / "xglue"
                                          / "xglue_full_dataset")}


def as_dry_run(argv: list[str], workdir: Path) -> list[str]:
    """The same command, told to start nothing (or, where it only reads fixtures and writes
    into the work folder, run as it is)."""
    places = {**PLACES, "/shared/xglue": str(workdir / "shared" / "xglue")}
    argv = [next((arg.replace(a, b) for a, b in places.items() if a in arg), arg)
            for arg in argv]
    program, args = Path(argv[0]).name, argv[1:]  # .venv/bin/graddrop-sweep too
    if program == "pip":  # the package is this checkout; resolve it, install nothing
        assert args[0] == "install" and args[1].startswith("graddrop-dist")
        extras = args[1].removeprefix("graddrop-dist")
        return [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps",
                "--no-build-isolation", "--quiet", f"{REPO}{extras}"]
    if program == "python" and args[:2] == ["-m", "graddrop_dist.assets"]:
        return [sys.executable, *args]  # fetches only what is missing
    if program == "graddrop-xglue-convert":
        return [str(BIN / program), *args]
    if program == "make":
        return ["make", "-n", "-C", str(REPO), *args]
    if program == "torchrun":  # one of the ranks it would start: graddrop-train's checks
        return [str(BIN / "graddrop-train"), *args[args.index("graddrop_dist.trainer") + 1:],
                "--dry-run"]
    if program == "graddrop-launch":
        split = args.index("--")
        launcher_args = args[:split] if "--dry-run" in args[:split] else \
            [*args[:split], "--dry-run"]
        return [str(BIN / program), *launcher_args, *args[split:]]
    if program in ("graddrop-train", "graddrop-sweep"):
        starts_nothing = {"--dry-run", "--print-config", "--list-recipes",
                          "--copy-recipe"} & set(args)
        return [str(BIN / program), *args, *([] if starts_nothing else ["--dry-run"])]
    raise AssertionError(f"README command with no dry run here: {' '.join(argv)}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny_checkpoint):
    """The repository's configs, and the files the README's examples name."""
    folder = tmp_path_factory.mktemp("readme")
    (folder / "docs").symlink_to(REPO / "docs")
    from graddrop_dist.tasks.xglue_convert import main as convert

    assert convert([PLACES["/data/xglue_full_dataset"], "--out",
                    str(folder / "shared" / "xglue"), "--tasks", "xnli"]) == 0
    job = job_dict(tiny_checkpoint, folder / "runs" / "job", backend={"name": "ddp"})
    for name in ("job.yaml", "my_job.yaml"):
        (folder / name).write_text(yaml.safe_dump(job))
    (folder / "hosts").write_text("".join(f"node0{i} slots=8\n" for i in range(1, 5)))
    return folder


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*")) if folder.exists() else set()


@pytest.mark.parametrize("command", shell_commands())
def test_readme_command_runs_as_a_dry_run(command, workdir):
    argv = as_dry_run(shlex.split(command), workdir)
    if "--resume" in argv:  # what it continues: a run with a checkpoint
        step = workdir / "runs" / "job" / "checkpoints" / "step-00000002"
        step.mkdir(parents=True, exist_ok=True)
        (step / "trainer_state.json").write_text("{}")
    before = files_under(workdir / "runs")
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    try:
        result = subprocess.run(argv, cwd=workdir, capture_output=True, text=True,
                                timeout=240, env=env)
        assert result.returncode == 0, \
            f"{argv}\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        if argv[0].endswith("graddrop-train"):
            printed = "# resolved for" if "--print-config" in argv else \
                "# graddrop-train NAME" if "--list-recipes" in argv else \
                "copied" if "--copy-recipe" in argv else "nothing started"
            assert printed in result.stdout
        assert files_under(workdir / "runs") == before  # a dry run writes nothing
    finally:
        shutil.rmtree(workdir / "runs", ignore_errors=True)
        if "--copy-recipe" in argv:  # the copy, so the command can run again
            (workdir / argv[argv.index("--copy-recipe") + 1]).unlink(missing_ok=True)


def python_examples() -> list[str]:
    return [body for _, body in blocks("python")]


def run_example(rank, world_size, source: str, folder: str):
    """The README's names, bound to a tiny XLM-R and a few fixed batches (the Trainer's
    output_dir in `folder`)."""
    import torch
    from tiny_models import fixed_batches, tiny_xlmr
    from transformers.models.xlm_roberta.modeling_xlm_roberta import XLMRobertaLayer

    from graddrop_dist import GradDropConfig

    from transformers import TrainingArguments

    model = tiny_xlmr()
    loader = fixed_batches(3)
    rows = [{key: value[row] for key, value in batch.items()}
            for batch in loader for row in range(len(batch["labels"]))]
    args = TrainingArguments(output_dir=folder,
                             use_cpu=True, max_steps=2, per_device_train_batch_size=4,
                             save_strategy="no", report_to=[], logging_strategy="no")
    names = {"model": model, "optimizer": torch.optim.AdamW(model.parameters(), lr=1e-3),
             "loader": loader, "device": torch.device("cpu"), "steps": 3,
             "args": args, "train_dataset": rows,
             "XLMRobertaLayer": XLMRobertaLayer, "micro_batches": loader[:2],
             "config": GradDropConfig(drop_rate=0.5, seed=0)}
    exec(compile(source, "<README example>", "exec"), names)  # noqa: S102 - the README's own code
    return sorted(k for k in names if not k.startswith("__"))


@pytest.mark.parametrize("index", range(len(python_examples())))
def test_readme_python_example_runs(index, tmp_path):
    from graddrop_dist.testing.local_ranks import run_ranks

    (defined,) = run_ranks(run_example, 1, python_examples()[index], str(tmp_path),
                           timeout=120)
    assert defined  # the example ran to its end


@pytest.mark.parametrize("page, body", blocks("yaml"), ids=lambda v: v[:40])
def test_a_yaml_block_is_a_valid_job_or_sweep(page, body, tmp_path):
    from graddrop_dist.study.sweep_config import load_sweep
    from graddrop_dist.trainer.job_config import JobConfig

    data = yaml.safe_load(body)
    if "grid" in data:
        (tmp_path / "sweep.yaml").write_text(body)
        load_sweep(tmp_path / "sweep.yaml")
    else:
        JobConfig.from_dict(data)


def test_the_documentation_site_builds_strictly(tmp_path):
    result = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--site-dir",
                             str(tmp_path / "site")], cwd=REPO, capture_output=True, text=True,
                            timeout=240, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file()


def test_the_readme_is_a_front_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200
