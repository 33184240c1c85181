"""The ALA loss controller: one small policy network for all class pairs, trained by REINFORCE.

At each decision the controller sees one feature row per class pair
(`curriclab.methods.ala.statistics.pair_features`), samples one of three actions per pair (-beta,
keep, +beta on Phi[i, j]) and later receives one reward for the whole joint action. It learns with
REINFORCE: the gradient of the expected reward is E[grad log pi(a | s) * (r - b)], where the
baseline b (a moving average of past rewards) lowers the variance without adding bias. Transitions
go to a replay memory and each update uses a random handful of them, as in Algorithm 1 of Huang et
al. (2019).

Huang et al.'s estimator sums (r_k - b_k) over the rest of the episode; here each action is
credited with its own reward only, because the reward sign(M_t - M_{t+1}) already measures what
happened during the K student steps that followed that action.

Why the learning rule has more options than the paper states (notebook 07, issue 23). With the
paper's single +-1 reward per decision shared by every class pair, a moving-average baseline and
Adam, the policy of notebook 07 collapsed: the advantages carried no information about the
actions (their mean was 0.000), yet Adam moves every weight by about `lr` per update whatever the
gradient's size, so the logits random-walked until each pair picked one action with probability
1, where the REINFORCE gradient vanishes and Phi sat at a corner of its box. The options:
- `rewards` may be one per pair (a vector), with one baseline per pair (per-pair credit); each
  pair's term log pi(a_p | s_p) A_p is then averaged over the pairs;
- `normalize`: advantages are divided by a running standard deviation of the rewards, so the
  step size does not depend on the reward's scale;
- `optimizer="sgd"`: a plain gradient step, whose size follows the evidence (the default);
- `entropy`: a bonus on the policy's entropy that keeps it from collapsing on noise alone.
The paper's rule is `optimizer="adam", entropy=0, normalize=False` with a scalar reward.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from curriclab.core.state import (
    check_float,
    check_generator_state,
    check_keys,
    check_tensor,
    check_tensor_value,
    finite_or_raise,
    nested,
)
from curriclab.core.tracking import check_momentum
from curriclab.methods.ala.statistics import ACTION_STEPS, NUM_PAIR_FEATURES

__all__ = ["LossController", "OPTIMIZERS", "policy_gradient_loss"]

OPTIMIZERS = ("sgd", "adam")


def policy_gradient_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """-(1/T) sum_t log pi(a_t | s_t) * A_t, whose gradient is minus the REINFORCE estimate.

    Args:
        log_probs: [T] log-probabilities of the actions taken (differentiable in the policy's
            parameters).
        advantages: [T] reward minus baseline (treated as constants).

    Returns:
        The scalar surrogate loss.

    Raises:
        ValueError: log_probs is not a non-empty 1-D tensor, or advantages has another shape.
    """
    if log_probs.ndim != 1 or log_probs.numel() == 0:
        raise ValueError("log_probs must be a non-empty 1-D tensor, got shape "
                         f"{tuple(log_probs.shape)}")
    if advantages.shape != log_probs.shape:
        raise ValueError(f"advantages must have shape {tuple(log_probs.shape)}, "
                         f"got {tuple(advantages.shape)}")
    return -(log_probs * advantages.detach()).mean()


class LossController:
    """Policy pi(a | pair features) over ACTION_STEPS, a reward baseline and a replay memory.

    Args:
        num_features: columns of the pair features.
        hidden: width of the policy's one hidden layer.
        lr: learning rate of the policy.
        baseline_momentum: the baseline follows b <- m b + (1 - m) r (per pair when the rewards
            are per pair); the reward variance used by `normalize` follows the same average.
        memory_size: transitions kept; replay_batch: transitions per update.
        seed: seeds the policy's initial weights and its own sampling generator (the global
            random state is left alone).
        optimizer: "sgd" (plain gradient steps, the default) or "adam" (the earlier rule).
        entropy: weight of the mean policy entropy added to the objective (0: none).
        normalize: divide each advantage by the running standard deviation of the rewards.

    The last layer starts at zero, so the first policy picks each action with probability 1/3.

    Raises:
        ValueError: a size, rate or weight out of range, or an unknown optimizer.
    """

    def __init__(
        self,
        num_features: int = NUM_PAIR_FEATURES,
        hidden: int = 16,
        lr: float = 0.01,
        baseline_momentum: float = 0.9,
        memory_size: int = 64,
        replay_batch: int = 8,
        seed: int = 0,
        optimizer: str = "sgd",
        entropy: float = 0.0,
        normalize: bool = True,
    ):
        if num_features < 1 or hidden < 1:
            raise ValueError(f"num_features and hidden must be >= 1, got {num_features} and "
                             f"{hidden}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        check_momentum(baseline_momentum, "baseline_momentum")
        if memory_size < 1 or not 1 <= replay_batch <= memory_size:
            raise ValueError(
                "need memory_size >= 1 and 1 <= replay_batch <= memory_size, "
                f"got {memory_size} and {replay_batch}"
            )
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if not entropy >= 0:
            raise ValueError(f"entropy must be >= 0, got {entropy}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = nn.Sequential(
                nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, len(ACTION_STEPS))
            )
        nn.init.zeros_(self.policy[-1].weight)
        nn.init.zeros_(self.policy[-1].bias)
        self.num_features = num_features
        parameters = self.policy.parameters()
        self.optimizer = (torch.optim.SGD(parameters, lr=lr) if optimizer == "sgd"
                          else torch.optim.Adam(parameters, lr=lr))
        self.baseline_momentum = baseline_momentum
        self.memory_size = memory_size
        self.replay_batch = replay_batch
        self.entropy = float(entropy)
        self.normalize = bool(normalize)
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline: Tensor = torch.zeros(())
        self.reward_variance: Tensor = torch.ones(())
        self.memory: list[tuple[Tensor, Tensor, Tensor]] = []

    def _check_features(self, features: Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"features must have shape [P, {self.num_features}], got {tuple(features.shape)}"
            )

    def distribution(self, features: Tensor) -> Categorical:
        """pi(. | s) for each row of the features: a Categorical over the actions.

        Args:
            features: [P, F] pair features (F = `num_features`).

        Returns:
            A `Categorical` with batch shape [P] over len(ACTION_STEPS) actions, differentiable in
            the policy's parameters.

        Raises:
            ValueError: `features` is not [P, num_features].
        """
        self._check_features(features)
        return Categorical(logits=self.policy(features))

    @torch.no_grad()
    def act(self, features: Tensor) -> Tensor:
        """Sample one action index per row (0 = -beta, 1 = keep, 2 = +beta) from the policy.

        Draws from the controller's own generator (the global RNG is not touched).

        Args:
            features: [P, F] pair features.

        Returns:
            [P] int64 action indices in [0, len(ACTION_STEPS)).

        Raises:
            ValueError: features are mis-shaped or not finite (nothing is drawn then).
        """
        self._check_features(features)
        finite_or_raise("features", features, "LossController.act")
        if features.shape[0] == 0:
            return torch.empty(0, dtype=torch.long)
        probs = self.distribution(features).probs
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def observe(self, features: Tensor, actions: Tensor, reward: float | Tensor) -> Tensor:
        """Store the transition with its advantage, move the baseline, update the policy.

        Args:
            features: [P, F] the state the actions were taken in.
            actions: [P] the action indices taken.
            reward: one reward for the joint action (a number or a 0-d tensor), or one per
                pair ([P]); the baseline takes the reward's shape at the first observation.

        Returns:
            The advantage, (reward - baseline) / std when `normalize`, shaped like the reward.

        Raises:
            ValueError: shapes disagree, or a reward or feature is not finite (the state is left
                unchanged).
        """
        self._check_features(features)
        finite_or_raise("features", features, "LossController.observe")
        if actions.shape != features.shape[:1]:
            raise ValueError(
                f"actions must have shape ({features.shape[0]},), got {tuple(actions.shape)}"
            )
        reward = torch.as_tensor(reward, dtype=torch.float32).clone()
        if reward.ndim > 1 or (reward.ndim == 1 and reward.shape != actions.shape):
            raise ValueError(
                f"reward must be a number or have shape {tuple(actions.shape)}, "
                f"got {tuple(reward.shape)}"
            )
        if not torch.isfinite(reward).all():
            raise ValueError("reward must be finite")
        if self.memory and reward.shape != self.baseline.shape:
            raise ValueError(f"reward must keep the shape {tuple(self.baseline.shape)}")
        if not self.memory:
            self.baseline = torch.zeros_like(reward)
            self.reward_variance = torch.ones_like(reward)
        deviation = reward - self.baseline
        advantage = deviation / self.reward_variance.sqrt() if self.normalize else deviation
        momentum = self.baseline_momentum
        self.baseline = momentum * self.baseline + (1.0 - momentum) * reward
        self.reward_variance = momentum * self.reward_variance + (1.0 - momentum) * deviation**2
        self.reward_variance = self.reward_variance.clamp_min(1e-6)
        self.memory.append((features.detach().clone(), actions.clone(), advantage.clone()))
        del self.memory[: -self.memory_size]
        self.update()
        return advantage

    def update(self) -> float:
        """One optimizer step on the policy-gradient loss (minus the entropy bonus) over a random
        batch of `replay_batch` transitions from the replay memory.

        Returns:
            That loss as a float (0.0, and no step, with an empty memory).
        """
        if not self.memory:
            return 0.0
        count = min(self.replay_batch, len(self.memory))
        chosen = torch.randperm(len(self.memory), generator=self.generator)[:count].tolist()
        log_probs, advantages, entropies = [], [], []
        for k in chosen:
            features, actions, advantage = self.memory[k]
            distribution = self.distribution(features)
            pair_log_probs = distribution.log_prob(actions)
            if advantage.ndim == 0:
                log_probs.append(pair_log_probs.sum())
                advantages.append(advantage)
            else:
                log_probs.append((pair_log_probs * advantage).mean())
                advantages.append(torch.ones(()))
            entropies.append(distribution.entropy().mean())
        loss = policy_gradient_loss(torch.stack(log_probs), torch.stack(advantages))
        loss = loss - self.entropy * torch.stack(entropies).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        """Policy, optimizer, baseline, reward variance, replay memory and generator state.

        Returns:
            {"policy", "optimizer", "baseline", "reward_variance", "memory": [(features, actions,
            advantage), ...], "generator"}, all copies.
        """
        return {
            "policy": {k: v.clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "baseline": self.baseline.clone(),
            "reward_variance": self.reward_variance.clone(),
            "memory": [(f.clone(), a.clone(), adv.clone()) for f, a, adv in self.memory],
            "generator": self.generator.get_state(),
        }

    def check_state(self, state: dict, prefix: str = "") -> None:
        """Every check of `load_state_dict`, changing nothing.

        Args:
            state: what `state_dict()` returned.
            prefix: this controller's dotted key inside an outer state, for messages.

        Raises:
            TypeError: `state` is not a dict.
            ValueError: naming the key that is missing, unexpected, mis-shaped, of another
                dtype, not finite or out of range (a policy tensor, the optimizer's groups, the
                baseline and a positive reward variance of one shape, a replay memory longer
                than `memory_size` or with actions outside ACTION_STEPS, the generator).
        """
        owner = "LossController"

        def key(name: str) -> str:
            return nested(prefix, name)

        check_keys(state, ("policy", "optimizer", "baseline", "reward_variance", "memory",
                           "generator"), owner, prefix)
        own_policy = self.policy.state_dict()
        check_keys(state["policy"], own_policy, owner, key("policy"))
        for name, tensor in own_policy.items():
            check_tensor(state["policy"], name, owner, shape=tuple(tensor.shape),
                         dtype=tensor.dtype, name=key(f"policy.{name}"))
        optimizer = state["optimizer"]
        check_keys(optimizer, ("state", "param_groups"), owner, key("optimizer"))
        groups = optimizer["param_groups"]
        if not isinstance(groups, list) or len(groups) != len(self.optimizer.param_groups):
            raise ValueError(f"{owner}.load_state_dict: state key '{key('optimizer.param_groups')}'"
                             f" must list {len(self.optimizer.param_groups)} group(s)")
        for number, (own, saved) in enumerate(zip(self.optimizer.param_groups, groups)):
            group = key(f"optimizer.param_groups.{number}")
            check_keys(saved, set(own), owner, group)
            check_float(saved, "lr", owner, low=0.0, low_open=True, name=f"{group}.lr")
        baseline = check_tensor(state, "baseline", owner, dtype=torch.float32,
                                name=key("baseline"))
        variance = check_tensor(state, "reward_variance", owner, dtype=torch.float32,
                                name=key("reward_variance"))
        if baseline.ndim > 1 or variance.shape != baseline.shape or not bool((variance > 0).all()):
            raise ValueError(f"{owner}.load_state_dict: state key '{key('reward_variance')}' "
                             "must be positive and shaped like the baseline (a number or [P])")
        memory = state["memory"]
        if not isinstance(memory, list) or len(memory) > self.memory_size:
            raise ValueError(f"{owner}.load_state_dict: state key '{key('memory')}' must be a "
                             f"list of at most memory_size={self.memory_size} transitions")
        for position, transition in enumerate(memory):
            where = key(f"memory.{position}")
            if not isinstance(transition, (list, tuple)) or len(transition) != 3:
                raise ValueError(f"{owner}.load_state_dict: state key '{where}' must be "
                                 "(features, actions, advantage)")
            features, actions, advantage = transition
            check_tensor_value(features, f"{where}.features", owner,
                               shape=(None, self.num_features))
            check_tensor_value(actions, f"{where}.actions", owner, shape=(len(features),),
                               dtype=torch.long, low=0, high=len(ACTION_STEPS) - 1)
            check_tensor_value(advantage, f"{where}.advantage", owner)
        check_generator_state(state, "generator", owner, name=key("generator"))

    def load_state_dict(self, state: dict) -> None:
        """Restore what `state_dict` saved, validated by `check_state` before anything changes.

        Args:
            state: what `state_dict()` returned, for a controller of the same sizes and optimizer.

        Raises:
            TypeError, ValueError: as `check_state`.
        """
        self.check_state(state)
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.policy.load_state_dict(state["policy"])
        self.baseline = state["baseline"].clone()
        self.reward_variance = state["reward_variance"].clone()
        self.memory = [(f.clone(), a.clone(), adv.clone()) for f, a, adv in state["memory"]]
        self.generator.set_state(state["generator"])
