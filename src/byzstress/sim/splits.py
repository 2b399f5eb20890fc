"""How the training set is cut among clients: the kinds of heterogeneity, and its measure.

A split is a spec of the shared grammar (:mod:`byzstress.threats.grammar`), ``NAME[key=value,...]``,
given as the run knob ``split`` (a study axis like any other). Every split is a partition:
each sample goes to at most one client, and every client gets at least ``min_samples``
samples or the split is an error naming the knob. All draws come from
``numpy.random.default_rng(seed)``, so a split is a function of its spec, the labels and
the seed.

``dirichlet`` (default)
    Label skew of Hsu, Qi & Brown (2019, "Measuring the effects of non-identical data
    distribution", arXiv:1909.06335): per class ``k`` draw ``p_k ~ Dir(β · 1_m)`` and cut
    the class's shuffled samples in those proportions; redrawn until every client holds
    ``min_samples``. ``β`` is the run's ``beta`` (``iid``: a uniform random split).
``iid``
    A uniform random split into equal parts (the same draw as ``dirichlet`` with
    ``beta: iid``).
``shards[k=2]``
    McMahan et al. (2017, "Communication-efficient learning of deep networks from
    decentralized data", §3): sort the samples by label, cut them into ``m·k`` equal
    shards, give each client ``k`` shards drawn without replacement. Samples of one class
    are shuffled before sorting, so which of them land in a shard is seeded.
``classes[k=2]``
    Each client holds exactly ``k`` classes (``#C = k`` of Li et al. 2022, "Federated
    learning on non-IID data silos: an experimental study", ICDE): the classes, in a
    seeded order, are dealt round-robin, client ``i`` taking classes ``i·k, …, i·k+k−1``
    (mod C), and each class's shuffled samples are cut evenly among the clients holding
    it. Needs ``k ≤`` the number of classes.
``quantity[beta=0.5]`` or ``quantity[power=1.5]``
    Quantity skew with IID labels (Li et al. 2022): a uniform random permutation cut into
    sizes drawn from ``Dir(β · 1_m)`` (redrawn until every client holds ``min_samples``),
    or sizes following a power law, ``min_samples + (N − m·min_samples) · w_i`` with
    ``w_i ∝ (rank_i + 1)^(−power)`` over a seeded ranking of the clients.
``gamma[gamma=0.5]``
    ByzFL's ``gamma_similarity_niid`` (byzfl 0.0.11, ``DataDistributor``): a ``γ``
    fraction of the (shuffled) samples is split uniformly at random into equal parts, the
    rest is sorted by label and cut into ``m`` contiguous equal chunks; client ``i`` gets
    the ``i``-th part of each. ``γ = 1`` is IID, ``γ = 0`` is ByzFL's ``extreme_niid``.

:func:`heterogeneity` measures how heterogeneous a split is, so that splits of different
kinds can be put on one axis: the total-variation distance between each client's label
distribution and the global one (mean and max over clients), the mean number of classes a
client holds, and the spread of the clients' sizes. This module imports no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ..threats.grammar import check_param, parse

__all__ = ["SPLITS", "check_split", "heterogeneity", "split_indices"]

MAX_TRIES = 100
SplitFn = Callable[..., list[np.ndarray]]


def _uniform(n_items: int, clients: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(n_items), clients)


def _dirichlet(
    labels: np.ndarray,
    clients: int,
    rng: np.random.Generator,
    min_samples: int,
    beta: Any,
    max_tries: int = MAX_TRIES,
) -> list[np.ndarray]:
    if isinstance(beta, str):
        if beta.lower() != "iid":
            raise ValueError(f"beta must be a positive number or 'iid', got {beta!r}")
        return _uniform(len(labels), clients, rng)
    if not beta > 0:
        raise ValueError(f"beta must be > 0 or 'iid', got {beta!r}")
    by_class = [np.flatnonzero(labels == k) for k in np.unique(labels)]
    for _ in range(max_tries):
        shares: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for idx in by_class:
            idx = rng.permutation(idx)
            p = rng.dirichlet(np.full(clients, float(beta)))
            cuts = (np.cumsum(p)[:-1] * len(idx)).astype(int)
            for c, part in enumerate(np.split(idx, cuts)):
                shares[c].append(part)
        out = [np.concatenate(s) for s in shares]
        if min(len(s) for s in out) >= min_samples:
            return out
    raise ValueError(
        f"split: could not draw a Dirichlet(beta={beta}) split of {len(labels)} samples among "
        f"{clients} clients with min_samples={min_samples} in {max_tries} tries; "
        "raise beta or lower min_samples"
    )


def _by_label(labels: np.ndarray, idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``idx`` sorted by label, shuffled within each label."""
    idx = rng.permutation(idx)
    return idx[np.argsort(labels[idx], kind="stable")]


