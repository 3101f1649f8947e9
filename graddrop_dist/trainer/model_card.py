"""A model card (`README.md`) in every exported model folder: what was fine-tuned, on
what, with which GradDrop settings, and the per-language results, so a `best_model/`
copied elsewhere still says what it is."""

from __future__ import annotations

from pathlib import Path

import yaml

from graddrop_dist.fs import write_atomically


def model_card(results: dict, table: str, folder: str) -> str:
    config, task = results["config"], results["task"]
    which = ("the best epoch's weights (epoch "
             f"{results['best_epoch']}, chosen by {config['train']['select']})"
             if folder == "best_model" else "the weights after the last step")
    front = {"library_name": "transformers", "base_model": config["model"]["name_or_path"],
             "tags": ["graddrop", "graddrop-dist", "zero-shot-cross-lingual"]}
    return "\n".join([
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# {config['model']['name_or_path']} fine-tuned on {config['task']['name']} with "
        f"{config['graddrop']['method']}", "",
        f"This folder holds {which}, trained with graddrop-dist on "
        f"{results['world_size']} rank(s) ({config['backend']['name']}, "
        f"{config['train']['precision']}) for {results['steps']} optimizer steps on "
        f"{task.get('train_language', 'en')} and evaluated zero-shot on every other "
        "language.", "",
        f"## Results ({task.get('metric', 'score')}, %)", "", table.strip(), "",
        "## GradDrop", "", "```yaml",
        yaml.safe_dump({"graddrop": config["graddrop"]}, sort_keys=False).strip(), "```", "",
        "## Training", "", "```yaml",
        yaml.safe_dump({"train": config["train"], "task": config["task"]},
                       sort_keys=False).strip(), "```", ""])


def write_model_cards(output: Path, results: dict, table: str) -> list[Path]:
    written = []
    for folder in ("best_model", "final_model"):
        if (output / folder).is_dir():
            path = output / folder / "README.md"
            write_atomically(path, model_card(results, table, folder))
            written.append(path)
    return written
