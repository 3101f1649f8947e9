"""bf16 autocast against fp32 on the CPU, side by side in one process: the offline model
(word embeddings frozen, as in the offline study) training on cldr-emoji names and
evaluating them, one thread. Weights and AdamW stay fp32 in both.

    python benchmarks/bf16_cpu.py [--steps 10] [--repeats 2]

Prints the median seconds of each and the ratios (bf16 / fp32). On a CPU without native
bf16 (AVX512-BF16 or AMX), bf16 is emulated and slower: the ratio says which you have.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    from offline_classifier import offline_classifier

    tokenizer, task, model = offline_classifier(["de"])
    model.roberta.embeddings.word_embeddings.weight.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    train = task.train[:32 * args.steps]
    test = [e.text for e in task.test["de"]]

    def precision(name):
        if name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast("cpu", dtype=torch.bfloat16)

    def run(name) -> tuple[float, float]:
        model.train()
        start = time.perf_counter()
        for i in range(0, len(train), 32):
            rows = train[i:i + 32]
            batch = tokenizer([e.text for e in rows], padding=True, return_tensors="pt")
            with precision(name):
                loss = model(**batch, labels=torch.tensor([e.label for e in rows])).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        trained = time.perf_counter() - start
        model.eval()
        start = time.perf_counter()
        with torch.no_grad():
            for i in range(0, len(test), 64):
                batch = tokenizer(test[i:i + 64], padding=True, return_tensors="pt")
                with precision(name):
                    model(**batch)
        return trained, time.perf_counter() - start

    times = {"fp32": [], "bf16": []}
    for _ in range(args.repeats):
        for name in times:
            times[name].append(run(name))
    train_s = {k: statistics.median(t for t, _ in v) for k, v in times.items()}
    eval_s = {k: statistics.median(e for _, e in v) for k, v in times.items()}
    print(f"{args.steps} training steps of 32 names, evaluation of {len(test)} names, 1 thread")
    for name in times:
        print(f"{name}: train {train_s[name]:.2f} s, evaluate {eval_s[name]:.2f} s")
    print(f"ratio bf16 / fp32: train {train_s['bf16'] / train_s['fp32']:.2f}, "
          f"evaluate {eval_s['bf16'] / eval_s['fp32']:.2f}")


if __name__ == "__main__":
    main()
