"""Models of the lineage (docs/simulator.md), written so that ``torch.func.vmap`` can batch
them over clients: no BatchNorm (its running statistics are per-client state), GroupNorm
in the ResNet instead."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "CifarCNN", "FmnistCNN", "build", "default_model"]


def _conv_block(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``relu(conv(x))`` then 2×2 max-pool, computed as ``relu(max_pool(conv(x)))``: ReLU is
    monotone, so it commutes with max — the same function and gradient — on a quarter of
    the elements."""
    return F.relu(F.max_pool2d(conv(x), 2))


class FmnistCNN(nn.Module):
    """conv(1→20, 5) – ReLU – pool – conv(20→50, 5) – ReLU – pool – fc(800→500) – ReLU –
    fc(500→10); 431,080 parameters (the LeNet-style model of the ALIE / bucketing lineage)."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _conv_block(self.conv2, _conv_block(self.conv1, x))
        return self.fc2(F.relu(self.fc1(x.flatten(-3))))


class CifarCNN(nn.Module):
    """conv 20/100/200 (5×5, padding 2, each followed by ReLU and 2×2 max-pool) + fc
    3200→512→256→10."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(3, 20, 5, padding=2),
                nn.Conv2d(20, 100, 5, padding=2),
                nn.Conv2d(100, 200, 5, padding=2),
            ]
        )
        self.fc1 = nn.Linear(3200, 512)
        self.fc2 = nn.Linear(512, 256)
        self.fc3 = nn.Linear(256, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = _conv_block(conv, x)
        x = F.relu(self.fc1(x.flatten(-3)))
        return self.fc3(F.relu(self.fc2(x)))


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.gn1 = nn.GroupNorm(groups, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.gn2 = nn.GroupNorm(groups, cout)
        self.short: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.GroupNorm(groups, cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.gn1(self.conv1(x)))
        return F.relu(self.gn2(self.conv2(out)) + self.short(x))


class ResNet20GN(nn.Module):
    """ResNet-20 (He et al. 2016, CIFAR variant: 3 stages × 3 basic blocks, 16/32/64
    channels) with GroupNorm (Wu & He 2018) in place of BatchNorm."""

    def __init__(self, num_classes: int = 10, groups: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.GroupNorm(groups, 16))
        blocks, cin = [], 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                blocks.append(_Block(cin, cout, stride if i == 0 else 1, groups))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(F.relu(self.stem(x)))
        return self.fc(x.mean((-2, -1)))


MODELS: dict[str, Callable[[int], nn.Module]] = {
    "fmnist_cnn": FmnistCNN,
    "cifar_cnn": CifarCNN,
    "resnet20": ResNet20GN,
}

_DEFAULT = {"fmnist": "fmnist_cnn", "cifar10": "cifar_cnn"}


def default_model(dataset: str) -> str:
    """The lineage's model for a dataset."""
    return _DEFAULT[dataset]


def build(name: str, num_classes: int = 10) -> nn.Module:
    """Instantiate a registered model."""
    if name not in MODELS:
        raise ValueError(f"model: unknown {name!r}; valid: {', '.join(MODELS)}")
    return MODELS[name](num_classes)
