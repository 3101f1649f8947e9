"""Equal tuning budget: each cell's hyperparameters chosen on the training language's dev set
from a search of the same size, before the study's seeds run.

    tune:
      seeds: [101]                          # tuning seeds, apart from the study's
      overrides: ["task.languages=[]"]      # e.g. score English dev only while tuning
      search:                               # cell name, else method, else default
        default: {train.lr: [5.0e-5, 1.0e-4, 2.0e-4, 4.0e-4]}
        sparse-unfreeze: {train.lr: [1.0e-4, 2.0e-4], graddrop.p_start: [0.7, 0.9]}

Every cell's search must have the same number of points (so no method gets more tries).
A point's score is the best-epoch dev score of the training language (results.json
`best.dev`), averaged over the tuning seeds; ties go to the first point in grid order. The
choice is written to <output_dir>/tuned.json and added to the cell's runs.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

from graddrop_dist.study.errors import SweepError


@dataclass(frozen=True)
class Point:
    """One point of a cell's search: its name and its `section.key=value` overrides."""
    name: str
    overrides: tuple[str, ...]


def _value_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def expand_search(search: dict) -> list[Point]:
    points = []
    for combination in itertools.product(*search.values()):
        pairs = list(zip(search, combination))
        name = "_".join(f"{key.split('.')[-1]}{_value_text(value)}" for key, value in pairs)
        points.append(Point(name, tuple(f"{key}={_value_text(value)}" for key, value in pairs)))
    return points


def check_tune(tune: dict, cells: list) -> dict:
    """The `tune` section validated: {"seeds", "overrides", "search": {cell: [Point]}}."""
    if not isinstance(tune, dict) or not isinstance(tune.get("search"), dict):
        raise SweepError("sweep.tune: a mapping with seeds, overrides and search "
                         "(cell or method -> {section.key: [values]})")
    seeds = tune.get("seeds") or []
    if not seeds or not all(isinstance(s, int) for s in seeds):
        raise SweepError(f"sweep.tune.seeds: a non-empty list of integers, got {seeds!r}")
    search = tune["search"]
    for key, grid in search.items():
        if not isinstance(grid, dict) or not grid or not all(
                "." in name and isinstance(values, list) and values
                for name, values in grid.items()):
            raise SweepError(f"sweep.tune.search.{key}: a mapping of section.key -> "
                             "non-empty list of values")
    by_cell = {}
    for cell in cells:
        method = dict(cell.values).get("method", "graddrop")
        grid = search.get(cell.name) or search.get(method) or search.get("default")
        if grid is None:
            raise SweepError(f"sweep.tune.search: nothing for cell {cell.name} (add it, its "
                             "method or default)")
        by_cell[cell.name] = expand_search(grid)
    sizes = {name: len(points) for name, points in by_cell.items()}
    if len(set(sizes.values())) > 1:
        raise SweepError("sweep.tune.search: every cell needs the same number of points, got "
                         + ", ".join(f"{name} {size}" for name, size in sizes.items()))
    return {"seeds": list(seeds), "overrides": list(tune.get("overrides") or []),
            "search": by_cell}


def tuning_dir(sweep, cell, point: Point, seed: int) -> Path:
    return Path(sweep.settings.output_dir) / "tune" / cell.name / point.name / f"seed{seed}"


def dev_score(directory: Path) -> float | None:
    path = directory / "results.json"
    if not path.is_file():
        return None
    results = json.loads(path.read_text())
    return results["best"]["dev"][results["task"].get("train_language", "en")]


def choose(sweep) -> dict[str, dict] | None:
    """{cell: {"point", "overrides", "dev", "scores"}} once every tuning run is done."""
    tune = sweep.tune
    chosen = {}
    for cell in sweep.cells:
        scores = {}
        for point in tune["search"][cell.name]:
            values = [dev_score(tuning_dir(sweep, cell, point, s)) for s in tune["seeds"]]
            if any(v is None for v in values):
                return None
            scores[point.name] = sum(values) / len(values)
        best = max(scores, key=lambda name: (scores[name], -list(scores).index(name)))
        point = next(p for p in tune["search"][cell.name] if p.name == best)
        chosen[cell.name] = {"point": best, "overrides": list(point.overrides),
                             "dev": scores[best], "scores": scores}
    return chosen


def write_choice(sweep, chosen: dict) -> Path:
    path = Path(sweep.settings.output_dir) / "tuned.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(chosen, indent=1))
    return path
