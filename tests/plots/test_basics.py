"""curriclab.plots.basics: the image grid's layout and its refusals."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from curriclab.plots.basics import image_grid  # noqa: E402


def test_image_grid_pads_the_last_row_and_titles_every_image():
    fig = image_grid(torch.rand(5, 1, 4, 4), labels=[0, 1, 2, 3, 4], columns=2)
    assert len(fig.axes) == 6  # 3 rows of 2, the last cell blank
    assert [ax.get_title() for ax in fig.axes[:5]] == ["0", "1", "2", "3", "4"]
    plt.close(fig)


@pytest.mark.parametrize("kwargs, named", [({"columns": 0}, "columns"),
                                           ({"labels": [1, 2]}, "labels"),
                                           ({"titles": ["a"] * 4}, "titles")])
def test_image_grid_refuses_a_bad_layout_by_name(kwargs, named):
    with pytest.raises(ValueError, match=named):
        image_grid(torch.rand(3, 4, 4), **kwargs)
    with pytest.raises(ValueError, match="empty"):
        image_grid(torch.rand(0, 4, 4))
