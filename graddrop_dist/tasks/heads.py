"""The task heads: what differs between task kinds (the model head, how examples become
features, how outputs become predictions, and which metric scores them). A task names its
kind (TaskData.kind); KINDS maps it to its head.

| kind | model | features | prediction |
|---|---|---|---|
| sequence-classification | AutoModelForSequenceClassification | text (pair) -> label | argmax (WPR: expected relevance, for nDCG) |
| token-classification | AutoModelForTokenClassification | words -> a tag on each word's first sub-token (-100 elsewhere) | the tag at each word's first sub-token |
| question-answering | AutoModelForQuestionAnswering | question + context windows (doc stride) -> start/end token | the best valid span over an example's windows |
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from graddrop_dist.tasks import metrics

LABEL_KEYS = ("labels", "start_positions", "end_positions")

IGNORE_INDEX = -100


@dataclass
class Encoded:
    features: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # kind-specific (QA offsets, example ids)

    def __len__(self) -> int:
        return len(self.features)


class Kind:
    name = "abstract"
    auto_class = "AutoModel"  # the transformers Auto class of this kind's head

    def model_class(self):
        import transformers

        return getattr(transformers, self.auto_class)

    def model_kwargs(self, task) -> dict:
        return {"num_labels": len(task.labels)}


class SequenceKind(Kind):
    name = "sequence-classification"
    auto_class = "AutoModelForSequenceClassification"

    def encode(self, tokenizer, examples, max_length: int, *, train: bool) -> Encoded:
        if not examples:
            return Encoded()
        pairs = [e.text_pair for e in examples]
        encoded = tokenizer([e.text for e in examples],
                            pairs if any(p is not None for p in pairs) else None,
                            truncation=True, max_length=max_length)
        return Encoded([{"input_ids": ids, "labels": e.label}
                        for ids, e in zip(encoded["input_ids"], examples)])

    def predictions(self, outputs, rows, data, metric: str):
        logits = outputs.logits.float()
        if metric == "ndcg":  # rank by expected relevance
            grades = torch.arange(logits.shape[-1], dtype=torch.float32)
            values = (logits.softmax(-1) * grades).sum(-1).tolist()
        else:
            values = logits.argmax(-1).tolist()
        return list(zip(rows, values))

    def score(self, task, examples, data, predicted: dict, language: str) -> float:
        values = [predicted[i] for i in range(len(examples))]
        if task.metric == "ndcg":
            return metrics.ndcg([e.group for e in examples], values,
                                [e.label for e in examples])
        return metrics.accuracy(values, [e.label for e in examples])


class TokenKind(Kind):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"

    def encode(self, tokenizer, examples, max_length: int, *, train: bool) -> Encoded:
        if not examples:
            return Encoded()
        encoded = tokenizer([list(e.words) for e in examples], is_split_into_words=True,
                            truncation=True, max_length=max_length)
        features, first_tokens = [], []
        for index, example in enumerate(examples):
            labels, firsts, previous = [], [], None
            for position, word in enumerate(encoded.word_ids(index)):
                if word is not None and word != previous:
                    labels.append(example.tags[word])
                    firsts.append(position)
                else:
                    labels.append(IGNORE_INDEX)
                previous = word
            features.append({"input_ids": encoded["input_ids"][index], "labels": labels})
            first_tokens.append(firsts)
        return Encoded(features, {"first_tokens": first_tokens})

    def predictions(self, outputs, rows, data, metric: str):
        tags = outputs.logits.argmax(-1).tolist()
        return [(row, [tags[i][p] for p in data.extra["first_tokens"][row]])
                for i, row in enumerate(rows)]

    def score(self, task, examples, data, predicted: dict, language: str) -> float:
        gold, guess = [], []
        for index, example in enumerate(examples):
            tags = predicted[index]
            # Words cut off by max_length count as predicted "no tag" (wrong / O).
            tags = tags + [-1] * (len(example.tags) - len(tags))
            gold.append(list(example.tags))
            guess.append(tags)
        if task.metric == "ner-f1":
            def names(sequence):
                return [task.labels[t] if t >= 0 else "O" for t in sequence]

            return metrics.ner_f1([names(s) for s in guess], [names(s) for s in gold])
        return metrics.token_accuracy(guess, gold)


class QAKind(Kind):
    name = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"
    doc_stride = 128
    max_answer_tokens = 30

    def model_kwargs(self, task) -> dict:
        return {}

    def encode(self, tokenizer, examples, max_length: int, *, train: bool) -> Encoded:
        if not examples:
            return Encoded()
        stride = min(self.doc_stride, max_length // 4)
        encoded = tokenizer([e.question for e in examples], [e.context for e in examples],
                            truncation="only_second", max_length=max_length, stride=stride,
                            return_overflowing_tokens=True, return_offsets_mapping=True)
        features, owners, offsets = [], [], []
        for index, ids in enumerate(encoded["input_ids"]):
            example_index = encoded["overflow_to_sample_mapping"][index]
            sequence_ids = encoded.sequence_ids(index)
            context_offsets = [o if s == 1 else None
                               for o, s in zip(encoded["offset_mapping"][index], sequence_ids)]
            feature = {"input_ids": ids}
            if train:
                feature.update(zip(("start_positions", "end_positions"),
                                   self._answer_tokens(examples[example_index],
                                                       context_offsets)))
            features.append(feature)
            owners.append(example_index)
            offsets.append(context_offsets)
        return Encoded(features, {"example": owners, "offsets": offsets})

    @staticmethod
    def _answer_tokens(example, offsets) -> tuple[int, int]:
        """Token span of the first answer, or (0, 0) (the <s> token) when this window
        does not contain it."""
        if not example.answers:
            return 0, 0
        text, start = example.answers[0]
        end = start + len(text)
        tokens = [i for i, o in enumerate(offsets) if o is not None and o[0] < end
                  and o[1] > start]
        if not tokens or offsets[tokens[0]][0] > start or offsets[tokens[-1]][1] < end:
            return 0, 0
        return tokens[0], tokens[-1]

    def predictions(self, outputs, rows, data, metric: str):
        """Per window: (score, char start, char end) of its best valid span."""
        starts, ends = outputs.start_logits.float(), outputs.end_logits.float()
        results = []
        for i, row in enumerate(rows):
            offsets = data.extra["offsets"][row]
            valid = torch.tensor([o is not None for o in offsets] +
                                 [False] * (starts.shape[1] - len(offsets)))
            start_scores = starts[i].masked_fill(~valid, float("-inf"))
            end_scores = ends[i].masked_fill(~valid, float("-inf"))
            pair = start_scores[:, None] + end_scores[None, :]
            length = torch.arange(pair.shape[0])
            allowed = (length[None, :] >= length[:, None]) & \
                (length[None, :] - length[:, None] < self.max_answer_tokens)
            pair = pair.masked_fill(~allowed, float("-inf"))
            best = int(pair.argmax())
            s, e = divmod(best, pair.shape[1])
            score = float(pair.view(-1)[best])
            results.append((row, (score, offsets[s][0], offsets[e][1]) if score > float("-inf")
                            else (score, 0, 0)))
        return results

    def score(self, task, examples, data, predicted: dict, language: str) -> float:
        best: dict[int, tuple[float, int, int]] = {}
        for row, (score, start, end) in predicted.items():
            owner = data.extra["example"][row]
            if owner not in best or score > best[owner][0]:
                best[owner] = (score, start, end)
        answers = {examples[i].id: examples[i].context[s:e] for i, (_, s, e) in best.items()}
        return metrics.squad_scores(answers, examples, language)["f1"]


KINDS = {kind.name: kind for kind in (SequenceKind(), TokenKind(), QAKind())}
