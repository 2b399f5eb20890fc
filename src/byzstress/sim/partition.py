"""The clients' shares of the training set, and drawing every client's mini-batch at once.

The kinds of split and their definitions are in :mod:`byzstress.sim.splits`; the default is
Dirichlet label skew (Hsu, Qi & Brown 2019, "Measuring the effects of non-identical data
distribution"): for each class ``k`` draw ``p_k ~ Dir(β · 1_m)`` and cut that class's
(shuffled) samples among the ``m`` clients in proportions ``p_k``. Small ``β`` is very
non-IID; ``β = "iid"`` deals a uniform random split. The split is redrawn (seeded, at most
``max_tries`` times) until every client holds at least ``min_samples`` samples.

Honest clients split the whole training set among themselves (the seed paper's setting).
The Byzantine clients' own shares — used by local-knowledge attacks, label flipping and the
no-attack baseline — come from an independent Dirichlet split of the whole set among ``n``
virtual clients, of which the Byzantine ones take the last ``f``: they hold data from the
same population, overlapping the honest clients', as real attackers would.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .splits import split_indices

__all__ = ["PaddedShares", "client_shares"]


class PaddedShares:
    """Clients' index lists as one padded ``[m, L]`` tensor so that drawing every client's
    mini-batch is a single gather (sampling uniformly with replacement within a share)."""

    def __init__(self, shares: list[np.ndarray], device: torch.device | str = "cpu") -> None:
        self.lengths = torch.tensor([len(s) for s in shares], dtype=torch.long)
        width = int(self.lengths.max())
        table = np.zeros((len(shares), width), dtype=np.int64)
        for i, s in enumerate(shares):
            table[i, : len(s)] = s
        self.table = torch.from_numpy(table).to(device)
        self.lengths_dev = self.lengths.to(device)

    def __len__(self) -> int:
        return self.table.shape[0]

    def sample(self, batch: int, generator: torch.Generator) -> Tensor:
        """``[m, batch]`` dataset indices; the uniforms come from a CPU generator so the
        draw is identical on every device."""
        u = torch.rand(len(self), batch, generator=generator).to(self.table.device)
        pos = (u * self.lengths_dev[:, None]).long().clamp_max_(self.lengths_dev[:, None] - 1)
        return self.table.gather(1, pos)


def client_shares(
    labels: np.ndarray,
    n: int,
    f: int,
    beta: float | str,
    seed: int,
    min_samples: int = 10,
    split: str = "dirichlet",
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(honest, byzantine)`` index lists: ``n − f`` honest shares of the whole set and
    ``f`` Byzantine shares from an independent split of the same kind among ``n`` (see
    module docstring; ``split``: :mod:`byzstress.sim.splits`)."""
    honest = split_indices(labels, n - f, split, beta, seed, min_samples)
    byz: list[np.ndarray] = []
    if f > 0:
        virtual = split_indices(labels, n, split, beta, seed + 7919, min_samples)
        byz = virtual[n - f :]
    return honest, byz
