"""Bad states and bad per-sample inputs for every stateful class (issue 22, items 1, 2 and 7).

Two families of cases:
- `load_state_dict` with a key missing or extra, a tensor of the wrong shape or dtype, a value
  out of range or not finite: each must raise the stated error naming the key, and leave the
  object's state bitwise as it was;
- non-finite or mis-shaped inputs to the methods that store or step per-sample state: each is
  refused (error naming the argument, state unchanged) or skipped and counted, as the class
  documents.
Every state also survives `torch.save` + `torch.load(..., weights_only=True)` and loads back.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset
from curriclab.core.distributed import Synchronized
from curriclab.core.protocol import AfterEpoch, SampleMethod
from curriclab.core.tracking import LossTracker
from curriclab.methods.ala.agent import AlignmentAgent, TeacherRule
from curriclab.methods.ala.controller import LossController
from curriclab.methods.ala.statistics import LossMatrix, pair_features
from curriclab.methods.batch_selection import RhoLossSelection, UniformSelection
from curriclab.methods.curriculum import CurriculumSampler
from curriclab.methods.data_parameters import DataParameters
from curriclab.methods.importance.recorder import TrainingStepRecorder
from curriclab.methods.infobatch import InfoBatchSampler
from curriclab.methods.persistence import LossRecorder
from curriclab.methods.pruning.forgetting import ForgettingEvents
from curriclab.methods.sampling import SGDSSampler
from curriclab.methods.sparse_sgd import SparseSGD
from curriclab.methods.spl import SPLLoss, linear_pace
from curriclab.methods.teacher import LossTeacher, StudentObserver
from tests.helpers.state import differences, weights_only_round_trip

N, C = 6, 3
NAN, INF = math.nan, math.inf


# ---------------------------------------------------------------- the stateful objects


def _tracker() -> LossTracker:
    tracker = LossTracker(N, momentum=0.5)
    tracker.update(torch.tensor([0, 2, 3]), torch.tensor([0.5, 1.0, 2.0]))
    return tracker


def _sgds() -> SGDSSampler:
    sampler = SGDSSampler(N, transient_epochs=1, prune_fraction=0.2, unbiased=True,
                          generator=torch.Generator().manual_seed(0))
    sampler.set_epoch(0)
    sampler.objective(torch.arange(N), torch.linspace(0.1, 1.0, N))
    sampler.after_epoch(0)
    return sampler


def _infobatch() -> InfoBatchSampler:
    sampler = InfoBatchSampler(N, total_epochs=4, generator=torch.Generator().manual_seed(0))
    sampler.objective(torch.arange(N), torch.linspace(0.1, 1.0, N))
    sampler.after_epoch(0)
    return sampler


def _spl() -> SPLLoss:
    spl = SPLLoss(N, threshold=0.5, pace=linear_pace(0.5, 1.0, 4))
    spl.objective(torch.tensor([0, 1, 4]), torch.tensor([0.2, 0.9, 0.4]))
    return spl


def _recorder() -> LossRecorder:
    recorder = LossRecorder(N)
    recorder.objective(torch.arange(N), torch.linspace(0.1, 1.0, N))
    recorder.after_epoch(0)
    return recorder


def _data_parameters() -> DataParameters:
    dp = DataParameters(C, N, learn_class=True, learn_instance=True, init_class=0.5,
                        init_instance=0.5)
    optimizer = dp.make_optimizer()
    losses = dp.compute_losses(torch.randn(3, C, generator=torch.Generator().manual_seed(1)),
                               torch.tensor([0, 1, 2]), torch.tensor([0, 3, 5]))
    losses.sum().backward()
    optimizer.step()
    return dp


def _sparse_sgd() -> SparseSGD:
    param = nn.Parameter(torch.zeros(N))
    optimizer = SparseSGD([param], lr=0.5, momentum=0.9, clamp=(-1.0, 1.0))
    param.grad = torch.tensor([1.0, 0.0, -2.0, 0.0, 0.5, 0.0])
    optimizer.step()
    return optimizer


def _matrix() -> LossMatrix:
    matrix = LossMatrix(C, beta=0.05)
    matrix.apply(torch.tensor([2, 1, 2, 0, 1, 2]))
    return matrix


def _controller() -> LossController:
    controller = LossController(hidden=4, memory_size=4, replay_batch=2)
    features = pair_features(torch.rand(C, C, generator=torch.Generator().manual_seed(2)),
                             torch.eye(C), 0.5)
    actions = controller.act(features)
    controller.observe(features, actions, 1.0)
    return controller


def _validation() -> IndexedDataset:
    generator = torch.Generator().manual_seed(3)
    return IndexedDataset(torch.randn(8, 4, generator=generator),
                          torch.randint(0, C, (8,), generator=generator))


def _agent() -> AlignmentAgent:
    torch.manual_seed(0)
    agent = AlignmentAgent(nn.Linear(4, C), LossMatrix(C), LossController(hidden=4),
                           _validation(), total_steps=10, interval=2)
    for _ in range(5):  # two decisions and one step of an open window
        agent.after_step()
    return agent


def _observer() -> StudentObserver:
    observer = StudentObserver(total_steps=10)
    observer.record_train(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    observer.record_dev(0.25)
    return observer


def _teacher_rule() -> TeacherRule:
    torch.manual_seed(0)
    return TeacherRule(nn.Linear(4, C), LossTeacher(C, hidden=2), _validation(), total_steps=10,
                       interval=1, dev_batch=4)


def _synchronized() -> Synchronized:
    return Synchronized([_tracker(), _spl()], num_samples=N)


def _curriculum() -> CurriculumSampler:
    return CurriculumSampler(torch.linspace(0.0, 1.0, N, dtype=torch.float64), lambda step: 1.0,
                             total_steps=4, batch_size=2, seed=0)


def _forgetting() -> ForgettingEvents:
    events = ForgettingEvents(N)
    events.record(torch.tensor([0, 1, 2, 0]), torch.tensor([True, False, True, False]))
    return events


def _rho() -> RhoLossSelection:
    return RhoLossSelection(torch.linspace(0.0, 1.0, N), k=2, batch_size=4)


def _uniform() -> UniformSelection:
    return UniformSelection(2, 4, seed=0)


def _stateless() -> SampleMethod:
    return AfterEpoch(lambda epoch: None)


FACTORIES: dict[str, Callable[[], object]] = {
    "LossTracker": _tracker, "SGDSSampler": _sgds, "InfoBatchSampler": _infobatch,
    "SPLLoss": _spl, "LossRecorder": _recorder, "DataParameters": _data_parameters,
    "SparseSGD": _sparse_sgd, "LossMatrix": _matrix, "LossController": _controller,
    "AlignmentAgent": _agent, "StudentObserver": _observer, "TeacherRule": _teacher_rule,
    "Synchronized": _synchronized, "CurriculumSampler": _curriculum,
    "ForgettingEvents": _forgetting, "RhoLossSelection": _rho, "UniformSelection": _uniform,
}


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_every_state_survives_a_weights_only_load_and_loads_back(name):
    source, target = FACTORIES[name](), FACTORIES[name]()
    state = source.state_dict()
    target.load_state_dict(weights_only_round_trip(state))
    assert differences(weights_only_round_trip(target.state_dict()),
                       weights_only_round_trip(state)) == []


# ---------------------------------------------------------------- missing and extra keys


def _top_keys() -> list[tuple[str, str]]:
    return [(name, key) for name in sorted(FACTORIES) for key in FACTORIES[name]().state_dict()]


def _refused_unchanged(obj: object, bad: dict, error: type, match: str) -> None:
    before = weights_only_round_trip(obj.state_dict())
    with pytest.raises(error, match=match):
        obj.load_state_dict(bad)
    assert differences(weights_only_round_trip(obj.state_dict()), before) == [], (
        "a refused state changed the object")


@pytest.mark.parametrize(("name", "key"), _top_keys(), ids=lambda v: str(v))
def test_a_missing_key_is_named_and_changes_nothing(name, key):
    obj = FACTORIES[name]()
    state = copy.deepcopy(FACTORIES[name]().state_dict())
    del state[key]
    _refused_unchanged(obj, state, (ValueError, RuntimeError), f"'?{key}'?")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_an_extra_key_is_named_and_changes_nothing(name):
    obj = FACTORIES[name]()
    state = {**copy.deepcopy(FACTORIES[name]().state_dict()), "surplus": 1}
    _refused_unchanged(obj, state, (ValueError, RuntimeError), "surplus")


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_state_that_is_not_a_dict_is_refused(name):
    with pytest.raises((TypeError, ValueError), match="dict"):
        FACTORIES[name]().load_state_dict([1, 2])


def test_the_stateless_default_refuses_a_non_empty_state():
    method = _stateless()
    assert method.state_dict() == {}
    method.load_state_dict({})
    with pytest.raises(ValueError, match="'threshold'"):
        method.load_state_dict({"threshold": 1.0})


# ---------------------------------------------------------------- wrong values


def _set(path: str, value: object) -> Callable[[dict], None]:
    """A change that puts `value` at the dotted `path` of a state."""
    def change(state: dict) -> None:
        *outer, last = path.split(".")
        for step in outer:
            state = state[_key(state, step)]
        state[_key(state, last)] = value
    return change


def _key(container: dict | list, step: str) -> object:
    """`step` as the key it stands for: a position in a list, an int key (an optimizer's
    per-parameter state) or a string."""
    if isinstance(container, list) or (step.isdigit() and int(step) in container):
        return int(step)
    return step


def _scaled(path: str, function: Callable[[Tensor], Tensor]) -> Callable[[dict], None]:
    """A change that replaces the tensor at `path` by `function(tensor)`."""
    def change(state: dict) -> None:
        *outer, last = path.split(".")
        for step in outer:
            state = state[_key(state, step)]
        key = _key(state, last)
        state[key] = function(state[key])
    return change


def _with_nan(tensor: Tensor) -> Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[0] = NAN
    return tensor


def _with_inf(tensor: Tensor) -> Tensor:
    tensor = tensor.clone()
    tensor.view(-1)[0] = INF
    return tensor


def _policy_weight(function: Callable[[Tensor], Tensor]) -> Callable[[dict], None]:
    """A change of the controller's first policy weight (its key "0.weight" has a dot)."""
    def change(state: dict) -> None:
        state["policy"]["0.weight"] = function(state["policy"]["0.weight"])
    return change


