"""`make demo` until the trainer lands (issue 4): a short single-process fine-tuning of a
small random XLM-R classifier, with every variant against the `full` baseline on the same
data and initialisation, printing held-out accuracy and the fraction of gradient that
GradDrop zeroed. It shows the API end to end in well under a minute on two CPU cores.

    python -m graddrop_dist.demo [--steps 60] [--methods full,graddrop,...]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import XLMRobertaConfig, XLMRobertaForSequenceClassification

from graddrop_dist import GradDrop, GradDropConfig

VOCAB, SEQ, LABELS = 400, 16, 4
METHODS = ("full", "head-only", "gradual-unfreeze", "graddrop", "graddrop-epoch",
           "sparse-unfreeze", "layer-graddrop", "childtuning-f")


def make_task(examples: int, seed: int):
    """Label = which quarter of the vocabulary most tokens come from (learnable, noisy)."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, LABELS, (examples,), generator=generator)
    band = VOCAB // LABELS
    ids = torch.randint(3, VOCAB, (examples, SEQ), generator=generator)
    topical = torch.rand(examples, SEQ, generator=generator) < 0.4
    ids = torch.where(topical, labels[:, None] * band +
                      torch.randint(3, band, (examples, SEQ), generator=generator), ids)
    ids[:, 0] = 0
    return ids, labels


def run(method: str, steps: int, steps_per_epoch: int, seed: int = 0) -> tuple[float, float]:
    torch.manual_seed(seed)
    config = XLMRobertaConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=4,
                              num_attention_heads=4, intermediate_size=128,
                              max_position_embeddings=SEQ + 4, num_labels=LABELS)
    model = XLMRobertaForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    graddrop = GradDrop(GradDropConfig(method=method, drop_rate=0.5, unfreeze_epochs=3))
    graddrop.attach(model, optimizer, steps_per_epoch=steps_per_epoch)
    train_ids, train_labels = make_task(steps * 16, seed=1)
    test_ids, test_labels = make_task(1000, seed=2)
    zeroed = total = 0
    model.train()
    for step in range(steps):
        rows = slice(step * 16, (step + 1) * 16)
        optimizer.zero_grad()
        model(input_ids=train_ids[rows], labels=train_labels[rows]).loss.backward()
        for param in model.parameters():
            if param.grad is not None:
                zeroed += int((param.grad == 0).sum())
                total += param.grad.numel()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        predictions = model(input_ids=test_ids).logits.argmax(-1)
    return (predictions == test_labels).float().mean().item(), zeroed / max(total, 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="GradDrop single-process demo")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--steps-per-epoch", type=int, default=15)
    parser.add_argument("--methods", default=",".join(METHODS))
    args = parser.parse_args(argv)
    print(f"tiny random XLM-R (4 layers), {args.steps} steps, 4 epochs of "
          f"{args.steps_per_epoch} steps, batch 16, AdamW lr 2e-3")
    print(f"| {'method':18s} | held-out acc | grad zeroed | seconds |")
    print(f"|{'-' * 20}|--------------|-------------|---------|")
    for method in args.methods.split(","):
        start = time.perf_counter()
        accuracy, zeroed = run(method, args.steps, args.steps_per_epoch)
        print(f"| {method:18s} | {accuracy:12.3f} | {zeroed:11.2f} | "
              f"{time.perf_counter() - start:7.1f} |")


if __name__ == "__main__":
    main()
