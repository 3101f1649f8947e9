"""Shared fixtures: a tiny random XLM-R checkpoint with the real XLM-R tokenizer."""

from __future__ import annotations

import os

import pytest

# One thread per process keeps multi-rank tests from fighting over two cores; the
# kernel cache lives inside the repository so CI and developers share one build.
os.environ.setdefault("OMP_NUM_THREADS", "1")
_CACHE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".cache"))
os.environ.setdefault("GRADDROP_CACHE", os.path.join(_CACHE, "graddrop"))
os.environ.setdefault("TORCH_EXTENSIONS_DIR", os.path.join(_CACHE, "torch_extensions"))
os.environ.setdefault("DS_ACCELERATOR", "cpu")
# The suite runs on the CPU, also on a GPU machine (`make gpu-check` is the GPU run): with
# no visible GPU, train.device=auto resolves to the CPU and ranks talk over gloo.
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


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
