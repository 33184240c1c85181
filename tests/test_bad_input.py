"""Bad input across the public API fails fast and clearly (issue 22, part B).

Every case asserts the error's type and that its message names the argument, environment
variable, file or rank at fault; a few accepted values are checked as documented acceptances.
Classes: CLI flags, `CURRICLAB_QUICK` / `CURRICLAB_DIST_TIMEOUT`, damaged MNIST-format files,
`core.stats` inputs, constructor arguments, and misconfiguration of a real two-rank gloo group
(one group runs every two-rank scenario, the stalled-rank one last).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from curriclab.core.config import QUICK_ENV, is_quick
from curriclab.core.data import (
    DATA_ENV,
    IndexedDataset,
    check_idx_files,
    load_images,
    make_loader,
    missing_mnist_files,
)
from curriclab.core.distributed import (
    DIST_TIMEOUT_ENV,
    Synchronized,
    collective_timeout,
    gather_observations,
)
from curriclab.core.stats import chi_square_test, roc_auc, roc_curve
from curriclab.experiments.harness.spec import DataSpec, ModelSpec, TrainSpec
from curriclab.methods.curriculum import CurriculumSampler
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.sampling import SGDSSampler
from curriclab.ui.cli import main
from tests.helpers.bad_ranks import STALL_TIMEOUT, group_worker

# ---------------------------------------------------------------- CLI flags

CLI_CASES = [
    (["spl-demo", "--out", "x.gif", "--epochs", "0"], "--epochs"),
    (["spl-demo", "--out", "x.gif", "--epochs", "-2"], "--epochs"),
    (["spl-demo", "--out", "x.gif", "--epochs", "ten"], "--epochs"),
    (["spl-demo", "--out", "x.gif", "--seed", "-1"], "--seed"),
    (["spl-demo", "--out", "x.gif", "--seed", "1.5"], "--seed"),
    (["spl-demo"], "--out"),
    (["ddp-demo", "--method", "sgds", "--epochs", "0"], "--epochs"),
    (["ddp-demo", "--method", "sgds", "--samples", "0"], "--samples"),
    (["ddp-demo", "--method", "sgds", "--samples", "-5"], "--samples"),
    (["ddp-demo", "--method", "sgds", "--batch-size", "0"], "--batch-size"),
    (["ddp-demo", "--method", "sgds", "--batch-size", "abc"], "--batch-size"),
    (["ddp-demo", "--method", "sgds", "--seed", "-3"], "--seed"),
    (["ddp-demo", "--method", "sgds", "--timeout", "0"], "--timeout"),
    (["ddp-demo", "--method", "sgds", "--timeout", "-1"], "--timeout"),
    (["ddp-demo", "--method", "sgds", "--timeout", "nan"], "--timeout"),
    (["ddp-demo", "--method", "sgds", "--timeout", "inf"], "--timeout"),
    (["ddp-demo", "--method", "sgds", "--timeout", "soon"], "--timeout"),
    (["ddp-demo", "--method", "nope"], "--method"),
    (["execute-series", "--timeout", "0"], "--timeout"),
    (["execute-series", "--timeout", "1.5"], "--timeout"),
]


@pytest.mark.parametrize("argv, flag", CLI_CASES, ids=[" ".join(a) for a, _ in CLI_CASES])
def test_cli_refuses_a_bad_flag_value_by_name(argv, flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2  # argparse's usage error, before anything runs
    error = capsys.readouterr().err.split("error:", 1)[1]  # argparse's line after the usage
    assert flag in error


# ---------------------------------------------------------------- environment variables

@pytest.mark.parametrize("value", ["2", "-1", "11", "maybe", "1.0", "tru", "quick", "yes please"])
def test_a_bad_quick_value_is_refused_naming_the_variable_and_allowed_values(monkeypatch, value):
    monkeypatch.setenv(QUICK_ENV, value)
    with pytest.raises(ValueError) as error:
        is_quick()
    message = str(error.value)
    assert QUICK_ENV in message and repr(value) in message and "'0'" in message and "'1'" in message


@pytest.mark.parametrize("value, quick", [("1", True), (" TRUE ", True), ("on", True),
                                          ("0", False), ("", False), ("off", False)])
def test_accepted_quick_values_are_documented_acceptances(monkeypatch, value, quick):
    monkeypatch.setenv(QUICK_ENV, value)
    assert is_quick() is quick


def test_an_unset_quick_variable_means_full_scale(monkeypatch):
    monkeypatch.delenv(QUICK_ENV, raising=False)
    assert is_quick() is False


@pytest.mark.parametrize("value", ["0", "-5", "abc", "nan", "inf", "1e999"])
def test_a_bad_collective_timeout_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv(DIST_TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=DIST_TIMEOUT_ENV):
        collective_timeout()


def test_the_collective_timeout_comes_from_the_environment_with_a_default(monkeypatch):
    monkeypatch.setenv(DIST_TIMEOUT_ENV, "2.5")
    assert collective_timeout() == timedelta(seconds=2.5)
    monkeypatch.delenv(DIST_TIMEOUT_ENV)
    assert timedelta(0) < collective_timeout() <= timedelta(seconds=60)


# ---------------------------------------------------------------- damaged data files

SHARED = Path(os.environ.get(DATA_ENV, "/nonexistent"))
needs_files = pytest.mark.skipif(
    missing_mnist_files(SHARED, False) or missing_mnist_files(SHARED, False, "fashion_mnist"),
    reason=f"the official test-split files are not available (set {DATA_ENV})")
IMAGES, LABELS = "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"


def _header(magic: int, *dims: int) -> bytes:
    return b"".join(value.to_bytes(4, "big") for value in (magic, *dims))


def _truncate(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _label_200(data: bytes) -> bytes:
    return data[:8 + 17] + bytes([200]) + data[8 + 18:]


def _label_10(data: bytes) -> bytes:
    return data[:-1] + bytes([10])


def _with_header(header: bytes, keep: int):
    return lambda data: header + data[keep:]


# (data set, file, how it is damaged (None: delete it), the error type, a phrase of the message)
DAMAGE = {
    "images truncated": ("mnist", IMAGES, _truncate, ValueError, "truncated"),
    "images header cut": ("mnist", IMAGES, lambda d: d[:10], ValueError, "no complete header"),
    "images empty": ("mnist", IMAGES, lambda d: b"", ValueError, "only 0 bytes"),
    "images missing": ("mnist", IMAGES, None, FileNotFoundError, "missing"),
    "images with the labels' magic": ("mnist", IMAGES, _with_header(_header(0x801), 4),
                                      ValueError, "magic number 0x00000801"),
    "images with a random magic": ("mnist", IMAGES, _with_header(_header(0x12345678), 4),
                                   ValueError, "magic number 0x12345678"),
    "images 27 x 28": ("mnist", IMAGES, _with_header(_header(0x803, 10000, 27, 28), 16),
                       ValueError, "dimensions [10000, 27, 28]"),
    "images 9999 items": ("mnist", IMAGES,
                          lambda d: _header(0x803, 9999, 28, 28) + d[16: -784],
                          ValueError, "dimensions [9999, 28, 28]"),
    "images with extra bytes": ("mnist", IMAGES, lambda d: d + b"\0" * 7, ValueError,
                                "extra bytes"),
    "labels truncated": ("mnist", LABELS, _truncate, ValueError, "truncated"),
    "labels empty": ("mnist", LABELS, lambda d: b"", ValueError, "only 0 bytes"),
    "labels missing": ("mnist", LABELS, None, FileNotFoundError, "missing"),
    "labels with the images' magic": ("mnist", LABELS, _with_header(_header(0x803), 4),
                                      ValueError, "magic number 0x00000803"),
    "labels of the training split": ("mnist", LABELS,
                                     lambda d: _header(0x801, 60000) + d[8:] * 6,
                                     ValueError, "dimensions [60000]"),
    "a label 200": ("mnist", LABELS, _label_200, ValueError, "label 200 at item 17"),
    "a label 10": ("mnist", LABELS, _label_10, ValueError, "label 10 at item 9999"),
    "labels with extra bytes": ("mnist", LABELS, lambda d: d + b"\1", ValueError, "extra bytes"),
    "fashion images truncated": ("fashion_mnist", IMAGES, _truncate, ValueError, "truncated"),
    "fashion labels 200": ("fashion_mnist", LABELS, _label_200, ValueError, "label 200"),
    "fashion labels wrong magic": ("fashion_mnist", LABELS, _with_header(_header(0x0), 4),
                                   ValueError, "magic number 0x00000000"),
}


def _damaged_root(tmp_path: Path, name: str, file: str, damage) -> Path:
    """A data root with the official test split of `name` and `file` damaged (or deleted)."""
    folder = {"mnist": "MNIST", "fashion_mnist": "FashionMNIST"}[name]
    raw = tmp_path / folder / "raw"
    raw.mkdir(parents=True)
    for original in (IMAGES, LABELS):
        if original != file:
            (raw / original).symlink_to(SHARED / folder / "raw" / original)
        elif damage is not None:
            (raw / original).write_bytes(damage((SHARED / folder / "raw" / original).read_bytes()))
    return tmp_path


@needs_files
@pytest.mark.parametrize("case", DAMAGE)
def test_a_damaged_file_is_refused_before_torchvision_reads_it(tmp_path, case):
    name, file, damage, error_type, phrase = DAMAGE[case]
    root = _damaged_root(tmp_path, name, file, damage)
    with pytest.raises(error_type) as error:
        load_images(name, train=False, root=root, download=False)
    message = str(error.value)
    assert file in message and phrase in message
    if damage is not None:  # the damaged file is named by its path, with what was expected
        assert str(root) in message and "expected " in message and "Replace it" in message


@needs_files
def test_the_official_files_pass_the_check():
    for name in ("mnist", "fashion_mnist"):
        for train in (True, False):
            assert check_idx_files(SHARED, train, name) is None


# ---------------------------------------------------------------- stats

NAN, INF = float("nan"), float("inf")
STATS_CASES = {
    "observed NaN": (chi_square_test, ([3.0, NAN, 2.0], [0.3, 0.3, 0.4]), "observed"),
    "observed inf": (chi_square_test, ([3.0, INF, 2.0], [0.3, 0.3, 0.4]), "observed"),
    "observed negative": (chi_square_test, ([3, -1, 2], [0.3, 0.3, 0.4]), "observed"),
    "observed 2-D": (chi_square_test, ([[3, 1], [2, 2]], [0.5, 0.5]), "observed"),
    "probabilities NaN": (chi_square_test, ([3, 1, 2], [0.3, NAN, 0.4]), "probabilities"),
    "probabilities negative": (chi_square_test, ([3, 1, 2], [0.3, -0.3, 0.4]), "probabilities"),
    "lengths differ": (chi_square_test, ([3, 1, 2], [0.5, 0.5]), "observed"),
    "roc_auc NaN score": (roc_auc, ([0.1, NAN, 0.9, 0.4], [0, 1, 1, 0]), "scores"),
    "roc_curve NaN score": (roc_curve, ([NAN, NAN], [0, 1]), "scores"),
    "roc_auc labels 2": (roc_auc, ([0.1, 0.2, 0.9], [0, 2, 1]), "positives"),
    "roc_auc one class": (roc_auc, ([0.1, 0.2], [1, 1]), "positives"),
}


@pytest.mark.parametrize("case", STATS_CASES)
def test_stats_refuse_nan_and_negative_input_by_name(case):
    function, arguments, name = STATS_CASES[case]
    with pytest.raises(ValueError, match=name):
        function(*(torch.tensor(a) for a in arguments))


def test_infinite_scores_are_a_documented_acceptance():
    assert roc_auc(torch.tensor([-INF, 0.5, INF]), torch.tensor([0, 0, 1])) == 1.0


# ---------------------------------------------------------------- constructors

CONSTRUCTOR_CASES = {
    "SGDS num_samples -1": (lambda: SGDSSampler(-1), ValueError, "num_samples"),
    "SGDS num_samples str": (lambda: SGDSSampler("10"), TypeError, "num_samples"),
    "SGDS prune_fraction 1": (lambda: SGDSSampler(10, prune_fraction=1.0), ValueError,
                              "prune_fraction"),
    "SGDS prune_fraction NaN": (lambda: SGDSSampler(10, prune_fraction=NAN), ValueError,
                                "prune_fraction"),
    "SGDS reintroduce_fraction -0.1": (lambda: SGDSSampler(10, reintroduce_fraction=-0.1),
                                       ValueError, "reintroduce_fraction"),
    "SGDS power 0": (lambda: SGDSSampler(10, power=0.0), ValueError, "power"),
    "SGDS uniform_mix 1": (lambda: SGDSSampler(10, uniform_mix=1.0), ValueError, "uniform_mix"),
    "SGDS num_replicas 0": (lambda: SGDSSampler(10, num_replicas=0, rank=0), ValueError,
                            "num_replicas"),
    "SGDS rank = num_replicas": (lambda: SGDSSampler(10, num_replicas=2, rank=2), ValueError,
                                 "rank"),
    "SGDS rank -1": (lambda: SGDSSampler(10, num_replicas=2, rank=-1), ValueError, "rank"),
    "SGDS num_replicas float": (lambda: SGDSSampler(10, num_replicas=2.0, rank=0), TypeError,
                                "num_replicas"),
    "InfoBatch total_epochs 0": (lambda: InfoBatchSampler(10, total_epochs=0), ValueError,
                                 "total_epochs"),
    "InfoBatch prune_ratio 1.5": (lambda: InfoBatchSampler(10, 4, prune_ratio=1.5), ValueError,
                                  "prune_ratio"),
    "InfoBatch delta 2": (lambda: InfoBatchSampler(10, 4, delta=2.0), ValueError, "delta"),
    "InfoBatch rank 3 of 3": (lambda: InfoBatchSampler(10, 4, num_replicas=3, rank=3),
                              ValueError, "rank"),
    "Curriculum batch not divisible": (
        lambda: CurriculumSampler(torch.rand(10), lambda s: 1.0, 5, 5, num_replicas=2, rank=0),
        ValueError, "num_replicas"),
    "Curriculum rank 2 of 2": (
        lambda: CurriculumSampler(torch.rand(10), lambda s: 1.0, 5, 4, num_replicas=2, rank=2),
        ValueError, "rank"),
    "Synchronized num_samples -1": (lambda: Synchronized([], num_samples=-1), ValueError,
                                    "num_samples"),
    "Synchronized non-method": (lambda: Synchronized([object()]), TypeError, "methods"),
    "gather capacity -1": (lambda: gather_observations(torch.arange(2), torch.ones(2),
                                                       capacity=-1), ValueError, "capacity"),
    "make_loader batch_size 0": (
        lambda: make_loader(IndexedDataset(torch.ones(3, 1), torch.zeros(3)), 0), ValueError,
        "batch_size"),
    "DataSpec label_noise 1.5": (lambda: DataSpec(label_noise=1.5), ValueError, "label_noise"),
    "DataSpec validation_size -1": (lambda: DataSpec(validation_size=-1), ValueError,
                                    "validation_size"),
    "ModelSpec name": (lambda: ModelSpec(name="resnet"), ValueError, "name"),
    "TrainSpec lr NaN": (lambda: TrainSpec(lr=NAN), ValueError, "lr"),
    "TrainSpec batch_size 0": (lambda: TrainSpec(batch_size=0), ValueError, "batch_size"),
    "TrainSpec optimizer": (lambda: TrainSpec(optimizer="lbfgs"), ValueError, "optimizer"),
}


@pytest.mark.parametrize("case", CONSTRUCTOR_CASES)
def test_constructors_refuse_bad_arguments_by_name(case):
    build, error_type, name = CONSTRUCTOR_CASES[case]
    with pytest.raises(error_type, match=name):
        build()


# ---------------------------------------------------------------- a real two-rank group

@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> tuple[list[dict], list[dict]]:
    """Every scenario's outcome on both ranks, and each rank's outcomes while the other one
    was stopped (`group_worker`)."""
    directory = tmp_path_factory.mktemp("two_ranks")
    with socket.socket() as probe:  # a free port for the group's TCP store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=group_worker, args=(rank, port, str(directory)))
                 for rank in range(2)]
    for process in processes:
        process.start()
    results = [directory / f"stalled{rank}.pt" for rank in range(2)]
    deadline = time.monotonic() + 240  # a hung group fails the test instead of blocking the run
    while not all(path.exists() for path in results) and time.monotonic() < deadline:
        if not any(process.is_alive() for process in processes):
            break
        time.sleep(0.2)
    time.sleep(0.5)  # let the last torch.save finish
    for process in processes:  # both end stopped (or, on a failure, hung)
        process.kill()
        process.join()
    scenarios = [torch.load(directory / f"scenarios{rank}.pt") for rank in range(2)]
    return scenarios, [torch.load(path) for path in results]


TWO_RANK_CASES = {
    "num_replicas=4 (SGD-S)": "num_replicas must equal the process group's world size 2, got 4",
    "num_replicas=1 (InfoBatch)": "num_replicas must equal the process group's world size 2, got 1",
    "rank=0 on both ranks (SGD-S)": "SGDSSampler: rank must be different on every process",
    "rank=0 on both ranks (curriculum)": "CurriculumSampler: rank must be different on every",
    "unequal capacity": "capacity must be equal on every rank, got rank 0: 0, rank 1: 5",
    "unequal num_samples": "num_samples must be equal on every rank, got rank 0: 10, rank 1: 11",
    "unequal method settings": "methods' settings must be equal on every rank",
    "unequal number of methods": "number of methods must be equal on every rank",
}


@pytest.mark.parametrize("case", TWO_RANK_CASES)
def test_two_rank_misconfiguration_raises_the_same_clear_error_on_both_ranks(two_ranks, case):
    scenarios, _ = two_ranks
    for rank in range(2):
        assert "crash" not in scenarios[rank], scenarios[rank].get("crash")
        kind, message, _ = scenarios[rank][case]
        assert kind == "ValueError" and TWO_RANK_CASES[case] in message, (rank, kind, message)
    if case.startswith("unequal method"):  # each rank shows its own settings to compare
        assert "momentum=0.0" in scenarios[0][case][1] and "momentum=0.5" in scenarios[1][case][1]


def test_a_well_configured_group_passes_the_checks(two_ranks):
    scenarios, _ = two_ranks
    assert [s["a well-configured group"][:2] for s in scenarios] == [("", "")] * 2


STALLS = {  # (the rank that waits, what it tried): the rank its error must name
    (0, "all-reduce"): "rank 1 did not answer",
    (0, "exchange"): "rank 1 did not answer",
    (1, "exchange"): "rank 0 did not answer",
}


@pytest.mark.parametrize("waiting, action", STALLS)
def test_a_stopped_rank_fails_its_peer_within_the_timeout_naming_it(two_ranks, waiting, action):
    _, stalled = two_ranks
    kind, message, seconds = stalled[waiting][action]
    assert kind == "PeerTimeoutError" and STALLS[waiting, action] in message, (kind, message)
    # the wait, then at most as long for the monitored_barrier that finds the silent rank
    assert seconds < 2 * STALL_TIMEOUT + 3
    if action == "exchange":
        assert f"no answer within {STALL_TIMEOUT:g} s ($CURRICLAB_DIST_TIMEOUT)" in message
