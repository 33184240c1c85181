"""The README's result cards, rendered from the notebooks' committed headline files.

Each card names a notebook, the headline file its full run wrote (`notebooks/results/<stem>.json`,
see `curriclab.experiments.harness.headlines`), a sentence template whose `{key}` fields are read
from those headlines, and the figure: the first PNG output of the notebook's code cell tagged
`readme-figure`, copied to `docs/<stem>.png`. `python -m curriclab.ui.cards` rewrites the block
between the README's card markers and the figures; `tests/test_readme_cards.py` fails when the
README or a figure no longer matches the stored runs.
"""

from __future__ import annotations

import base64
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CARDS", "Card", "card_figure", "render_cards", "update_readme"]

START = "<!-- result cards: start (rendered by python -m curriclab.ui.cards) -->"
END = "<!-- result cards: end -->"
FIGURE_TAG = "readme-figure"


@dataclass(frozen=True)
class Card:
    """One result card.

    Attributes:
        stem: the notebook's file stem, e.g. "04_sgd_s_resampling" (also its headline file's).
        title: the card's bold link text, e.g. "04 · SGD-S resampling".
        alt: the figure's alternative text.
        template: Markdown with `{name}` / `{name[key]:.1f}` fields filled from the headlines.
        derive: computes further fields from the headlines (e.g. counts over a table), so that
            a verdict in the card is counted from the run, not written by hand.
    """

    stem: str
    title: str
    alt: str
    template: str
    derive: Callable[[dict[str, Any]], dict[str, Any]] | None = None

    def render(self, headlines: dict[str, Any]) -> str:
        """The card's table row.

        Raises:
            KeyError: the template names a headline the file does not hold.
        """
        fields = {**headlines, **(self.derive(headlines) if self.derive else {})}
        link = f"notebooks/{self.stem}.ipynb"
        image = f"[![{self.alt}](docs/{self.stem}.png)]({link})"
        return f"| {image} | **[{self.title}]({link}).** {self.template.format(**fields)} |"


def _pruning_verdicts(headlines: dict[str, Any]) -> dict[str, int]:
    """09: how many pruned subsets (score x hard/easy x fraction) beat, or lost to, random by
    their whole 95 % paired interval."""
    rows = [row for row in headlines["pruning"] if row["keep"] in ("hard", "easy")]
    return {"compared": len(rows),
            "beat_random": sum(row["low"] > 0 for row in rows),
            "lost_to_random": sum(row["high"] < 0 for row in rows)}


CARDS: tuple[Card, ...] = (
    Card("02_gradient_norm_vs_loss", "02 · gradient norm vs loss",
         "Density of per-sample gradient norm against loss over one MNIST epoch, log-log",
         "Over one SmallConv epoch on {samples:,} MNIST images, a sample's loss ranks its exact "
         "gradient norm almost perfectly (Spearman ρ = {spearman:.3f}) though the two are far from "
         "proportional (Pearson r = {pearson:.3f})."),
    Card("05_data_parameters", "05 · data parameters",
         "Ridge plot of sigma for clean and corrupted labels over training",
         "With 40 % of {train_size:,} MNIST training labels wrong, each sample's learned "
         "temperature separates the corrupted labels (mean sigma {sigma_corrupted:.1f}) from the "
         "clean ones ({sigma_clean:.2f}): a noise detector with ROC AUC {sigma_auc:.3f}. Trained "
         "to the last epoch, instance parameters gain {gain_last_epoch:+.1f} points "
         "[{gain_last_epoch_low:+.1f}, {gain_last_epoch_high:+.1f}] of clean test accuracy over "
         "plain training; against plain training early-stopped on the same noisy validation "
         "split, {gain_early_stopped:+.1f} [{gain_early_stopped_low:+.1f}, "
         "{gain_early_stopped_high:+.1f}] ({seeds} seeds)."),
    Card("09_data_pruning", "09 · data pruning",
         "Test accuracy against the fraction kept, per score, hard and easy, against random",
         "In short MLP runs on {train_size:,} training images, {never_forgotten_mnist:.1%} of "
         "MNIST and {never_forgotten_fashion:.1%} of Fashion-MNIST samples are never forgotten "
         "(Toneva et al.: 91.7 % of MNIST). On Fashion-MNIST, of {compared} subsets kept by "
         "forgetting, EL2N or GraNd (hardest or easiest, 10-90 % kept), {beat_random} beat a "
         "random subset of the same size and {lost_to_random} lost to it (95 % paired intervals "
         "over 3 seeds).",
         _pruning_verdicts),
)
"""The README's cards, in order."""


def _headlines(results: Path, stem: str) -> dict[str, Any]:
    return json.loads((results / f"{stem}.json").read_text())["headlines"]


def render_cards(results: Path, cards: tuple[Card, ...] = CARDS) -> str:
    """The README block: a two-column table of every card, between the markers.

    Args:
        results: the directory of the headline files (`notebooks/results`).
        cards: the cards to render.

    Raises:
        FileNotFoundError: a card's headline file is missing (its notebook has no full run).
    """
    rows = [card.render(_headlines(results, card.stem)) for card in cards]
    return "\n".join([START, "", "| | |", "| --- | --- |", *rows, "", END])


def card_figure(notebook: Path) -> bytes:
    """The PNG bytes of the first image output of the code cell tagged `readme-figure`.

    Raises:
        ValueError: no tagged cell, or the tagged cell stores no PNG.
    """
    cells = json.loads(notebook.read_text())["cells"]
    for cell in cells:
        if FIGURE_TAG in cell.get("metadata", {}).get("tags", []):
            for output in cell.get("outputs", []):
                if "image/png" in output.get("data", {}):
                    return base64.b64decode(output["data"]["image/png"])
            raise ValueError(f"{notebook.name}: the cell tagged {FIGURE_TAG!r} stores no PNG")
    raise ValueError(f"{notebook.name}: no code cell is tagged {FIGURE_TAG!r}")


def update_readme(root: Path, cards: tuple[Card, ...] = CARDS) -> None:
    """Rewrite the card block of `root/README.md` and every card's `docs/<stem>.png`.

    Raises:
        ValueError: the README has no card markers.
    """
    readme = root / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: the card markers are missing ({START!r} ... {END!r})")
    before, rest = text.split(START, 1)
    after = rest.split(END, 1)[1]
    readme.write_text(before + render_cards(root / "notebooks" / "results", cards) + after)
    for card in cards:
        figure = card_figure(root / "notebooks" / f"{card.stem}.ipynb")
        (root / "docs" / f"{card.stem}.png").write_bytes(figure)


if __name__ == "__main__":
    update_readme(Path(sys.argv[1]) if len(sys.argv) > 1 else Path.cwd())
