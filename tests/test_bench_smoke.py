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


def test_bench_workflow_times_a_study_through_snakemake(fmnist_root, repo_root, tmp_path):
    """Two 4-step runs through the real Snakefile; the report adds up, and a second
    benchmark of the same runs (other threads) compares as identical."""
    import yaml

    cfg = {
        "studies": ["tiny"],
        "results": "results",
        "data_root": str(fmnist_root),
        "definitions": {
            "tiny": {
                "dataset": "fmnist",
                "train": {"n": 5, "f": 1, "steps": 4, "eval_every": 2, "eval_batch_size": 2000},
                "betas": [0.5],
                "seeds": [0],
                "defenses": ["CM"],
                "attacks": [{"name": "none"}, {"name": "alie", "strengths": [8]}],
                "resources": {"mem_mb": 1000, "runtime": 10, "gpu": 0},
            }
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    script = str(repo_root / "benchmarks" / "bench_workflow.py")
    common = ["--study", "tiny", "--config", str(tmp_path / "config.yaml"), "--cores", "2"]
    outs = []
    for threads in ("1", "2"):
        out = tmp_path / f"bench-{threads}.json"
        cmd = [sys.executable, script, *common, "--workdir", str(tmp_path / f"wd{threads}")]
        cmd += ["--threads", threads, "--out", str(out)]
        if outs:
            cmd += ["--compare", str(outs[0])]
        (tmp_path / f"wd{threads}").mkdir()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "where a run's wall time goes" in proc.stdout
        outs.append(out)
    one, two = (json.loads(p.read_text()) for p in outs)
    for p in outs:  # a record names no path of the machine it ran on
        assert str(tmp_path) not in p.read_text() and sys.executable not in p.read_text()
    assert one["threads_per_job"] == [1] and two["threads_per_job"] == [2]
    assert (one["summary"]["slots"], two["summary"]["slots"]) == (2, 1)
    for res in (one, two):
        s = res["summary"]
        assert s["runs"] == 2 and s["runs_per_hour"] > 0
        parts = s["per_run_s"]
        assert parts["train"] > 0 and parts["eval"] > 0 and parts["startup"] > 0
        # the parts of a job add up to its wall time
        assert abs(sum(v for k, v in parts.items() if k != "idle") - s["job_s_mean"]) < 1e-6
    # runs are compared curve by curve (here the 2-CPU AMD EPYC gives identical runs with 1
    # and 2 threads; PyTorch does not promise that on every CPU)
    assert two["compare"]["not_in_other"] == []
    assert two["compare"]["identical"] + len(two["compare"]["different"]) == 2

    sys.path.insert(0, str(repo_root / "benchmarks"))
    import bench_workflow

    assert bench_workflow.compare(one["rows"], one)["identical"] == 2
    changed = json.loads(json.dumps(one))
    changed["rows"][1]["curve"]["test_loss"][-1] += 1e-7
    res = bench_workflow.compare(one["rows"], changed)
    assert res["identical"] == 1 and res["different"][0]["curve_keys"] == ["test_loss"]
