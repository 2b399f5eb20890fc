"""Expanding a study of ``config.yaml`` into runs, for the Snakemake workflow.

A study is a matrix: ``betas × attacks (× strengths) × defenses × seeds × axes`` over a
shared set of training knobs (``train:``). ``axes:`` makes any training knob a matrix axis
(``axes: {momentum: [0.9, 0], n: [20, 40]}``). ``slices:`` makes a study a union of such
matrices (a fractional design): each slice overrides the study's ``betas``, ``seeds``,
``defenses``, ``attacks`` and ``axes``; runs that two slices share are trained once. Each
run gets a stable, readable path::

    {results}/{study}/runs/beta~{beta}/{attack}~{strength}/{defense}/[{key}~{value}/...]seed~{seed}.json

An axis value equal to the study's own value of that knob (its ``train:`` value, else the
run spec's default) adds no path segment and no spec key, so adding an axis, or a value to it,
never renames or reruns existing results; other values add ``{key}~{value}`` segments in
key order. Numbers in paths are written with ``{x:g}`` (0.5 → ``0.5``, 1 → ``1``, 1e-3 →
``0.001``) so adding a value to a list never renames existing results. This module imports
no torch: the Snakefile uses it at DAG-build time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..sim.spec import knobs, spec_json
from ..threats.grammar import slug

__all__ = [
    "Run",
    "StudyError",
    "check_finite",
    "check_shared_runs",
    "expand_study",
    "fmt_number",
    "job_threads",
    "new_slices",
    "selected_studies",
]

# All from the run spec's declaration (byzstress.sim.spec): a study's own axes, the knobs
# ``axes:`` may vary, and what ``train:`` accepts (those and the run settings, and δ).
AXES = knobs("axis")
AXIS_KNOBS = knobs("knob")
TRAIN_KEYS = (*AXIS_KNOBS, *knobs("setting"), "delta")
MATRIX_KEYS = ("betas", "seeds", "defenses", "attacks", "axes")


class StudyError(ValueError):
    """A bad study definition; the message names the study and the key."""


def fmt_number(x: float | int) -> str:
    """Path-stable number formatting: ``f"{x:g}"`` (integers and floats agree: 1 == 1.0)."""
    if isinstance(x, bool) or not isinstance(x, int | float) or math.isnan(x):
        raise StudyError(f"expected a number, got {x!r}")
    return f"{float(x):g}"


@dataclass(frozen=True)
class Run:
    """One training run of a study: its wildcards and its full spec. ``variant``: the
    ``{key}~{value}`` path segments of its non-default axis values (empty: none)."""

    study: str
    beta: str
    attack: str
    strength: str
    defense: str
    seed: str
    spec: tuple[tuple[str, Any], ...]
    variant: tuple[str, ...] = ()

    @property
    def wildcards(self) -> dict[str, str]:
        """The train rule's wildcards (``workflow/rules/train.smk``)."""
        return {"study": self.study, "run": self.key}

    @property
    def key(self) -> str:
        """The run's path below ``{results}/{study}/runs/``, without ``.json``."""
        extra = "".join(f"{v}/" for v in self.variant)
        return (
            f"beta~{self.beta}/{self.attack}~{self.strength}/{self.defense}/{extra}seed~{self.seed}"
        )

    def path(self, results: str) -> str:
        return f"{results}/{self.study}/runs/{self.key}.json"

    @property
    def json(self) -> str:
        """The spec its job is handed (``byzstress train --spec``): only this run's own
        values, so that a new default or a new run in the config never reruns it."""
        return spec_json(dict(self.spec))


