"""The ALA loss controller: one small policy network shared by every class pair, trained by REINFORCE.

At each decision the controller sees one feature row per class pair
(`curriclab.methods.ala.statistics.pair_features`), samples one of three actions per pair (-beta,
keep, +beta on Phi[i, j]) and later receives one reward for the whole joint action. It learns with
REINFORCE: the gradient of the expected reward is E[grad log pi(a | s) * (r - b)], where the
baseline b (a moving average of past rewards) lowers the variance without adding bias. Transitions
go to a replay memory and each update uses a random handful of them, as in Algorithm 1 of Huang et
al. (2019).

Huang et al.'s estimator sums (r_k - b_k) over the rest of the episode; here each action is credited
with its own reward only, because the reward sign(M_t - M_{t+1}) already measures what happened
during the K student steps that followed that action.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.distributions import Categorical

from curriclab.methods.ala.statistics import ACTION_STEPS, NUM_PAIR_FEATURES

__all__ = ["LossController", "policy_gradient_loss"]


def policy_gradient_loss(log_probs: Tensor, advantages: Tensor) -> Tensor:
    """-(1/T) sum_t log pi(a_t | s_t) * A_t, whose gradient is minus the REINFORCE estimate.

    log_probs: [T] log-probabilities of the actions taken (differentiable in the policy's
    parameters); advantages: [T] reward minus baseline (treated as constants).
    """
    if log_probs.ndim != 1 or log_probs.numel() == 0:
        raise ValueError(f"log_probs must be a non-empty 1-D tensor, got shape {tuple(log_probs.shape)}")
    if advantages.shape != log_probs.shape:
        raise ValueError(f"advantages must have shape {tuple(log_probs.shape)}, got {tuple(advantages.shape)}")
    return -(log_probs * advantages.detach()).mean()


class LossController:
    """Policy pi(a | pair features) over ACTION_STEPS, a reward baseline and a replay memory.

    hidden: width of the policy's one hidden layer. lr: Adam learning rate of the policy.
    baseline_momentum: the baseline follows b <- m b + (1 - m) r. memory_size: transitions kept;
    replay_batch: transitions per update. seed: seeds the policy's initial weights and its own
    sampling generator (the global random state is left alone). The last layer starts at zero, so
    the first policy picks each action with probability 1/3.
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
    ):
        if num_features < 1 or hidden < 1:
            raise ValueError(f"num_features and hidden must be >= 1, got {num_features} and {hidden}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 <= baseline_momentum < 1.0:
            raise ValueError(f"baseline_momentum must lie in [0, 1), got {baseline_momentum}")
        if memory_size < 1 or not 1 <= replay_batch <= memory_size:
            raise ValueError(
                f"need memory_size >= 1 and 1 <= replay_batch <= memory_size, got {memory_size} and {replay_batch}"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.policy = nn.Sequential(
                nn.Linear(num_features, hidden), nn.Tanh(), nn.Linear(hidden, len(ACTION_STEPS))
            )
        nn.init.zeros_(self.policy[-1].weight)
        nn.init.zeros_(self.policy[-1].bias)
        self.num_features = num_features
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.baseline_momentum = baseline_momentum
        self.memory_size = memory_size
        self.replay_batch = replay_batch
        self.generator = torch.Generator().manual_seed(seed)
        self.baseline = 0.0
        self.memory: list[tuple[Tensor, Tensor, float]] = []

    def _check_features(self, features: Tensor) -> None:
        if features.ndim != 2 or features.shape[1] != self.num_features:
            raise ValueError(f"features must have shape [P, {self.num_features}], got {tuple(features.shape)}")

    def distribution(self, features: Tensor) -> Categorical:
        """pi(. | s) for each row of features [P, F]: a Categorical over the actions, batch shape [P]."""
        self._check_features(features)
        return Categorical(logits=self.policy(features))

    @torch.no_grad()
    def act(self, features: Tensor) -> Tensor:
        """Sample one action index per row (0 = -beta, 1 = keep, 2 = +beta) from the current policy."""
        self._check_features(features)
        if features.shape[0] == 0:
            return torch.empty(0, dtype=torch.long)
        probs = self.distribution(features).probs
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)

    def observe(self, features: Tensor, actions: Tensor, reward: float) -> float:
        """Store the transition with advantage reward - baseline, move the baseline, update the policy.

        Returns the advantage.
        """
        self._check_features(features)
        if actions.shape != features.shape[:1]:
            raise ValueError(f"actions must have shape ({features.shape[0]},), got {tuple(actions.shape)}")
        advantage = float(reward) - self.baseline
        self.baseline = self.baseline_momentum * self.baseline + (1.0 - self.baseline_momentum) * float(reward)
        self.memory.append((features.detach().clone(), actions.clone(), advantage))
        del self.memory[: -self.memory_size]
        self.update()
        return advantage

    def update(self) -> float:
        """One Adam step on `policy_gradient_loss` over a random batch from the replay memory."""
        if not self.memory:
            return 0.0
        count = min(self.replay_batch, len(self.memory))
        chosen = torch.randperm(len(self.memory), generator=self.generator)[:count].tolist()
        log_probs = torch.stack(
            [self.distribution(self.memory[k][0]).log_prob(self.memory[k][1]).sum() for k in chosen]
        )
        advantages = torch.tensor([self.memory[k][2] for k in chosen])
        loss = policy_gradient_loss(log_probs, advantages)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def state_dict(self) -> dict:
        return {
            "policy": {k: v.clone() for k, v in self.policy.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "baseline": self.baseline,
            "memory": [(f.clone(), a.clone(), adv) for f, a, adv in self.memory],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))
        self.baseline = float(state["baseline"])
        self.memory = [(f.clone(), a.clone(), float(adv)) for f, a, adv in state["memory"]]
        self.generator.set_state(state["generator"])
