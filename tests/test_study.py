"""Study expansion: training knobs as axes, slices, stable paths (no torch needed)."""

from __future__ import annotations

import copy

import pytest

from byzstress.cli import main
from byzstress.runs.study import StudyError, expand_study

STUDY = {
    "dataset": "fmnist",
    "train": {"n": 20, "delta": 0.2, "steps": 10},
    "betas": [0.1],
    "seeds": [0, 1],
    "defenses": ["CM", "trMean(NNM)"],
    "attacks": [{"name": "none"}, {"name": "alie", "strengths": [8]}],
}


def paths(study: dict) -> dict[str, dict]:
    return {r.key: dict(r.spec) for r in expand_study("s", study, {})}


def test_an_axis_at_the_studys_own_value_renames_and_changes_nothing():
    old = paths(STUDY)
    assert "beta~0.1/alie~8/trmean-nnm/seed~1" in old
    wider = copy.deepcopy(STUDY)
    wider["axes"] = {"momentum": [0.9, 0], "momentum_form": ["ema"]}
    new = paths(wider)
    assert {k: v for k, v in new.items() if k in old} == old  # same paths, same specs
    added = sorted(set(new) - set(old))
    assert len(added) == len(old)  # momentum 0 only: ema and 0.9 are the defaults
    assert all("/momentum~0/seed~" in k for k in added)
    assert all(new[k]["momentum"] == 0 for k in added)
    assert all("momentum" not in v and "momentum_form" not in v for v in old.values())
    # the order of an axis's values does not matter, only whether a value is the study's
    wider["axes"] = {"momentum": [0, 0.9]}
    assert paths(wider).keys() == new.keys()


def test_an_axis_against_a_train_value_and_several_axes_in_key_order():
    study = copy.deepcopy(STUDY)
    study["train"]["lr"] = 0.05
    study["axes"] = {"momentum_form": ["heavy", "ema"], "lr": [0.05, 0.1]}
    runs = paths(study)
    assert len(runs) == 4 * len(paths(STUDY))
    key = "beta~0.1/none~default/cm/lr~0.1/momentum_form~heavy/seed~0"
    assert runs[key]["lr"] == 0.1 and runs[key]["momentum_form"] == "heavy"
    assert runs["beta~0.1/none~default/cm/seed~0"]["lr"] == 0.05


def test_an_n_axis_keeps_f_at_delta_n():
    study = copy.deepcopy(STUDY)
    study["axes"] = {"n": [20, 30]}
    runs = paths(study)
    assert runs["beta~0.1/none~default/cm/seed~0"]["f"] == 4
    assert runs["beta~0.1/none~default/cm/n~30/seed~0"]["f"] == 6


@pytest.mark.parametrize(
    ("axes", "needle"),
    [
        ({"knowledge": ["local"]}, "axes.knowledge: knowledge is already a study axis"),
        ({"beta": [0.5]}, "axes.beta: beta is already a study axis"),
        ({"colour": [1]}, "axes.colour: not a training knob; valid:"),
        ({"momentum": []}, "axes.momentum: must be a non-empty list"),
        ({"momentum": [0.5, 0.50]}, "axes.momentum: duplicate values"),
        ({"lr": [[0.1]]}, "must be a number, a string or a boolean"),
        ({"momentum": [1.5]}, "momentum: must be >= 0 and < 1, got 1.5"),
        ({"momentum_form": ["nesterov"]}, "momentum_form: 'nesterov' is not valid"),
    ],
)
def test_bad_axes_name_the_key(axes, needle):
    study = copy.deepcopy(STUDY)
    study["axes"] = axes
    with pytest.raises(StudyError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        expand_study("s", study, {})


def test_slices_are_a_union_with_shared_runs_trained_once():
    study = {k: v for k, v in STUDY.items() if k not in ("attacks", "seeds")}
    study["seeds"] = [0]
    study["slices"] = [
        {"name": "main", "seeds": [0, 1], "attacks": STUDY["attacks"]},
        {"name": "thin", "attacks": [{"name": "none"}], "axes": {"momentum": [0, 0.9]}},
    ]
    runs = expand_study("s", study, {})
    keys = [r.key for r in runs]
    assert len(keys) == len(set(keys))
    assert set(paths(STUDY)) <= set(keys)  # the slice spelled like the study: same paths
    assert len(keys) == len(paths(STUDY)) + 2  # + none at momentum 0, seed 0, both defenses
    thin = expand_study("s", study, {}, only="thin")
    assert [r.key for r in thin] == [
        "beta~0.1/none~default/cm/momentum~0/seed~0",
        "beta~0.1/none~default/cm/seed~0",
        "beta~0.1/none~default/trmean-nnm/momentum~0/seed~0",
        "beta~0.1/none~default/trmean-nnm/seed~0",
    ]
    with pytest.raises(StudyError, match="no slice named 'fat'; slices: main, thin"):
        expand_study("s", study, {}, only="fat")
    clash = copy.deepcopy(study)
    clash["slices"][1]["attacks"] = [{"name": "NONE"}]
    with pytest.raises(StudyError, match=r"two slices map .* to different specs"):
        expand_study("s", clash, {})
    study["slices"][1]["colour"] = 1
    with pytest.raises(StudyError, match=r"slices\[1\]: unknown key\(s\) \['colour'\]"):
        expand_study("s", study, {})


def test_runs_command_prints_a_slice(tmp_path, capsys):
    import yaml

    study = copy.deepcopy(STUDY)
    study["slices"] = [{"name": "only", "seeds": [3], "defenses": ["CM"]}]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"results": "out", "definitions": {"s": study}}))
    assert main(["runs", "s", "--config", str(cfg), "--slice", "only"]) == 0
    assert capsys.readouterr().out.split() == [
        "out/s/runs/beta~0.1/none~default/cm/seed~3.json",
        "out/s/runs/beta~0.1/alie~8/cm/seed~3.json",
    ]
    with pytest.raises(SystemExit) as err:
        main(["runs", "nope", "--config", str(cfg)])
    assert err.value.code == 2
    assert "no study 'nope'" in capsys.readouterr().err


