"""Loss rules a student trains under, and the ALA agent that tunes Phi from validation rewards.

Each rule is a `SampleMethod`: it defines the per-sample losses, and may act after every step.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curriclab.core.data import IndexedDataset
from curriclab.core.protocol import SampleMethod
from curriclab.core.state import (
    check_generator_state,
    check_int,
    check_keys,
    check_tensor,
    check_tensor_value,
    finite_or_raise,
)
from curriclab.core.training import error_rate, eval_outputs
from curriclab.methods.ala.controller import LossController
from curriclab.methods.ala.statistics import (
    LossMatrix,
    alignment_reward,
    confusion_statistics,
    discounted_metric,
    pair_features,
)
from curriclab.methods.dynamic_loss import dynamic_loss
from curriclab.methods.teacher import LossTeacher, StudentObserver

CREDITS = ("joint", "pair")
"""How the agent rewards a decision: "joint", one reward for all pairs (the paper), or "pair",
one reward per class pair from the validation error on that pair's two classes."""

__all__ = [
    "AlignmentAgent",
    "AlignmentHistory",
    "CREDITS",
    "FixedPhiRule",
    "pair_errors",
    "TeacherRule",
    "validation_log_probs",
]


class FixedPhiRule(SampleMethod):
    """-sigmoid(y^T Phi log p) with Phi held fixed (Phi = I: ALA's starting point, no controller).

    Args:
        phi: [C, C] the loss matrix (kept as given, not copied).
    """

    def __init__(self, phi: Tensor):
        self.phi = phi

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor:
        """The batch's per-sample dynamic losses under the fixed Phi.

        Args:
            output: [B, C] the student's logits.
            target: [B] integer classes in [0, C).
            index: [B] dataset indices (unused: the rule is the same for every sample).

        Returns:
            [B] losses in [-1, 0], differentiable in `output`.

        Raises:
            ValueError: mis-shaped input or a target out of range (as `dynamic_loss`).
        """
        return dynamic_loss(output, target, self.phi, reduction="none")


def validation_log_probs(model: nn.Module, data: IndexedDataset, batch_size: int = 4096) -> Tensor:
    """The model's log-probabilities on every sample of `data`, in index order.

    Args:
        model: the classifier (evaluated in eval mode without gradients, then restored).
        data: the samples to evaluate.
        batch_size: samples per forward, >= 1.

    Returns:
        [N, C] log-probabilities ([0, 0] for empty data).
    """
    chunks = [F.log_softmax(output, dim=1)
              for _, output, _ in eval_outputs(model, data, batch_size)]
    return torch.cat(chunks) if chunks else torch.empty(0, 0)


def pair_errors(log_probs: Tensor, targets: Tensor, pairs: Tensor) -> Tensor:
    """The error rate on the validation samples of classes i or j, for each pair (i, j).

    Args:
        log_probs: [N, C] the model's log-probabilities (or logits: only the argmax is used).
        targets: [N] integer labels.
        pairs: [2, P] class indices (`class_pairs`).

    Returns:
        [P] errors in [0, 1]; a pair with no validation sample gets 0.

    Raises:
        ValueError: shapes disagree.
    """
    if log_probs.ndim != 2 or targets.shape != log_probs.shape[:1]:
        raise ValueError(
            f"log_probs [N, C] and targets [N] must agree, got {tuple(log_probs.shape)} "
            f"and {tuple(targets.shape)}"
        )
    if pairs.ndim != 2 or pairs.shape[0] != 2:
        raise ValueError(f"pairs must have shape [2, P], got {tuple(pairs.shape)}")
    classes = log_probs.shape[1]
    wrong = (log_probs.argmax(1) != targets).double()
    errors = torch.zeros(classes, dtype=torch.float64).index_add_(0, targets, wrong)
    counts = torch.zeros(classes, dtype=torch.float64).index_add_(0, targets,
                                                                  torch.ones_like(wrong))
    i, j = pairs
    same = i == j
    total_errors = torch.where(same, errors[i], errors[i] + errors[j])
    total_counts = torch.where(same, counts[i], counts[i] + counts[j])
    return (total_errors / total_counts.clamp_min(1.0)).float()