def _longer(tensor: Tensor) -> Tensor:
    return torch.cat([tensor, tensor[:1]])


BAD_VALUES = [
    # LossTracker
    ("LossTracker", _set("momentum", 5.0), "momentum"),
    ("LossTracker", _set("momentum", -0.1), "momentum"),
    ("LossTracker", _set("momentum", NAN), "momentum"),
    ("LossTracker", _set("momentum", "0.5"), "momentum"),
    ("LossTracker", _set("epoch", -1), "epoch"),
    ("LossTracker", _set("epoch", 1.5), "epoch"),
    ("LossTracker", _scaled("latest", _longer), "latest"),
    ("LossTracker", _scaled("latest", lambda t: t.double()), "latest"),
    ("LossTracker", _scaled("latest", _with_inf), "latest"),
    ("LossTracker", _scaled("latest", _with_nan), "latest"),  # entry 0 was recorded
    ("LossTracker", _scaled("average", _longer), "average"),
    ("LossTracker", _scaled("average", _with_inf), "average"),
    ("LossTracker", _scaled("last_epoch", lambda t: t.float()), "last_epoch"),
    ("LossTracker", _scaled("last_epoch", lambda t: t - 5), "last_epoch"),
    ("LossTracker", _scaled("last_epoch", lambda t: t[:-1]), "last_epoch"),
    # SGD-S and InfoBatch (LossDrivenSampler)
    ("SGDSSampler", _set("num_samples", N + 1), "num_samples"),
    ("SGDSSampler", _set("epoch", -1), "epoch"),
    ("SGDSSampler", _set("generator", torch.zeros(3, dtype=torch.uint8)), "generator"),
    ("SGDSSampler", _scaled("generator", lambda t: t.long()), "generator"),
    ("SGDSSampler", _scaled("plan.indices", lambda t: t + 99), "plan.indices"),
    ("SGDSSampler", _scaled("plan.indices", lambda t: t - 99), "plan.indices"),
    ("SGDSSampler", _scaled("plan.indices", lambda t: t.float()), "plan.indices"),
    ("SGDSSampler", _scaled("plan.weights", _with_nan), "plan.weights"),
    ("SGDSSampler", _scaled("plan.weights", _with_inf), "plan.weights"),
    ("SGDSSampler", _scaled("plan.weights", lambda t: -t), "plan.weights"),
    ("SGDSSampler", _scaled("plan.weights", _longer), "plan.weights"),
    ("SGDSSampler", _scaled("plan.weights", lambda t: t.double()), "plan.weights"),
    ("SGDSSampler", _set("plan", {"indices": torch.arange(N)}), "plan.weights"),
    ("SGDSSampler", _scaled("active", lambda t: t.long()), "active"),
    ("SGDSSampler", _scaled("active", _longer), "active"),
    ("SGDSSampler", _set("tracker.momentum", 5.0), "tracker.momentum"),
    ("SGDSSampler", _scaled("tracker.latest", _longer), "tracker.latest"),
    ("SGDSSampler", _scaled("tracker.latest", lambda t: t.double()), "tracker.latest"),
    ("InfoBatchSampler", _scaled("plan.indices", lambda t: t + 99), "plan.indices"),
    ("InfoBatchSampler", _scaled("plan.weights", _with_inf), "plan.weights"),
    ("InfoBatchSampler", _set("num_samples", 3), "num_samples"),
    ("InfoBatchSampler", _set("tracker.epoch", -2), "tracker.epoch"),
    # SPLLoss
    ("SPLLoss", _set("regularizer", "linear"), "regularizer"),
    ("SPLLoss", _set("threshold", -1.0), "threshold"),
    ("SPLLoss", _set("threshold", 0.0), "threshold"),
    ("SPLLoss", _set("threshold", NAN), "threshold"),
    ("SPLLoss", _set("epoch", -1), "epoch"),
    ("SPLLoss", _scaled("losses", _with_inf), "losses"),
    ("SPLLoss", _scaled("losses", lambda t: t - 5), "losses"),
    ("SPLLoss", _scaled("losses", _longer), "losses"),
    ("SPLLoss", _scaled("losses", lambda t: t.double()), "losses"),
    # LossRecorder
    ("LossRecorder", _scaled("losses", lambda t: t[:, :-1]), "losses"),
    ("LossRecorder", _scaled("losses", _with_nan), "losses"),
    ("LossRecorder", _scaled("losses", lambda t: t.double()), "losses"),
    ("LossRecorder", _set("tracker.momentum", 2.0), "tracker.momentum"),
    # DataParameters
    ("DataParameters", _scaled("class_log_sigma", _with_nan), "class_log_sigma"),
    ("DataParameters", _scaled("class_log_sigma", _with_inf), "class_log_sigma"),
    ("DataParameters", _scaled("instance_log_sigma", lambda t: t + 10), "instance_log_sigma"),
    ("DataParameters", _scaled("instance_log_sigma", lambda t: t - 10), "instance_log_sigma"),
    ("DataParameters", _scaled("instance_log_sigma", _longer), "instance_log_sigma"),
    ("DataParameters", _scaled("class_log_sigma", lambda t: t.double()), "class_log_sigma"),
    # SparseSGD
    ("SparseSGD", _set("param_groups.0.lr", -1.0), "lr"),
    ("SparseSGD", _set("param_groups.0.lr", INF), "lr"),
    ("SparseSGD", _set("param_groups.0.momentum", 1.5), "momentum"),
    ("SparseSGD", _set("param_groups.0.weight_decay", 0.5), "weight_decay"),
    ("SparseSGD", _set("param_groups.0.clamp", None), "clamp"),
    ("SparseSGD", _set("param_groups.0.clamp", (-100.0, 100.0)), "clamp"),
    ("SparseSGD", _set("param_groups.0.clamp", (1.0, -1.0)), "clamp"),
    ("SparseSGD", _set("param_groups", []), "param_groups"),
    ("SparseSGD", _set("skipped_steps", -1), "skipped_steps"),
    ("SparseSGD", _scaled("state.0.momentum_buffer", _with_inf), "momentum_buffer"),
    ("SparseSGD", _scaled("state.0.momentum_buffer", _with_nan), "momentum_buffer"),
    ("SparseSGD", _scaled("state.0.momentum_buffer", _longer), "momentum_buffer"),
    ("SparseSGD", _scaled("state.0.momentum_buffer", lambda t: t.double()), "momentum_buffer"),
    ("SparseSGD", _set("state", {7: {"momentum_buffer": torch.zeros(N)}}), "state.7"),
    # ALA: LossMatrix, LossController, AlignmentAgent
    ("LossMatrix", _set("beta", 0.0), "beta"),
    ("LossMatrix", _set("beta", INF), "beta"),
    ("LossMatrix", _scaled("phi", _with_nan), "phi"),
    ("LossMatrix", _scaled("phi", lambda t: t + 5), "phi"),
    ("LossMatrix", _scaled("phi", lambda t: t[:2, :2]), "phi"),
    ("LossMatrix", _scaled("phi", lambda t: t.double()), "phi"),
    ("LossMatrix", _scaled("lower", lambda t: t - 1), "lower"),
    ("LossMatrix", _scaled("upper", lambda t: t + 1), "upper"),
    ("LossController", _scaled("baseline", _with_nan), "baseline"),
    ("LossController", _scaled("reward_variance", lambda t: -t), "reward_variance"),
    ("LossController", _policy_weight(_with_inf), "policy.0.weight"),
    ("LossController", _policy_weight(lambda t: t[:1]), "policy.0.weight"),
    ("LossController", _set("optimizer.param_groups.0.lr", -0.1), "lr"),
    ("LossController", _set("memory", [(torch.zeros(6, 5), torch.full((6,), 7),
                                        torch.zeros(()))] ), "memory.0.actions"),
    ("LossController", _set("memory", [(torch.full((6, 5), NAN), torch.zeros(6, dtype=torch.long),
                                        torch.zeros(()))]), "memory.0.features"),
    ("LossController", _set("generator", torch.zeros(4, dtype=torch.uint8)), "generator"),
    ("AlignmentAgent", _set("steps", -3), "steps"),
    ("AlignmentAgent", _set("window", [torch.tensor(NAN)]), "window.0"),
    ("AlignmentAgent", _set("window", [torch.tensor(0.5)] * 5), "window"),
    ("AlignmentAgent", _set("pending", (torch.zeros(6, 5), torch.full((6,), 9))), "pending.1"),
    ("AlignmentAgent", _set("matrix.beta", -1.0), "matrix.beta"),
    ("AlignmentAgent", _scaled("controller.baseline", _with_inf), "controller.baseline"),
    ("AlignmentAgent", _set("history", {"steps": []}), "history"),
    # StudentObserver and TeacherRule
    ("StudentObserver", _set("momentum", 1.0), "momentum"),
    ("StudentObserver", _set("step", -1), "step"),
    ("StudentObserver", _set("train_loss", INF), "train_loss"),
    ("StudentObserver", _set("dev_error", 1.5), "dev_error"),
    ("StudentObserver", _set("total_steps", 0), "total_steps"),
    ("TeacherRule", _set("generator", torch.zeros(2, dtype=torch.uint8)), "generator"),
    ("TeacherRule", _set("observer.train_error", -0.5), "observer.train_error"),
    # Synchronized: the wrapped methods' checks, named by position
    ("Synchronized", _set("methods", []), "methods"),
    ("Synchronized", _set("methods.1.threshold", -1.0), r"methods\.1.*threshold"),
    ("Synchronized", _set("methods.0.momentum", 5.0), r"methods\.0.*momentum"),
    # classes that validated before this issue, kept in the suite
    ("CurriculumSampler", _scaled("order", lambda t: t.flip(0) + 1), "order"),
    ("CurriculumSampler", _scaled("scores", _with_inf), "scores"),
    ("ForgettingEvents", _scaled("presentations", lambda t: t - 9), "presentations"),
    ("RhoLossSelection", _scaled("irreducible_losses", _with_nan), "irreducible_losses"),
    ("UniformSelection", _set("k", 9), "k"),
]


