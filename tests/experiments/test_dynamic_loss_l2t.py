"""Notebook 06's study: the L2T arms on the harness, teacher training on the splits, intervals."""

import math

import pytest
import scipy.stats
import torch

from curriclab.experiments import dynamic_loss_l2t as l2t
from curriclab.experiments.harness import Arm, DataSpec, Results, run_arm
from curriclab.methods.l2t import Algorithm1Log

DATA = DataSpec("mnist", train_size=256, validation_size=100, holdout_size=100, test_size=100)
PROTOCOL = l2t.StudentProtocol(hidden=(8,), warmup_steps=3, horizon=4, warmup_lr=0.1)


def test_static_phi_and_its_grid():
    teacher = l2t.static_phi(4, diagonal=2.0, off_diagonal=-0.1, bias=0.5)
    phi, bias = teacher(torch.rand(4))
    expected = torch.full((4, 4), -0.1) + torch.diag(torch.full((4,), 2.1))
    torch.testing.assert_close(phi, expected)
    torch.testing.assert_close(bias, torch.full((4,), 0.5))
    arms = l2t.static_phi_arms(PROTOCOL, (1, 2), (0,), (0, 2))
    assert [a.name for a in arms] == ["Phi = I", "static a=1 c=0 b=2", "static a=2 c=0 b=0",
                                      "static a=2 c=0 b=2"]
    assert all(a.params["warmup_steps"] == 3 and a.params["warmup_lr"] == 0.1 for a in arms)
    with pytest.raises(ValueError, match="finite"):
        l2t.static_phi(3, math.inf)


def test_cross_entropy_arm_with_its_own_warmup_lr_is_plain_sgd_at_two_rates():
    """The warm-up scale makes the first steps SGD at warmup_lr, the rest at the arm's lr: the
    same final model as plain cross-entropy at lr 0.1 when both rates are 0.1, and a different
    one when the taught lr differs."""
    study = l2t.l2t_study(DATA, PROTOCOL, (0,))
    plain = study.replace(arms=(Arm("plain"),))
    same = run_arm(study, study.arms[0].with_train(lr=0.1), 0)[1]
    reference = run_arm(plain, plain.arms[0].with_train(lr=0.1), 0)[1]
    assert same["validation_loss"] == pytest.approx(reference["validation_loss"], rel=1e-5)
    faster = run_arm(study, study.arms[0].with_train(lr=0.4), 0)[1]
    assert faster["validation_loss"] != pytest.approx(reference["validation_loss"], rel=1e-3)


def test_arms_reject_momentum_and_unknown_teachers():
    study = l2t.l2t_study(DATA, PROTOCOL, (0,), [PROTOCOL.arm("t", "dlf_teacher", teacher="nope")])
    with pytest.raises(ValueError, match="teacher must be one of"):
        run_arm(study, study.arms[1], 0)
    with pytest.raises(ValueError, match="plain SGD"):
        run_arm(study, study.arms[0].with_train(momentum=0.9), 0)
    with pytest.raises(TypeError):
        l2t.register_teacher("x", object())


@pytest.mark.parametrize("kind", [l2t.TeacherArm("a1", hidden=1),
                                  l2t.TeacherArm("online", "online", episode=2, runs=1),
                                  l2t.TeacherArm("diag", diagonal_only=True)])
def test_teachers_train_on_the_holdout_split_and_run_as_arms(kind):
    study = l2t.l2t_study(DATA, PROTOCOL, (0,))
    config = PROTOCOL.teacher_config(0.2, teacher_steps=2, teacher_optimizer="adam",
                                     teacher_lr=0.05, dev_batch=20, interval=2)
    teacher, log = l2t.train_teacher_arm(kind, study, config, seed=3)
    assert len(log.metric) == len(log.saturated) == len(log.phi["row_sum"]) == 2
    assert teacher.diagonal_only == kind.diagonal_only
    l2t.register_teacher(f"test {kind.name}", teacher)
    arm = PROTOCOL.arm("taught", "dlf_teacher", teacher=f"test {kind.name}")
    final = run_arm(study.replace(arms=(study.arms[0], arm)), arm, 0)[1]
    assert 0.0 <= final["saturated"] <= 1.0 and "test_accuracy" in final
    # the collected summary is of a 10 x 10 Phi: row sum = diagonal + 9 x mean off-diagonal
    assert final["row_sum"] == pytest.approx(final["diagonal"] + 9 * final["off_diagonal"])
    assert (final["off_diagonal_mass"] == 0.0) == kind.diagonal_only


