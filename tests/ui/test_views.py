"""curriclab.ui.views: the widget views draw what the experiment they run returns."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from curriclab.experiments.self_paced_learning import explore  # noqa: E402
from curriclab.ui.views import spl_explore_view  # noqa: E402


def test_the_spl_view_draws_the_cached_run_it_explores():
    fig = spl_explore_view(0.5, 1.5, "hard", 0.1, epochs=2)
    _, _, history = explore(0.5, 1.5, "hard", 0.1, 2)
    assert len(history) == 2 and len(fig.axes) == 2
    plt.close(fig)