@pytest.mark.parametrize(("name", "change", "match"), BAD_VALUES,
                         ids=[f"{name}-{match}-{i}" for i, (name, _, match) in
                              enumerate(BAD_VALUES)])
def test_a_bad_value_is_named_and_changes_nothing(name, change, match):
    obj = FACTORIES[name]()
    state = copy.deepcopy(FACTORIES[name]().state_dict())
    change(state)
    _refused_unchanged(obj, state, ValueError, match)


def test_a_refused_wrapped_method_rolls_back_the_ones_loaded_before_it():
    """Synchronized loads in order: a refusal by its second method undoes the first's load."""
    wrapper = Synchronized([LossTracker(N), SPLLoss(N)], num_samples=N)
    good = _synchronized().state_dict()
    good["methods"][1]["threshold"] = -1.0
    _refused_unchanged(wrapper, good, ValueError, "threshold")


def test_a_plain_sgd_state_cannot_remove_sparse_sgd_s_clamp():
    optimizer = _sparse_sgd()
    plain = torch.optim.SGD([nn.Parameter(torch.zeros(N))], lr=0.1, momentum=0.9)
    _refused_unchanged(optimizer, {**plain.state_dict(), "skipped_steps": 0}, ValueError,
                       "clamp")


# ---------------------------------------------------------------- non-finite and mis-shaped inputs


