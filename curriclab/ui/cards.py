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

        Args:
            headlines: the "headlines" mapping of the card's headline file; `derive` (if any)
                adds its fields on top.

        Returns:
            One Markdown table row: "| [figure](notebook) | **[title](notebook).** sentence |".

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


def _interval_fields(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    """`prefix_difference`, `prefix_low`, `prefix_high` from a row of a paired table."""
    return {f"{prefix}_{name}": row[name] for name in ("difference", "low", "high")}


def _compared(row: dict[str, Any], more: str, less: str) -> str:
    """`more` or `less` when a paired interval lies wholly above or below 0, else a neutral word."""
    if row["low"] is not None and row["low"] > 0:
        return more
    if row["high"] is not None and row["high"] < 0:
        return less
    return "not distinguishable from uniform"


def _rho_loss_costs(headlines: dict[str, Any]) -> dict[str, Any]:
    """10: at the highest noise level, per data set, RHO-LOSS's steps and seconds to the target
    against uniform's (with the verdict its interval supports), and how many top-loss seeds
    reached the target at all (uniform reaches it in every seed by construction)."""
    level = max((key.rsplit("_", 1)[1] for key in headlines["targets"]), key=float)
    fields: dict[str, Any] = {"noise": float(level)}
    for source, short in (("mnist", "mnist"), ("fashion_mnist", "fashion")):
        steps = headlines[f"{source}_{level}_RHO-LOSS_steps"]
        seconds = headlines[f"{source}_{level}_RHO-LOSS_seconds"]
        fields[f"{short}_steps_ratio"] = steps["ratio to baseline"]
        fields.update(_interval_fields(f"{short}_steps", steps))
        fields.update(_interval_fields(f"{short}_seconds", seconds))
        fields[f"{short}_seconds_verdict"] = _compared(seconds, "slower", "faster")
        top_loss = headlines[f"{source}_{level}_top-loss_steps"]
        fields[f"{short}_top_loss_reached"] = top_loss["reached"]
        fields["seeds"] = headlines[f"{source}_{level}_uniform_steps"]["reached"]
    return fields


def _curriculum_verdicts(headlines: dict[str, Any]) -> dict[str, Any]:
    """11: per ordering, over every (data set, condition), how many paired intervals against
    standard training lie wholly above or wholly below 0."""
    fields: dict[str, Any] = {}
    for arm in ("curriculum", "anti_curriculum", "random_curriculum"):
        lows = {key[: -len("__low")]: value for key, value in headlines.items()
                if key.endswith(f"__{arm}__low")}
        highs = [headlines[f"{key}__high"] for key in lows]
        fields[f"{arm}_settings"] = len(lows)
        fields[f"{arm}_above"] = sum(low > 0 for low in lows.values())
        fields[f"{arm}_below"] = sum(high < 0 for high in highs)
    return fields


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
    Card("03_loss_quantile_persistence", "03 · loss-quantile persistence",
         "Share of each loss decile still in it after 5 epochs, shuffled and fixed order, per seed",
         "Over {epochs} SmallConv epochs on all {train_size:,} MNIST images ({seeds} seeds), "
         "{shuffled_top_1_5:.1f} % of the highest-loss decile stays there in every epoch (chance "
         "{chance_1_5:.2f} %). Recorded during training, a fixed data order persists more than "
         "reshuffling: {shuffle_gap:+.1f} points [{shuffle_gap_low:+.1f}, {shuffle_gap_high:+.1f}] "
         "(epochs 4-5)."),
    Card("04_sgd_s_resampling", "04 · SGD-S and InfoBatch",
         "InfoBatch minus uniform SGD in test accuracy per seed, at the same epochs and the same "
         "samples",
         "Given as many back-propagated samples as uniform SGD on an MNIST subset, SGD-S with the "
         "plain mean differs by {sgds_gap_same_samples_points:+.1f} points of test accuracy "
         "[{sgds_gap_same_samples_low:+.1f}, {sgds_gap_same_samples_high:+.1f}] and its unbiased "
         "variant {unbiased_gap_same_samples_points:+.1f} [{unbiased_gap_same_samples_low:+.1f}, "
         "{unbiased_gap_same_samples_high:+.1f}] ({short_seeds} seeds). InfoBatch back-propagates "
         "{long_infobatch_samples_share:.0%} of uniform SGD's samples; at the same epochs it "
         "differs "
         "by {long_infobatch_gap_points:+.2f} points [{long_infobatch_gap_low:+.2f}, "
         "{long_infobatch_gap_high:+.2f}], and against uniform SGD on a {long_budget_epochs}-epoch "
         "cosine with the same samples by {long_infobatch_gap_same_samples_points:+.2f} "
         "[{long_infobatch_gap_same_samples_low:+.2f}, "
         "{long_infobatch_gap_same_samples_high:+.2f}] "
         "({long_seeds} seeds)."),
    Card("07_adaptive_loss_alignment", "07 · adaptive loss alignment",
         "Test error per arm with its interval, and validation curves",
         "With every arm's learning rate tuned on validation, the ALA controller (revised) ends at "
         "{ala_revised_test_error:.2f} % MNIST test error against cross-entropy's "
         "{cross_entropy_test_error:.2f} %: {ala_revised_difference:+.2f} points "
         "[{ala_revised_low:+.2f}, {ala_revised_high:+.2f}]: a relative error reduction of "
         "{ala_revised_relative:+.0%}, where the paper reports {paper_relative:+.0%}."),
    Card("10_rho_loss", "10 · RHO-LOSS",
         "Steps and seconds to the validation target, selection arm minus uniform, per noise level",
         "With {noise:.0%} of training labels wrong, RHO-LOSS reaches uniform training's "
         "validation "
         "target in {mnist_steps_ratio:.2f}x uniform's steps on MNIST "
         "({mnist_steps_difference:+.0f} "
         "steps [{mnist_steps_low:+.0f}, {mnist_steps_high:+.0f}]) and "
         "{fashion_steps_ratio:.2f}x on "
         "Fashion-MNIST ({fashion_steps_difference:+.0f} [{fashion_steps_low:+.0f}, "
         "{fashion_steps_high:+.0f}]). In seconds, with the candidate forwards and the "
         "irreducible-loss model paid for, it is {mnist_seconds_verdict} on MNIST "
         "({mnist_seconds_difference:+.1f} s [{mnist_seconds_low:+.1f}, "
         "{mnist_seconds_high:+.1f}]) "
         "and {fashion_seconds_verdict} on Fashion-MNIST ({fashion_seconds_difference:+.1f} s "
         "[{fashion_seconds_low:+.1f}, {fashion_seconds_high:+.1f}]). Top-loss selection reached "
         "the "
         "target in {mnist_top_loss_reached} of {seeds} seeds on MNIST and "
         "{fashion_top_loss_reached} of {seeds} on Fashion-MNIST.",
         _rho_loss_costs),
    Card("11_curricula", "11 · curricula",
         "Paired test-accuracy differences from standard training per ordering and condition",
         "Over {curriculum_settings} settings (MNIST and Fashion-MNIST; a standard budget, a "
         "limited "
         "budget, 20 % wrong labels), easy-first curricula beat standard training by their whole "
         "95 % interval in {curriculum_above} and lost in {curriculum_below}; anti-curricula "
         "{anti_curriculum_above} and {anti_curriculum_below}; random orderings "
         "{random_curriculum_above} and {random_curriculum_below} (paired intervals over "
         "{seeds} seeds). Wu et al.'s three findings held in {findings_reproduced} of "
         "{findings_tested} (finding, data set) pairs.",
         _curriculum_verdicts),
)
"""The README's cards, in order."""


