"""A tiny random XLM-R checkpoint with the real XLM-R tokenizer, built once per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    from graddrop_dist.assets.offline_model import load_tokenizer

    directory = tmp_path_factory.mktemp("tiny-xlmr")
    tokenizer = load_tokenizer()
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=40, pad_token_id=1)
    # An encoder without a task head, like a pretrained checkpoint from the hub.
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def job_dict(checkpoint, output_dir, **sections) -> dict:
    """A small job on the offline task; `sections` update the defaults section by section."""
    data = {
        "model": {"name_or_path": str(checkpoint), "max_length": 16},
        "task": {"name": "chatterbot-topics"},
        "train": {"epochs": 1, "micro_batch_size": 4, "gradient_accumulation": 2,
                  "lr": 1e-3, "max_steps": 6, "eval_batch_size": 128, "seed": 3},
        "backend": {"name": "single"},
        "output": {"dir": str(output_dir), "tensorboard": True, "export_final": True},
        "graddrop": {"method": "graddrop", "drop_rate": 0.5, "seed": 7},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    return data