def _state_of(obj: object) -> dict:
    return weights_only_round_trip(obj.state_dict())


INPUTS = [
    # (factory, call, error, match)
    ("LossTracker", lambda o: o.update(torch.tensor([0, 1]), torch.tensor([1.0, NAN])),
     ValueError, "losses"),
    ("LossTracker", lambda o: o.update(torch.tensor([0, 1]), torch.tensor([INF, 1.0])),
     ValueError, "losses"),
    ("LossTracker", lambda o: o.update(torch.tensor([0, N]), torch.tensor([1.0, 1.0])),
     ValueError, "indices"),
    ("SGDSSampler", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([NAN, 1.0])),
     ValueError, "losses"),
    ("SGDSSampler", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([1.0, INF])),
     ValueError, "losses"),
    ("SGDSSampler", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([[1.0], [2.0]])),
     ValueError, "losses"),
    ("SGDSSampler", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([-1.0, 2.0])),
     ValueError, "losses"),
    ("InfoBatchSampler", lambda o: o.objective(torch.tensor([0, 1]),
                                               torch.tensor([[1.0], [2.0]])), ValueError, "losses"),
    ("InfoBatchSampler", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([NAN, 1.0])),
     ValueError, "losses"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([INF, 0.1])),
     ValueError, "losses"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([NAN, 0.1])),
     ValueError, "losses"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([-1, 1]), torch.tensor([0.1, 0.1])),
     ValueError, "index"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([0, N]), torch.tensor([0.1, 0.1])),
     ValueError, "index"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([[0.1], [0.2]])),
     ValueError, "losses"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([0.0, 1.0]), torch.tensor([0.1, 0.2])),
     TypeError, "index"),
    ("SPLLoss", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([-0.1, 0.2])),
     ValueError, "losses"),
    ("LossRecorder", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([NAN, 0.2])),
     ValueError, "losses"),
    ("DataParameters", lambda o: o.compute_losses(torch.tensor([[NAN, 0.0, 0.0]]),
                                                  torch.tensor([0]), torch.tensor([0])),
     ValueError, "logits"),
    ("DataParameters", lambda o: o.compute_losses(torch.tensor([[INF, 0.0, 0.0]]),
                                                  torch.tensor([0]), torch.tensor([0])),
     ValueError, "logits"),
    ("DataParameters", lambda o: o(torch.tensor([[0.0, -INF, 0.0]]), torch.tensor([0]),
                                   torch.tensor([0])), ValueError, "logits"),
    ("DataParameters", lambda o: o.compute_losses(torch.zeros(2, C), torch.tensor([0, 1]),
                                                  torch.tensor([0, N])), (ValueError, IndexError),
     "index"),
    ("LossController", lambda o: o.observe(torch.full((6, 5), NAN),
                                           torch.zeros(6, dtype=torch.long), 1.0),
     ValueError, "features"),
    ("LossController", lambda o: o.observe(torch.zeros(6, 5), torch.zeros(6, dtype=torch.long),
                                           INF), ValueError, "reward"),
    ("LossController", lambda o: o.act(torch.full((6, 5), INF)), ValueError, "features"),
    ("AlignmentAgent", lambda o: o.decide(torch.full((8, C), NAN)), ValueError, "log_probs"),
    ("StudentObserver", lambda o: o.record_train(torch.tensor([[NAN, 0.0]]), torch.tensor([0])),
     ValueError, "logits"),
    ("TeacherRule", lambda o: o.compute_losses(torch.tensor([[NAN, 0.0, 0.0]]),
                                               torch.tensor([0]), torch.tensor([0])),
     ValueError, "logits"),
    ("ForgettingEvents", lambda o: o.record(torch.tensor([N]), torch.tensor([True])),
     ValueError, "index"),
    ("Synchronized", lambda o: o.objective(torch.tensor([0, 1]), torch.tensor([NAN, 1.0])),
     ValueError, "finite"),
]


