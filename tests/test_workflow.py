"""The Snakemake pipeline for real: a tiny study on real Fashion-MNIST, incremental
re-runs, the report, lint/format checks, schema rejections, env files, the SLURM profile."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _smk import snakemake_cmd

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "studies": ["tiny"],
    "results": "results",
    "definitions": {
        "tiny": {
            "type": "calibration",
            "dataset": "fmnist",
            "train": {"n": 7, "f": 1, "steps": 6, "eval_every": 3, "eval_batch_size": 1000},
            "betas": [0.5],
            "seeds": [0, 1],
            "defenses": ["CM", "trMean(NNM)"],
            "attacks": [
                {"name": "none"},
                {"name": "alie", "strengths": [8]},
                {"name": "ipm", "strengths": [0.1, 2.5]},
            ],
            "report": {
                "table": True,
                "figure": True,
                "paper": False,
                "sensitivity": True,
                "detection": True,
            },
            "resources": {"mem_mb": 1000, "runtime": 10, "threads": 1},
        }
    },
}


def smk(workdir: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_cmd(workdir, *args), capture_output=True, text=True, timeout=timeout
    )


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run."""
    block = output.split("Job stats:")[1]
    counts = {}
    for line in block.splitlines()[3:]:
        m = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def write_config(workdir: Path, cfg: dict) -> None:
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory, fmnist_root):
    wd = tmp_path_factory.mktemp("study")
    cfg = copy.deepcopy(TINY)
    cfg["data_root"] = str(fmnist_root)
    write_config(wd, cfg)
    r = smk(wd, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return wd, cfg


@pytest.mark.slow
def test_end_to_end_tables_and_figures(tiny_study):
    wd, _ = tiny_study
    out = wd / "results" / "tiny"
    runs = sorted((out / "runs").rglob("*.json"))
    assert len(runs) == 4 * 2 * 2  # (none, alie 8, ipm 0.1, ipm 2.5) x 2 defenses x 2 seeds
    assert "beta~0.5/alie~8/trmean-nnm/seed~1.json" in "\n".join(str(p) for p in runs)
    tidy = pd.read_csv(out / "runs.csv")
    assert len(tidy) == 16 and set(tidy["seed"]) == {0, 1}
    table = pd.read_csv(out / "table1.csv")
    assert len(table) == 4 * 2
    assert set(table["attack_label"]) == {"No attack", "ALIE (z=8)", "IPM (ε=0.1)", "IPM (ε=2.5)"}
    assert (table["seeds"] == 2).all()
    # one strongest (lowest mean) attack per defense column, never the no-attack row
    strongest = table[table["strongest"]]
    assert len(strongest) == 2 and "No attack" not in set(strongest["attack_label"])
    for _, grp in table[table["attack_label"] != "No attack"].groupby("defense"):
        assert grp.loc[grp["strongest"], "mean"].iloc[0] == grp["mean"].min()
    md = (out / "table1.md").read_text()
    assert "| Attack | CM (β=0.5) | trMean(NNM) (β=0.5) |" in md and "**" in md
    assert "\\textbf{" in (out / "table1.tex").read_text()
    for name in ("figure1.png", "figure1.pdf", "curves.png", "leaderboard.png"):
        assert (out / name).stat().st_size > 5000, name
    lb = pd.read_csv(out / "leaderboard.csv")
    assert len(lb) == 2  # defenses x betas
    # the leaderboard's worst case is the minimum over the run JSONs' seed means
    for _, row in lb.iterrows():
        sel = tidy[(tidy["defense"] == row["defense"]) & (tidy["attack"] != "none")]
        means = sel.groupby("attack_label")["max_acc"].mean() * 100
        assert row["worst_case"] == pytest.approx(means.min())
        assert row["worst_attack"] == means.idxmin()
    claims = pd.read_csv(out / "sensitivity-claims.csv")
    # IPM 2.5 against IPM 0.1 is testable in each defense column; ALIE's default z is absent
    strength = claims[(claims["claim"] == "strength_ipm") & claims["verdict"].notna()]
    assert set(strength["defense"]) == {"CM", "trMean(NNM)"}
    assert "IPM (ε=2.5)" in " ".join(strength["evidence"])
    assert claims.loc[claims["claim"] == "strength_alie", "verdict"].isna().all()
    md = (out / "sensitivity-claims.md").read_text()
    assert "Claim | Setting | supported / contradicted / inconclusive" in md
    diag = pd.read_csv(out / "sensitivity-diagnostics.csv")
    assert len(diag) == 4 * 2 and diag["diag_rel_err"].notna().all()
    for name in ("sensitivity-diagnostics.png", "sensitivity-baseline.png"):
        assert (out / name).stat().st_size > 5000, name
    det = pd.read_csv(out / "detection.csv")
    assert len(det) == 2 * 3  # defenses x (ALIE 8, IPM 0.1, IPM 2.5)
    for _, row in det.iterrows():  # kept: the runs' mean Byzantine share over f/n = 1/7
        sel = tidy[
            (tidy["defense"] == row["defense"]) & (tidy["attack_label"] == row["attack_label"])
        ]
        assert row["kept"] == pytest.approx(sel["diag_rule_byz_share"].mean() * 7)
        assert bool(row["detected"]) == (row["kept"] < 0.5)
    assert not (out / "detection-claim.csv").exists()  # claim 1 is `byzstress claims`
    assert (out / "detection.png").stat().st_size > 5000
    cal = pd.read_csv(out / "calibration.csv")
    assert len(cal) == 2 * 2  # defenses x (ALIE, IPM)
    for _, row in cal[cal["attack"] == "IPM"].iterrows():
        sel = tidy[(tidy["defense"] == row["defense"]) & (tidy["attack"] == "ipm")]
        means = sel.groupby("strength_value")["max_acc"].mean() * 100
        assert float(row["most_damaging_strength"]) == means.idxmin()
        assert row["acc_at_most_damaging"] == pytest.approx(means.min())
        assert row["acc_at_iid_default"] == pytest.approx(means[0.1])
        assert row["iid_default_strength"] == 0.1
        clean = tidy[(tidy["defense"] == row["defense"]) & (tidy["attack"] == "none")]
        base = clean["max_acc"].mean() * 100
        broken = [s for s, v in sorted(means.items()) if v < 0.5 * base]
        if broken:
            assert row["breaking_strength"] == broken[0]
        else:
            assert pd.isna(row["breaking_strength"])


@pytest.mark.slow
def test_adding_an_attack_schedules_only_its_runs(tiny_study, tmp_path):
    wd, cfg = tiny_study
    r = smk(wd, "-n")
    assert r.returncode == 0 and "Nothing to be done" in r.stdout + r.stderr
    more = copy.deepcopy(cfg)
    more["definitions"]["tiny"]["attacks"].append({"name": "sf"})
    write_config(wd, more)
    try:
        r = smk(wd, "-n")
        assert r.returncode == 0, r.stderr[-3000:]
        counts = job_counts(r.stdout)
        assert counts["train"] == 1 * 2 * 2  # beta x defenses x seeds of the new attack
        assert {k: v for k, v in counts.items() if k != "train"} == {
            "collect": 1,
            "table": 1,
            "figure": 1,
            "curves": 1,
            "leaderboard": 1,
            "calibration": 1,
            "sensitivity": 1,
            "detection": 1,
            "all": 1,
            "total": 13,
        }
        stronger = copy.deepcopy(cfg)
        stronger["definitions"]["tiny"]["attacks"][1]["strengths"] = [8, 16]
        write_config(wd, stronger)
        assert job_counts(smk(wd, "-n").stdout)["train"] == 4
    finally:
        write_config(wd, cfg)


@pytest.mark.slow
def test_adding_an_axis_or_slicing_the_study_keeps_old_results(tiny_study):
    wd, cfg = tiny_study
    try:
        # an axis whose first value is the study's own: only the new value's runs
        wider = copy.deepcopy(cfg)
        wider["definitions"]["tiny"]["axes"] = {"momentum": [0.9, 0], "momentum_form": ["ema"]}
        write_config(wd, wider)
        r = smk(wd, "-n")
        assert r.returncode == 0, r.stderr[-3000:]
        assert job_counts(r.stdout)["train"] == 4 * 2 * 2  # every run once more, momentum 0
        assert "/momentum~0/seed~" in r.stdout and "momentum_form~" not in r.stdout
        # the same runs spelled as two slices: nothing to train
        sliced = copy.deepcopy(cfg)
        study = sliced["definitions"]["tiny"]
        attacks = study.pop("attacks")
        study["slices"] = [
            {"name": "attacked", "attacks": attacks[1:]},
            {"name": "baseline", "attacks": attacks[:1]},
        ]
        write_config(wd, sliced)
        r = smk(wd, "-n")
        assert r.returncode == 0, r.stderr[-3000:]
        assert "Nothing to be done" in r.stdout + r.stderr
    finally:
        write_config(wd, cfg)


@pytest.mark.slow
def test_published_records_rebuild_every_output_without_training(tiny_study, tmp_path):
    """pack -> restore in a fresh folder -> the plan has no train job, and the outputs are
    those of the original study; a record missing from the archive is all that trains."""
    wd, cfg = tiny_study
    src = wd / "results" / "tiny"
    cli = [sys.executable, "-m", "byzstress"]
    archive = tmp_path / "docs" / "runs.tar.xz"
    subprocess.run([*cli, "pack", str(src / "runs"), "--out", str(archive)], check=True)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    write_config(fresh, cfg)
    runs = fresh / "results" / "tiny" / "runs"
    r = subprocess.run(
        [*cli, "restore", str(archive), "--runs", str(runs)], capture_output=True, text=True
    )
    assert r.returncode == 0 and "16 restored" in r.stdout, r.stderr
    plan = smk(fresh, "-n")
    assert plan.returncode == 0, plan.stderr[-3000:]
    counts = job_counts(plan.stdout)
    assert "train" not in counts and counts["collect"] == 1 and counts["table"] == 1
    built = smk(fresh, "--cores", "2")
    assert built.returncode == 0, built.stderr[-3000:]
    for name in ("runs.csv", "table1.csv", "leaderboard.csv", "sensitivity-claims.csv"):
        assert (fresh / "results/tiny" / name).read_bytes() == (src / name).read_bytes(), name
    assert "Nothing to be done" in (lambda p: p.stdout + p.stderr)(smk(fresh, "-n"))
    # a study run in parts: on a fresh checkout whose archive lacks 3 records, those are
    # exactly what trains
    part = tmp_path / "part"
    part.mkdir()
    write_config(part, cfg)
    part_runs = part / "results" / "tiny" / "runs"
    subprocess.run([*cli, "restore", str(archive), "--runs", str(part_runs)], check=True)
    for path in sorted(part_runs.rglob("seed~1.json"))[:3]:
        path.unlink()
    counts = job_counts(smk(part, "-n").stdout)
    assert counts["train"] == 3 and counts["collect"] == 1


@pytest.mark.slow
def test_html_report(tiny_study):
    wd, _ = tiny_study
    r = smk(wd, "--report", str(wd / "report.html"))
    assert r.returncode == 0, r.stderr[-3000:]
    html = (wd / "report.html").read_text(errors="replace")
    assert len(html) > 50_000 and "Table 1" in html and "Leaderboard" in html


def test_lint_and_format_are_clean():
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "--lint", "-n"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Congratulations" in r.stdout + r.stderr
    fmt = Path(sys.executable).with_name("snakefmt")
    r = subprocess.run(
        [str(fmt), "--check", "Snakefile", "workflow"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def _schema_errors(cfg: dict) -> str:
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    try:
        validate(copy.deepcopy(cfg), str(ROOT / "workflow/schemas/config.schema.yaml"))
    except WorkflowError as err:
        return str(err)
    return ""


def _bad(path: list, value) -> dict:
    cfg = copy.deepcopy(TINY)
    node = cfg
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return cfg


@pytest.mark.parametrize(
    ("path", "value", "needle"),
    [
        (["definitions", "tiny", "betas"], [0.5, -1], "-1"),
        (["definitions", "tiny", "betas"], ["uniform"], "uniform"),
        (["definitions", "tiny", "dataset"], "mnist", "mnist"),
        (["definitions", "tiny", "attacks"], [{"name": "alie", "strengths": ["1e-3"]}], "1e-3"),
        (["definitions", "tiny", "attacks"], [{"nom": "alie"}], "nom"),
        (["definitions", "tiny", "seeds"], [], "seeds"),
        (["definitions", "tiny", "resources", "mem_mb"], 100, "100"),
        (["studies"], "tiny", "tiny"),
        (["extra_key"], 1, "extra_key"),
    ],
)
def test_schema_rejects_bad_configs(path, value, needle):
    assert _schema_errors(TINY) == ""
    message = _schema_errors(_bad(path, value))
    assert message and needle in message


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (
            lambda c: c["definitions"]["tiny"]["attacks"].append({"name": "alee"}),
            "unknown attack 'alee'; valid:",
        ),
        (
            lambda c: c["definitions"]["tiny"]["defenses"].append("trMean(NMM)"),
            "unknown pre-aggregator 'nmm'; valid:",
        ),
        (lambda c: c.update(studies=["nope"]), "unknown study 'nope'; defined: tiny"),
        (lambda c: c["definitions"]["tiny"]["train"].update(f=4), "f: need f < n/2"),
        (
            lambda c: c["definitions"]["tiny"]["attacks"].append({"name": "sf", "strengths": [2]}),
            "strength",
        ),
        # the schema leaves train: to the run spec, which names the key and what it accepts
        (
            lambda c: c["definitions"]["tiny"]["train"].update(colour=1),
            "definitions.tiny.train.colour: not a training knob; valid: model, n, f,",
        ),
        (lambda c: c["definitions"]["tiny"]["train"].update(steps=-1), "steps: must be >= 1"),
        (
            lambda c: c["definitions"]["tiny"]["train"].update(lr="1e-3"),
            "lr: must be a number, got the string '1e-3' (YAML reads 1e-3 as a string",
        ),
        (
            lambda c: c["definitions"]["tiny"].update(axes={"colour": [1, 2]}),
            "definitions.tiny.axes.colour: not a training knob; valid:",
        ),
        (
            lambda c: c["definitions"]["tiny"]["train"].update(lr=float("nan")),
            "definitions.tiny.train.lr: must be a finite number",
        ),
        (
            lambda c: c["definitions"]["tiny"]["attacks"].append(
                {"name": "ipm", "strengths": [float("inf")]}
            ),
            "strengths[0]: must be a finite number",
        ),
        (
            lambda c: c["definitions"]["tiny"]["defenses"].append("cclip[tau=inf]"),
            "tau: must be a finite number",
        ),
    ],
)
def test_bad_config_fails_before_any_job(tmp_path, mutate, needle):
    cfg = copy.deepcopy(TINY)
    mutate(cfg)
    write_config(tmp_path, cfg)
    r = smk(tmp_path, "-n")
    assert r.returncode != 0
    assert needle in r.stdout + r.stderr
    assert not (tmp_path / "results").exists()


def test_slurm_profile_dry_runs():
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/slurm"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]


def test_cpu_study_jobs_take_one_thread_and_gpu_study_jobs_two(tmp_path):
    """config.yaml's demo (CPU) and table1 (gpu: 1) set no threads: the defaults apply."""
    r = subprocess.run(
        [
            *(sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "8"),
            *("--config", "studies=[demo,table1]", f"results={tmp_path}"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    threads = re.findall(r"OMP_NUM_THREADS=(\d+) python \S+ train .*? --out (\S+)", r.stdout)
    by_study = {
        study: {n for n, out in threads if f"/{study}/runs/" in out} for study in ("demo", "table1")
    }
    assert by_study == {"demo": {"1"}, "table1": {"2"}}, by_study
    assert len(threads) == 60 + 144


def test_env_files_pin_what_pyproject_pins():
    import tomllib

    pins = {}
    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.\-\[\]]+?)(\[.*\])?==(.+)$", dep)
        if m:
            pins[m.group(1).lower()] = m.group(3)
    assert {"torch", "torchvision"} <= set(pins)
    envs = sorted((ROOT / "envs").glob("*.yaml"))
    assert envs
    for env in envs:
        spec = yaml.safe_load(env.read_text())
        assert "python=3.11" in spec["dependencies"]
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict))
        listed = {}
        for dep in pip:
            m = re.match(r"^([A-Za-z0-9_.\-]+)==(.+)$", dep)
            if m:
                listed[m.group(1).lower()] = m.group(2)
        for name in ("torch", "torchvision", "seaborn"):
            assert listed.get(name) == pins[name], (env.name, name)
    used = set()
    for smk_file in (ROOT / "workflow" / "rules").glob("*.smk"):
        used |= set(re.findall(r'"\.\./\.\./(envs/[^"]+)"', smk_file.read_text()))
    assert used and all((ROOT / u).exists() for u in used)


