"""Models, batches and error measures shared by the per-sample gradient-norm tests."""

import torch
from torch import nn

from curriclab.core.models import MLP, LogisticRegression, SmallConv


class ConvVariety(nn.Module):
    """Strides, padding, dilation, a bias-free convolution and a bias-free linear layer."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, kernel_size=3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(
            4, 3, kernel_size=(2, 3), dilation=(1, 2), padding=(1, 0), bias=False
        )
        self.fc = nn.Linear(3 * 7 * 3, 5, bias=False)

    def forward(self, x):
        return self.fc(torch.tanh(self.conv2(torch.tanh(self.conv1(x)))).flatten(1))


class TwiceApplied(nn.Module):
    """One Linear layer applied to two halves of the input: its gradient is a sum of two terms."""

    def __init__(self):
        super().__init__()
        self.shared = nn.Linear(4, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.tanh(self.shared(x[:, :4])) * self.shared(x[:, 4:]))


class ConvThenTwice(nn.Module):
    """A convolution followed by one Linear layer applied to two halves of its features."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, kernel_size=3)
        self.shared = nn.Linear(9, 4)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        features = torch.tanh(self.conv(x)).flatten(1)
        return self.head(torch.tanh(self.shared(features[:, :9])) * self.shared(features[:, 9:]))


def batch_for(model_name, size=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    shapes = {
        "mlp": ((size, 1, 28, 28), 10), "smallconv": ((size, 1, 28, 28), 10),
        "logistic": ((size, 2), 2), "convvariety": ((size, 2, 11, 13), 5), "twice": ((size, 8), 3),
        "convtwice": ((size, 1, 5, 5), 3),
    }
    shape, classes = shapes[model_name]
    x = torch.randn(shape, generator=generator, dtype=torch.float64)
    return x, torch.randint(0, classes, (size,), generator=generator)


def make_model(name, seed=0):
    torch.manual_seed(seed)
    model = {
        "mlp": lambda: MLP(hidden=(32, 16)), "smallconv": SmallConv, "logistic": LogisticRegression,
        "convvariety": ConvVariety, "twice": TwiceApplied, "convtwice": ConvThenTwice,
    }[name]()
    return model.double()


def relative_error(a, b):
    return float(((a - b).abs() / b.abs().clamp_min(1e-12)).max())
