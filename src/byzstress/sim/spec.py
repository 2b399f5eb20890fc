"""The run specification: every knob of one training run, validated before anything runs.

A run is a pure function of its :class:`RunSpec` (and the code's version): the seed fixes
the data split, the model's initialisation, every mini-batch, the augmentation and every
random choice of attacks and defenses.

This module imports no torch at import time (the registries are imported when a spec is
validated), so that the Snakefile can read :class:`RunSpec`'s defaults at DAG-build time
in an environment without torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .splits import check_split

__all__ = ["DEFENSE_UNITS", "RunSpec", "SpecError", "field_help"]


class SpecError(ValueError):
    """A bad configuration value; the message names the key and the valid choices."""


MOMENTUM_FORMS = ("ema", "heavy")
DEFENSE_UNITS = ("vectors", "heavy")
DEVICES = ("auto", "cpu", "cuda")


def field_help() -> dict[str, str]:
    """One line of help per :class:`RunSpec` key (for ``byzstress train --help``)."""
    from ..threats import attacks
    from . import data, models

    return {
        "dataset": f"dataset: {', '.join(data.DATASETS)}",
        "model": f"model: {', '.join(models.MODELS)} (default: the dataset's CNN)",
        "attack": "attack spec, e.g. alie, ipm, minmax[dir=sign], minsum[bound=min], "
        f"none[senders=honest]; names: {', '.join(attacks.ATTACKS)}",
        **_STATIC_HELP,
    }


_STATIC_HELP: dict[str, str] = {
    "n": "number of clients, Byzantine included",
    "f": "number of Byzantine clients (f < n/2)",
    "steps": "training steps T",
    "batch_size": "mini-batch per client (default 25 for fmnist, 32 for cifar10)",
    "lr": "server learning rate",
    "lr_milestones": "fractions of T where lr is multiplied by lr_gamma (default: [] for "
    "fmnist, [0.75] for cifar10)",
    "lr_gamma": "learning-rate decay factor at each milestone",
    "momentum": "worker momentum coefficient β_m",
    "momentum_form": "ema: m ← βm + (1−β)g; heavy: m ← βm + g",
    "defense_units": "units of the defenses' radii (RFA ν, CClip τ, clip c): vectors (as "
    "given, applied to the submitted vectors) or heavy (given in heavy-ball units as in "
    "Karimireddy et al.'s code; multiplied by 1−β under ema)",
    "weight_decay": "L2 coefficient added to every client's gradient",
    "eval_every": "evaluate on the full test set every this many steps (and at the end)",
    "beta": "Dirichlet concentration β of the honest clients' label split, or 'iid'",
    "split": "how the data is cut among clients: dirichlet (by beta), iid, shards[k=2], "
    "classes[k=2], quantity[beta=0.5] or quantity[power=1.5], gamma[gamma=0.5] "
    "(byzstress.sim.splits has each definition; only dirichlet reads beta)",
    "min_samples": "minimum samples per client (the split is redrawn until it holds)",
    "strength": "attack strength (ALIE z, IPM ε, Gaussian std), 'auto', or empty for the default",
    "knowledge": "what the attacker knows: omniscient (honest vectors) or local (own data only)",
    "defense": "defense spec, e.g. cm, trmean(nnm), rfa(buck[s=2]), cclip[tau=10,iters=3]",
    "seed": "random seed (data split, init, batches, attack and defense randomness)",
    "augment": "crop+flip augmentation (default: on for cifar10, off for fmnist)",
    "device": "auto (CUDA when available), cpu or cuda",
    "data_root": "dataset root (default $BYZSTRESS_DATA or ./data)",
    "download": "let torchvision download a missing dataset",
    "eval_batch_size": "batch size for evaluation",
    "checkpoint_every": "write a resumable checkpoint every this many steps (0: never)",
    "deterministic": "torch.use_deterministic_algorithms(True) (CPU runs are deterministic anyway)",
    "plugins": "modules or .py files to import first (they register extra defenses/attacks)",
}


@dataclass
class RunSpec:
    """One run. ``None`` fields take dataset-dependent defaults (see :meth:`resolved`)."""

    dataset: str = "fmnist"
    model: str | None = None
    n: int = 17
    f: int = 3
    steps: int = 1000
    batch_size: int | None = None
    lr: float = 0.1
    lr_milestones: list[float] | None = None
    lr_gamma: float = 0.1
    momentum: float = 0.9
    momentum_form: str = "ema"
    defense_units: str = "vectors"
    weight_decay: float = 1e-4
    eval_every: int = 50
    beta: float | str = 0.5
    split: str = "dirichlet"
    min_samples: int = 10
    attack: str = "none"
    strength: float | str | None = None
    knowledge: str = "omniscient"
    defense: str = "mean"
    seed: int = 0
    augment: bool | None = None
    device: str = "auto"
    data_root: str | None = None
    download: bool = False
    eval_batch_size: int = 500
    checkpoint_every: int = 250
    deterministic: bool = False
    plugins: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ construction

    @classmethod
    def keys(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunSpec:
        """Build and validate; unknown keys are an error listing the valid ones."""
        unknown = sorted(set(d) - set(cls.keys()))
        if unknown:
            raise SpecError(f"unknown key(s) {unknown}; valid keys: {', '.join(cls.keys())}")
        spec = cls(**d)
        spec.validate()
        return spec

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved(self) -> RunSpec:
        """A copy with the dataset-dependent defaults filled in."""
        from . import models

        cifar = self.dataset == "cifar10"
        return dataclasses.replace(
            self,
            model=self.model or models.default_model(self.dataset),
            batch_size=self.batch_size or (32 if cifar else 25),
            lr_milestones=list(self.lr_milestones)
            if self.lr_milestones is not None
            else ([0.75] if cifar else []),
            augment=self.augment if self.augment is not None else cifar,
        )

    # ------------------------------------------------------------------ validation

    def validate(self) -> None:
        """Raise :class:`SpecError` naming the first bad key and what it accepts."""
        from ..threats import attacks, defenses
        from . import data, models

        _choice("dataset", self.dataset, tuple(data.DATASETS))
        if self.model is not None:
            _choice("model", self.model, tuple(models.MODELS))
        for key in ("n", "f", "steps", "eval_every", "min_samples", "eval_batch_size", "seed"):
            _int(key, getattr(self, key), minimum=0 if key in ("f", "seed") else 1)
        _int("checkpoint_every", self.checkpoint_every, minimum=0)
        if self.batch_size is not None:
            _int("batch_size", self.batch_size, minimum=1)
        if 2 * self.f >= self.n:
            raise SpecError(f"f: need f < n/2 (an honest majority); got f={self.f}, n={self.n}")
        _number("lr", self.lr, lo=0.0, lo_open=True)
        _number("lr_gamma", self.lr_gamma, lo=0.0, lo_open=True)
        _number("momentum", self.momentum, lo=0.0, hi=1.0, hi_open=True)
        _number("weight_decay", self.weight_decay, lo=0.0)
        _choice("momentum_form", self.momentum_form, MOMENTUM_FORMS)
        _choice("defense_units", self.defense_units, DEFENSE_UNITS)
        if self.lr_milestones is not None:
            if not isinstance(self.lr_milestones, list | tuple):
                raise SpecError(
                    f"lr_milestones: must be a list of fractions in (0, 1), got "
                    f"{self.lr_milestones!r}"
                )
            for m in self.lr_milestones:
                _number("lr_milestones", m, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        if isinstance(self.beta, str):
            if self.beta.lower() != "iid":
                raise SpecError(
                    f"beta: must be a number > 0 or 'iid', got the string "
                    f"{self.beta!r}{_yaml_hint(self.beta)}"
                )
        else:
            _number("beta", self.beta, lo=0.0, lo_open=True)
        try:
            check_split(self.split)
        except ValueError as err:
            raise SpecError(str(err)) from err
        _choice("knowledge", self.knowledge, attacks.KNOWLEDGE)
        _choice("device", self.device, DEVICES)
        for key in ("download", "deterministic"):
            if not isinstance(getattr(self, key), bool):
                raise SpecError(f"{key}: must be true or false, got {getattr(self, key)!r}")
        if self.augment is not None and not isinstance(self.augment, bool):
            raise SpecError(f"augment: must be true or false, got {self.augment!r}")
        if not isinstance(self.plugins, list | tuple):
            raise SpecError(f"plugins: must be a list of module names, got {self.plugins!r}")
        if self.plugins:
            try:
                defenses.load_plugins(list(self.plugins))
            except (ImportError, ValueError) as err:
                raise SpecError(f"plugins: {err}") from err
        self._validate_attack()
        try:
            defenses.build(self.defense, self.n, self.f)
        except (ValueError, TypeError) as err:
            raise SpecError(f"defense: {err}") from err

    def radius_scale(self) -> float:
        """The factor applied to the defenses' radii (:attr:`defense_units`): ``1 − β`` when
        they are given in heavy-ball units and the run uses EMA momentum, else 1."""
        if self.defense_units == "heavy" and self.momentum_form == "ema":
            return 1.0 - self.momentum
        return 1.0

    def _validate_attack(self) -> None:
        from ..threats import attacks

        s = self.strength
        if isinstance(s, str) and s.lower() != "auto":
            raise SpecError(
                f"strength: must be a number, 'auto' or empty, got the string {s!r}{_yaml_hint(s)}"
            )
        if s is not None and not isinstance(s, str):
            _number("strength", s)
        params: dict[str, Any] = {"knowledge": self.knowledge}
        if s is not None:
            params["strength"] = s.lower() if isinstance(s, str) else s
        try:
            atk = attacks.build(self.attack, **params)
        except ValueError as err:
            raise SpecError(f"attack: {err}") from err
        if s is not None and not atk.has_strength:
            raise SpecError(f"strength: attack {self.attack!r} takes no strength; leave it empty")


def _yaml_hint(text: str) -> str:
    try:
        float(text)
    except ValueError:
        return ""
    return " (YAML reads 1e-3 as a string: write 1.0e-3)"


def _choice(key: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise SpecError(f"{key}: {value!r} is not valid; valid choices: {', '.join(valid)}")


def _int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{key}: must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise SpecError(f"{key}: must be >= {minimum}, got {value}")


def _number(
    key: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    if isinstance(value, str):
        raise SpecError(f"{key}: must be a number, got the string {value!r}{_yaml_hint(value)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{key}: must be a finite number, got {value!r}")
    lo_ok = lo is None or (value > lo if lo_open else value >= lo)
    hi_ok = hi is None or (value < hi if hi_open else value <= hi)
    if not (lo_ok and hi_ok):
        left = "" if lo is None else f"{'>' if lo_open else '>='} {lo:g}"
        right = "" if hi is None else f"{'<' if hi_open else '<='} {hi:g}"
        rng = " and ".join(p for p in (left, right) if p)
        raise SpecError(f"{key}: must be {rng}, got {value!r}")
