"""Robust aggregation rules and pre-aggregators.

Every rule maps the ``n`` submitted vectors ``x`` (a tensor ``[n, d]``) to one vector ``[d]``;
``f`` is the number of Byzantine vectors the rule is told to tolerate. Pre-aggregators map
``[n, d]`` to ``[m, d]`` and run left to right before the rule. All of them work on the run's
device, vectorised over coordinates (no Python loop over ``d``).

Public API (stable)::

    agg = build("trMean(NNM)", n=17, f=3)   # a Defense; agg(x) -> [d]
    build("cclip[tau=10,iters=3]", n, f)     # parameters in brackets
    build("rfa(buck[s=2])", n, f)            # pre-aggregators in parentheses

Non-finite inputs: entries that are NaN or ±Inf (a Byzantine client may send them) are
mapped to ``±BIG`` (NaN to ``+BIG``) before anything else, so that distances stay finite in
float32 for d up to ~10^7; every rule then sees them as extreme outliers and never raises.

New rules register with :func:`register_rule` / :func:`register_pre` (see the README's
"adding your own attack or defense"); :mod:`byzstress.threats.plugins` imports user modules
and installed packages' entry points (groups ``byzstress.defenses`` and ``byzstress.attacks``).
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any, ClassVar

import torch
from torch import Tensor

from .grammar import Spec, check_param, parse
from .plugins import load_plugins

BIG = 1e15
# Relative tolerance under which two selection scores count as tied (float32 rounding of
# equal distances, e.g. after a translation, stays well below it).
TIE_RTOL = 1e-6

__all__ = [
    "BIG",
    "PRE_AGGREGATORS",
    "RULES",
    "Defense",
    "build",
    "register_pre",
    "register_rule",
    "sanitize",
]


def sanitize(x: Tensor) -> tuple[Tensor, int]:
    """Map NaN to ``+BIG`` and ±Inf (and anything beyond) to ``±BIG``; ``x`` itself when
    it is already in range (one min/max pass, which NaN also fails, instead of a copy).
    Also returns how many rows had such entries (0 on the fast path)."""
    lo, hi = torch.aminmax(x)
    if bool((lo >= -BIG) & (hi <= BIG)):  # one device read
        return x, 0
    bad = ~((x >= -BIG) & (x <= BIG))  # NaN fails both comparisons
    rows = int(bad.any(1).sum())
    return torch.nan_to_num(x, nan=BIG, posinf=BIG, neginf=-BIG).clamp(-BIG, BIG), rows


def pairwise_sq_dists(x: Tensor) -> Tensor:
    """Squared Euclidean distances ``[n, n]`` via the Gram matrix.

    The rows are first centred on the smallest-norm row, so that close vectors keep their
    relative precision in float32 even when other rows are huge (``BIG``).
    """
    ref = x[x.norm(dim=1).argmin()]
    xc = x - ref
    gram = xc @ xc.T
    sq = gram.diagonal()  # the squared norms, without another pass over [n, d]
    d2 = sq[:, None] + sq[None, :] - 2.0 * gram
    d2.fill_diagonal_(0.0)
    return d2.clamp_min_(0.0)


def pairwise_sq_dists_direct(x: Tensor) -> Tensor:
    """Squared Euclidean distances ``[n, n]`` summed pair by pair, ``O(n² d)``.

    Each entry is computed from its two rows alone, the same way whatever their positions
    (``cdist`` without the matrix-product shortcut), so equal distances come out bitwise
    equal and selections on them do not depend on the order of the inputs; the Gram form's
    rounding depends on every row.
    """
    return torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist") ** 2


def nearest_weights(d2: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """``[n, n]`` mixing matrix: row ``i`` puts ``1/k`` on the ``k`` rows nearest to row ``i``
    (by ``d2``, itself included)."""
    idx = d2.topk(k, dim=1, largest=False).indices
    return torch.zeros_like(d2, dtype=dtype).scatter_(1, idx, 1.0 / k)


def mean_of_nearest(x: Tensor, d2: Tensor, k: int) -> Tensor:
    """Row ``i`` of the output is the mean of the ``k`` rows of ``x`` nearest to row ``i``
    (by ``d2``, itself included), computed as one ``[n, n] @ [n, d]`` product."""
    return nearest_weights(d2, k, x.dtype) @ x


def extreme_rows(x: Tensor, k: int) -> list[Tensor]:
    """The rows of ``x`` after ``k`` rounds of a coordinate-wise cocktail-shaker sort:
    positions ``0..k-1`` then hold the ``k`` smallest values of every coordinate in order,
    positions ``n-k..n-1`` the ``k`` largest, the middle rows the rest (unordered).

    ``O(k n)`` element-wise min/max over ``[d]`` rows: on the CPU 4x faster than
    ``torch.sort`` along the client axis for trimmed means and medians of n ≈ 17.
    """
    n = x.shape[0]
    rows = list(x.unbind(0))
    for j in range(k):
        for i in range(j, n - 1 - j):
            a, b = rows[i], rows[i + 1]
            rows[i], rows[i + 1] = torch.minimum(a, b), torch.maximum(a, b)
        for i in range(n - 2 - j, j, -1):
            a, b = rows[i - 1], rows[i]
            rows[i - 1], rows[i] = torch.minimum(a, b), torch.maximum(a, b)
    return rows


def _use_shaker(x: Tensor, k: int) -> bool:
    # Measured crossover on a 2-core CPU. On an H200 the sort wins at d = 431k (median
    # 0.47 vs 2.4 ms) and the shaker only for wide trimmed means (d = 2.3M, f = 3: 1.3 vs
    # 2.3 ms; benchmarks/bench_coordinatewise.py), so GPUs keep the sort.
    return x.device.type == "cpu" and k * x.shape[0] <= 2500


def kth_smallest(x: Tensor, k: int) -> Tensor:
    """Coordinate-wise ``k``-th smallest value (1-based) along the client axis.

    On the CPU, ``n − k + 1`` shaker rounds put it in row ``k − 1``: 5x faster than
    ``kthvalue`` there (8 against 40 ms at n = 17, k = 14, d = 431k), which copies the input
    into per-coordinate slices."""
    n = x.shape[0]
    if _use_shaker(x, n - k + 1):
        return extreme_rows(x, n - k + 1)[k - 1]
    return x.kthvalue(k, dim=0).values


def coordinate_median(x: Tensor) -> Tensor:
    """Coordinate-wise median; for even ``n`` the mean of the two middle values."""
    n = x.shape[0]
    k = (n - 1) // 2
    if _use_shaker(x, k):
        rows = extreme_rows(x, k)
        return rows[k] if n % 2 else 0.5 * (rows[k] + rows[k + 1])
    if n % 2:
        return x.median(0).values
    s = x.sort(0).values
    return 0.5 * (s[n // 2 - 1] + s[n // 2])


def trimmed_mean(x: Tensor, f: int) -> Tensor:
    """Coordinate-wise mean after dropping the ``f`` largest and ``f`` smallest values."""
    n = x.shape[0]
    if f == 0:
        return x.mean(0)
    if _use_shaker(x, f):
        middle = extreme_rows(x, f)[f : n - f]
        total = middle[0] + middle[1] if len(middle) > 1 else middle[0].clone()
        for row in middle[2:]:  # in place: no [n - 2f, d] stack
            total.add_(row)
        return total.div_(len(middle))
    return x.sort(0).values[f : n - f].mean(0)


def _clip_scales(u: Tensor, tau: float | Tensor) -> Tensor:
    """``min(1, tau / ||u_i||)`` for every row ``i`` of ``u`` (``[n]``)."""
    return torch.clamp(tau / u.norm(dim=1).clamp_min(1e-12), max=1.0)


def _clip_rows(u: Tensor, tau: float | Tensor) -> Tensor:
    """``u_i * min(1, tau / ||u_i||)`` row-wise."""
    return u * _clip_scales(u, tau).unsqueeze(1)


class Component:
    """Shared machinery: parameters, state for stateful rules, cloning for probes.

    ``radii``: the parameters that are distances in the units of the input vectors (RFA's
    ν, CClip's τ, static clipping's c); :meth:`Defense.scale_radii` rescales them when they
    are given in another momentum form's units.
    """

    names: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    stateful: ClassVar[bool] = False
    radii: ClassVar[tuple[str, ...]] = ()

    def __init__(self, n: int, f: int, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            allowed = ", ".join(sorted(self.defaults)) or "none"
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for {self.names[0]!r}; allowed: {allowed}"
            )
        for key, value in params.items():
            check_param(self.names[0], key, value, self.defaults[key])
        self.n, self.f = n, f
        self.params = {**self.defaults, **params}
        self.info: dict[str, float] = {}
        self.check()

    def check(self) -> None:
        """Validate ``n``, ``f`` and the parameters; raise ``ValueError`` naming the key."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