def _results(values: dict[str, list[float]]) -> Results:
    study = l2t.l2t_study(DATA, PROTOCOL, tuple(range(3)),
                          [Arm(name) for name in values if name != "cross-entropy"])
    finals = [{"arm": arm, "seed": seed, "test_accuracy": value}
              for arm, column in values.items() for seed, value in enumerate(column)]
    return Results(study, [], finals, {})


def _crossed_by_loops(d):
    """The two-way random-effects variance of the grand mean, written out with loops."""
    n_t, n_s = len(d), len(d[0])
    m = sum(map(sum, d)) / (n_t * n_s)
    r = [sum(row) / n_s for row in d]
    c = [sum(d[i][j] for i in range(n_t)) / n_t for j in range(n_s)]
    ms_t = n_s * sum((x - m) ** 2 for x in r) / (n_t - 1)
    ms_s = n_t * sum((x - m) ** 2 for x in c) / (n_s - 1)
    ms_e = sum((d[i][j] - r[i] - c[j] + m) ** 2 for i in range(n_t) for j in range(n_s)) / (
        (n_t - 1) * (n_s - 1))
    var = (max((ms_t - ms_e) / n_s, 0) / n_t + max((ms_s - ms_e) / n_t, 0) / n_s
           + ms_e / (n_t * n_s))
    half = scipy.stats.t.ppf(0.975, min(n_t, n_s) - 1) * math.sqrt(var)
    return m, m - half, m + half


def test_teacher_comparison_uses_the_crossed_interval_over_teachers_and_seeds():
    ce = [0.95, 0.94, 0.96]
    teachers = {"t0": [0.93, 0.93, 0.95], "t1": [0.94, 0.92, 0.96], "t2": [0.95, 0.94, 0.93]}
    table = l2t.teacher_comparison(_results({"cross-entropy": ce, **teachers}),
                                   {"teacher": list(teachers), "single": ["t0"]})
    d = [[100 * (c - a) for a, c in zip(column, ce)] for column in teachers.values()]
    row = table.loc["teacher"]
    assert (row["difference"], row["low"], row["high"]) == pytest.approx(_crossed_by_loops(d))
    assert row["per teacher"] == [round(sum(x) / 3, 3) for x in d] and row["teachers"] == 3
    mean_accuracy = sum(sum(c) for c in teachers.values()) / 9
    assert row["mean error %"] == pytest.approx(100 * (1 - mean_accuracy))
    single = d[0]
    low, high = scipy.stats.t.interval(0.95, 2, loc=sum(single) / 3, scale=scipy.stats.sem(single))
    assert (table.loc["single", "low"], table.loc["single", "high"]) == (
        pytest.approx(low), pytest.approx(high))
    with pytest.raises(ValueError, match="without runs"):
        l2t.teacher_comparison(_results({"cross-entropy": ce, "t0": ce}), {"g": ["t9"]})


def test_crossed_interval_keeps_seed_variance_when_teachers_agree_and_covers_the_mean():
    # identical teachers: the interval is not zero-width; it carries the seeds' spread
    seeds = torch.tensor([0.5, -0.3, 0.8, 0.1, -0.2])
    mean, low, high = l2t.crossed_interval(seeds.repeat(3, 1))
    assert mean == pytest.approx(float(seeds.mean())) and high - low > 0.5
    # coverage of the true mean under teacher, seed and residual effects (3 x 5, as the notebook)
    generator = torch.Generator().manual_seed(0)
    covered, trials = 0, 2000
    for _ in range(trials):
        d = (0.7 * torch.randn(3, 1, generator=generator)
             + 0.5 * torch.randn(1, 5, generator=generator)
             + 0.3 * torch.randn(3, 5, generator=generator))
        _, low, high = l2t.crossed_interval(d)
        covered += low <= 0.0 <= high
    assert covered / trials > 0.93  # nominal 95 %; conservative degrees of freedom
    with pytest.raises(ValueError, match="teachers >= 2"):
        l2t.crossed_interval(torch.zeros(1, 5))


def test_diagnostics_table_averages_first_and_last_teacher_steps():
    def log(metric, row_sum):
        return Algorithm1Log(metric=metric, dev_error=[0.1, 0.2], saturated=[0.0, 0.5],
                             phi={"row_sum": row_sum, "off_diagonal_mass": [0.0, 0.1]})
    table = l2t.diagnostics_table({"k": [log([0.3, 0.2], [1.0, 0.8]), log([0.5, 0.1], [1.0, 0.6])]})
    assert table.loc["k", "dev metric, first"] == pytest.approx(0.4)
    assert table.loc["k", "dev metric, last"] == pytest.approx(0.15)
    assert table.loc["k", "row sum, last"] == pytest.approx(0.7)
    assert table.loc["k", "saturated %, last"] == pytest.approx(50.0)
