"""Smoke test of benchmarks/bench_step.py: the step section in --quick mode runs and writes
positive medians (no timing assertions). ByzFL is made un-importable so the test also
checks that the script does not need it for the other baselines."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_bench_step_quick_runs_without_byzfl(fmnist_root, repo_root, tmp_path):
    blocker = tmp_path / "block"
    (blocker / "byzfl").mkdir(parents=True)
    (blocker / "byzfl" / "__init__.py").write_text("raise ImportError('byzfl blocked')\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(blocker), str(repo_root / "src"), os.environ.get("PYTHONPATH", "")]
        ),
    }
    out = tmp_path / "bench.json"
    cmd = [
        sys.executable,
        str(repo_root / "benchmarks" / "bench_step.py"),
        "--quick",
        "--sections",
        "step",
        "--baselines",
        "byzstress,byzstress-vmap,floor,naive",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--device",
        "cpu",
        "--threads",
        "2",
        "--data-root",
        str(fmnist_root),
        "--out",
        str(out),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    res = json.loads(out.read_text())
    baselines = res["step"]["baselines"]
    assert set(baselines) == {"byzstress", "byzstress-vmap", "floor", "naive"}
    assert baselines["byzstress"]["grad_engine"] == "expanded"  # the CPU's engine
    assert baselines["byzstress-vmap"]["grad_engine"] == "vmap"
    for name, r in baselines.items():
        assert r["median_s"] > 0, name
        assert r["count"] == 2, name
        assert r["param_count"] == 431_080, name
    assert res["step"]["ratios"]["byzstress_over_floor_time"] > 0
    assert res["step"]["ratios"]["byzstress-vmap_over_byzstress_time"] > 0
    assert res["machine"]["torch"] == __import__("torch").__version__
    assert res["command"][1].endswith("bench_step.py")


def run_script(repo_root, cmd):
    env = {**os.environ, "PYTHONPATH": str(repo_root / "src")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def test_bench_study_estimates_a_tiny_study(fmnist_root, repo_root, tmp_path):
    """bench_study.py on a two-run study: estimate (alone and batched), batch and share."""
    config = tmp_path / "config.yaml"
    config.write_text(
        "definitions:\n"
        "  tiny:\n"
        "    dataset: fmnist\n"
        "    train: {n: 5, f: 1, steps: 10, eval_every: 5}\n"
        "    betas: [0.5]\n"
        "    seeds: [0, 1]\n"
        "    defenses: [cm]\n"
        "    attacks: [{name: alie, strengths: [1]}]\n"
    )
    out = tmp_path / "study.json"
    cmd = [
        sys.executable,
        str(repo_root / "benchmarks" / "bench_study.py"),
        *("--study", "tiny", "--config", str(config), "--device", "cpu"),
        *("--sections", "estimate,batch,share", "--steps", "2", "--warmup", "1"),
        *("--eval-repeats", "1", "--batch-sizes", "1,2", "--share", "1,2"),
        *("--share-window", "1", "--threads", "1"),
        *("--data-root", str(fmnist_root), "--out", str(out)),
    ]
    run_script(repo_root, cmd)
    res = json.loads(out.read_text())
    est = res["estimate"]
    assert est["runs"] == 2 and len(est["groups"]) == 1
    (group,) = est["groups"].values()
    assert group["runs"] == 2 and group["evals"] == 2
    assert group["step"]["median_s"] > 0 and group["batch_step"]["median_s"] > 0
    # the study's time is its runs' steps and evaluations, one at a time
    expected = 2 * (10 * group["step"]["median_s"] + 2 * group["eval"]["median_s"])
    assert abs(est["sequential_s"] - expected) < 1e-9
    assert set(res["batch"]["sizes"]) == {"1", "2"}
    assert res["batch"]["sizes"]["1"]["speedup_vs_1"] == 1.0
    levels = res["share"]["levels"]
    assert set(levels) == {"1", "2"}
    for k, level in levels.items():
        assert level["errors"] == [] and len(level["workers"]) == int(k)
        assert all(w["steps"] > 0 for w in level["workers"])


def test_bench_coordinatewise_checks_and_times(repo_root):
    cmd = [
        sys.executable,
        str(repo_root / "benchmarks" / "bench_coordinatewise.py"),
        *("--device", "cpu", "--d", "2000", "--repeats", "2"),
    ]
    proc = run_script(repo_root, cmd)
    rows = [line for line in proc.stdout.splitlines() if "d=" in line]
    assert len(rows) == 6 and not any("WRONG" in r for r in rows)