class Rule(Component):
    """An aggregation rule ``[n, d] -> [d]``.

    :meth:`byzantine_share` (diagnostics) says how much of the last output came from the
    rows marked Byzantine; rules that cannot say return an empty dict.
    """

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        """Diagnostics of the last call on ``x`` ``[m, d]`` whose rows carry Byzantine
        weights ``w`` ``[m]`` (0: honest, 1: Byzantine, between: a mixture)."""
        return {}


class PreAggregator(Component):
    """A pre-aggregator ``[n, d] -> [m, d]``; ``out_n`` is ``m``.

    After each call ``mix`` is the ``[m, n]`` matrix whose row ``j`` gives the weights of the
    inputs in output row ``j`` (``None``: each output row comes from its own input row alone,
    as with clipping); diagnostics use it to follow the Byzantine weight of every row.
    ``keeps_rows``: output row ``i`` stands for input row ``i`` (NNM, clipping).
    """

    keeps_rows: ClassVar[bool] = True
    mix: Tensor | None = None

    def out_n(self) -> int:
        return self.n

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


RULES: dict[str, type[Rule]] = {}
PRE_AGGREGATORS: dict[str, type[PreAggregator]] = {}


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Class decorator: make a :class:`Rule` available under each of ``cls.names``."""
    for name in cls.names:
        RULES[name.lower()] = cls
    return cls


def register_pre(cls: type[PreAggregator]) -> type[PreAggregator]:
    """Class decorator: make a :class:`PreAggregator` available under ``cls.names``."""
    for name in cls.names:
        PRE_AGGREGATORS[name.lower()] = cls
    return cls


def _need_honest_majority(c: Component, strict_factor: int = 2, extra: int = 0) -> None:
    if c.n < 1 or c.f < 0:
        raise ValueError(f"{c.names[0]}: need n >= 1 and f >= 0, got n={c.n}, f={c.f}")
    if c.n <= strict_factor * c.f + extra:
        raise ValueError(
            f"{c.names[0]} needs n > {strict_factor}f{f' + {extra}' if extra else ''}; "
            f"got n={c.n}, f={c.f}"
        )


# ----------------------------------------------------------------------------- rules


@register_rule
class Mean(Rule):
    """Arithmetic mean ``(1/n) Σ x_i`` (no robustness; the D-SGD baseline)."""

    names = ("mean", "average", "avg")

    def __call__(self, x: Tensor) -> Tensor:
        return x.mean(0)

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        return {"rule_byz_share": float(w.mean())}


def _kept_weight(x: Tensor, w: Tensor, lo: int, hi: int) -> Tensor:
    """Per coordinate, the summed Byzantine weight of the values at sorted positions
    ``lo..hi-1`` (one argsort over ``[m, d]``: diagnostics only, not on the step's path)."""
    order = x.argsort(0)[lo:hi]  # [hi - lo, d] row indices
    return w.to(x.dtype)[order].sum(0)


@register_rule
class CoordinateMedian(Rule):
    """Coordinate-wise median (CWMed, "CM"; Yin et al., ICML 2018).

    For even ``n`` the two middle order statistics are averaged.
    """

    names = ("cm", "cwmed", "median")

    def __call__(self, x: Tensor) -> Tensor:
        return coordinate_median(x)

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        """``byz_values_kept``: the Byzantine weight of the median value(s), averaged over
        coordinates (for even ``m`` the two middle values count half each)."""
        m = x.shape[0]
        lo, hi = ((m - 1) // 2, (m + 1) // 2) if m % 2 else (m // 2 - 1, m // 2 + 1)
        kept = _kept_weight(x, w, lo, hi).mean() / (hi - lo)
        return {"byz_values_kept": float(kept), "rule_byz_share": float(kept)}


@register_rule
class TrimmedMean(Rule):
    """Coordinate-wise trimmed mean (CWTM, "trMean"; Yin et al., ICML 2018).

    Per coordinate, drop the ``f`` largest and ``f`` smallest values and average the
    remaining ``n - 2f``.
    """

    names = ("trmean", "cwtm", "trimmedmean")

    def check(self) -> None:
        _need_honest_majority(self)

    def __call__(self, x: Tensor) -> Tensor:
        return trimmed_mean(x, self.f)

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        """``byz_values_kept``: how many Byzantine values (by weight) survive trimming per
        coordinate on average, out of the ``m − 2f`` kept; ``rule_byz_share`` = that / (m−2f)."""
        m = x.shape[0]
        kept = float(_kept_weight(x, w, self.f, m - self.f).mean())
        return {"byz_values_kept": kept, "rule_byz_share": kept / (m - 2 * self.f)}


@register_rule
class GeometricMedian(Rule):
    """Geometric median by smoothed Weiszfeld (RFA; Pillutla et al., IEEE TSP 2022, Alg. 2).

    ``z ← Σ_i w_i x_i / Σ_i w_i`` with ``w_i = 1 / max(ν, ||z − x_i||)``, started from the
    mean, at least ``min_iters`` and at most ``iters`` iterations, stopping early once
    ``||z_{t+1} − z_t|| ≤ tol · max(1, ||z_t||)``. ``info`` records the last step's
    residual and the number of iterations.
    """

    names = ("rfa", "gm", "geomed")
    defaults: ClassVar[dict[str, Any]] = {"nu": 0.1, "iters": 100, "min_iters": 8, "tol": 1e-6}
    radii = ("nu",)
    weights: Tensor | None = None

    def check(self) -> None:
        if self.params["iters"] < self.params["min_iters"] or self.params["min_iters"] < 1:
            raise ValueError(f"rfa: need 1 <= min_iters <= iters, got {self.params}")
        if self.params["nu"] <= 0:
            raise ValueError(f"rfa: nu must be > 0, got {self.params['nu']}")
        if self.params["tol"] < 0:
            raise ValueError(f"rfa: tol must be >= 0, got {self.params['tol']}")

    def __call__(self, x: Tensor) -> Tensor:
        nu, tol = float(self.params["nu"]), float(self.params["tol"])
        min_iters = int(self.params["min_iters"])
        z = x.mean(0)
        residual, it = torch.tensor(float("nan")), 0
        for it in range(1, int(self.params["iters"]) + 1):
            w = 1.0 / (x - z).norm(dim=1).clamp_min(nu)
            z_new = (w @ x) / w.sum()  # one pass over x, no [n, d] temporary
            residual = (z_new - z).norm()
            z = z_new
            # reading the residual waits for the device: only once the test can stop
            if it >= min_iters and float(residual) <= tol * max(1.0, float(z.norm())):
                break
        self.info = {"residual": float(residual), "iterations": float(it)}
        self.weights = w
        return z

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        """``rule_byz_share``: the Byzantine part of the last Weiszfeld weights."""
        if self.weights is None:
            return {}
        a = self.weights / self.weights.sum()
        return {"rule_byz_share": float(a @ w.to(a.dtype))}


def krum_scores(x: Tensor, f: int) -> Tensor:
    """Krum score: sum of squared distances to the ``n − f − 2`` nearest other vectors."""
    n = x.shape[0]
    d2 = pairwise_sq_dists(x)
    k = n - f - 2
    # the smallest entry of each row is the zero self-distance; skip it
    return d2.sort(1).values[:, 1 : k + 1].sum(1)


@register_rule
class Krum(Rule):
    """Krum (Blanchard et al., NeurIPS 2017): the vector with the smallest Krum score."""

    names = ("krum",)

    def check(self) -> None:
        _need_honest_majority(self, extra=2)

    def __call__(self, x: Tensor) -> Tensor:
        return x[krum_scores(x, self.f).argmin()]

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        return {"rule_byz_share": float(w[krum_scores(x, self.f).argmin()])}


@register_rule
class MultiKrum(Rule):
    """Multi-Krum (Blanchard et al. 2017): mean of the ``m`` lowest-score vectors (m = n − f)."""

    names = ("multikrum", "mkrum")
    defaults: ClassVar[dict[str, Any]] = {"m": None}

    def check(self) -> None:
        _need_honest_majority(self, extra=2)
        m = self.params["m"]
        if m is not None and not 1 <= m <= self.n:
            raise ValueError(f"multikrum: m must be in [1, n={self.n}], got {m}")

    def __call__(self, x: Tensor) -> Tensor:
        return x[self._selected(x)].mean(0)

    def _selected(self, x: Tensor) -> Tensor:
        m = self.params["m"] or x.shape[0] - self.f
        return krum_scores(x, self.f).argsort()[:m]

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        return {"rule_byz_share": float(w[self._selected(x)].mean())}


@register_rule
class CenteredClipping(Rule):
    """Centered clipping (Karimireddy, He & Jaggi, ICML 2021, Alg. 2).

    ``v ← v + (1/n) Σ_i clip_τ(x_i − v)`` repeated ``iters`` times, with
    ``clip_τ(u) = u · min(1, τ/||u||)``; the center ``v`` is carried over from the previous
    step (zero at the first). τ is in the units of the momentum vectors: with the EMA form
    ``m ← βm + (1−β)g`` the vectors are gradient-sized.
    """

    names = ("cclip", "centeredclipping")
    defaults: ClassVar[dict[str, Any]] = {"tau": 10.0, "iters": 3}
    stateful = True
    radii = ("tau",)
    pull: Tensor | None = None

    def __init__(self, n: int, f: int, **params: Any) -> None:
        super().__init__(n, f, **params)
        self.center: Tensor | None = None

    def check(self) -> None:
        if self.params["tau"] <= 0 or self.params["iters"] < 1:
            raise ValueError(f"cclip: need tau > 0 and iters >= 1, got {self.params}")

    def __call__(self, x: Tensor) -> Tensor:
        v = torch.zeros_like(x[0]) if self.center is None else self.center.to(x)
        u = torch.empty_like(x)  # one [n, d] buffer for all iterations
        for _ in range(int(self.params["iters"])):
            torch.sub(x, v, out=u)
            # (1/n) Σ_i s_i u_i as one matrix-vector product: no clipped [n, d] copy
            scales = _clip_scales(u, float(self.params["tau"]))
            v = v + (scales @ u) / x.shape[0]
        self.center = v
        self.pull = scales * u.norm(dim=1)  # ||clip(x_i − v)|| of the last iteration
        return v

    def byzantine_share(self, x: Tensor, w: Tensor) -> dict[str, float]:
        """``rule_byz_share``: the Byzantine part of the last iteration's total clipped
        displacement ``Σ_i ||clip_τ(x_i − v)||``."""
        if self.pull is None:
            return {}
        total = self.pull.sum().clamp_min(1e-30)
        return {"rule_byz_share": float((self.pull @ w.to(self.pull.dtype)) / total)}

    def state_dict(self) -> dict[str, Any]:
        return {"center": self.center}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.center = state.get("center")


@register_rule
class MDA(Rule):
    """Minimum-diameter averaging (El Mhamdi et al., ICML 2018; Rousseeuw 1985).

    The mean of the subset of ``n − f`` vectors whose diameter (largest pairwise distance)
    is smallest (ties: the average of the tied subsets' means). Exhaustive over the
    ``C(n, f)`` subsets, vectorised; refuses beyond
    ``max_subsets`` subsets.
    """

    names = ("mda",)
    defaults: ClassVar[dict[str, Any]] = {"max_subsets": 2_000_000}

    def check(self) -> None:
        _need_honest_majority(self)
        if self.params["max_subsets"] < 1:
            raise ValueError(f"mda: max_subsets must be >= 1, got {self.params['max_subsets']}")
        count = math.comb(self.n, self.f)
        if count > self.params["max_subsets"]:
            raise ValueError(
                f"mda: C(n={self.n}, f={self.f}) = {count} subsets exceeds "
                f"max_subsets={self.params['max_subsets']}"
            )

    def __call__(self, x: Tensor) -> Tensor:
        n, f = x.shape[0], self.f
        if f == 0:
            return x.mean(0)
        d2 = pairwise_sq_dists_direct(x)  # ties between subsets must not depend on order
        removed = torch.tensor(list(itertools.combinations(range(n), f)), device=x.device)
        keep = torch.ones(len(removed), n, dtype=torch.bool, device=x.device)
        keep.scatter_(1, removed, False)
        pair = keep[:, :, None] & keep[:, None, :]
        diam = torch.where(pair, d2[None], torch.zeros((), dtype=d2.dtype, device=x.device))
        diam = diam.amax((1, 2))
        # several subsets may share the smallest diameter (the same extreme pair): average
        # their means, which keeps the rule permutation invariant; "share" up to float
        # rounding (TIE_RTOL), so that a translation cannot split a tie
        best = keep[diam <= diam.min() * (1.0 + TIE_RTOL)].to(x.dtype)  # [t, n]
        return (best @ x / (n - f)).mean(0)


@register_rule
class Meamed(Rule):
    """Mean around the median (Xie et al. 2018, "Phocas"/"Meamed").

    Per coordinate, the mean of the ``n − f`` values closest to the coordinate's median;
    values tied for the last places share them equally.
    """

    names = ("meamed",)

    def check(self) -> None:
        _need_honest_majority(self)

    def __call__(self, x: Tensor) -> Tensor:
        k = x.shape[0] - self.f
        buf = (x - coordinate_median(x)).abs_()  # the distances, then reused (one [n, d])
        kth = kth_smallest(buf, k)
        # values as far from the median as the k-th (up to rounding) share the last places
        # equally, so the result does not depend on the order of the inputs
        tol = kth * TIE_RTOL
        closer = buf < kth - tol
        at = (buf <= kth + tol).logical_xor_(closer)  # closer ⊆ (≤ kth + tol)
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        need = k - closer.sum(0, dtype=x.dtype)  # a float count: a bool sum goes via int64
        at_sum = torch.where(at, x, zero, out=buf).sum(0)
        closer_sum = torch.where(closer, x, zero, out=buf).sum(0)
        return (closer_sum + need * (at_sum / at.sum(0, dtype=x.dtype))) / k


@register_rule
class MoNNA(Rule):
    """MoNNA (Farhadkhani et al., ICML 2023): the mean of the ``n − f`` nearest neighbours
    of a trusted pivot vector (``pivot`` index; byzstress puts honest clients first)."""

    names = ("monna",)
    defaults: ClassVar[dict[str, Any]] = {"pivot": 0}

    def check(self) -> None:
        _need_honest_majority(self)
        if not 0 <= self.params["pivot"] < self.n - self.f:
            raise ValueError(
                f"monna: pivot must be an honest index in [0, n - f = {self.n - self.f}), "
                f"got {self.params['pivot']}"
            )

    def __call__(self, x: Tensor) -> Tensor:
        p = int(self.params["pivot"])
        d2 = (x - x[p]).square_().sum(1)  # in place: one [n, d] temporary, not two
        return mean_of_nearest(x, d2[None], x.shape[0] - self.f)[0]


# ----------------------------------------------------------------------- pre-aggregators


@register_pre
class Bucketing(PreAggregator):
    """Bucketing (Karimireddy, He & Jaggi, ICLR 2022, Alg. 1): randomly permute the ``n``
    vectors and average consecutive buckets of ``s``, giving ``ceil(n/s)`` vectors."""

    names = ("buck", "bucketing")
    defaults: ClassVar[dict[str, Any]] = {"s": 2}
    keeps_rows = False

    def check(self) -> None:
        if int(self.params["s"]) < 1:
            raise ValueError(f"buck: s must be >= 1, got {self.params['s']}")

    def out_n(self) -> int:
        return math.ceil(self.n / int(self.params["s"]))

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n, s = x.shape[0], int(self.params["s"])
        perm = torch.randperm(n, generator=generator).to(x.device)
        xs = x[perm]
        m = math.ceil(n / s)
        pad = m * s - n
        bucket = torch.arange(n, device=x.device) // s  # the bucket of sorted position j
        sizes = torch.bincount(bucket, minlength=m).to(x.dtype)
        mix = torch.zeros(m, n, dtype=x.dtype, device=x.device)
        self.mix = mix.index_put_((bucket, perm), 1.0 / sizes[bucket])
        if pad == 0:
            return xs.view(m, s, -1).mean(1)
        full = xs[: (m - 1) * s].view(m - 1, s, -1).mean(1)
        return torch.cat([full, xs[(m - 1) * s :].mean(0, keepdim=True)])


@register_pre
class NNM(PreAggregator):
    """Nearest-neighbour mixing (Allouah et al., AISTATS 2023, Alg. 1): each vector is
    replaced by the mean of its ``n − f`` nearest neighbours (itself included)."""

    names = ("nnm",)

    def check(self) -> None:
        _need_honest_majority(self)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.mix = nearest_weights(pairwise_sq_dists(x), x.shape[0] - self.f, x.dtype)
        return self.mix @ x


@register_pre
class ARC(PreAggregator):
    """Adaptive robust clipping (Allouah et al., NeurIPS 2024, Alg. 1): the
    ``k = ⌊2 (f/n)(n − f)⌋`` largest-norm vectors are clipped to the norm of the
    ``(k+1)``-th largest."""

    names = ("arc",)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n = x.shape[0]
        k = math.floor(2 * (self.f / n) * (n - self.f))
        if k <= 0 or k >= n:
            return x
        norms = x.norm(dim=1)
        thr = norms.sort(descending=True).values[k]
        return _clip_rows(x, thr)


@register_pre
class StaticClip(PreAggregator):
    """Static norm clipping: ``x_i · min(1, c / ||x_i||)``."""

    names = ("clip", "clipping")
    defaults: ClassVar[dict[str, Any]] = {"c": 2.0}
    radii = ("c",)

    def check(self) -> None:
        if self.params["c"] <= 0:
            raise ValueError(f"clip: c must be > 0, got {self.params['c']}")

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return _clip_rows(x, float(self.params["c"]))


# ------------------------------------------------------------------------- composition


class Defense:
    """Pre-aggregators (left to right) followed by a rule; callable ``[n, d] -> [d]``.

    Holds the random generator used by randomised pre-aggregators (bucketing) so that a
    run is reproducible and resumable; :meth:`clone` gives an independent copy (used to
    probe a stateful defense without changing it).
    """

    def __init__(self, spec: str, rule: Rule, pre: list[PreAggregator], seed: int = 0) -> None:
        self.spec, self.rule, self.pre = spec, rule, pre
        self.generator = torch.Generator().manual_seed(seed)
        self.rule_input: Tensor | None = None  # kept only while ``tracing``
        self.tracing = False
        self.last_sanitized = 0  # rows the last call had to sanitise

    @property
    def stateful(self) -> bool:
        return self.rule.stateful

    @property
    def info(self) -> dict[str, float]:
        return self.rule.info

    def __call__(self, x: Tensor) -> Tensor:
        x, self.last_sanitized = sanitize(x)
        for p in self.pre:
            x = p(x, self.generator)
        self.rule_input = x if self.tracing else None
        return self.rule(x)

    def scale_radii(self, factor: float) -> None:
        """Multiply every radius parameter (RFA's ν, CClip's τ, clipping's c) by ``factor``,
        e.g. ``1 − β`` to turn heavy-ball units into EMA units."""
        for comp in [*self.pre, self.rule]:
            for key in comp.radii:
                comp.params[key] = float(comp.params[key]) * factor

    def diagnose(self, byzantine: Tensor) -> dict[str, float | None]:
        """Where the Byzantine weight went in the last call (made with ``tracing`` on).

        ``byzantine`` ``[n]``: 1 for the rows the attack sent, 0 for honest rows. Follows it
        through the pre-aggregators' mixing matrices to the rows the rule saw:

        * ``byz_weight_rows`` — mean Byzantine weight of those rows (bucketing: the
          Byzantine share of each bucket; NNM: of each row's ``n − f`` nearest neighbours);
        * ``byz_weight_rows_max`` — the largest;
        * ``byz_weight_honest_rows`` — mean over the rows that stand for honest inputs,
          when every pre-aggregator keeps rows (NNM: the share of Byzantine vectors among
          each honest vector's ``n − f`` nearest neighbours), else ``None``;
        * the rule's own :meth:`Rule.byzantine_share` (``rule_byz_share``, and for
          trMean/CM ``byz_values_kept``).
        """
        if self.rule_input is None:
            raise RuntimeError("diagnose() needs a call made with tracing on")
        w = byzantine.to(self.rule_input.dtype)
        honest_rows = w == 0
        for p in self.pre:
            if p.mix is not None:
                w = p.mix @ w
            if not p.keeps_rows:
                honest_rows = None
        out: dict[str, float | None] = {
            "byz_weight_rows": float(w.mean()),
            "byz_weight_rows_max": float(w.max()),
            "byz_weight_honest_rows": float(w[honest_rows].mean())
            if honest_rows is not None and bool(honest_rows.any())
            else None,
            "rule_byz_share": None,
            "byz_values_kept": None,
        }
        out.update(self.rule.byzantine_share(self.rule_input, w))
        return out

    def clone(self) -> Defense:
        other = copy.copy(self)
        other.rule_input, other.tracing = None, False
        other.rule = copy.deepcopy(self.rule)
        other.pre = self.pre
        other.generator = torch.Generator().set_state(self.generator.get_state())
        return other

    def state_dict(self) -> dict[str, Any]:
        return {"rule": self.rule.state_dict(), "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rule.load_state_dict(state["rule"])
        self.generator.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"Defense({self.spec!r})"


def _lookup(table: dict[str, type], name: str, kind: str) -> type:
    if name not in table:
        load_plugins()
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(table))}")
    return table[name]


def build(spec: str, n: int, f: int, seed: int = 0) -> Defense:
    """Build a defense from a spec string (see :mod:`byzstress.threats.grammar`).

    ``rule[params](pre1[params], pre2, ...)``: the pre-aggregators run left to right, each
    told the same ``f``; the rule sees their output. Names are case-insensitive.
    """
    parsed: Spec = parse(spec)
    pres: list[PreAggregator] = []
    m = n
    for child in parsed.children:
        if child.children:
            raise ValueError(f"pre-aggregator {child.name!r} cannot take arguments in ()")
        cls = _lookup(PRE_AGGREGATORS, child.name, "pre-aggregator")
        pre = cls(m, f, **child.params)
        pres.append(pre)
        m = pre.out_n()
    rule_cls = _lookup(RULES, parsed.name, "aggregation rule")
    rule = rule_cls(m, f, **parsed.params)
    return Defense(str(parsed), rule, pres, seed=seed)
