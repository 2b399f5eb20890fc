"""Attacks and defenses from outside the package: the examples through the command line,
and an installed package's entry points (the Snakemake run of the examples is in
tests/test_workflow.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = [ROOT / "examples" / "my_attack.py", ROOT / "examples" / "my_defense.py"]


def _fake_distribution(site: Path, group: str, module: str, code: str) -> None:
    """An installed package as importlib.metadata finds it: a module and a .dist-info
    folder whose entry_points.txt names it in ``group``."""
    (site / f"{module}.py").write_text(code)
    info = site / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n{module} = {module}\n")


def _python(code: str, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT / "src")])}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_an_attack_exposed_only_by_an_entry_point_is_found(tmp_path):
    _fake_distribution(
        tmp_path,
        "byzstress.attacks",
        "zeroattack_plugin",
        "import torch\n"
        "from byzstress.threats.attacks import Attack, register_attack\n"
        "@register_attack\n"
        "class Zero(Attack):\n"
        "    names = ('zeroes',)\n"
        "    def craft(self, ctx, strength):\n"
        "        return torch.zeros(ctx.f, ctx.honest.shape[1])\n",
    )
    code = "from byzstress.threats.attacks import build; print(type(build('zeroes')).__name__)"
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "Zero"
    # without the package the name is unknown, and the error lists the valid ones
    r = _python(code, tmp_path / "elsewhere")
    assert r.returncode != 0 and "unknown attack 'zeroes'; valid: alie" in r.stderr


def test_a_defense_exposed_only_by_an_entry_point_is_found(tmp_path):
    _fake_distribution(
        tmp_path,
        "byzstress.defenses",
        "firstrule_plugin",
        "from byzstress.threats.defenses import Rule, register_rule\n"
        "@register_rule\n"
        "class First(Rule):\n"
        "    names = ('firstrow',)\n"
        "    def __call__(self, x):\n"
        "        return x[0]\n",
    )
    code = (
        "import torch\n"
        "from byzstress.threats.defenses import build\n"
        "d = build('firstrow', 5, 1)\n"
        "print(type(d.rule).__name__)"
    )
    r = _python(code, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "First"


@pytest.mark.slow
def test_the_examples_train_through_the_command_line(tmp_path, fmnist_root):
    out = tmp_path / "run.json"
    cmd = [
        sys.executable,
        "-m",
        "byzstress",
        "train",
        "--plugins",
        ",".join(str(p) for p in EXAMPLES),
        "--attack",
        "directed",
        "--strength",
        "4",
        "--defense",
        "normfilter(nnm)",
        "--n",
        "8",
        "--f",
        "2",
        "--steps",
        "4",
        "--eval-every",
        "2",
        "--data-root",
        str(fmnist_root),
        "--out",
        str(out),
        "--no-progress",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    record = json.loads(out.read_text())
    assert record["spec"]["attack"] == "directed"
    assert record["spec"]["defense"] == "normfilter(nnm)"
    assert record["steps_done"] == 4