@pytest.mark.parametrize(("name", "call", "error", "match"), INPUTS,
                         ids=[f"{name}-{match}-{i}" for i, (name, _, _, match) in
                              enumerate(INPUTS)])
def test_a_bad_input_is_refused_and_changes_nothing(name, call, error, match):
    obj = FACTORIES[name]()
    before = _state_of(obj)
    with pytest.raises(error, match=match):
        call(obj)
    assert differences(_state_of(obj), before) == [], "a refused input changed the state"


def test_the_curriculum_sampler_refuses_losses_only_when_it_keeps_them():
    """Its `objective` records losses only with update_scores (a harmless no-op otherwise)."""
    sampler = CurriculumSampler(torch.linspace(0.0, 1.0, N, dtype=torch.float64),
                                lambda step: 1.0, total_steps=4, batch_size=2, seed=0,
                                update_scores=True)
    before = _state_of(sampler)
    with pytest.raises(ValueError, match="finite"):
        sampler.objective(torch.tensor([0]), torch.tensor([NAN]))
    assert differences(_state_of(sampler), before) == []


@pytest.mark.parametrize("bad", [NAN, INF, -INF], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "sparse"])
def test_sparse_sgd_skips_and_counts_a_step_with_a_non_finite_gradient(bad, sparse):
    optimizer = _sparse_sgd()
    param = optimizer.param_groups[0]["params"][0]
    before, values = _state_of(optimizer), param.detach().clone()
    gradient = torch.tensor([0.5, bad, 0.0, 0.0, 0.0, 0.1])
    param.grad = gradient.to_sparse() if sparse else gradient
    optimizer.step()
    assert torch.equal(param.detach(), values)
    after = _state_of(optimizer)
    assert after.pop("skipped_steps") == 1 and before.pop("skipped_steps") == 0
    assert differences(after, before) == []
    param.grad = torch.tensor([0.5, 0.0, 0.0, 0.0, 0.0, 0.0])  # a finite step still moves
    optimizer.step()
    assert not torch.equal(param.detach(), values)