def _shards(labels: np.ndarray, clients: int, rng: np.random.Generator, k: int) -> list[np.ndarray]:
    shards = np.array_split(_by_label(labels, np.arange(len(labels)), rng), clients * k)
    owner = rng.permutation(clients * k).reshape(clients, k)
    return [np.concatenate([shards[j] for j in row]) for row in owner]


def _classes(
    labels: np.ndarray, clients: int, rng: np.random.Generator, k: int
) -> list[np.ndarray]:
    classes = rng.permutation(np.unique(labels))
    if k > len(classes):
        raise ValueError(f"split: classes[k={k}] needs k <= the {len(classes)} classes")
    held = [[classes[(i * k + j) % len(classes)] for j in range(k)] for i in range(clients)]
    shares: list[list[np.ndarray]] = [[] for _ in range(clients)]
    for c in classes:
        holders = [i for i, h in enumerate(held) if c in h]
        if not holders:  # fewer clients x k than classes: this class is not used
            continue
        parts = np.array_split(rng.permutation(np.flatnonzero(labels == c)), len(holders))
        for i, part in zip(holders, parts, strict=True):
            shares[i].append(part)
    return [np.concatenate(s) for s in shares]


def _quantity(
    labels: np.ndarray,
    clients: int,
    rng: np.random.Generator,
    min_samples: int,
    beta: float | None,
    power: float | None,
) -> list[np.ndarray]:
    if beta is not None and power is not None:
        raise ValueError("split: quantity takes beta (Dirichlet sizes) or power, not both")
    n_items = len(labels)
    if power is None:
        beta = 0.5 if beta is None else beta
        if not beta > 0:
            raise ValueError(f"split: quantity[beta] must be > 0, got {beta}")
        for _ in range(MAX_TRIES):
            p = rng.dirichlet(np.full(clients, float(beta)))
            cuts = (np.cumsum(p)[:-1] * n_items).astype(int)
            out = np.split(rng.permutation(n_items), cuts)
            if min(len(s) for s in out) >= min_samples:
                return out
        raise ValueError(
            f"split: could not draw quantity[beta={beta}] sizes with min_samples={min_samples} "
            f"for {clients} clients in {MAX_TRIES} tries; raise beta or lower min_samples"
        )
    if not power >= 0:
        raise ValueError(f"split: quantity[power] must be >= 0, got {power}")
    rank = rng.permutation(clients)
    w = (rank + 1.0) ** (-float(power))
    spare = n_items - clients * min_samples
    sizes = min_samples + np.floor(spare * w / w.sum()).astype(int)
    sizes[np.argmax(w)] += n_items - sizes.sum()  # the rounding remainder to the largest
    return np.split(rng.permutation(n_items), np.cumsum(sizes)[:-1])


def _gamma(
    labels: np.ndarray, clients: int, rng: np.random.Generator, gamma: float
) -> list[np.ndarray]:
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"split: gamma[gamma] must be in [0, 1], got {gamma}")
    idx = rng.permutation(len(labels))
    n_iid = int(len(idx) * gamma)
    iid = np.array_split(idx[:n_iid], clients)
    rest = idx[n_iid:]
    rest = rest[np.argsort(labels[rest], kind="stable")]
    sorted_parts = np.array_split(rest, clients)
    return [np.concatenate([a, b]) for a, b in zip(iid, sorted_parts, strict=True)]


# name -> (function, its parameters and their defaults, whether it reads beta/min_samples)
SPLITS: dict[str, tuple[SplitFn, dict[str, Any]]] = {
    "dirichlet": (_dirichlet, {}),
    "iid": (lambda labels, clients, rng: _uniform(len(labels), clients, rng), {}),
    "shards": (_shards, {"k": 2}),
    "classes": (_classes, {"k": 2}),
    "quantity": (_quantity, {"beta": None, "power": None}),
    "gamma": (_gamma, {"gamma": 0.5}),
}
_NUMBER_PARAMS = {"beta", "power", "gamma"}


