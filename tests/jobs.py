"""Job configs for end-to-end tests: the offline task with the tiny checkpoint."""

from __future__ import annotations


def job_dict(checkpoint, output_dir, **sections) -> dict:
    """A small job on the offline task; `sections` update the defaults section by section."""
    data = {
        "model": {"name_or_path": str(checkpoint), "max_length": 16},
        "task": {"name": "chatterbot-topics"},
        "train": {"epochs": 1, "micro_batch_size": 4, "gradient_accumulation": 2,
                  "lr": 1e-3, "max_steps": 6, "eval_batch_size": 128, "seed": 3},
        "backend": {"name": "single"},
        "output": {"dir": str(output_dir), "report_to": ["tensorboard"], "export_final": True},
        "graddrop": {"method": "graddrop", "drop_rate": 0.5, "seed": 7},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data