def test_runs_command_lists_the_slices_in_config_order(tmp_path, capsys):
    """A driver (docs/figure1cpu/run.sh) trains every slice, in the order they were added."""
    import yaml

    study = copy.deepcopy(STUDY)
    study["slices"] = [
        {"name": "z-first", "seeds": [3]},
        {"name": "a-second", "defenses": ["CM"]},
    ]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"definitions": {"s": study, "t": STUDY}}))
    assert main(["runs", "s", "--config", str(cfg), "--slices"]) == 0
    assert capsys.readouterr().out.split() == ["z-first", "a-second"]
    assert main(["runs", "t", "--config", str(cfg), "--slices"]) == 0
    assert capsys.readouterr().out.split() == []
    with pytest.raises(SystemExit):
        main(["runs", "s", "--config", str(cfg), "--slices", "--slice", "z-first"])
    # a slice that is not a mapping (a name alone) is a clear error, not a traceback
    study["slices"].append("z-third")
    cfg.write_text(yaml.safe_dump({"definitions": {"s": study}}))
    capsys.readouterr()
    for extra in (["--slices"], ["--slice", "z-first"], []):
        with pytest.raises(SystemExit) as err:
            main(["runs", "s", "--config", str(cfg), *extra])
        assert err.value.code == 2
        assert "definitions.s.slices[2]: must be a mapping" in capsys.readouterr().err


def test_job_threads_one_per_cpu_job_two_per_gpu_job_unless_set():
    from byzstress.runs.study import job_threads

    assert job_threads({}) == 1
    assert job_threads({"resources": {"gpu": 0, "mem_mb": 900}}) == 1
    assert job_threads({"resources": {"gpu": 1}}) == 2
    assert job_threads({"resources": {"gpu": 1, "threads": 4}}) == 4
    assert job_threads({"resources": {"threads": 3}}) == 3


def test_runs_of_shares_another_studys_runs_folder_and_its_common_runs():
    from byzstress.runs.study import check_shared_runs

    grid = {**copy.deepcopy(STUDY), "runs_of": "base", "seeds": [0]}
    grid["attacks"] = [{"name": "none"}, {"name": "alie", "strengths": [2, 8]}]
    config = {"definitions": {"base": STUDY, "grid": grid}}
    base = expand_study("base", STUDY, config)
    shared = expand_study("grid", grid, config)
    assert {r.study for r in shared} == {"base"}  # trained into results/base/runs/
    index = check_shared_runs({"base": base, "grid": shared}, "results")
    # base: 2 attacks x 2 defenses x 2 seeds; grid adds only ALIE z=2 at seed 0
    assert len(index) == 8 + 2
    assert "results/base/runs/beta~0.1/alie~2/cm/seed~0.json" in index
    other = copy.deepcopy(grid)
    other["train"]["steps"] = 20  # the shared cells would be other runs under one name
    clash = {"base": base, "grid": expand_study("grid", other, config)}
    with pytest.raises(StudyError, match=r"definitions\.grid: .* is also a run of base"):
        check_shared_runs(clash, "results")
    with pytest.raises(StudyError, match=r"runs_of: unknown study 'nope'; defined: base, grid"):
        expand_study("grid", {**grid, "runs_of": "nope"}, config)


