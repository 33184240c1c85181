"""Notebook 05's widget view: runs the cached pair of small runs and draws both panels."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from curriclab.ui.views import data_parameters_view  # noqa: E402

pytestmark = pytest.mark.usefixtures("mnist_train", "one_thread")


def test_the_view_draws_accuracy_and_sigma_with_the_auc():
    fig = data_parameters_view(0.4, 4.0, 0.0, train_size=200, epochs=2)
    left, right = fig.axes
    assert "40% noise" in left.get_title() and "lr sigma 4.0" in left.get_title()
    assert {line.get_label().split(" (")[0] for line in left.get_lines()} >= {"baseline",
                                                                               "instance"}
    assert right.get_title().startswith("sigma detects wrong labels with AUC 0.")
    assert [t.get_text() for t in right.get_yticklabels()] == ["epoch 0", "epoch 1", "epoch 2"]
    plt.close(fig)
