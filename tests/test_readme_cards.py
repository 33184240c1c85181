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