def check_finite(node: Any, where: str = "config") -> None:
    """Raise :class:`StudyError` naming the first NaN or ±Inf anywhere in the config (YAML's
    ``.nan``/``.inf``, or ``1e400``): JSON-schema bounds let NaN through."""
    if isinstance(node, float) and not math.isfinite(node):
        raise StudyError(f"{where}: must be a finite number, got {node!r}")
    if isinstance(node, dict):
        for key, value in node.items():
            check_finite(value, f"{where}.{key}" if where != "config" else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            check_finite(value, f"{where}[{i}]")


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
    """Validate every distinct run spec where it is built: the fields always (names, ranges,
    f < n/2; no torch needed), the registries' names (attack, defense, model, plugins) when
    torch is importable. A job then reads its spec back from :func:`Run.json`."""
    from ..sim.spec import RunSpec, SpecError

    names = _registries_importable()
    seen: set[str] = set()
    for run in runs:
        key = run.json  # text: a value of any type (a mapping too) reaches the checks below
        if key in seen:
            continue
        seen.add(key)
        try:
            spec = RunSpec(**dict(run.spec))
            spec.check_fields()
            if names:
                spec.check_names()
        except SpecError as err:
            raise StudyError(f"{where}: {err}") from err


def _registries_importable() -> bool:
    """Whether the attack and defense registries (torch) can be imported here: a Snakemake
    environment without torch checks the fields only, and each job checks the names."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def spec_defaults() -> dict[str, Any]:
    """:class:`byzstress.sim.spec.RunSpec`'s defaults (that module imports no torch)."""
    from ..sim.spec import RunSpec

    return RunSpec().to_dict()


def _axis_label(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return fmt_number(value)
    if isinstance(value, str):
        return slug(value)
    raise StudyError(f"axis value {value!r} must be a number, a string or a boolean")


def _axes(where: str, axes: dict[str, Any]) -> list[list[tuple[str, Any]]]:
    """Every combination of the axes' values as ``[(key, value), ...]``, keys in order."""
    if not isinstance(axes, dict):
        raise StudyError(f"{where}.axes: must map training knobs to lists of values")
    valid = sorted(AXIS_KNOBS)
    if "f" in axes and "delta" in axes:
        raise StudyError(f"{where}.axes: give either f or delta, not both")
    combos: list[list[tuple[str, Any]]] = [[]]
    for key in sorted(axes):
        values = axes[key]
        if key in AXES:
            raise StudyError(
                f"{where}.axes.{key}: {key} is already a study axis "
                f"({'knowledge: per attack entry' if key == 'knowledge' else key + 's'})"
            )
        if key not in valid and key != "delta":
            raise StudyError(f"{where}.axes.{key}: not a training knob; valid: {', '.join(valid)}")
        if not isinstance(values, list) or not values:
            raise StudyError(f"{where}.axes.{key}: must be a non-empty list of values")
        labels = [_axis_label(v) for v in values]
        if len(set(labels)) != len(labels):
            raise StudyError(f"{where}.axes.{key}: duplicate values {values}")
        combos = [[*c, (key, v)] for c in combos for v in values]
    return combos


def _apply_axes(
    base: dict[str, Any],
    combo: list[tuple[str, Any]],
    defaults: dict[str, Any],
    delta: float | None,
    where: str,
) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The base spec with one combination of axis values, and its path segments: a value
    equal to the base's own (or the spec default) changes nothing and adds no segment.
    ``delta``: the study's δ, if it gives one, so that an ``n`` axis keeps ``f = ⌊δ n⌋``."""
    spec, segments = dict(base), []
    for key, value in combo:
        current = delta if key == "delta" else spec.get(key, defaults.get(key))
        if current is not None and _axis_label(value) == _axis_label(current):
            continue
        segments.append(f"{key}~{_axis_label(value)}")
        if key == "delta":
            delta = value
        else:
            spec[key] = value
    if delta is not None:
        spec["f"] = _f_of_delta(where, delta, spec.get("n", defaults["n"]))
    return spec, tuple(segments)


def _f_of_delta(where: str, delta: Any, n: Any) -> int:
    """f = ⌊δ n⌋ Byzantine clients for the fraction δ ∈ [0, 0.5) (the paper's δ, Figure 1).
    δ is not a run-spec field (the spec holds f), so it is checked here."""
    if isinstance(delta, bool) or not isinstance(delta, int | float) or not 0 <= delta < 0.5:
        raise StudyError(
            f"{where}.delta: the Byzantine fraction must be a number with 0 <= delta < 0.5, "
            f"got {delta!r}"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise StudyError(f"{where}.n: must be a whole number >= 1, got {n!r}")
    return math.floor(delta * n + 1e-9)


def expand_study(
    name: str, study: dict[str, Any], config: dict[str, Any], only: str | None = None
) -> list[Run]:
    """All runs of one study (every slice), in a stable order, each path once; ``only``:
    the runs of the slice of that name alone (to run a study in parts). With ``runs_of:
    OTHER`` the runs live in OTHER's runs folder: a run both studies define is one file,
    trained once (:func:`check_shared_runs` refuses two specs for one path)."""
    home = study.get("runs_of", name)
    if home != name and home not in config.get("definitions", {}):
        raise StudyError(
            f"definitions.{name}.runs_of: unknown study {home!r}; "
            f"defined: {', '.join(sorted(config.get('definitions', {})))}"
        )
    slices = study.get("slices")
    if slices is not None:
        if not isinstance(slices, list) or not slices:
            raise StudyError(f"definitions.{name}.slices: must be a non-empty list")
        for i, sl in enumerate(slices):
            if not isinstance(sl, dict):
                raise StudyError(
                    f"definitions.{name}.slices[{i}]: must be a mapping of name, description, "
                    f"{', '.join(MATRIX_KEYS)}; got {sl!r}"
                )
    named = [sl.get("name") for sl in slices or [] if sl.get("name")]
    twice = sorted({n for n in named if named.count(n) > 1})
    if twice:
        # `--slice NAME` would pick the first and never train the other
        raise StudyError(f"definitions.{name}.slices: names used twice: {', '.join(twice)}")
    if only is not None:
        names = [sl.get("name") for sl in slices or []]
        if only not in names:
            raise StudyError(
                f"definitions.{name}: no slice named {only!r}; slices: "
                f"{', '.join(str(n) for n in names) or 'none'}"
            )
        slices = [slices[names.index(only)]]
    if slices is None:
        parts = [("", study)]
    else:
        parts = []
        for i, sl in enumerate(slices):
            unknown = sorted(set(sl) - {*MATRIX_KEYS, "name", "description"})
            if unknown:
                raise StudyError(
                    f"definitions.{name}.slices[{i}]: unknown key(s) {unknown}; "
                    f"valid: name, description, {', '.join(MATRIX_KEYS)}"
                )
            merged = {**study, **{k: v for k, v in sl.items() if k in MATRIX_KEYS}}
            parts.append((f".slices[{i}]", merged))
    runs: list[Run] = []
    seen: dict[str, Run] = {}
    for suffix, part in parts:
        for run in _expand_matrix(home, f"definitions.{name}{suffix}", part, config):
            if run.key not in seen:
                seen[run.key] = run
                runs.append(run)
            elif seen[run.key].spec != run.spec:  # e.g. "MinSum" in one slice, "minsum" in another
                raise StudyError(
                    f"definitions.{name}: two slices map {run.key} to different specs; "
                    "spell the attack or defense the same way in both"
                )
    return runs


def new_slices(
    name: str, study: dict[str, Any], config: dict[str, Any], slices: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The part of ``slices`` that study ``name`` does not define yet, to append to its
    ``slices:``: each slice keeps only the strengths (or attacks without strengths) with a
    run the study lacks, and is dropped when none is left; a name the study already uses
    gets a suffix (``-2``, ``-3``, ...)."""
    have = {run.key for run in expand_study(name, study, config)}
    taken = {sl.get("name") for sl in study.get("slices") or [] if isinstance(sl, dict)}

    def missing(part: dict[str, Any]) -> bool:
        trial = {**study, "slices": [{k: v for k, v in part.items() if k != "name"}]}
        return any(run.key not in have for run in expand_study(name, trial, config))

    out = []
    for sl in slices:
        attacks = []
        for attack in sl.get("attacks") or study.get("attacks") or []:
            strengths = attack.get("strengths")
            if strengths is None:
                if missing({**sl, "attacks": [attack]}):
                    attacks.append(attack)
                continue
            keep = [
                x for x in strengths if missing({**sl, "attacks": [{**attack, "strengths": [x]}]})
            ]
            if keep:
                attacks.append({**attack, "strengths": keep})
        if not attacks:
            continue
        base, label, k = sl["name"], sl["name"], 1
        while label in taken:
            k += 1
            label = f"{base}-{k}"
        taken.add(label)
        out.append({**sl, "name": label, "attacks": attacks})
    return out


def _expand_matrix(
    name: str, where: str, study: dict[str, Any], config: dict[str, Any]
) -> list[Run]:
    """The runs of one matrix (a study without slices, or one slice)."""
    for key in ("betas", "seeds", "defenses", "attacks"):
        if not study.get(key):
            raise StudyError(f"{where}: needs a non-empty '{key}' (in the study or the slice)")
    train = dict(study.get("train", {}))
    defaults = spec_defaults()
    delta = train.pop("delta", None)
    if delta is not None:
        if "f" in train:
            raise StudyError(f"{where}.train: give either f or delta, not both")
        train["f"] = _f_of_delta(f"{where}.train", delta, train.get("n", defaults["n"]))
    for key in train:
        if key in AXES:
            raise StudyError(f"{where}.train.{key}: set it as a study axis, not in train")
        if key not in TRAIN_KEYS:
            raise StudyError(
                f"{where}.train.{key}: not a training knob; valid: {', '.join(TRAIN_KEYS)}"
            )
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

    combos = _axes(where, study.get("axes") or {})
    # once, not per run
    variants = [_apply_axes(base, c, defaults, delta, f"{where}.axes") for c in combos]
    runs = []
    for b_key, b_val in betas:
        for a_slug, a_name, knowledge, s_key, s_val in attack_entries:
            for d_slug, d_spec in defenses:
                for varied, variant in variants:
                    for seed in study["seeds"]:
                        spec = {
                            **varied,
                            "beta": b_val,
                            "attack": a_name,
                            "knowledge": knowledge,
                            "defense": d_spec,
                            "seed": int(seed),
                        }
                        if s_val is not None:
                            spec["strength"] = s_val
                        runs.append(
                            Run(
                                name,
                                b_key,
                                a_slug,
                                s_key,
                                d_slug,
                                str(int(seed)),
                                tuple(spec.items()),
                                variant,
                            )
                        )
    _validate_runs(where, runs)
    keys = [r.path("") for r in runs]
    if len(set(keys)) != len(keys):
        raise StudyError(f"{where}: two runs map to the same path (duplicate entries?)")
    return runs


def check_shared_runs(runs: dict[str, list[Run]], results: str) -> dict[str, Run]:
    """Every run file of the selected studies once; two studies that map one file to
    different specs (``runs_of`` with other training settings) are an error."""
    index: dict[str, Run] = {}
    owner: dict[str, str] = {}
    for study, study_runs in runs.items():
        for run in study_runs:
            path = run.path(results)
            if path in index and index[path].spec != run.spec:
                raise StudyError(
                    f"definitions.{study}: {path} is also a run of {owner[path]} with another "
                    "spec; give both studies the same training settings (runs_of)"
                )
            index.setdefault(path, run)
            owner.setdefault(path, study)
    return index


def job_threads(definition: dict[str, Any]) -> int:
    """Threads of one training job of a study: its ``resources.threads``, else 1 for a CPU
    study (``resources.gpu`` 0 or absent) and 2 for a GPU study.

    On the CPU a study is many independent runs, and one thread per job with as many jobs
    as cores trains more runs per hour than fewer jobs of several threads: a job's serial
    parts (start-up, setup, the JSON) then overlap another job's training, and a second
    thread makes a run's training and evaluation 1.54× faster, not 2× (the demo on 2
    cores: 1.46-1.51× more runs per hour, bit-identical runs; benchmarks/README.md, "Study
    throughput"). A GPU job keeps 2 threads for its host-side work.
    """
    resources = definition.get("resources") or {}
    if "threads" in resources:
        return int(resources["threads"])
    return 2 if int(resources.get("gpu", 0) or 0) > 0 else 1
