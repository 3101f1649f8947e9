"""A tiny random XLM-R classifier and fixed batches: the model every test fine-tunes."""

from __future__ import annotations

import torch
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

VOCAB = 128
SEQ = 12


def tiny_xlmr(seed: int = 0, layers: int = 2, labels: int = 3):
    config = XLMRobertaConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=layers,
                              num_attention_heads=2, intermediate_size=64,
                              max_position_embeddings=SEQ + 4, num_labels=labels,
                              hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(seed)
    return XLMRobertaForSequenceClassification(config).float()


def fixed_batches(count: int, batch: int = 4, seed: int = 1, labels: int = 3):
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        ids = torch.randint(3, VOCAB, (batch, SEQ), generator=generator)
        ids[:, 0] = 0  # <s>
        batches.append({"input_ids": ids, "attention_mask": torch.ones_like(ids),
                        "labels": torch.randint(0, labels, (batch,), generator=generator)})
    return batches