def test_one_bad_gradient_does_not_poison_data_parameters():
    """The issue's case: after a NaN or inf gradient the rows stay finite, momentum too."""
    dp = DataParameters(C, N, learn_class=True, learn_instance=True, init_class=0.5,
                        init_instance=0.5)
    optimizer = dp.make_optimizer()
    logits = torch.zeros(2, C, requires_grad=True)
    losses = dp.compute_losses(logits, torch.tensor([0, 1]), torch.tensor([0, 1]))
    (losses * torch.tensor([INF, 1.0])).sum().backward()
    optimizer.step()
    assert optimizer.skipped_steps == 1
    assert bool(torch.isfinite(dp.class_log_sigma).all())
    assert bool(torch.isfinite(dp.instance_log_sigma).all())
    assert all(bool(torch.isfinite(entry["momentum_buffer"]).all())
               for entry in optimizer.state.values())


def test_a_non_finite_loss_never_reaches_the_importance_recorder():
    model = nn.Linear(3, 2)
    with TrainingStepRecorder(model) as recorder:
        output = model(torch.randn(2, 3))
        losses = nn.functional.cross_entropy(output, torch.tensor([0, 1]), reduction="none")
        with pytest.raises(ValueError, match="losses"):
            recorder.step(losses * torch.tensor([NAN, 1.0]))
        with pytest.raises(ValueError, match="losses"):
            recorder.step(losses.unsqueeze(1))
