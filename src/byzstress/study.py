"""Expanding a study of ``config.yaml`` into runs, for the Snakemake workflow.

A study is a matrix: ``betas × attacks (× strengths) × defenses × seeds`` over a shared set
of training knobs (``train:``). Each run gets a stable, readable path::

    {results}/{study}/runs/beta~{beta}/{attack}~{strength}/{defense}/seed~{seed}.json

Numbers in paths are written with ``{x:g}`` (0.5 → ``0.5``, 1 → ``1``, 1e-3 → ``0.001``) so
adding a value to a list never renames existing results. This module imports no torch: the
Snakefile uses it at DAG-build time.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass
from typing import Any

from .grammar import slug

__all__ = ["Run", "StudyError", "cli_args", "expand_study", "fmt_number", "selected_studies"]

AXES = ("beta", "attack", "strength", "knowledge", "defense", "seed")


class StudyError(ValueError):
    """A bad study definition; the message names the study and the key."""


def fmt_number(x: float | int) -> str:
    """Path-stable number formatting: ``f"{x:g}"`` (integers and floats agree: 1 == 1.0)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or math.isnan(x):
        raise StudyError(f"expected a number, got {x!r}")
    return f"{float(x):g}"


@dataclass(frozen=True)
class Run:
    """One training run of a study: its wildcards and its full spec."""

    study: str
    beta: str
    attack: str
    strength: str
    defense: str
    seed: str
    spec: tuple[tuple[str, Any], ...]

    @property
    def wildcards(self) -> dict[str, str]:
        return {
            "study": self.study,
            "beta": self.beta,
            "attack": self.attack,
            "strength": self.strength,
            "defense": self.defense,
            "seed": self.seed,
        }

    def path(self, results: str) -> str:
        return (
            f"{results}/{self.study}/runs/beta~{self.beta}/{self.attack}~{self.strength}/"
            f"{self.defense}/seed~{self.seed}.json"
        )


def selected_studies(config: dict[str, Any]) -> list[str]:
    """The study names in ``config['studies']``, each checked against ``definitions``."""
    chosen = config.get("studies", [])
    if isinstance(chosen, str):
        chosen = [s.strip() for s in chosen.strip("[]").split(",") if s.strip()]
    defs = config.get("definitions", {})
    for name in chosen:
        if name not in defs:
            raise StudyError(f"studies: unknown study {name!r}; defined: {', '.join(sorted(defs))}")
    return list(chosen)


def _strength_key(value: Any) -> tuple[str, Any]:
    if value is None or value == "default":
        return "default", None
    if value == "auto":
        return "auto", "auto"
    if isinstance(value, str):
        raise StudyError(
            f"strengths: {value!r} is a string; write a number, 'default' or 'auto' "
            "(YAML reads 1e-3 as a string: write 1.0e-3)"
        )
    return fmt_number(value), value


def _validate_runs(where: str, runs: list[Run]) -> None:
    """Validate every distinct run spec with :class:`RunSpec` (names, ranges, f < n/2, ...)
    when torch is importable; the train jobs validate again in any case."""
    try:
        from .spec import RunSpec, SpecError
    except ImportError:  # a Snakemake environment without torch
        return
    seen: set[tuple] = set()
    for run in runs:
        key = tuple((k, tuple(v) if isinstance(v, list) else v) for k, v in run.spec)
        if key in seen:
            continue
        seen.add(key)
        try:
            RunSpec.from_dict(dict(run.spec))
        except SpecError as err:
            raise StudyError(f"{where}: {err}") from err


def expand_study(name: str, study: dict[str, Any], config: dict[str, Any]) -> list[Run]:
    """All runs of one study, in a stable order."""
    where = f"definitions.{name}"
    train = dict(study.get("train", {}))
    if "delta" in train:
        delta = train.pop("delta")
        if "f" in train:
            raise StudyError(f"{where}.train: give either f or delta, not both")
        train["f"] = math.floor(float(delta) * int(train.get("n", 17)) + 1e-9)
    for axis in AXES:
        if axis in train:
            raise StudyError(f"{where}.train.{axis}: set it as a study axis, not in train")
    base: dict[str, Any] = {"dataset": study["dataset"], **train}
    if config.get("data_root"):
        base.setdefault("data_root", config["data_root"])
    plugins = list(config.get("plugins", [])) + list(study.get("plugins", []))
    if plugins:
        base["plugins"] = plugins

    betas: list[tuple[str, Any]] = []
    for b in study["betas"]:
        if isinstance(b, str):
            if b.lower() != "iid":
                raise StudyError(f"{where}.betas: {b!r} is not a number or 'iid'")
            betas.append(("iid", "iid"))
        else:
            betas.append((fmt_number(b), b))
    defenses = [(slug(d), d) for d in study["defenses"]]
    seen: dict[str, str] = {}
    for s, d in defenses:
        if s in seen and seen[s] != d:
            raise StudyError(f"{where}.defenses: {seen[s]!r} and {d!r} map to the same path")
        seen[s] = d
    attack_entries = []
    for entry in study["attacks"]:
        knowledge = entry.get("knowledge", "omniscient")
        a_slug = slug(entry["name"]) + ("-local" if knowledge == "local" else "")
        strengths = entry.get("strengths", [None])
        for st in strengths:
            attack_entries.append((a_slug, entry["name"], knowledge, *_strength_key(st)))

    runs = []
    for b_key, b_val in betas:
        for a_slug, a_name, knowledge, s_key, s_val in attack_entries:
            for d_slug, d_spec in defenses:
                for seed in study["seeds"]:
                    spec = {
                        **base,
                        "beta": b_val,
                        "attack": a_name,
                        "knowledge": knowledge,
                        "defense": d_spec,
                        "seed": int(seed),
                    }
                    if s_val is not None:
                        spec["strength"] = s_val
                    runs.append(
                        Run(name, b_key, a_slug, s_key, d_slug, str(int(seed)), tuple(spec.items()))
                    )
    _validate_runs(where, runs)
    keys = [r.path("") for r in runs]
    if len(set(keys)) != len(keys):
        raise StudyError(f"{where}: two runs map to the same path (duplicate entries?)")
    return runs


def cli_args(spec: dict[str, Any] | tuple[tuple[str, Any], ...]) -> str:
    """``byzstress train`` flags for a run spec, shell-quoted."""
    items = spec.items() if isinstance(spec, dict) else spec
    out = []
    for k, v in items:
        if isinstance(v, list | tuple):
            v = ",".join(str(x) for x in v)
        elif isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, float):
            v = repr(v)
        out.append(f"--{k.replace('_', '-')} {shlex.quote(str(v))}")
    return " ".join(out)
