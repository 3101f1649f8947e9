"""The recipes shipped in the package, addressed by name.

A recipe is a YAML file in this folder: a graddrop-train job (`offline-demo`,
`xglue/xnli`, ...) or a graddrop-sweep study (`study/cldr-emoji-sweep`, ...). Its name is
its path here without `.yaml`, with `-` for `_` (either is accepted). The DeepSpeed JSONs
are the repository's top-level `ds_configs/` folder, installed as `graddrop_dist.ds_configs`
(`zero0` ... `zero3`, `zero3-offload`). Nothing here imports torch.
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import yaml

from graddrop_dist.typed_config import did_you_mean

RECIPES_DIR = Path(__file__).resolve().parent


def _normal(name: str) -> str:
    return name.strip().removesuffix(".yaml").removesuffix(".json").replace("_", "-").lower()


def ds_configs_dir() -> Path:
    """Where the shipped DeepSpeed JSONs are: the checkout's ds_configs/ (editable install)
    or the wheel's graddrop_dist/ds_configs/."""
    return Path(str(importlib.resources.files("graddrop_dist.ds_configs")))


def ds_config_names() -> dict[str, Path]:
    return {_normal(p.name): p for p in sorted(ds_configs_dir().glob("*.json"))}


def ds_config_file(value: str | Path) -> Path:
    """A shipped DeepSpeed JSON by name (`zero3`), or `value` as a path."""
    return ds_config_names().get(_normal(str(value)), Path(value))


def is_ds_config_name(value: str) -> bool:
    return not looks_like_a_path(value) and _normal(value) in ds_config_names()


@dataclass(frozen=True)
class Recipe:
    name: str
    path: Path
    kind: str  # "job" (graddrop-train) or "sweep" (graddrop-sweep)
    summary: str  # the file's first comment line

    @classmethod
    def read(cls, path: Path) -> Recipe:
        text = path.read_text(encoding="utf-8")
        comments = [line.lstrip("# ").strip() for line in text.splitlines()
                    if line.startswith("#") and line.strip("# ")]
        data = yaml.safe_load(text) or {}
        name = _normal(path.relative_to(RECIPES_DIR).as_posix())
        return cls(name, path, "sweep" if "grid" in data else "job",
                   comments[0] if comments else "")


def recipes() -> dict[str, Recipe]:
    """Every shipped recipe by name, sorted."""
    found = (Recipe.read(p) for p in sorted(RECIPES_DIR.rglob("*.yaml")))
    return {recipe.name: recipe for recipe in found}


def looks_like_a_path(value: str) -> bool:
    return value.endswith((".yaml", ".yml", ".json")) or value.startswith(("/", ".", "~"))


class UnknownRecipe(ValueError):
    """One line: the name, the nearest recipe, how to list them."""


def find_recipe(name: str, kind: str | None = None) -> Recipe:
    known = {n: r for n, r in recipes().items() if kind is None or r.kind == kind}
    recipe = known.get(_normal(name))
    if recipe is None:
        raise UnknownRecipe(f"no file {name} and no recipe named {name!r}"
                            f"{did_you_mean(_normal(name), known)}; `graddrop-train "
                            "--list-recipes` lists them")
    return recipe


def resolve_config_file(value: str | Path, kind: str | None = None) -> Path:
    """A YAML the user named: an existing file (relative to the working directory), else a
    recipe by name. UnknownRecipe when it is neither."""
    path = Path(value).expanduser()
    if path.is_file() or looks_like_a_path(str(value)):
        return path
    return find_recipe(str(value), kind).path


def resolve_in(folder: Path, value: str) -> str:
    """A relative path written in a YAML file, taken relative to that file's folder."""
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


__all__ = ["RECIPES_DIR", "Recipe", "UnknownRecipe", "ds_config_file", "ds_config_names",
           "ds_configs_dir", "find_recipe", "is_ds_config_name", "looks_like_a_path", "recipes",
           "resolve_config_file", "resolve_in"]