def check_split(split: str) -> tuple[str, dict[str, Any]]:
    """The split's name and full parameters; ``ValueError`` naming ``split`` otherwise."""
    if not isinstance(split, str):
        raise ValueError(f"split: must be a split spec such as 'shards[k=2]', got {split!r}")
    try:
        spec = parse(split)
    except ValueError as err:
        raise ValueError(f"split: {err}") from err
    if spec.name not in SPLITS or spec.children:
        raise ValueError(f"split: unknown split {split!r}; valid: {', '.join(SPLITS)}")
    defaults = SPLITS[spec.name][1]
    unknown = sorted(set(spec.params) - set(defaults))
    if unknown:
        valid = ", ".join(defaults) or "none"
        raise ValueError(f"split: {spec.name} has no parameter {unknown[0]!r}; valid: {valid}")
    params = {**defaults, **spec.params}
    for key, value in spec.params.items():
        if key in _NUMBER_PARAMS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"split: {spec.name}[{key}] must be a number, got {value!r}")
            params[key] = float(value)
        else:
            check_param(f"split: {spec.name}", key, value, defaults[key])
            if value < 1:
                raise ValueError(f"split: {spec.name}[{key}] must be >= 1, got {value}")
    return spec.name, params


def split_indices(
    labels: np.ndarray,
    clients: int,
    split: str,
    beta: float | str,
    seed: int,
    min_samples: int = 10,
    max_tries: int = MAX_TRIES,
) -> list[np.ndarray]:
    """Each client's sample indices (sorted), ``clients`` lists in all (module docstring).
    ``beta`` is read by ``dirichlet`` only; ``max_tries`` bounds its redraws."""
    labels = np.asarray(labels)
    name, params = check_split(split)
    if clients < 1:
        raise ValueError(f"clients must be >= 1, got {clients}")
    if len(labels) < clients * min_samples:
        raise ValueError(
            f"min_samples={min_samples} x {clients} clients exceeds the {len(labels)} samples"
        )
    rng = np.random.default_rng(seed)
    fn = SPLITS[name][0]
    if name == "dirichlet":
        out = fn(labels, clients, rng, min_samples, beta, max_tries)
    elif name == "quantity":
        out = fn(labels, clients, rng, min_samples, **params)
    else:
        out = fn(labels, clients, rng, **params)
    out = [np.sort(np.asarray(s, dtype=np.int64)) for s in out]
    small = [i for i, s in enumerate(out) if len(s) < min_samples]
    if small:
        raise ValueError(
            f"split: {split!r} gives client {small[0]} {len(out[small[0]])} samples, fewer "
            f"than min_samples={min_samples}; use fewer clients or other parameters"
        )
    return out


def heterogeneity(
    labels: np.ndarray, shares: list[np.ndarray], num_classes: int
) -> dict[str, float]:
    """How heterogeneous a split is: ``label_tv_mean`` / ``label_tv_max``, the total-
    variation distance ``½ Σ_k |p_i(k) − p(k)|`` between client ``i``'s label distribution
    and the global one (0: IID; → 1 − p(k) for a single class), the mean number of
    classes a client holds (``classes_mean``), and the clients' sizes (``size_min``,
    ``size_median``, ``size_max`` and their coefficient of variation ``size_cv``)."""
    labels = np.asarray(labels)
    glob = np.bincount(labels, minlength=num_classes) / len(labels)
    hists = [np.bincount(labels[s], minlength=num_classes) for s in shares]
    tv = [0.5 * float(np.abs(h / max(1, h.sum()) - glob).sum()) for h in hists]
    sizes = np.array([len(s) for s in shares], dtype=float)
    return {
        "label_tv_mean": float(np.mean(tv)),
        "label_tv_max": float(np.max(tv)),
        "classes_mean": float(np.mean([(h > 0).sum() for h in hists])),
        "size_min": float(sizes.min()),
        "size_median": float(np.median(sizes)),
        "size_max": float(sizes.max()),
        "size_cv": float(sizes.std() / sizes.mean()) if sizes.mean() > 0 else math.nan,
    }
