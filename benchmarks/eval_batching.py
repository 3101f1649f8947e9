"""Evaluation batched by length against batched in row order, side by side in one process:
the offline model on cldr-emoji test sets (short names of 1-15 tokens), one thread.

    python benchmarks/eval_batching.py [--languages de,zh,sw,am,ru] [--repeats 3]

Prints the seconds per 1,000 examples of each order (median of the repeats, alternating)
and their ratio; the predictions are checked to be identical.
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--languages", default="de,zh,sw,am,ru")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    from offline_classifier import offline_classifier

    from graddrop_dist.tasks.heads import KINDS
    from graddrop_dist.trainer.evaluation import predict

    tokenizer, task, model = offline_classifier(args.languages.split(","))
    model.eval()
    head = KINDS[task.kind]
    data = [head.encode(tokenizer, examples, 32, train=False) for examples in task.test.values()]
    examples = sum(len(d) for d in data)

    def run(by_length: bool) -> tuple[float, list]:
        start = time.perf_counter()
        predicted = [predict(model, head, d, "accuracy", batch_size=args.batch_size,
                             pad_id=tokenizer.pad_token_id, by_length=by_length) for d in data]
        return time.perf_counter() - start, predicted

    times = {True: [], False: []}
    for _ in range(args.repeats):
        predictions = {}
        for by_length in (False, True):  # alternating, so load drifts hit both alike
            seconds, predictions[by_length] = run(by_length)
            times[by_length].append(seconds)
        assert predictions[True] == predictions[False], "batching by length changed a prediction"
    row_order, by_length = (statistics.median(times[k]) for k in (False, True))
    print(f"{examples} examples in {len(data)} languages, batch {args.batch_size}, 1 thread")
    print(f"row order:  {1000 * row_order / examples:.2f} s per 1,000 examples")
    print(f"by length:  {1000 * by_length / examples:.2f} s per 1,000 examples")
    print(f"ratio (by length / row order): {by_length / row_order:.2f}")


if __name__ == "__main__":
    main()