def _headlines(results: Path, stem: str) -> dict[str, Any]:
    return json.loads((results / f"{stem}.json").read_text())["headlines"]


def render_cards(results: Path, cards: tuple[Card, ...] = CARDS) -> str:
    """The README block: a two-column table of every card, between the markers.

    Args:
        results: the directory of the headline files (`notebooks/results`).
        cards: the cards to render.

    Returns:
        START, a blank line, the table header, one row per card (in order), a blank line and
        END, joined by newlines (no trailing newline).

    Raises:
        FileNotFoundError: a card's headline file is missing (its notebook has no full run).
        KeyError: a card's template names a headline its file does not hold (as `Card.render`).
    """
    rows = [card.render(_headlines(results, card.stem)) for card in cards]
    return "\n".join([START, "", "| | |", "| --- | --- |", *rows, "", END])


def card_figure(notebook: Path) -> bytes:
    """The PNG bytes of the first image output of the code cell tagged `readme-figure`.

    Args:
        notebook: path of a stored (executed) .ipynb file.

    Returns:
        The decoded PNG, exactly as the notebook stores it.

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

    Args:
        root: the repository's root (holding README.md, notebooks/ and docs/).
        cards: the cards to render, in order.

    Raises:
        ValueError: the README has no card markers, or a card's notebook has no tagged figure
            (as `card_figure`).
        FileNotFoundError: a card's headline file is missing (as `render_cards`).
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