@dataclass
class AlignmentHistory:
    """One entry per controller decision; rewards and advantages start at the second decision,
    the first one to have a predecessor to beat.

    Attributes:
        steps: the student steps done when each decision was taken.
        metric: the validation metric M_t each decision saw.
        phi: the loss matrix Phi after each decision ([C, C]).
        action_probs: the policy's [P, 3] probabilities per class pair.
        rewards: [P] rewards, from the second decision on.
        advantages: [P] advantages (reward minus baseline), from the second decision on.
        actions: [P] the action index taken per pair.
    """

    steps: list[int] = field(default_factory=list)
    metric: list[float] = field(default_factory=list)
    phi: list[Tensor] = field(default_factory=list)
    action_probs: list[Tensor] = field(default_factory=list)
    rewards: list[Tensor] = field(default_factory=list)
    advantages: list[Tensor] = field(default_factory=list)
    actions: list[Tensor] = field(default_factory=list)


class AlignmentAgent(SampleMethod):
    """The ALA loop around a student: loss with the current Phi; after every step, the validation
    error; every `interval` (K) steps a reward, a controller update and a new action on Phi.

    Decision t: state s_t from the validation statistics, action a_t moves Phi, the student takes
    K steps, then M_{t+1} = discounted validation error over those K steps and
    r_t = sign(M_t - M_{t+1}).

    History: `rewards` and `advantages` hold 0-d tensors ("joint") or [P] tensors ("pair");
    `actions` holds the [P] action indices of every decision.

    Args:
        model: the student, whose validation error is measured after each step.
        matrix: Phi and its bounds.
        controller: the policy and its learning rule.
        validation: the split the metric is measured on (never test); not empty.
        total_steps: the student's step budget (>= 1), used for the progress feature.
        interval: K >= 1, student steps between decisions.
        gamma: the metric's discount, in (0, 1].
        credit: "joint" (one reward sign(M_t - M_{t+1}) for all pairs, the paper's) or "pair"
            (the same reward computed per pair on the validation samples of its two classes).

    Raises:
        ValueError: a bad interval, budget, gamma or credit, or an empty validation split.
    """

    def __init__(
        self,
        model: nn.Module,
        matrix: LossMatrix,
        controller: LossController,
        validation: IndexedDataset,
        total_steps: int,
        interval: int = 10,
        gamma: float = 0.9,
        credit: str = "joint",
    ):
        if credit not in CREDITS:
            raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
        if interval < 1:
            raise ValueError(f"interval must be >= 1, got {interval}")
        if total_steps < 1:
            raise ValueError(f"total_steps must be >= 1, got {total_steps}")
        if len(validation) == 0:
            raise ValueError("validation must not be empty")
        if not 0.0 < gamma <= 1.0:
            raise ValueError(f"gamma must lie in (0, 1], got {gamma}")
        self.model = model
        self.matrix = matrix
        self.controller = controller
        self.validation = validation
        self.total_steps = total_steps
        self.interval = interval
        self.gamma = gamma
        self.credit = credit
        self.steps = 0
        self.window: list[Tensor] = []
        self.previous_metric: Tensor | None = None
        self.pending: tuple[Tensor, Tensor] | None = None
        self.history = AlignmentHistory()

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor:
        """`FixedPhiRule.compute_losses` under the current Phi.

        Args:
            output, target, index: as in `FixedPhiRule.compute_losses`.

        Returns:
            [B] losses in [-1, 0], differentiable in `output` (errors as `dynamic_loss`).
        """
        return dynamic_loss(output, target, self.matrix.phi, reduction="none")

    def after_step(self) -> None:
        """Count the step, measure the validation error, and `decide` every `interval` steps.

        Raises:
            ValueError: from `decide`, if the validation log-probabilities are not finite.
        """
        self.steps += 1
        log_probs = validation_log_probs(self.model, self.validation)
        if self.credit == "joint":
            self.window.append(torch.tensor(error_rate(log_probs, self.validation.targets)))
        else:
            self.window.append(pair_errors(log_probs, self.validation.targets, self.matrix.pairs))
        if len(self.window) == self.interval:
            self.decide(log_probs)

    def decide(self, log_probs: Tensor) -> None:
        """Close the current window: reward the pending action, then take a new one.

        Args:
            log_probs: [N, C] the student's validation log-probabilities now.

        Raises:
            ValueError: the validation log-probabilities hold NaN or inf (the student diverged);
                checked before anything changes, so the agent's state is as it was.
        """
        finite_or_raise("log_probs", log_probs, "AlignmentAgent.decide")
        window = torch.stack(self.window).reshape(len(self.window), -1)
        metric = torch.tensor([discounted_metric(column, self.gamma) for column in window.T])
        self.window = []
        if self.pending is not None and self.previous_metric is not None:
            reward = torch.tensor([alignment_reward(float(before), float(after))
                                   for before, after in zip(self.previous_metric, metric)])
            reward = reward[0] if self.credit == "joint" else reward
            self.history.rewards.append(reward)
            self.history.advantages.append(self.controller.observe(*self.pending, reward))
        confusion = confusion_statistics(log_probs, self.validation.targets)
        progress = min(self.steps / self.total_steps, 1.0)
        features = pair_features(confusion, self.matrix.phi, progress)
        actions = self.controller.act(features)
        with torch.no_grad():
            probs = self.controller.distribution(features).probs
        self.matrix.apply(actions)
        self.pending = (features, actions)
        self.previous_metric = metric
        self.history.steps.append(self.steps)
        self.history.metric.append(float(metric.mean()))
        self.history.phi.append(self.matrix.phi.clone())
        self.history.action_probs.append(probs)
        self.history.actions.append(actions.clone())

    def state_dict(self) -> dict:
        """Matrix, controller, step count, open window, pending decision and the history.

        Returns:
            {"matrix", "controller", "steps", "window", "previous_metric", "pending", "history" (a
            dict of lists)}: plain values that `torch.load(..., weights_only=True)` restores.
        """
        return {
            "matrix": self.matrix.state_dict(),
            "controller": self.controller.state_dict(),
            "steps": self.steps,
            "window": [value.clone() for value in self.window],
            "previous_metric": (None if self.previous_metric is None
                                else self.previous_metric.clone()),
            "pending": None if self.pending is None else [t.clone() for t in self.pending],
            "history": {name: [copy.deepcopy(v) for v in getattr(self.history, name)]
                        for name in _HISTORY_FIELDS},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict()` returned, for an agent of the same interval and classes.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, of the wrong type or shape,
                or not finite (the matrix's and controller's own checks included).
        """
        owner = "AlignmentAgent"
        check_keys(state, ("matrix", "controller", "steps", "window", "previous_metric",
                           "pending", "history"), owner)
        check_int(state, "steps", owner, low=0)
        window = state["window"]
        if not isinstance(window, (list, tuple)) or len(window) >= self.interval:
            raise ValueError(f"{owner}.load_state_dict: state key 'window' must be a list of "
                             f"fewer than interval={self.interval} tensors")
        for position in range(len(window)):
            check_tensor_value(window[position], f"window.{position}", owner, low=0.0,
                               high=1.0)
        if state["previous_metric"] is not None:
            check_tensor(state, "previous_metric", owner, shape=(None,))
        pending = state["pending"]
        if pending is not None:
            if not isinstance(pending, (list, tuple)) or len(pending) != 2:
                raise ValueError(f"{owner}.load_state_dict: state key 'pending' must be None or "
                                 "(features, actions)")
            check_tensor_value(pending[0], "pending.0 (features)", owner,
                               shape=(self.matrix.num_pairs, None))
            check_tensor_value(pending[1], "pending.1 (actions)", owner,
                               shape=(self.matrix.num_pairs,), dtype=torch.long, low=0, high=2)
        history = state["history"]
        check_keys(history, _HISTORY_FIELDS, owner, "history")
        for name in _HISTORY_FIELDS:
            if not isinstance(history[name], list):
                raise ValueError(f"{owner}.load_state_dict: state key 'history.{name}' must be "
                                 "a list")
        self.matrix.check_state(state["matrix"], prefix="matrix")
        self.controller.check_state(state["controller"], prefix="controller")
        self.matrix.load_state_dict(state["matrix"])
        self.controller.load_state_dict(state["controller"])
        self.steps = state["steps"]
        self.window = [value.clone() for value in window]
        previous = state["previous_metric"]
        self.previous_metric = None if previous is None else previous.clone()
        self.pending = None if pending is None else (pending[0].clone(), pending[1].clone())
        self.history = AlignmentHistory(**{name: copy.deepcopy(list(history[name]))
                                           for name in _HISTORY_FIELDS})


_HISTORY_FIELDS = tuple(field.name for field in dataclasses.fields(AlignmentHistory))


class TeacherRule(SampleMethod):
    """A frozen L2T-DLF teacher (`curriclab.methods.teacher.LossTeacher`, notebook 06) as a loss
    rule.

    At every step the teacher maps the student's running state (progress, moving averages of the
    minibatch loss and error, the latest dev error) to Phi_t and a bias; as in notebook 06's loop,
    the dev error is measured on a random validation batch of `dev_batch` every `interval` steps.

    Args:
        model: the student, evaluated on the validation batches.
        teacher: the frozen teacher (called without gradients).
        validation: the split the dev error is measured on; not empty.
        total_steps: the student's step budget (>= 1), for the progress feature.
        interval: >= 1 steps between dev measurements.
        dev_batch: >= 1 validation samples per measurement.
        seed: seeds the validation draws (with seed + 1).

    Raises:
        ValueError: `interval` or `dev_batch` < 1, `total_steps` < 1, or an empty validation
            split.
    """

    def __init__(
        self,
        model: nn.Module,
        teacher: LossTeacher,
        validation: IndexedDataset,
        total_steps: int,
        interval: int = 20,
        dev_batch: int = 500,
        seed: int = 0,
    ):
        if interval < 1 or dev_batch < 1:
            raise ValueError(f"interval and dev_batch must be >= 1, got {interval} and {dev_batch}")
        if len(validation) == 0:
            raise ValueError("validation must not be empty")
        self.model = model
        self.teacher = teacher
        self.validation = validation
        self.interval = interval
        self.dev_batch = dev_batch
        self.observer = StudentObserver(total_steps)
        self.generator = torch.Generator().manual_seed(seed + 1)

    def compute_losses(self, output: Tensor, target: Tensor, index: Tensor) -> Tensor:
        """The batch's per-sample dynamic losses under the teacher's (Phi_t, bias); counts one step.

        Args:
            output, target, index: as in `FixedPhiRule.compute_losses`.

        Returns:
            [B] losses in [-1, 0], differentiable in `output` (not in the teacher).

        Raises:
            ValueError: a logit is NaN or infinite, or mis-shaped input.
        """
        with torch.no_grad():
            phi, bias = self.teacher(self.observer.features())
        self.observer.record_train(output.detach(), target)
        return dynamic_loss(output, target, phi, bias, reduction="none")

    def after_step(self) -> None:
        """Every `interval` steps: the student's error on a random validation batch, recorded."""
        if self.observer.step % self.interval == 0:
            chosen = torch.randperm(len(self.validation),
                                    generator=self.generator)[: self.dev_batch]
            log_probs = validation_log_probs(self.model, self.validation.subset(chosen))
            self.observer.record_dev(error_rate(log_probs, self.validation.targets[chosen]))

    def state_dict(self) -> dict:
        """The rule's state.

        Returns:
            {"observer": `StudentObserver.state_dict()`, "generator": its uint8 state}.
        """
        return {"observer": self.observer.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        """Restore a `state_dict()`, validated completely before anything changes.

        Args:
            state: what `state_dict()` returned.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected or out of range (the
                observer's checks, a generator state of the wrong size or dtype).
        """
        check_keys(state, ("observer", "generator"), "TeacherRule")
        check_generator_state(state, "generator", "TeacherRule")
        self.observer.load_state_dict(state["observer"], prefix="observer")
        self.generator.set_state(state["generator"])
