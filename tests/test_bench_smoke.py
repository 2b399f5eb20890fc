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
        "byzstress,floor,naive",
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
    assert set(baselines) == {"byzstress", "floor", "naive"}
    for name, r in baselines.items():
        assert r["median_s"] > 0, name
        assert r["count"] == 2, name
        assert r["param_count"] == 431_080, name
    assert res["step"]["ratios"]["byzstress_over_floor_time"] > 0
    assert res["machine"]["torch"] == __import__("torch").__version__
    assert res["command"][1].endswith("bench_step.py")
