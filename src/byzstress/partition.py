"""Splitting a labelled training set among clients.

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

__all__ = ["PaddedShares", "client_shares", "dirichlet_split", "label_skew"]


def dirichlet_split(
    labels: np.ndarray,
    clients: int,
    beta: float | str,
    seed: int,
    min_samples: int = 10,
    max_tries: int = 100,
) -> list[np.ndarray]:
    """Indices of each client's samples (sorted), ``clients`` lists in all."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    if len(labels) < clients * min_samples:
        raise ValueError(
            f"min_samples={min_samples} x {clients} clients exceeds the {len(labels)} samples"
        )
    if isinstance(beta, str):
        if beta.lower() != "iid":
            raise ValueError(f"beta must be a positive number or 'iid', got {beta!r}")
        perm = rng.permutation(len(labels))
        return [np.sort(p) for p in np.array_split(perm, clients)]
    if not beta > 0:
        raise ValueError(f"beta must be > 0 or 'iid', got {beta!r}")
    classes = np.unique(labels)
    by_class = [np.flatnonzero(labels == k) for k in classes]
    for _ in range(max_tries):
        shares: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for idx in by_class:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(clients, float(beta)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for c, part in enumerate(np.split(idx, cuts)):
                shares[c].append(part)
        out = [np.sort(np.concatenate(s)) for s in shares]
        if min(len(s) for s in out) >= min_samples:
            return out
    raise ValueError(
        f"could not draw a Dirichlet(beta={beta}) split of {len(labels)} samples among "
        f"{clients} clients with min_samples={min_samples} in {max_tries} tries; "
        "raise beta or lower min_samples"
    )


def label_skew(labels: np.ndarray, shares: list[np.ndarray], num_classes: int) -> float:
    """Mean total-variation distance between each client's label histogram and the global
    one (0 = IID, → 1 as clients hold single classes)."""
    labels = np.asarray(labels)
    glob = np.bincount(labels, minlength=num_classes) / len(labels)
    tv = [
        0.5 * np.abs(np.bincount(labels[s], minlength=num_classes) / len(s) - glob).sum()
        for s in shares
    ]
    return float(np.mean(tv))


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
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``(honest, byzantine)`` index lists: ``n − f`` honest shares of the whole set and
    ``f`` Byzantine shares from an independent split among ``n`` (see module docstring)."""
    honest = dirichlet_split(labels, n - f, beta, seed, min_samples)
    byz: list[np.ndarray] = []
    if f > 0:
        virtual = dirichlet_split(labels, n, beta, seed + 7919, min_samples)
        byz = virtual[n - f :]
    return honest, byz
