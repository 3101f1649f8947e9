"""Each metric as XGLUE's and MLQA's official scorers compute it, on hand-checked cases
that tell the official definition from the plausible alternatives."""

from __future__ import annotations

import pytest

from graddrop_dist.tasks import metrics


class QA:
    def __init__(self, id, *answers):
        self.id, self.answers = id, tuple((text, 0) for text in answers)


def test_accuracy_and_ner_f1():
    assert metrics.accuracy([1, 0, 2, 2], [1, 1, 2, 0]) == 0.5
    gold = [["B-PER", "I-PER", "O", "B-LOC"]]
    guess = [["B-PER", "I-PER", "O", "B-ORG"]]  # one of two entities right: P = R = 1/2
    assert metrics.ner_f1(guess, gold) == pytest.approx(0.5)


# ------------------------------------------------------------------------------ MLQA
@pytest.mark.parametrize("text,tokens", [
    ("2008年", ["2008", "年"]),  # digits stay one token, the ideograph is its own
    ("iPhone手机", ["iphone", "手", "机"]),
    ("北京大学 in", ["北", "京", "大", "学", "in"]),
    ("“第二次”世界大战。", ["第", "二", "次", "世", "界", "大", "战"]),  # punctuation goes
])
def test_chinese_is_split_at_each_ideograph_only(text, tokens):
    assert metrics.normalize_answer(text, "zh") == tokens


def test_chinese_f1_counts_a_year_as_one_token():
    # Split into characters, "1997年" and "1998年" would share 4 of 5 tokens: F1 0.8.
    scores = metrics.squad_scores({"q": "1997年"}, [QA("q", "1998年")], "zh")
    assert scores["f1"] == pytest.approx(0.5) and scores["exact_match"] == 0.0


def test_articles_punctuation_and_the_best_answer_count():
    examples = [QA("a", "330 metres"), QA("b", "330 metres"), QA("c", "Paris", "in Paris"),
                QA("d", "der Eiffelturm")]
    scores = metrics.squad_scores({"a": "the 330 metres.", "b": "330", "c": "Paris",
                                   "d": "Eiffelturm"}, examples[:3])
    # a: exact after normalization; b: P = 1, R = 1/2 -> F1 2/3; c: exact (best answer).
    assert scores["exact_match"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx((1 + 2 / 3 + 1) / 3)
    assert metrics.squad_scores({"d": "Eiffelturm"}, examples[3:], "de")["exact_match"] == 1
    assert metrics.squad_scores({"d": "Eiffelturm"}, examples[3:], "en")["exact_match"] == 0


def test_an_unanswered_question_scores_zero_and_counts():
    scores = metrics.squad_scores({"a": "Paris"}, [QA("a", "Paris"), QA("b", "")])
    assert scores == {"f1": 0.5, "exact_match": 0.5}


# ------------------------------------------------------------------------------ POS
def test_pos_precision_merges_runs_of_equal_tags():
    gold = [["NOUN", "NOUN", "VERB"]]
    guess = [["NOUN", "VERB", "VERB"]]
    # Token accuracy 2/3; as chunks, gold is NOUN(0-1) VERB(2), the guess NOUN(0) VERB(1-2):
    # no chunk matches, so XGLUE's POS score is 0.
    assert metrics.token_accuracy(guess, gold) == pytest.approx(2 / 3)
    assert metrics.pos_precision(guess, gold) == 0.0
    # DET(0) NOUN(1-2) against DET(0) NOUN(1) VERB(2): one of three predicted chunks right.
    assert metrics.pos_precision([["DET", "NOUN", "VERB"]],
                                 [["DET", "NOUN", "NOUN"]]) == pytest.approx(1 / 3)
    assert metrics.pos_precision(gold, gold) == 1.0


# ------------------------------------------------------------------------------ WPR
def test_ndcg_gains_are_linear_and_ranked_by_the_predicted_label():
    # Relevance 3, 2, 0 ranked by predicted labels 2, 3, 0: DCG = 2 + 3 / log2(3) = 3.89279,
    # ideal = 3 + 2 / log2(3) = 4.26186. (Gain 2^rel - 1 would give 0.83399.)
    assert metrics.ndcg(["q"] * 3, [2, 3, 0], [3, 2, 0]) == pytest.approx(0.913402, abs=1e-6)


def test_ndcg_averages_tied_predictions():
    # Both documents predicted 1: each gets the average gain 2. DCG = 2 + 2 / log2(3).
    assert metrics.ndcg(["q", "q"], [1, 1], [0, 4]) == pytest.approx(0.815465, abs=1e-6)


def test_ndcg_counts_an_all_irrelevant_query_as_zero():
    assert metrics.ndcg(["a", "a", "b", "b"], [1, 0, 1, 0], [0, 0, 1, 0]) == 0.5


def test_ndcg_skips_single_document_queries():
    assert metrics.ndcg(["q1", "q2", "q2"], [0, 1, 0], [3, 2, 0]) == 1.0


def test_ndcg_groups_consecutive_rows_only():
    # "a" twice, "b" once (skipped), "a" again: a separate query. 1.0 and 1 / log2(3).
    value = metrics.ndcg(["a", "a", "b", "a", "a"], [1, 0, 5, 0, 1], [1, 0, 3, 1, 0])
    assert value == pytest.approx((1 + 0.630930) / 2, abs=1e-6)