def test_the_split_is_a_study_axis_and_the_default_adds_no_segment():
    study = {**copy.deepcopy(STUDY), "axes": {"split": ["dirichlet", "shards[k=2]"]}}
    keys = paths(study)
    assert "beta~0.1/alie~8/cm/seed~0" in keys  # the default: the old path, no flag
    assert "split" not in keys["beta~0.1/alie~8/cm/seed~0"]
    assert keys["beta~0.1/alie~8/cm/split~shards-k-2/seed~0"]["split"] == "shards[k=2]"
    with pytest.raises(StudyError, match="split: unknown split 'bogus'"):
        expand_study("s", {**STUDY, "axes": {"split": ["bogus"]}}, {})


def test_two_slices_of_one_name_are_refused():
    study = copy.deepcopy(STUDY)
    study["slices"] = [{"name": "a", "seeds": [3]}, {"name": "a", "seeds": [4]}]
    with pytest.raises(StudyError, match="names used twice: a"):
        expand_study("s", study, {})


def test_new_slices_keep_only_what_the_study_lacks_under_new_names():
    from byzstress.runs.study import new_slices

    study = copy.deepcopy(STUDY)
    study["attacks"] = [{"name": "none"}, {"name": "alie", "strengths": [2, 8]}]
    study["slices"] = [{"name": "grid", "seeds": [0]}, {"name": "more", "seeds": [1]}]
    cfg = {"definitions": {"s": study}}
    proposed = [
        # seed 1 of z=8 and z=16 against CM: the study has z=8's (slice 'more'), not z=16's
        {"name": "more", "defenses": ["CM"], "seeds": [1],
         "attacks": [{"name": "alie", "strengths": [8, 16]}, {"name": "none"}]},
        # seed 2 of z=2: new, under a new name already
        {"name": "z2", "defenses": ["CM"], "seeds": [2],
         "attacks": [{"name": "alie", "strengths": [2]}]},
        # everything here is in the study: dropped
        {"name": "old", "defenses": ["trMean(NNM)"], "seeds": [0, 1],
         "attacks": [{"name": "alie", "strengths": [2, 8]}]},
    ]  # fmt: skip
    out = new_slices("s", study, cfg, proposed)
    assert [s["name"] for s in out] == ["more-2", "z2"]
    assert out[0]["attacks"] == [{"name": "alie", "strengths": [16]}]  # 'none' seed 1: there
    assert out[1]["attacks"] == [{"name": "alie", "strengths": [2]}]
    # appended, the study then lacks nothing of them, and its slice names stay unique
    study["slices"] += out
    assert new_slices("s", study, cfg, proposed) == []
    # 2 defenses x 3 cells x seeds 0 and 1, and the two new runs
    assert len(expand_study("s", study, cfg)) == 2 * 3 * 2 + 2


def test_runs_slices_refuses_a_slice_without_a_name(tmp_path, capsys):
    import yaml

    study = copy.deepcopy(STUDY)
    study["slices"] = [{"name": "a", "seeds": [3]}, {"seeds": [4]}]
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({"definitions": {"s": study, "null": None}}))
    with pytest.raises(SystemExit) as err:
        main(["runs", "s", "--config", str(cfg), "--slices"])
    assert err.value.code == 2 and "slices[1]: has no 'name'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["runs", "null", "--config", str(cfg), "--slices"])
    assert "definitions.null: must be a mapping" in capsys.readouterr().err


def test_reordering_the_train_mapping_changes_no_jobs_spec():
    """A job's params are its spec's JSON: written with sorted keys, so moving lines of
    ``train:`` in config.yaml reruns nothing (Snakemake reruns a job whose params change)."""
    study = copy.deepcopy(STUDY)
    study["train"] = {"lr": 0.05, **STUDY["train"], "momentum_form": "heavy"}
    flipped = {**study, "train": dict(reversed(list(study["train"].items())))}
    assert list(flipped["train"]) != list(study["train"])
    one = {r.key: r.json for r in expand_study("s", study, {})}
    assert one == {r.key: r.json for r in expand_study("s", flipped, {})}
