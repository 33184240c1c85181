"""curriclab.plots.sampling and notebook 04's widget view."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from curriclab.experiments.harness import Arm, Results, Study  # noqa: E402
from curriclab.plots import sampling as plots  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _record():
    arms = ("uniform", "InfoBatch", "uniform, InfoBatch's samples")
    curves = [{"arm": arm, "seed": seed, "step": step, "samples": 10 * step, "seconds": step,
               "validation_accuracy": 0.5 + 0.1 * step} for arm in arms for seed in (0, 1, 2)
              for step in range(3)]
    finals = [{"arm": arm, "seed": seed, "test_accuracy": acc}
              for seed, (u, i) in enumerate([(0.90, 0.91), (0.92, 0.92), (0.95, 0.97)])
              for arm, acc in (("uniform", u), ("InfoBatch", i), (arms[2], u))]
    artifacts = {("InfoBatch", seed): {"epoch_distinct_share": [1.0, 0.5 + 0.1 * seed]}
                 for seed in range(3)}
    return Results(Study("plots", arms=tuple(Arm(a) for a in arms)), curves, finals, artifacts)


def test_plots_draw_what_they_are_given_and_survive_empty_selections():
    fig, axes = plt.subplots(1, 5)
    record = _record()
    lines = plots.error_vs_cost(axes[0], record, "samples", target=0.6)
    assert len(lines) == 9  # one per (arm, seed)
    assert lines[0].get_ydata().tolist() == pytest.approx([50.0, 40.0, 30.0])
    assert axes[0].lines[-1].get_ydata()[0] == pytest.approx(40.0)  # the target's error
    assert plots.error_vs_cost(axes[0], record, arms=[]) == []
    (line,) = plots.distinct_share(axes[1], record)  # only InfoBatch has the artifact
    assert line.get_ydata().tolist() == pytest.approx([1.0, 0.6])
    assert line.get_xdata().tolist() == [1, 2]
    plots.weight_vs_own_loss(axes[2], torch.empty(0), torch.empty(0), "empty")
    plots.received_weight_by_index(axes[3], torch.zeros(0), 0)
    plots.draw_counts(axes[4], torch.zeros(0), torch.zeros(0))
    assert axes[2].get_title().endswith("r undefined")
    with pytest.raises(ValueError, match="cost"):
        plots.error_vs_cost(axes[0], record, "epochs")
    plt.close(fig)


def test_paired_differences_plot_shows_the_paired_interval():
    fig, ax = plt.subplots()
    (dots,) = plots.paired_differences(ax, _record(), "InfoBatch")
    assert dots.get_offsets()[:, 1].tolist() == pytest.approx([1.0, 0.0, 2.0])
    assert ax.lines[1].get_ydata()[0] == pytest.approx(1.0)  # the mean difference, in points
    empty_fig, empty_ax = plt.subplots()
    assert len(plots.paired_differences(empty_ax, _record(), "SGD-S")) == 1
    assert not empty_ax.get_legend()
    plt.close(fig)
    plt.close(empty_fig)


def test_interval_bars_put_each_interval_at_its_row():
    fig, ax = plt.subplots()
    drawn = plots.interval_bars(ax, ["a", "b"], [1.0, -0.5], [0.5, float("nan")],
                                [2.0, float("nan")], "points")
    assert len(drawn) == 2
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    x, y = drawn[0].lines[0].get_data()
    assert (x.tolist(), y.tolist()) == ([1.0], [2])  # the first comparison on top
    segments = drawn[0].lines[2][0].get_segments()[0]
    assert segments[:, 0].tolist() == pytest.approx([0.5, 2.0])
    plt.close(fig)


@pytest.mark.usefixtures("mnist_train")
def test_sgds_settings_view_runs_the_chosen_knobs():
    from curriclab.experiments.sgd_s_resampling import short_study
    from curriclab.methods.sampling import SGDSSampler
    from curriclab.ui.views import sgds_settings_view

    study = short_study(128, 64, 64, epochs=3, seeds=(0,), eval_every=0)
    study = study.replace(arms=(study.arm("uniform"), study.arm("SGD-S")))
    fig = sgds_settings_view(0.25, 0.0, 1, study=study)
    left, right = fig.axes[:2]
    heights = [bar.get_height() for bar in left.patches]
    assert heights == SGDSSampler(128, 1, 0.25, 0.0).epoch_sizes(3) == [128, 96, 72]
    assert len(right.lines) == 2  # uniform and SGD-S, one seed each
    assert right.lines[1].get_xdata()[-1] == 128 + 96 + 72  # SGD-S spent exactly its plans
    with pytest.raises(ValueError, match="arm"):
        sgds_settings_view(0.1, 0.0, 1, study=study, arm="InfoBatch")
    plt.close(fig)
