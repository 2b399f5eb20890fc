"""The SLURM profile against a real single-node Slurm cluster (tests/slurm/up.sh), not a
mock: jobs run inside Slurm, sacct accounts them, a failing job fails the workflow."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
import yaml
from _smk import snakemake_cmd

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ.get("BYZSTRESS_SLURM_STATE", "/tmp/byzstress-slurm"))

pytestmark = pytest.mark.slurm

STUDY = {
    "studies": ["onslurm"],
    "results": "results",
    "definitions": {
        "onslurm": {
            "dataset": "fmnist",
            "train": {"n": 5, "f": 1, "steps": 4, "eval_every": 2, "eval_batch_size": 1000},
            "betas": [0.5],
            "seeds": [0],
            "defenses": ["CM"],
            "attacks": [{"name": "none"}, {"name": "alie", "strengths": [8]}],
            "report": {"table": True, "figure": False},
            # no threads: a CPU study's default (1) must be what Slurm allocates
            "resources": {"mem_mb": 1500, "runtime": 10, "gpu": 0},
        }
    },
}


def bounded(cmd: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """Run with a deadline; a hung snakemake gets SIGINT (which it honours, unlike SIGTERM)."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        pytest.fail(f"snakemake on Slurm timed out after {timeout}s:\n{out[-2000:]}{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def cluster():
    if os.geteuid() != 0:
        pytest.fail(
            "the Slurm test brings up slurmctld/slurmd/slurmdbd and needs root; "
            "deselect it with -m 'not slurm'"
        )
    up = subprocess.run(
        ["bash", str(ROOT / "tests/slurm/up.sh"), str(STATE)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
    yield
    subprocess.run(
        ["bash", str(ROOT / "tests/slurm/down.sh"), str(STATE)],
        capture_output=True,
        text=True,
        timeout=180,
    )


def snakemake_on_slurm(wd: Path, cfg: dict, *extra: str) -> subprocess.CompletedProcess:
    (wd / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    cmd = snakemake_cmd(
        wd,
        "--profile",
        str(ROOT / "profiles/slurm"),
        "--slurm-init-seconds-before-status-checks",
        "2",
        *extra,
    )
    return bounded(cmd, wd, timeout=900)


def sacct(job_ids: list[str], field: str = "State") -> dict[str, str]:
    """A sacct field per raw job id (array tasks have their own raw ids, e.g. 12_1 -> 13)."""
    r = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", f"JobIDRaw,{field}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(line.split("|", 1) for line in r.stdout.split())


def test_pipeline_runs_inside_slurm_jobs(cluster, tmp_path, fmnist_root):
    cfg = copy.deepcopy(STUDY)
    cfg["data_root"] = str(fmnist_root)
    r = snakemake_on_slurm(tmp_path, cfg)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results/onslurm/runs").rglob("*.json")]
    assert len(runs) == 2
    ids = [r["slurm_job_id"] for r in runs]
    assert all(ids), "the runs were not written inside Slurm jobs"
    states = sacct(ids)
    assert set(states) >= set(ids) and all(states[i] == "COMPLETED" for i in ids), states
    # the CPUs Slurm gave each job are the threads its training used
    cpus = sacct(ids, "AllocCPUS")
    assert all(int(cpus[r["slurm_job_id"]]) == r["threads"] == 1 for r in runs), cpus
    assert (tmp_path / "results/onslurm/table1.md").exists()


def test_a_failing_job_fails_the_workflow_with_slurms_reason(cluster, tmp_path, fmnist_root):
    cfg = copy.deepcopy(STUDY)
    cfg["data_root"] = str(tmp_path / "no-data-here")
    study = cfg["definitions"]["onslurm"]
    study["dataset"] = "cifar10"  # not on this machine: the train job exits with status 3
    study["attacks"] = [{"name": "none"}]
    r = snakemake_on_slurm(tmp_path, cfg, "--retries", "0")
    assert r.returncode != 0
    text = r.stdout + r.stderr
    assert "FAILED" in text, text[-4000:]
    log = next((tmp_path / "results/onslurm/logs/train").rglob("*.log")).read_text()
    assert "CIFAR-10 not found under data root" in log
