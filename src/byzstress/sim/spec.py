"""The run specification: every knob of one training run, declared once and validated
where a spec is built.

A run is a pure function of its :class:`RunSpec` (and the code's version): the seed fixes
the data split, the model's initialisation, every mini-batch, the augmentation and every
random choice of attacks and defenses.

Each field carries a :class:`Knob`: its help text and its role. Everything else that lists
knobs derives from them: ``byzstress train``'s flags and help, the study axes and the keys
a study's ``train:`` accepts (:mod:`byzstress.runs.study`), the run table's columns
(:mod:`byzstress.analysis.reporting`) and what runs of one batch may differ in
(:mod:`.batch`). A new knob is one field here (and its use in the simulator).

This module imports no torch at import time: the field checks (:meth:`RunSpec.check_fields`)
run wherever the Snakefile runs; the names checks (:meth:`RunSpec.check_names`) import the
registries.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from .splits import check_split

__all__ = [
    "DEFENSE_UNITS",
    "ROLES",
    "Knob",
    "RunSpec",
    "SpecError",
    "field_help",
    "knobs",
    "read_spec_json",
    "spec_json",
]


class SpecError(ValueError):
    """A bad configuration value; the message names the key and the valid choices."""


MOMENTUM_FORMS = ("ema", "heavy")
DEFENSE_UNITS = ("vectors", "heavy")
DEVICES = ("auto", "cpu", "cuda")


ROLES = {
    "axis": "a study axis of its own (betas, attacks and their strengths, defenses, seeds)",
    "knob": "a training knob: a study's train: value, or an axis under axes:",
    "setting": "a study's train: value, never an axis (how a run is carried out)",
    "outside": "set outside train: (the study's dataset, the config's data_root and plugins, "
    "the command line)",
}


@dataclass(frozen=True)
class Knob:
    """What a :class:`RunSpec` field is to the rest of byzstress. ``help``: one line (for
    ``byzstress train --help``; ``{datasets}``, ``{models}``, ``{attacks}`` are filled from
    the registries); ``role``: one of :data:`ROLES`; ``column``: a column of the run table
    (and of a study's variant labels); ``batchable``: runs of one batch may differ in it."""

    help: str
    role: str = "knob"
    column: bool = False
    batchable: bool = False


def _knob(default: Any, help: str, role: str = "knob", **flags: bool) -> Any:
    meta = {"knob": Knob(help, role, **flags)}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunSpec:
    """One run. ``None`` fields take dataset-dependent defaults (see :meth:`resolved`)."""

    dataset: str = _knob("fmnist", "dataset: {datasets}", "outside")
    model: str | None = _knob(None, "model: {models} (default: the dataset's CNN)", column=True)
    n: int = _knob(17, "number of clients, Byzantine included", column=True)
    f: int = _knob(3, "number of Byzantine clients (f < n/2)", column=True)
    steps: int = _knob(1000, "training steps T", column=True)
    batch_size: int | None = _knob(
        None, "mini-batch per client (default 25 for fmnist, 32 for cifar10)", column=True
    )
    lr: float = _knob(0.1, "server learning rate", column=True)
    lr_milestones: list[float] | None = _knob(  # noqa: RUF009 (_knob returns a dataclasses.field)
        None,
        "fractions of T where lr is multiplied by lr_gamma (default: [] for fmnist, [0.75] "
        "for cifar10)",
    )
    lr_gamma: float = _knob(0.1, "learning-rate decay factor at each milestone", column=True)
    momentum: float = _knob(0.9, "worker momentum coefficient β_m", column=True)
    momentum_form: str = _knob("ema", "ema: m ← βm + (1−β)g; heavy: m ← βm + g", column=True)
    defense_units: str = _knob(
        "vectors",
        "units of the defenses' radii (RFA ν, CClip τ, clip c): vectors (as given, applied "
        "to the submitted vectors) or heavy (given in heavy-ball units as in Karimireddy et "
        "al.'s code; multiplied by 1−β under ema)",
        column=True,
    )
    weight_decay: float = _knob(
        1e-4, "L2 coefficient added to every client's gradient", column=True
    )
    eval_every: int = _knob(
        50, "evaluate on the full test set every this many steps (and at the end)", column=True
    )
    min_samples: int = _knob(
        10, "minimum samples per client (the split is redrawn until it holds)", column=True
    )
    augment: bool | None = _knob(
        None, "crop+flip augmentation (default: on for cifar10, off for fmnist)", column=True
    )
    split: str = _knob(
        "dirichlet",
        "how the data is cut among clients: dirichlet (by beta), iid, shards[k=2], "
        "classes[k=2], quantity[beta=0.5] or quantity[power=1.5], gamma[gamma=0.5] "
        "(byzstress.sim.splits has each definition; only dirichlet reads beta)",
        column=True,
    )
    beta: float | str = _knob(
        0.5,
        "Dirichlet concentration β of the honest clients' label split, or 'iid'",
        "axis",
        batchable=True,
    )
    attack: str = _knob(
        "none",
        "attack spec, e.g. alie, ipm, minmax[dir=sign], minsum[bound=min], "
        "none[senders=honest]; names: {attacks}",
        "axis",
    )
    strength: float | str | None = _knob(
        None,
        "attack strength (ALIE z, IPM ε, Gaussian std), 'auto', or empty for the default",
        "axis",
    )
    knowledge: str = _knob(
        "omniscient",
        "what the attacker knows: omniscient (honest vectors) or local (own data only)",
        "axis",
    )
    defense: str = _knob(
        "mean",
        "defense spec, e.g. cm, trmean(nnm), rfa(buck[s=2]), cclip[tau=10,iters=3]",
        "axis",
    )
    seed: int = _knob(
        0,
        "random seed (data split, init, batches, attack and defense randomness)",
        "axis",
        batchable=True,
    )
    device: str = _knob("auto", "auto (CUDA when available), cpu or cuda", "setting")
    data_root: str | None = _knob(
        None, "dataset root (default $BYZSTRESS_DATA or ./data)", "outside"
    )
    download: bool = _knob(False, "let torchvision download a missing dataset", "outside")
    eval_batch_size: int = _knob(500, "batch size for evaluation")
    checkpoint_every: int = _knob(
        250, "write a resumable checkpoint every this many steps (0: never)", "setting"
    )
    deterministic: bool = _knob(
        False,
        "torch.use_deterministic_algorithms(True) (CPU runs are deterministic anyway)",
    )
    plugins: list[str] = _knob(  # noqa: RUF009 (_knob returns a dataclasses.field)
        [],
        "modules or .py files to import first (they register extra defenses/attacks)",
        "outside",
    )

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

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        """Build and validate from :func:`spec_json`'s text (what a workflow job is handed)."""
        return cls.from_dict(read_spec_json(text))

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
        self.check_fields()
        self.check_names()

    def check_fields(self) -> None:
        """Types, ranges and choices of every field, and ``f < n/2``: no registry needed
        (no torch), so a study is checked wherever the Snakefile runs."""
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
        _choice("device", self.device, DEVICES)
        for key in ("download", "deterministic"):
            if not isinstance(getattr(self, key), bool):
                raise SpecError(f"{key}: must be true or false, got {getattr(self, key)!r}")
        if self.augment is not None and not isinstance(self.augment, bool):
            raise SpecError(f"augment: must be true or false, got {self.augment!r}")
        if not isinstance(self.plugins, list | tuple):
            raise SpecError(f"plugins: must be a list of module names, got {self.plugins!r}")
        s = self.strength
        if isinstance(s, str) and s.lower() != "auto":
            raise SpecError(
                f"strength: must be a number, 'auto' or empty, got the string {s!r}{_yaml_hint(s)}"
            )
        if s is not None and not isinstance(s, str):
            _number("strength", s)

    def check_names(self) -> None:
        """The names the registries hold: dataset, model, knowledge, plugins, attack (and
        whether it takes a strength) and defense (built for ``n`` and ``f``)."""
        from ..threats import attacks, defenses, plugins
        from . import data, models

        _choice("dataset", self.dataset, tuple(data.DATASETS))
        if self.model is not None:
            _choice("model", self.model, tuple(models.MODELS))
        _choice("knowledge", self.knowledge, attacks.KNOWLEDGE)
        if self.plugins:
            try:
                plugins.load_plugins(list(self.plugins))
            except (ImportError, ValueError) as err:
                raise SpecError(f"plugins: {err}") from err
        s = self.strength
        params: dict[str, Any] = {"knowledge": self.knowledge}
        if s is not None:
            params["strength"] = s.lower() if isinstance(s, str) else s
        try:
            atk = attacks.build(self.attack, **params)
        except ValueError as err:
            raise SpecError(f"attack: {err}") from err
        if s is not None and not atk.has_strength:
            raise SpecError(f"strength: attack {self.attack!r} takes no strength; leave it empty")
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


def knobs(
    role: str | None = None, *, column: bool = False, batchable: bool = False
) -> tuple[str, ...]:
    """The :class:`RunSpec` fields of ``role`` (any when ``None``), in field order; with
    ``column`` / ``batchable`` only those so marked."""
    if role is not None and role not in ROLES:
        raise ValueError(f"role {role!r}; valid: {', '.join(ROLES)}")
    out = []
    for f in fields(RunSpec):
        k: Knob = f.metadata["knob"]
        if (
            (role is None or k.role == role)
            and (k.column or not column)
            and (k.batchable or not batchable)
        ):
            out.append(f.name)
    return tuple(out)


def field_help() -> dict[str, str]:
    """One line of help per :class:`RunSpec` key (for ``byzstress train --help``), with the
    registries' names filled in."""
    from ..threats import attacks
    from . import data, models

    names = {
        "datasets": ", ".join(data.DATASETS),
        "models": ", ".join(models.MODELS),
        "attacks": ", ".join(attacks.ATTACKS),
    }
    return {f.name: f.metadata["knob"].help.format(**names) for f in fields(RunSpec)}


def read_spec_json(text: str) -> dict[str, Any]:
    """The values of :func:`spec_json`'s text; not yet validated."""
    try:
        values = json.loads(text)
    except ValueError as err:
        raise SpecError(f"--spec: not a JSON object: {err}") from err
    if not isinstance(values, dict):
        raise SpecError(f"--spec: must be a JSON object of keys, got {values!r}")
    return values


def spec_json(values: dict[str, Any]) -> str:
    """The JSON a workflow job is handed: a run's own values, keys sorted (so reordering a
    study's ``train:`` mapping changes no job's params, and Snakemake reruns nothing),
    floats as ``repr``, which reads back exactly."""
    return json.dumps(values, separators=(",", ":"), allow_nan=False, sort_keys=True)
