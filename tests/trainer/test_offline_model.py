"""The offline model is the real pretrained multilingual encoder, loaded as XLM-R."""

from __future__ import annotations

import os

import torch

from graddrop_dist.assets.offline_model import load_tokenizer, offline_model_dir


def test_tokenizer_is_xlmr():
    assert load_tokenizer()("Hello world!")["input_ids"] == [0, 35378, 8999, 38, 2]


def test_rebuilt_model_embeds_translations_together():
    from transformers import AutoModel, AutoTokenizer

    directory = offline_model_dir(os.environ["GRADDROP_CACHE"])
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModel.from_pretrained(directory).eval()
    assert model.config.model_type == "xlm-roberta" and model.config.num_hidden_layers == 12
    sentences = ["query: The weather is nice today.", "query: Das Wetter ist heute schön.",
                 "query: Il fait beau aujourd'hui.", "query: I need to repair my car engine."]
    batch = tokenizer(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"][..., None]
    embeddings = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    similarity = embeddings @ embeddings.T
    # Measured: translations 0.89-0.95, the unrelated sentence 0.77-0.81. A wrong position
    # offset or dequantization drops translations below the unrelated pair.
    assert similarity[0, 1] > 0.85 and similarity[0, 2] > 0.85
    assert similarity[0, 3] < similarity[0, 1] - 0.05


def build_in_rank(rank, world_size, cache):
    from transformers import AutoConfig

    directory = offline_model_dir(cache)
    return AutoConfig.from_pretrained(directory).model_type, sorted(os.listdir(directory))


def test_ranks_that_build_at_once_get_one_complete_checkpoint(tmp_path):
    # Under a process group, as in graddrop-train: whichever rank takes the lock builds.
    from graddrop_dist.testing.local_ranks import run_ranks

    results = run_ranks(build_in_rank, 2, str(tmp_path / "cache"), timeout=300)
    for model_type, files in results:
        assert model_type == "xlm-roberta"
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
