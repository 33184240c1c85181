"""curriclab.ui.verdicts: the verdict word follows the interval, the numbers are the table's."""

import math

import pandas as pd
import pytest

from curriclab.experiments.harness import Arm, Study, TrainSpec
from curriclab.ui.verdicts import cost_text, learning_rates, texts, verdict_text


def _table(low, high, difference=None):
    difference = (low + high) / 2 if difference is None else difference
    return pd.DataFrame([{"method": "m", "budget": "same epochs", "difference": difference,
                          "low": low, "high": high, "lower": 2, "higher": 1, "seeds": 3}])


@pytest.mark.parametrize(("low", "high", "margin", "word"), [
    (-0.9, -0.2, None, "lower"), (0.1, 0.4, None, "higher"), (-0.1, 0.15, 0.2, "equal within ±0.2"),
    (-0.1, 0.3, 0.2, "not distinguishable from 0"), (-0.1, 0.1, None, "not distinguishable")])
def test_the_word_is_chosen_by_the_interval(low, high, margin, word):
    text = verdict_text(_table(low, high), "m", margin=margin)
    assert text.startswith(word)
    assert f"[{low:+.2f}, {high:+.2f}]" in text and text.endswith("lower in 2 of 3 seeds")
    with pytest.raises(KeyError):
        verdict_text(_table(low, high), "m", "same samples")


def test_cost_text_states_cost_speed_up_and_interval():
    costs = pd.DataFrame([
        {"cost": "samples", "arm": "u", "seeds": 3, "reached": 3, "mean cost": 60000.0,
         "speed-up": 1.0, "difference": math.nan, "low": math.nan, "high": math.nan},
        {"cost": "samples", "arm": "m", "seeds": 3, "reached": 3, "mean cost": 45000.0,
         "speed-up": 1.3333, "difference": -15000.0, "low": -20000.0, "high": -10000.0},
        {"cost": "seconds", "arm": "m", "seeds": 3, "reached": 0, "mean cost": math.nan,
         "speed-up": math.nan, "difference": math.nan, "low": math.nan, "high": math.nan}])
    assert cost_text(costs, "m") == ("45,000 samples (reached in 3 of 3 seeds; speed-up 1.33x, "
                                     "difference -15000 samples [-20000, -10000])")
    assert cost_text(costs, "u") == "60,000 samples (reached in 3 of 3 seeds; speed-up 1.00x)"
    assert cost_text(costs, "m", "seconds") == "never reached the target (reached in 0 of 3 seeds)"


def test_texts_key_every_row_and_learning_rates_read_the_tuned_arms():
    table = pd.concat([_table(-0.9, -0.2), _table(0.1, 0.4).assign(budget="same samples")])
    values = texts(table)
    assert values == {"m": verdict_text(table, "m"),
                      "m/same samples": verdict_text(table, "m", "same samples")}
    assert values["m"].startswith("lower") and values["m/same samples"].startswith("higher")
    template = "{v[m/same samples]}"  # the way a notebook's report.show template names a key
    assert template.format(v=values) == values["m/same samples"]
    study = Study("s", train=TrainSpec(lr=0.1), arms=(Arm("a").with_train(lr=0.002), Arm("b")))
    assert learning_rates(study) == "a 0.002, b 0.1"
