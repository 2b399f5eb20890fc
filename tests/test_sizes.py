"""Study and slice sizes, counted from a config (docgen.sizes; no torch needed)."""

from __future__ import annotations

import copy

import pytest
from test_study import STUDY as BASE  # one study of 8 runs (2 attacks x 2 defenses x 2 seeds)

from byzstress.runs.study import StudyError
from docgen.sizes import SliceSize, StudySize, slice_sizes, study_sizes

# shares base's folder: none and ALIE z=8 at seed 0 are base's runs; z=2 is its own
GRID = {
    **copy.deepcopy(BASE),
    "runs_of": "base",
    "seeds": [0],
    "attacks": [{"name": "none"}, {"name": "alie", "strengths": [2, 8]}],
    "slices": [
        {"name": "grid", "attacks": [{"name": "none"}, {"name": "alie", "strengths": [2, 8]}]},
        # seed 0 is the grid's again; seed 1 of none is base's, of z=2 nobody's
        {"name": "more", "seeds": [0, 1], "attacks": [{"name": "alie", "strengths": [2]}]},
    ],
}
OWN = {**copy.deepcopy(BASE), "train": {"n": 20, "delta": 0.2, "steps": 30}}


def config() -> dict:
    return {"definitions": {"base": BASE, "grid": GRID, "own": OWN}}


def test_study_sizes_count_runs_steps_and_the_runs_a_shared_folder_holds_once():
    sizes = {s.name: s for s in study_sizes(config())}
    assert list(sizes) == ["base", "grid", "own"]
    assert sizes["base"] == StudySize("base", 8, (10,), "base", {"grid": 4})
    # grid: 3 attacks x 2 defenses at seed 0, + z=2 at seed 1; 4 of them base's
    assert sizes["grid"] == StudySize("grid", 8, (10,), "base", {"base": 4})
    # same cells as base but its own folder (and other steps): shares nothing
    assert sizes["own"] == StudySize("own", 8, (30,), "own", {})


def test_slice_sizes_count_a_run_once_for_its_first_slice_and_what_is_trained():
    have = {"beta~0.1/alie~2/cm/seed~1", "beta~0.1/alie~2/cm/seed~0", "nowhere/seed~0"}
    rows = slice_sizes(config(), "grid", have, other="base")
    assert rows == [
        # seed 0 of z=2 against CM is trained; base defines none and z=8 (4 runs)
        SliceSize("grid", runs=6, new=6, trained=1, shared=4),
        # its seed-0 runs are the grid's; of the two new, CM's is trained
        SliceSize("more", runs=4, new=2, trained=1, shared=0),
    ]
    assert sum(r.new for r in rows) == next(
        s.runs for s in study_sizes(config()) if s.name == "grid"
    )
    assert [r.shared for r in slice_sizes(config(), "grid", set())] == [0, 0]


def test_a_slice_without_a_name_cannot_be_counted():
    cfg = config()
    del cfg["definitions"]["grid"]["slices"][1]["name"]
    with pytest.raises(StudyError, match=r"definitions\.grid\.slices\[1\]: needs a name"):
        slice_sizes(cfg, "grid", set())