@pytest.mark.slow
def test_the_example_attack_and_defense_run_through_the_workflow(tmp_path, fmnist_root):
    """examples/my_attack.py and examples/my_defense.py, as the README tells a user to add
    them: named in plugins:, used by name in a study."""
    cfg = copy.deepcopy(TINY)
    cfg["data_root"] = str(fmnist_root)
    cfg["plugins"] = [str(ROOT / "examples" / f) for f in ("my_defense.py", "my_attack.py")]
    study = cfg["definitions"]["tiny"]
    study.update(
        seeds=[0],
        defenses=["normfilter", "CM"],
        attacks=[
            {"name": "none"},
            {"name": "ipm", "strengths": [2.5]},
            {"name": "directed", "strengths": [4]},
        ],
    )
    study["train"]["steps"] = 3
    study["report"] = {"table": True, "figure": False}
    write_config(tmp_path, cfg)
    r = smk(tmp_path, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "results" / "tiny"
    assert len(list((out / "runs" / "beta~0.5").glob("*/normfilter/seed~0.json"))) == 3
    assert len(list((out / "runs" / "beta~0.5").glob("directed~4/*/seed~0.json"))) == 2
    lb = pd.read_csv(out / "leaderboard.csv")
    assert set(lb["defense"]) == {"normfilter", "CM"}
    # the worst case is taken over the attacks, the user's among them, never the baseline
    labels = set(pd.read_csv(out / "runs.csv")["attack_label"]) - {"No attack"}
    assert set(lb["worst_attack"]) <= labels
    table = pd.read_csv(out / "runs.csv")
    assert set(table["attack"]) == {"none", "ipm", "directed"}


@pytest.mark.slow
def test_a_split_axis_gets_its_conclusions_per_split(tmp_path, fmnist_root):
    """report: {split_effect: true}: the rule runs, and its tables cover every split of the
    axis; with one seed per cell every difference is shown and none is tested."""
    cfg = copy.deepcopy(TINY)
    cfg["data_root"] = str(fmnist_root)
    study = cfg["definitions"]["tiny"]
    study.update(
        type="matrix",
        seeds=[0],
        defenses=["CM"],
        attacks=[
            {"name": "none"},
            {"name": "alie", "strengths": [8]},
            {"name": "ipm", "strengths": [2.5]},
        ],
        axes={"split": ["dirichlet", "shards[k=2]"]},
    )
    study["report"] = {"table": False, "figure": False, "split_effect": True}
    write_config(tmp_path, cfg)
    r = smk(tmp_path, "--cores", "2")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    out = tmp_path / "results" / "tiny"
    acc = pd.read_csv(out / "split-effect-accuracy.csv")
    assert set(acc["split"]) == {"dirichlet", "shards[k=2]"}
    assert len(acc) == 2 * 3  # splits x (none, ALIE 8, IPM 2.5)
    # the shards rows: the difference from dirichlet's, untested with one seed a side
    shards = acc[acc["split"] == "shards[k=2]"].set_index("attack_label")
    base = acc[acc["split"] == "dirichlet"].set_index("attack_label")
    expected = (shards["mean"] - base["mean"]).reindex(shards.index)
    assert shards["diff"].tolist() == pytest.approx(expected.tolist())
    assert shards["ci_low"].isna().all() and (shards["outcome"] == "inconclusive").all()
    claims = pd.read_csv(out / "split-effect-claims.csv")
    assert {"split:dirichlet", "split:shards[k=2]", "change"} <= set(claims.columns)
    assert "Welch" in (out / "split-effect.md").read_text()
