import itertools

import numpy as np
import pytest
import torch

from byzstress.sim.partition import PaddedShares, client_shares
from byzstress.sim.splits import heterogeneity, split_indices


def dirichlet_split(labels, clients, beta, seed, min_samples=10, max_tries=100):
    return split_indices(labels, clients, "dirichlet", beta, seed, min_samples, max_tries)


def label_skew(labels, shares, num_classes):
    return heterogeneity(labels, shares, num_classes)["label_tv_mean"]


LABELS = np.repeat(np.arange(10), 600)  # 6000 samples, 10 balanced classes


def test_skew_grows_as_beta_shrinks():
    skews = []
    for beta in (100.0, 1.0, 0.3, 0.1):
        per_seed = [label_skew(LABELS, dirichlet_split(LABELS, 14, beta, s), 10) for s in range(3)]
        skews.append(np.mean(per_seed))
    iid = label_skew(LABELS, dirichlet_split(LABELS, 14, "iid", 0), 10)
    assert iid < 0.1  # sampling noise only (measured 0.055 with 428 samples per client)
    assert all(a < b for a, b in itertools.pairwise(skews)), skews
    assert skews[-1] > 0.5  # beta = 0.1: most clients hold a few classes


@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, "iid"])
def test_partition_covers_each_sample_once_and_no_empty_client(beta):
    shares = dirichlet_split(LABELS, 14, beta, seed=3, min_samples=25)
    allidx = np.concatenate(shares)
    assert len(allidx) == len(LABELS)
    assert len(np.unique(allidx)) == len(LABELS)
    assert min(len(s) for s in shares) >= 25


def test_reproducible_by_seed():
    a = dirichlet_split(LABELS, 14, 0.3, seed=5)
    b = dirichlet_split(LABELS, 14, 0.3, seed=5)
    c = dirichlet_split(LABELS, 14, 0.3, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_impossible_minimum_is_a_clear_error():
    with pytest.raises(ValueError, match="min_samples"):
        dirichlet_split(LABELS, 14, 0.01, seed=0, min_samples=420, max_tries=3)
    with pytest.raises(ValueError, match="beta"):
        dirichlet_split(LABELS, 14, -1.0, seed=0)
    with pytest.raises(ValueError, match="beta"):
        dirichlet_split(LABELS, 14, "uniform", seed=0)


def test_byzantine_shares_are_separate_draws():
    honest, byz = client_shares(LABELS, n=17, f=3, beta=0.5, seed=0)
    assert len(honest) == 14 and len(byz) == 3
    assert sum(len(s) for s in honest) == len(LABELS)
    assert all(len(s) >= 10 for s in byz)


def test_padded_sampling_stays_inside_each_share():
    shares = dirichlet_split(LABELS, 5, 0.2, seed=1)
    ps = PaddedShares(shares)
    idx = ps.sample(64, torch.Generator().manual_seed(0))
    assert idx.shape == (5, 64)
    for i, s in enumerate(shares):
        assert set(idx[i].tolist()) <= set(s.tolist())
