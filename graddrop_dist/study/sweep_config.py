"""The sweep file: which job, which grid, which seeds, how each run is started.

    job: offline_topics.yaml        # a graddrop-train config (beside this file) or recipe
    output_dir: runs/study/offline_topics
    seeds: [1, 2, 3]                               # train.seed and graddrop.seed
    grid:                                          # a list of grids (union of products)
      - {method: [full, head-only, gradual-unfreeze]}
      - {method: [graddrop], drop_rate: [0.3, 0.5, 0.7]}

Every grid key is a `graddrop.*` field; each value a list. Validated whole (every cell's
job config built) before any run starts: a bad value is one line naming the field.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from graddrop_dist.config import GradDropConfig
from graddrop_dist.study.errors import SweepError
from graddrop_dist.study.tuning import check_tune
from graddrop_dist.typed_config import typed_config

__all__ = ["Cell", "Sweep", "SweepError", "SweepSettings", "load_sweep"]


@typed_config
class SweepSettings:
    SECTION = "sweep"

    job: str = ""
    """The graddrop-train job every run starts from: a recipe name (xglue/xnli) or a YAML
    file, relative to the sweep file's folder."""
    output_dir: str = "runs/sweep"
    seeds: tuple[int, ...] = (1, 2, 3)
    """Each seed sets train.seed (data order, head init, dropout) and graddrop.seed, so
    runs with the same seed are paired across methods."""
    overrides: tuple[str, ...] = ()
    """section.key=value applied to every run (before the cell's own values)."""
    launch: tuple[str, ...] = ()
    """Command prefix that starts one run; empty: `python -m graddrop_dist.trainer` in this
    process's environment. On a cluster e.g. [graddrop-launch, --launcher, deepspeed,
    --hostfile, hosts, --]."""
    parallel: int = 1
    """Runs at a time (each should fit the machine on its own share of it)."""
    score: Literal["final", "best"] = "final"
    """Which evaluation a run contributes: at the end of training, or the epoch with the
    best training-language dev score."""
    split: Literal["test", "dev"] = "test"
    baseline: str = "full"
    """The cell every other cell is compared with (paired by seed)."""
    keep_checkpoints: bool = False
    """Keep a finished run's checkpoints (only needed to resume it; they are large)."""

    def __post_init__(self) -> None:
        if not self.job:
            raise ValueError("sweep.job: required: the graddrop-train config to run")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"sweep.seeds: a non-empty list of distinct integers, got "
                             f"{list(self.seeds)}")
        if self.parallel < 1:
            raise ValueError(f"sweep.parallel: must be >= 1, got {self.parallel}")


@dataclass(frozen=True)
class Cell:
    """One point of the grid: a name and the graddrop.* values it sets."""
    name: str
    values: tuple[tuple[str, Any], ...]

    @property
    def overrides(self) -> list[str]:
        # JSON is YAML: the trainer reads the value back with its own type
        return [f"graddrop.{key}={value if isinstance(value, str) else json.dumps(value)}"
                for key, value in self.values]


def cell_name(values: dict[str, Any]) -> str:
    """"graddrop-p0.3": the method, then every other value, in grid order."""
    method = values.get("method", "graddrop")
    short = {"drop_rate": "p"}
    rest = [f"{short.get(key, key)}{value}" for key, value in values.items()
            if key != "method"]
    return "-".join([method, *rest]) if rest else method


def expand_grid(grid: Any) -> list[Cell]:
    if not isinstance(grid, list) or not grid:
        raise SweepError("sweep.grid: a non-empty list of mappings of graddrop field -> "
                         "list of values")
    fields = set(GradDropConfig.__dataclass_fields__)
    cells: dict[str, Cell] = {}
    for index, block in enumerate(grid):
        if not isinstance(block, dict) or not block:
            raise SweepError(f"sweep.grid[{index}]: a mapping of graddrop field -> list of "
                             "values")
        for key, choices in block.items():
            if key not in fields:
                raise SweepError(f"sweep.grid[{index}].{key}: not a graddrop field; allowed: "
                                 f"{', '.join(sorted(fields))}")
            if not isinstance(choices, list) or not choices:
                raise SweepError(f"sweep.grid[{index}].{key}: a non-empty list of values")
        for combination in itertools.product(*block.values()):
            values = dict(zip(block, combination))
            try:
                GradDropConfig(**values)
            except ValueError as error:
                raise SweepError(f"sweep.grid[{index}]: {error}") from None
            cell = Cell(cell_name(values), tuple(values.items()))
            cells.setdefault(cell.name, cell)
    return list(cells.values())


@dataclass(frozen=True)
class Sweep:
    settings: SweepSettings
    cells: list[Cell]
    source: Path
    tune: dict | None = None  # study/tuning.py: seeds, overrides, search per cell

    def run_dir(self, cell: Cell, seed: int) -> Path:
        return Path(self.settings.output_dir) / "runs" / cell.name / f"seed{seed}"

    def job_overrides(self, cell: Cell, seed: int) -> list[str]:
        return [*self.settings.overrides, f"train.seed={seed}", f"graddrop.seed={seed}",
                *cell.overrides, f"output.dir={self.run_dir(cell, seed)}"]


def load_sweep(source: str | Path) -> Sweep:
    """`source`: a sweep YAML or a shipped sweep recipe by name (study/cldr-emoji-sweep)."""
    from graddrop_dist.recipes import (UnknownRecipe, looks_like_a_path, resolve_config_file,
                                       resolve_in)

    try:
        path = resolve_config_file(source, kind="sweep")
    except UnknownRecipe as error:
        raise SweepError(f"sweep: {error}") from None
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise SweepError(f"sweep: file not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError):
        raise SweepError(f"sweep: {path} is not a text file") from None
    except yaml.YAMLError:
        raise SweepError(f"{path}: invalid YAML") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: the top level must be a mapping")
    grid = data.pop("grid", None)
    tune = data.pop("tune", None)
    job = data.get("job")
    if isinstance(job, str) and (looks_like_a_path(job) or (path.parent / job).is_file()):
        data["job"] = resolve_in(path.parent, job)  # a recipe name stays a name
    try:
        settings = SweepSettings(**data)
    except TypeError as error:
        raise SweepError(f"sweep: {error}") from None
    except ValueError as error:
        raise SweepError(str(error)) from None
    cells = expand_grid(grid)
    sweep = Sweep(settings, cells, path, None if tune is None else check_tune(tune, cells))
    if settings.baseline not in {cell.name for cell in sweep.cells}:
        raise SweepError(f"sweep.baseline: {settings.baseline!r} is not a cell of the grid; "
                         f"cells: {', '.join(c.name for c in sweep.cells)}")
    validate_jobs(sweep)
    return sweep


def validate_jobs(sweep: Sweep) -> None:
    """Build every run's job config now, so a bad override fails before hours of runs."""
    from graddrop_dist.trainer.job_file import load_job_config

    for cell in sweep.cells:
        points = sweep.tune["search"][cell.name] if sweep.tune else [None]
        for point in points:
            extra = [*sweep.tune["overrides"], *point.overrides] if point else []
            try:
                load_job_config(sweep.settings.job,
                                [*sweep.job_overrides(cell, sweep.settings.seeds[0]), *extra])
            except ValueError as error:
                where = f" (tuning point {point.name})" if point else ""
                raise SweepError(f"sweep cell {cell.name}{where}: {error}") from None
