"""Where a run is: one value, saved and restored whole; the best evaluation by the rule
train.select names."""

from __future__ import annotations

from graddrop_dist.trainer.state import JobState


def scores(en, de):
    return {"dev": {"en": en, "de": de, "avg": (en + de) / 2}, "test": {}}


def test_english_dev_and_average_dev_pick_different_epochs():
    by_english, by_average = JobState(), JobState()
    for epoch, (en, de) in enumerate([(0.80, 0.40), (0.78, 0.60)]):
        by_english.record_evaluation(epoch, scores(en, de), "en")
        by_average.record_evaluation(epoch, scores(en, de), "avg")
    assert by_english.best["epoch"] == 0 and by_average.best["epoch"] == 1


def test_the_state_round_trips_through_a_checkpoint_dict():
    state = JobState(global_step=7, epoch=1, step_in_epoch=3, global_batch=32)
    state.record_evaluation(0, scores(0.5, 0.25), "en", extra={"dev": {"token-accuracy": {}}})
    saved = {**state.to_dict(), "world_size": 4}  # what the checkpointer adds is ignored
    assert JobState.from_dict(saved) == state
    assert state.history[0]["extra"] == {"dev": {"token-accuracy": {}}}


def test_the_final_evaluation_a_run_still_needs():
    state = JobState(global_step=10, epoch=2, step_in_epoch=0)
    assert state.unevaluated_epoch() == 1  # two whole epochs: the last one trained is 1
    state.record_evaluation(1, scores(0.5, 0.5), "en")
    assert state.unevaluated_epoch() is None
    cut = JobState(global_step=3, epoch=0, step_in_epoch=3)  # max_steps inside epoch 0
    assert cut.unevaluated_epoch() == 0
