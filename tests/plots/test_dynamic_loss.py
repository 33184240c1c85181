"""curriclab.plots.dynamic_loss."""

import pytest
import torch


def test_plots_draw_and_survive_empty_selections():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from curriclab.plots.dynamic_loss import (
        dev_error_curves,
        error_dots,
        gradient_factors,
        phi_heatmaps,
        unrolled_diagram,
    )

    _, ax = plt.subplots()
    assert len(gradient_factors(ax, scales=(1.0, 2.0))) == 3
    fig, ax = plt.subplots()  # a fresh, linear-scale axes for the diagram
    assert unrolled_diagram(ax, steps=2)
    fig.canvas.draw()  # renders the diagram's math text
    assert dev_error_curves(ax, {}) == []
    assert len(dev_error_curves(ax, {"a": ([1, 2], [0.5, 0.4])})) == 1
    assert error_dots(ax, {}) == [] and len(error_dots(ax, {"a": [0.1, 0.2]}, {"paper": 1.9})) == 4
    assert error_dots(ax, {"empty": []})
    assert phi_heatmaps(plt.figure(), [], []) == []
    assert len(phi_heatmaps(plt.figure(), [torch.eye(3), -torch.eye(3)], ["a", "b"])) == 2
    with pytest.raises(ValueError, match="titles"):
        phi_heatmaps(plt.figure(), [torch.eye(3)], [])
    with pytest.raises(ValueError, match="steps"):
        unrolled_diagram(ax, steps=0)
    plt.close("all")


def test_study_figures_draw_what_they_are_given():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from curriclab.methods.l2t import Algorithm1Log
    from curriclab.plots.dynamic_loss import (
        phi_step_view,
        static_grid,
        teacher_diagnostics,
        teacher_tuning,
    )

    grid = pd.DataFrame([{"a": a, "c": c, "b": b, "validation error %": 5 + a + c + b}
                         for a in (1, 2) for c in (-0.1, 0.0, 0.1) for b in (0, 2)])
    _, axes = plt.subplots(1, 2)
    images = static_grid(axes, grid, reference=5.5)
    assert len(images) == 2 and images[0].get_array().shape == (2, 3)
    with pytest.raises(ValueError, match="one panel per bias"):
        static_grid(axes[:1], grid, 5.5)
    tuning = pd.DataFrame([{"teacher": k, "optimizer": o, "teacher lr": lr,
                            "validation error %": 6.0, "chosen": o == "sgd"}
                           for k in ("A", "B") for o, lr in (("sgd", 0.1), ("adam", 0.01))])
    _, ax = plt.subplots()
    assert len(teacher_tuning(ax, tuning, {"cross-entropy": 5.0})) == 3
    log = Algorithm1Log(metric=[0.2, 0.1], dev_error=[0.1, 0.1], saturated=[0.0, 0.5],
                        phi={"row_sum": [1.0, 0.9], "off_diagonal_mass": [0.0, 0.1]},
                        matrices=[torch.eye(3), 1.1 * torch.eye(3)])
    _, axes = plt.subplots(1, 4)
    assert len(teacher_diagnostics(axes, {"k": [log, log]})) == 2 * 5
    with pytest.raises(ValueError, match="4 panels"):
        teacher_diagnostics(axes[:2], {"k": [log]})
    figure = phi_step_view({"t": log}, "t", 1)
    assert "step 1" in figure.axes[0].get_title()
    with pytest.raises(ValueError, match="step"):
        phi_step_view({"t": log}, "t", 2)
    plt.close("all")


def test_static_grid_rejects_an_empty_or_repeated_table():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from curriclab.plots.dynamic_loss import static_grid

    columns = ["a", "c", "b", "validation error %"]
    _, axes = plt.subplots(1, 1, squeeze=False)
    with pytest.raises(ValueError, match="table must hold at least one static Phi"):
        static_grid(axes[0], pd.DataFrame(columns=columns), 5.0)
    repeated = pd.DataFrame([[1.0, 0.0, 0.0, 5.0], [1.0, 0.0, 0.0, 6.0]], columns=columns)
    with pytest.raises(ValueError, match=r"\(a=1, c=0, b=0\) appears more than once"):
        static_grid(axes[0], repeated, 5.0)
    table = pd.DataFrame([[a, c, 0.0, 10 * a + c] for a in (1.0, 2.0) for c in (0.0, 0.5)],
                         columns=columns)
    (image,) = static_grid(axes[0], table, 5.0)
    assert image.get_array().tolist() == [[10.0, 10.5], [20.0, 20.5]]  # rows a, columns c
    plt.close("all")
