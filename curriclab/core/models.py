"""The small models the notebooks train. All of them return logits (unnormalised scores).

The wenig/spl demo and Zakka's pr-lr code ended their models with log_softmax; cross-entropy,
temperature scaling and softmax are unchanged by that shift, so returning logits loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["LogisticRegression", "MLP", "SmallConv"]


class LogisticRegression(nn.Module):
    """One linear layer: multinomial logistic regression (the SPL demo's model on 2-D points).

    Args:
        in_features: input features after flattening (>= 1).
        num_classes: output logits (>= 1).
    """

    def __init__(self, in_features: int = 2, num_classes: int = 2):
        super().__init__()
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a batch.

        Args:
            x: [B, ...] inputs, `in_features` values per sample once flattened.

        Returns:
            [B, num_classes] logits.
        """
        return self.linear(x.flatten(1))


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs, e.g. 784-256-10 for MNIST.

    Args:
        in_features: input features after flattening (>= 1).
        hidden: the hidden layers' widths, in order (() gives logistic regression).
        num_classes: output logits (>= 1).
    """

    def __init__(
        self, in_features: int = 784, hidden: Sequence[int] = (256,), num_classes: int = 10
    ):
        super().__init__()
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in pairwise(sizes):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        layers.append(nn.Linear(sizes[-1], num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a batch.

        Args:
            x: [B, ...] inputs, `in_features` values per sample once flattened (e.g.
                [B, 1, 28, 28]).

        Returns:
            [B, num_classes] logits.
        """
        return self.net(x.flatten(1))


class SmallConv(nn.Module):
    """The MNIST network of Zakka's blog post (2018) and his pr-lr code: two 5x5 convolutions and
    two fully connected layers (1x28x28 -> 10 logits), Kaiming-normal initialised.

    Args:
        num_classes: output logits (>= 1).
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 10, kernel_size=5)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=5)
        self.fc1 = nn.Linear(320, 50)
        self.fc2 = nn.Linear(50, num_classes)
        for layer in (self.conv1, self.conv2, self.fc1, self.fc2):
            nn.init.kaiming_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of a batch.

        Args:
            x: [B, 1, 28, 28] images.

        Returns:
            [B, num_classes] logits.
        """
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        return self.fc2(x)
