"""Byzantine attacks: what the ``f`` Byzantine clients send each step.

Conventions (docs/methods.md, docs/threat-model.md): ``μ`` and ``σ`` are the
coordinate-wise mean and standard deviation (``ddof = 1``) of the vectors the attacker *knows*:

* ``omniscient`` knowledge — the honest clients' momentum vectors (what every reference code
  base does);
* ``local`` knowledge — only the Byzantine clients' own momentum vectors, computed honestly on
  their own Dirichlet shares (the "practical" threat model of the seed paper).

All ``f`` Byzantine clients send the same crafted vector unless stated otherwise.

Public API (stable)::

    atk = build("alie", strength=8)        # or build("alie[strength=8]")
    byz = atk(ctx)                          # [f, d]

``strength="auto"`` (ALIE, IPM) runs a line search over the strength that maximises
``||agg(honest ∪ byz(s)) − mean(honest)||`` against the defense in use, probing a clone of
the defense so stateful rules (CClip) are not advanced (ByzFL's "Optimal" attacks).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, ClassVar

import torch
from torch import Tensor

from .defenses import Defense
from .grammar import check_param, parse
from .plugins import load_plugins

__all__ = [
    "ATTACKS",
    "BASELINES",
    "MINSUM_BOUNDS",
    "Z_RULES",
    "Attack",
    "AttackContext",
    "alie_default_z",
    "build",
    "register_attack",
]

KNOWLEDGE = ("omniscient", "local")


@dataclass
class AttackContext:
    """What an attack may look at in one step.

    ``honest``: the honest momentum vectors ``[h, d]`` (ground truth, used by ``omniscient``
    attacks and by the ``auto`` probe); ``byz_own``: the Byzantine clients' own momentum
    vectors ``[f, d]`` (computed on their shares, with flipped labels for LF) or ``None``;
    ``defense``: the defense in use (for ``auto``); ``generator``: for random attacks.
    """

    honest: Tensor
    f: int
    knowledge: str = "omniscient"
    byz_own: Tensor | None = None
    defense: Defense | None = None
    generator: torch.Generator | None = None

    @property
    def known(self) -> Tensor:
        if self.knowledge == "omniscient":
            return self.honest
        if self.byz_own is None:
            raise RuntimeError("local knowledge needs the Byzantine clients' own vectors")
        return self.byz_own


def mean_std(v: Tensor) -> tuple[Tensor, Tensor]:
    """Coordinate-wise mean and std (ddof=1; zero when a single vector is known)."""
    mu = v.mean(0)
    if v.shape[0] < 2:
        return mu, torch.zeros_like(mu)
    # explicit two-pass form: 3x faster than Tensor.std along dim 0 on the CPU
    dev = v - mu
    return mu, dev.mul_(dev).sum(0).div_(v.shape[0] - 1).sqrt_()  # in place: one temporary


Z_RULES = ("karimireddy", "baruch")


def alie_default_z(n: int, f: int, rule: str = "karimireddy") -> float:
    """ALIE's default strength for ``n`` clients of which ``f`` Byzantine, with the number
    of "supporters" ``s = ⌊n/2 + 1⌋ − f`` (Baruch et al., NeurIPS 2019, Alg. 3):

    * ``karimireddy`` (default) — ``z = Φ⁻¹((n − f − s)/(n − f))``, the quantile over the
      honest workers, as in Karimireddy et al.'s code (epfml/byzantine-robust-noniid-optimizer,
      ``codes/attacks/alittle.py``, lines 18–24) and Blades (``attackers/alieclient.py``);
      0.180 for n=17, f=3 and 0.157 for n=20, f=4;
    * ``baruch`` — ``z = Φ⁻¹((n − s)/n)``, the supremum of ``z`` with ``Φ(z) < (n − s)/n``
      over all ``n`` workers, the form Baruch et al.'s algorithm is quoted in (EPFL's Garfield
      pre-computes z = 1.035 for n=20, f=8 with it; byzpy and others compute it); 0.377 for
      n=17, f=3 and 0.385 for n=20, f=4. The paper's own text was not reachable from here,
      and the authors' released code takes z as a flag (default 1.5) instead.
    """
    if rule not in Z_RULES:
        raise ValueError(f"z rule {rule!r} invalid; valid: {', '.join(Z_RULES)}")
    s = math.floor(n / 2 + 1) - f
    p = (n - f - s) / (n - f) if rule == "karimireddy" else (n - s) / n
    if not 0.0 < p < 1.0:
        raise ValueError(f"ALIE default z undefined for n={n}, f={f} (quantile {p})")
    return NormalDist().inv_cdf(p)


class Attack:
    """Base class. Subclasses implement :meth:`craft` (for a given strength) and set flags.

    ``needs_byz_grads``: the trainer must compute the Byzantine clients' own gradients;
    ``flip_labels``: ... on labels ``y → C − 1 − y`` (label flipping).
    """

    names: ClassVar[tuple[str, ...]] = ()
    defaults: ClassVar[dict[str, Any]] = {}
    has_strength: ClassVar[bool] = False
    supports_auto: ClassVar[bool] = False
    needs_byz_grads: ClassVar[bool] = False
    flip_labels: ClassVar[bool] = False

    def __init__(self, **params: Any) -> None:
        allowed = set(self.defaults) | ({"strength"} if self.has_strength else set())
        allowed |= {"knowledge"}
        unknown = set(params) - allowed
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {sorted(unknown)} for attack {self.names[0]!r}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        for key, value in params.items():
            if key in self.defaults:
                check_param(self.names[0], key, value, self.defaults[key])
        self.params = {**self.defaults, **params}
        self.knowledge = str(self.params.pop("knowledge", "omniscient")).lower()
        if self.knowledge not in KNOWLEDGE:
            raise ValueError(f"knowledge {self.knowledge!r} invalid; valid: {', '.join(KNOWLEDGE)}")
        self.strength: float | str | None = self.params.pop("strength", None)
        if isinstance(self.strength, str):
            if self.strength.lower() != "auto" or not self.supports_auto:
                valid = "a number or 'auto'" if self.supports_auto else "a number"
                raise ValueError(
                    f"strength {self.strength!r} invalid for {self.names[0]!r}; valid: {valid}"
                )
            self.strength = "auto"
            if self.knowledge != "omniscient":
                raise ValueError("strength 'auto' needs knowledge 'omniscient'")
        elif self.strength is not None:
            if isinstance(self.strength, bool) or not isinstance(self.strength, int | float):
                raise ValueError(f"strength must be a number, got {self.strength!r}")
            if not math.isfinite(self.strength):
                raise ValueError(f"strength must be a finite number, got {self.strength!r}")
            self.strength = float(self.strength)
        self.last_strength: float | None = None
        self.check()

    def check(self) -> None:
        """Validate the parameters; raise ``ValueError`` naming the key and valid values."""
        if "auto_lo" in self.params:
            lo, hi = float(self.params["auto_lo"]), float(self.params["auto_hi"])
            if not 0 < lo < hi:
                raise ValueError(f"{self.names[0]}: need 0 < auto_lo < auto_hi, got {lo}, {hi}")
            if self.params["auto_grid"] < 2 or self.params["auto_refine"] < 0:
                raise ValueError(
                    f"{self.names[0]}: need auto_grid >= 2 and auto_refine >= 0, got "
                    f"{self.params['auto_grid']}, {self.params['auto_refine']}"
                )

    @property
    def uses_own_vectors(self) -> bool:
        return self.needs_byz_grads or self.knowledge == "local"

    @property
    def honest_only(self) -> bool:
        """True when no Byzantine vector is sent at all (the ``none[senders=honest]``
        baseline): the defense then sees the ``n − f`` honest vectors alone."""
        return False

    def default_strength(self, n: int, f: int) -> float | None:
        return None

    def resolved_strength(self, n: int, f: int) -> float | str | None:
        """The strength used: the given one, ``'auto'``, or the default for ``(n, f)``."""
        return self.strength if self.strength is not None else self.default_strength(n, f)

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        raise NotImplementedError

    def __call__(self, ctx: AttackContext) -> Tensor:
        n = ctx.honest.shape[0] + ctx.f
        s = self.resolved_strength(n, ctx.f)
        if s == "auto":
            s = self._optimise(ctx)
        self.last_strength = None if s is None else float(s)
        return self.craft(ctx, self.last_strength)

    def _optimise(self, ctx: AttackContext) -> float:
        """Grid over ``[auto_lo, auto_hi]`` (log-spaced) then golden-section refinement of the
        best bracket, maximising ``||D(honest ∪ byz(s)) − mean(honest)||``."""
        if ctx.defense is None:
            raise RuntimeError("strength 'auto' needs the defense in use")
        target = ctx.honest.mean(0)

        def objective(s: float) -> float:
            x = torch.cat([ctx.honest, self.craft(ctx, s)])
            return float((ctx.defense.clone()(x) - target).norm())

        lo, hi = float(self.params["auto_lo"]), float(self.params["auto_hi"])
        grid = torch.logspace(math.log10(lo), math.log10(hi), int(self.params["auto_grid"]))
        vals = [objective(float(s)) for s in grid]
        i = max(range(len(vals)), key=vals.__getitem__)
        a = float(grid[max(i - 1, 0)])
        b = float(grid[min(i + 1, len(grid) - 1)])
        best_s, best_v = float(grid[i]), vals[i]
        ratio = (math.sqrt(5) - 1) / 2
        for _ in range(int(self.params["auto_refine"])):
            c, d = b - ratio * (b - a), a + ratio * (b - a)
            vc, vd = objective(c), objective(d)
            for s, v in ((c, vc), (d, vd)):
                if v > best_v:
                    best_s, best_v = s, v
            if vc >= vd:
                b = d
            else:
                a = c
        return best_s


ATTACKS: dict[str, type[Attack]] = {}
_AUTO_DEFAULTS = {"auto_lo": 0.1, "auto_hi": 100.0, "auto_grid": 12, "auto_refine": 4}


def register_attack(cls: type[Attack]) -> type[Attack]:
    """Class decorator: make an :class:`Attack` available under each of ``cls.names``."""
    for name in cls.names:
        ATTACKS[name.lower()] = cls
    return cls


def _same(f: int, v: Tensor) -> Tensor:
    return v.unsqueeze(0).expand(f, -1).contiguous()


BASELINES = ("all", "honest")


@register_attack
class NoAttack(Attack):
    """No attack: the baseline, whose senders are a choice (``senders``).

    The choices:

    * ``all`` (default) — ``n`` honest senders: the ``f`` "Byzantine" clients behave
      honestly and send their own momentum, computed on their own Dirichlet shares; the
      defense sees ``n`` vectors, as in every attacked run;
    * ``honest`` — only the ``n − f`` honest clients send; the defense (still told to
      tolerate ``f``) sees ``n − f`` vectors: the attacked runs' honest population alone,
      with none of the extra data the ``f`` clients bring under ``all``.

    The seed paper does not say which baseline its "no attack" rows use.
    """

    names = ("none", "noattack")
    defaults: ClassVar[dict[str, Any]] = {"senders": "all"}
    needs_byz_grads = True  # under senders=all; uses_own_vectors says it per instance

    def check(self) -> None:
        if self.params["senders"] not in BASELINES:
            raise ValueError(
                f"senders {self.params['senders']!r} invalid for 'none'; "
                f"valid: {', '.join(BASELINES)}"
            )

    @property
    def honest_only(self) -> bool:
        """The defense sees the honest vectors alone (no Byzantine rows at all)."""
        return self.params["senders"] == "honest"

    @property
    def uses_own_vectors(self) -> bool:
        return not self.honest_only

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        assert ctx.byz_own is not None
        return ctx.byz_own


@register_attack
class ALIE(Attack):
    """A Little Is Enough (Baruch et al., NeurIPS 2019): ``μ + sign · z · σ``.

    ``sign = −1`` by default (Karimireddy et al.'s form; ByzFL/Blades use ``+1``). The default
    ``z`` (no strength given) follows ``zrule`` — ``karimireddy`` (default; their code and
    Blades) or ``baruch`` (Baruch et al.'s Algorithm 3); see :func:`alie_default_z`.
    """

    names = ("alie",)
    defaults: ClassVar[dict[str, Any]] = {"sign": -1, "zrule": "karimireddy", **_AUTO_DEFAULTS}
    has_strength = supports_auto = True

    def check(self) -> None:
        super().check()
        if self.params["zrule"] not in Z_RULES:
            raise ValueError(
                f"zrule {self.params['zrule']!r} invalid for 'alie'; valid: {', '.join(Z_RULES)}"
            )
        if self.params["sign"] not in (-1, 1):
            raise ValueError(f"sign {self.params['sign']!r} invalid for 'alie'; valid: -1, 1")

    def default_strength(self, n: int, f: int) -> float:
        return alie_default_z(n, f, str(self.params["zrule"]))

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        mu, sigma = mean_std(ctx.known)
        return _same(ctx.f, mu + float(self.params["sign"]) * float(strength) * sigma)


@register_attack
class IPM(Attack):
    """Inner-product manipulation (Xie et al., UAI 2020): ``−ε · μ`` (default ε = 0.1)."""

    names = ("ipm",)
    defaults: ClassVar[dict[str, Any]] = {**_AUTO_DEFAULTS}
    has_strength = supports_auto = True
    #: ε when none is given (Xie et al.'s small-ε setting, the one IID-calibrated defenses see)
    DEFAULT_EPS: ClassVar[float] = 0.1

    def default_strength(self, n: int, f: int) -> float:
        return self.DEFAULT_EPS

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        return _same(ctx.f, -float(strength) * ctx.known.mean(0))


@register_attack
class SignFlip(Attack):
    """Sign flipping: ``−μ``."""

    names = ("sf", "signflip")

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        return _same(ctx.f, -ctx.known.mean(0))


@register_attack
class LabelFlip(Attack):
    """Label flipping: the Byzantine clients train honestly on their own data with labels
    ``y → C − 1 − y`` and send their momentum."""

    names = ("lf", "labelflip")
    needs_byz_grads = flip_labels = True

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        assert ctx.byz_own is not None
        return ctx.byz_own


class _Shejwalkar(Attack):
    """Shared part of Min-Max / Min-Sum (Shejwalkar & Houmansadr, NDSS 2021, Alg. 1–2).

    ``m = μ + γ · p`` with ``p ∈ {−μ/||μ||, −σ, −sign(μ)}`` (``dir`` = unit / std / sign,
    default std as in their notebooks); the largest ``γ`` satisfying the constraint is found
    by halving search from ``γ₀`` (``gamma0`` = 10) to precision ``tol`` (1e-5).
    """

    defaults: ClassVar[dict[str, Any]] = {"dir": "std", "gamma0": 10.0, "tol": 1e-5}
    DIRECTIONS = ("std", "unit", "sign")

    def check(self) -> None:
        if self.params["dir"] not in self.DIRECTIONS:
            raise ValueError(
                f"{self.names[0]}: dir {self.params['dir']!r} invalid; valid: "
                f"{', '.join(self.DIRECTIONS)}"
            )
        if not self.params["gamma0"] > 0 or not self.params["tol"] > 0:
            raise ValueError(
                f"{self.names[0]}: need gamma0 > 0 and tol > 0, got "
                f"{self.params['gamma0']}, {self.params['tol']}"
            )

    def direction(self, known: Tensor) -> Tensor:
        mu, sigma = mean_std(known)
        kind = str(self.params["dir"])
        if kind == "std":
            return -sigma
        if kind == "unit":
            return -mu / mu.norm().clamp_min(1e-12)
        if kind == "sign":
            return -torch.sign(mu)
        raise ValueError(f"dir {kind!r} invalid; valid: std, unit, sign")

    def bound(self, d2: Tensor) -> float:
        """The constraint's right-hand side from the honest squared distances ``[h, h]``."""
        raise NotImplementedError

    def feasible(self, sq_dists: list[float], bound: float) -> bool:
        """The constraint, given ``||m − g_i||²`` for every known vector ``i``."""
        raise NotImplementedError

    def gamma(self, known: Tensor, direction: Tensor | None = None) -> float:
        """The halving search; returns the largest feasible ``γ`` found (0 if none).
        ``direction``: ``p`` if already computed.

        With ``e_i = g_i − μ``: ``||μ + γp − g_i||² = ||e_i||² − 2γ⟨e_i, p⟩ + γ²||p||²``, so
        one pass over the vectors gives every candidate's distances as scalar arithmetic
        (instead of a pass over ``[h, d]`` and a device read per halving step).
        """
        from .defenses import pairwise_sq_dists

        g = known.double()
        p = (self.direction(known) if direction is None else direction).double()
        e = g - g.mean(0)
        sq, dot = (e * e).sum(1), e @ p
        stats = torch.cat([sq, dot, (p @ p).view(1)]).tolist()  # one device read
        h = len(g)
        a, b, c = stats[:h], stats[h : 2 * h], stats[2 * h]
        bound = self.bound(pairwise_sq_dists(g))
        gamma, step, ok = float(self.params["gamma0"]), float(self.params["gamma0"]), 0.0
        while abs(ok - gamma) > float(self.params["tol"]):
            dists = [ai - 2.0 * gamma * bi + gamma * gamma * c for ai, bi in zip(a, b, strict=True)]
            if self.feasible(dists, bound):
                ok = gamma
                gamma += step / 2
            else:
                gamma -= step / 2
            step /= 2
        return ok

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        known = ctx.known
        p = self.direction(known)
        gamma = self.gamma(known, p)
        self.last_gamma = gamma
        return _same(ctx.f, known.mean(0) + gamma * p)

    def __call__(self, ctx: AttackContext) -> Tensor:
        out = super().__call__(ctx)
        self.last_strength = self.last_gamma
        return out


@register_attack
class MinMax(_Shejwalkar):
    """Min-Max (Shejwalkar & Houmansadr, NDSS 2021): the largest step ``m = μ + γ · p``
    with ``max_i ||m − g_i|| ≤ max_{i,j} ||g_i − g_j||``."""

    names = ("minmax",)

    def bound(self, d2: Tensor) -> float:
        return float(d2.max())

    def feasible(self, sq_dists: list[float], bound: float) -> bool:
        return max(sq_dists) <= bound


MINSUM_BOUNDS = ("max", "min")


@register_attack
class MinSum(_Shejwalkar):
    """Min-Sum (Shejwalkar & Houmansadr, NDSS 2021): the largest step ``m = μ + γ · p``
    with ``Σ_i ||m − g_i||² ≤ B``.

    ``B`` is chosen by ``bound``:

    * ``max`` (default) — ``B = max_i Σ_j ||g_i − g_j||²``, the NDSS'21 paper's equation
      (Shejwalkar & Houmansadr, Sec. 4, Min-Sum);
    * ``min`` — ``B = min_i Σ_j ||g_i − g_j||²``, what the authors' released notebooks
      (``min_score = torch.min(scores)``) and Blades' Min-Sum compute: a smaller γ.

    Which one the seed paper ran is not stated.
    """

    names = ("minsum",)
    defaults: ClassVar[dict[str, Any]] = {**_Shejwalkar.defaults, "bound": "max"}

    def check(self) -> None:
        super().check()
        if self.params["bound"] not in MINSUM_BOUNDS:
            raise ValueError(
                f"bound {self.params['bound']!r} invalid for 'minsum'; "
                f"valid: {', '.join(MINSUM_BOUNDS)}"
            )

    def bound(self, d2: Tensor) -> float:
        sums = d2.sum(1)
        return float(sums.max() if self.params["bound"] == "max" else sums.min())

    def feasible(self, sq_dists: list[float], bound: float) -> bool:
        return sum(sq_dists) <= bound


@register_attack
class Mimic(Attack):
    """Mimic (Karimireddy et al., ICLR 2022): every Byzantine client copies one known
    vector (index ``target``), over-representing that client's data."""

    names = ("mimic",)
    defaults: ClassVar[dict[str, Any]] = {"target": 0}

    def check(self) -> None:
        if self.params["target"] < 0:
            raise ValueError(f"mimic: target must be >= 0, got {self.params['target']}")

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        return _same(ctx.f, ctx.known[int(self.params["target"])])


@register_attack
class Gaussian(Attack):
    """Gaussian noise: each Byzantine vector ``~ N(μ_0, s² I)`` (strength ``s``, default 200,
    ``mean`` μ_0 = 0 as in ByzFL)."""

    names = ("gaussian",)
    defaults: ClassVar[dict[str, Any]] = {"mean": 0.0}
    has_strength = True

    def default_strength(self, n: int, f: int) -> float:
        return 200.0

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        shape = (ctx.f, ctx.honest.shape[1])
        noise = torch.randn(shape, generator=ctx.generator, dtype=ctx.honest.dtype)
        return noise.to(ctx.honest.device) * float(strength) + float(self.params["mean"])


@register_attack
class Inf(Attack):
    """Every coordinate ``+∞`` (checks that defenses survive non-finite input)."""

    names = ("inf",)

    def craft(self, ctx: AttackContext, strength: float | None) -> Tensor:
        return torch.full((ctx.f, ctx.honest.shape[1]), math.inf, device=ctx.honest.device)


def build(name: str, **params: Any) -> Attack:
    """Build an attack from a name or spec string (``"minmax[dir=sign]"``) and keyword
    parameters (keywords override bracketed ones). Case-insensitive."""
    spec = parse(name)
    if spec.children:
        raise ValueError(f"attack spec {name!r} cannot take arguments in ()")
    if spec.name not in ATTACKS:
        load_plugins()  # an installed package's entry point may register it
    if spec.name not in ATTACKS:
        raise ValueError(f"unknown attack {spec.name!r}; valid: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[spec.name](**{**spec.params, **params})
