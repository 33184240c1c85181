"""The README's result cards say what the committed headline files say, and their figures are
the stored notebooks' own outputs (`curriclab.ui.cards`)."""

import json

import pytest

from curriclab.ui.cards import CARDS, END, START, Card, card_figure, render_cards

from tests.helpers.paths import ROOT

README = (ROOT / "README.md").read_text()


def test_the_readme_block_is_the_rendered_cards():
    assert START in README and END in README
    block = START + README.split(START, 1)[1].split(END, 1)[0] + END
    assert block == render_cards(ROOT / "notebooks" / "results"), \
        "README cards are stale: run python -m curriclab.ui.cards"


@pytest.mark.parametrize("card", CARDS, ids=lambda card: card.stem)
def test_each_card_figure_is_its_notebooks_output(card):
    stored = (ROOT / "docs" / f"{card.stem}.png").read_bytes()
    assert stored == card_figure(ROOT / "notebooks" / f"{card.stem}.ipynb")


def test_a_card_refuses_a_headline_its_file_lacks(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"headlines": {"a": 1.5}}))
    card = Card("x", "x", "x", "a is {a:.1f}, b is {b}")
    with pytest.raises(KeyError, match="b"):
        render_cards(tmp_path, (card,))
    assert "a is 1.5" in Card("x", "x", "x", "a is {a:.1f}").render({"a": 1.5})


def test_the_counted_verdicts_follow_the_intervals():
    from curriclab.ui.cards import _curriculum_verdicts, _rho_loss_costs

    def row(low, high, reached=3):
        return {"difference": (low + high) / 2, "low": low, "high": high, "reached": reached,
                "ratio to baseline": 0.5}

    headlines = {"targets": {"mnist_0": 0.9, "mnist_0.2": 0.8, "fashion_mnist_0.2": 0.7}}
    for source, seconds in (("mnist", row(-1.0, 2.0)), ("fashion_mnist", row(0.5, 2.0))):
        headlines |= {f"{source}_0.2_RHO-LOSS_steps": row(-9.0, -1.0),
                      f"{source}_0.2_RHO-LOSS_seconds": seconds,
                      f"{source}_0.2_top-loss_steps": row(-1.0, 1.0, reached=1),
                      f"{source}_0.2_uniform_steps": row(0.0, 0.0)}
    fields = _rho_loss_costs(headlines)
    assert fields["noise"] == 0.2 and fields["seeds"] == 3 and fields["mnist_top_loss_reached"] == 1
    assert fields["mnist_seconds_verdict"] == "not distinguishable from uniform"
    assert fields["fashion_seconds_verdict"] == "slower" and fields["fashion_steps_high"] == -1.0

    gaps = {"a__curriculum__low": 0.1, "a__curriculum__high": 0.3,
            "b__curriculum__low": -0.3, "b__curriculum__high": -0.1,
            "c__curriculum__low": -0.3, "c__curriculum__high": 0.1,
            "a__anti_curriculum__low": -1.0, "a__anti_curriculum__high": 1.0,
            "a__random_curriculum__low": 0.5, "a__random_curriculum__high": 1.0}
    counted = _curriculum_verdicts(gaps)
    assert (counted["curriculum_settings"], counted["curriculum_above"],
            counted["curriculum_below"]) == (3, 1, 1)
    assert (counted["anti_curriculum_above"], counted["anti_curriculum_below"]) == (0, 0)
    assert counted["random_curriculum_above"] == 1
