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

import json
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
        return Encoded([{"input_ids": ids} if e.label is None else
                        {"input_ids": ids, "labels": e.label}
                        for ids, e in zip(encoded["input_ids"], examples)])

    def predictions(self, outputs, rows, data, metric: str):
        # The predicted label, also for WPR: XGLUE ranks a query's pages by it.
        return list(zip(rows, outputs.logits.float().argmax(-1).tolist()))

    def scores(self, task, examples, data, predicted: dict, language: str) -> dict:
        values = [predicted[i] for i in range(len(examples))]
        labels = [e.label for e in examples]
        if task.metric == "ndcg":
            return {"ndcg": metrics.ndcg([e.group for e in examples], values, labels)}
        return {"accuracy": metrics.accuracy(values, labels)}

    def prediction_file(self, task, examples, data, predicted: dict) -> str:
        """XGLUE's prediction format: one predicted label per line."""
        return "".join(f"{task.labels[predicted[i]]}\n" for i in range(len(examples)))


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
                    labels.append(IGNORE_INDEX if example.tags is None else example.tags[word])
                    firsts.append(position)
                else:
                    labels.append(IGNORE_INDEX)
                previous = word
            feature = {"input_ids": encoded["input_ids"][index]}
            if example.tags is not None:
                feature["labels"] = labels
            features.append(feature)
            first_tokens.append(firsts)
        return Encoded(features, {"first_tokens": first_tokens})

    def predictions(self, outputs, rows, data, metric: str):
        tags = outputs.logits.argmax(-1).tolist()
        return [(row, [tags[i][p] for p in data.extra["first_tokens"][row]])
                for i, row in enumerate(rows)]

    def scores(self, task, examples, data, predicted: dict, language: str) -> dict:
        gold, guess = [], []
        for index, example in enumerate(examples):
            tags = predicted[index]
            # Words cut off by max_length count as predicted "no tag" (wrong / O).
            tags = tags + [-1] * (len(example.tags) - len(tags))
            gold.append(list(example.tags))
            guess.append(tags)

        def names(sequence):
            return [task.labels[t] if t >= 0 else "O" for t in sequence]

        if task.metric == "ner-f1":
            return {"ner-f1": metrics.ner_f1([names(s) for s in guess],
                                             [names(s) for s in gold])}
        return {"pos-precision": metrics.pos_precision([names(s) for s in guess],
                                                       [names(s) for s in gold]),
                "token-accuracy": metrics.token_accuracy(guess, gold)}

    def prediction_file(self, task, examples, data, predicted: dict) -> str:
        """XGLUE's prediction format: a tag per line, a blank line after each sentence
        (words cut off by max_length get "O")."""
        sentences = []
        for index, example in enumerate(examples):
            tags = [task.labels[t] for t in predicted[index]]
            tags += ["O"] * (len(example.words) - len(tags))
            sentences.append("".join(f"{tag}\n" for tag in tags))
        return "\n".join(sentences) + "\n"


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

    @staticmethod
    def answers(examples, data, predicted: dict) -> dict[str, str]:
        """{question id: the text of the best span over its windows}."""
        best: dict[int, tuple[float, int, int]] = {}
        for row, (score, start, end) in predicted.items():
            owner = data.extra["example"][row]
            if owner not in best or score > best[owner][0]:
                best[owner] = (score, start, end)
        return {examples[i].id: examples[i].context[s:e] for i, (_, s, e) in best.items()}

    def scores(self, task, examples, data, predicted: dict, language: str) -> dict:
        scores = metrics.squad_scores(self.answers(examples, data, predicted), examples,
                                      language)
        return {"squad-f1": scores["f1"], "exact-match": scores["exact_match"]}

    def prediction_file(self, task, examples, data, predicted: dict) -> str:
        """MLQA's prediction format: {question id: answer text} as JSON."""
        return json.dumps(self.answers(examples, data, predicted), ensure_ascii=False)


KINDS = {kind.name: kind for kind in (SequenceKind(), TokenKind(), QAKind())}
