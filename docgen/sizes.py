"""How many runs each study and each slice of a study defines, counted from ``config.yaml``.

A study's runs live in its runs folder (its own, or OTHER's with ``runs_of: OTHER``); two
studies that share a folder and define a run alike define one file, trained once
(:func:`byzstress.runs.study.check_shared_runs`). The counts here are of those files: a run
that two slices of one study define counts once, for the first slice that defines it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from byzstress.runs.study import StudyError, expand_study

__all__ = ["SliceSize", "StudySize", "slice_sizes", "study_sizes"]


@dataclass(frozen=True)
class StudySize:
    """One study: its runs, their steps, the folder they train into, and per other study
    of that folder the number of runs both define."""

    name: str
    runs: int
    steps: tuple[int, ...]
    folder: str
    shared: dict[str, int]


@dataclass(frozen=True)
class SliceSize:
    """One slice of a study: the runs it defines, those no earlier slice defines (``new``),
    the new ones in ``have`` (``trained``), and the new ones ``other`` also defines."""

    name: str
    runs: int
    new: int
    trained: int
    shared: int


def _keys(name: str, config: dict[str, Any], only: str | None = None) -> list[str]:
    return [r.key for r in expand_study(name, config["definitions"][name], config, only)]


def study_sizes(config: dict[str, Any]) -> list[StudySize]:
    """Every study of ``config['definitions']``, in its order."""
    defs = config["definitions"]
    runs = {name: expand_study(name, study, config) for name, study in defs.items()}
    folder = {name: study.get("runs_of", name) for name, study in defs.items()}
    keys = {name: {r.key for r in rs} for name, rs in runs.items()}
    out = []
    for name, rs in runs.items():
        shared = {
            other: len(keys[name] & keys[other])
            for other in defs
            if other != name and folder[other] == folder[name]
        }
        steps = tuple(sorted({int(dict(r.spec)["steps"]) for r in rs}))
        out.append(StudySize(name, len(rs), steps, folder[name], shared))
    return out


def slice_sizes(
    config: dict[str, Any], name: str, have: set[str], other: str | None = None
) -> list[SliceSize]:
    """The slices of study ``name`` in config order; ``have``: the run keys trained;
    ``other``: a study whose runs to count in each slice (``shared``), or none."""
    study = config["definitions"][name]
    theirs = set(_keys(other, config)) if other else set()
    seen: set[str] = set()
    out = []
    for i, sl in enumerate(study.get("slices") or []):
        if not sl.get("name"):
            # a slice is selected by its name; one without cannot be counted on its own
            raise StudyError(f"definitions.{name}.slices[{i}]: needs a name to be counted")
        keys = _keys(name, config, sl["name"])
        new = [k for k in keys if k not in seen]
        seen.update(new)
        out.append(
            SliceSize(
                sl["name"],
                len(keys),
                len(new),
                sum(k in have for k in new),
                sum(k in theirs for k in new),
            )
        )
    return out
