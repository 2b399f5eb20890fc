"""Runs trained in lockstep (byzstress.sim.batch) match the same runs trained alone."""

import json

import pytest
import torch

from byzstress.runs.runner import run_batch
from byzstress.sim.batch import SimulatorBatch, check_batchable
from byzstress.sim.spec import RunSpec, SpecError
from byzstress.sim.training import Simulator

BASE = {
    "steps": 6,
    "eval_every": 3,
    "device": "cpu",
    "defense": "rfa(buck)",
    "attack": "alie",
    "strength": 2.0,
}


def specs(root, members, **kw):
    return [RunSpec.from_dict({**BASE, "data_root": str(root), **kw, **m}) for m in members]


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


MEMBERS = [{"seed": 0, "beta": 0.5}, {"seed": 1, "beta": 0.5}, {"seed": 0, "beta": 0.1}]


# Batched and single runs compute the same quantities in different summation orders (nested
# vmap against the fused engine). In float32 they differ by ~1e-4 after one step, and by how
# much depends on the CPU's kernels: conv1's weight gradient sums 14,400 products per entry
# (25 samples x 576 positions) whose absolute sum is ~27x the result, so its rounding error
# is ~sqrt(N)·eps32·27 ≈ 2e-4 relative, in any order. The comparisons therefore run in
# float64, where the same bound is ~1e-12 and any real difference (another batch, another
# bucket, a wrong row) is orders of magnitude larger.
F64 = torch.float64
TOL = 1e-9  # float64: γ_N·κ ≈ 14,400 · 1.1e-16 · 27 ≈ 4e-11 per step, worst case


def _lockstep(group, singles, steps, tol=TOL):
    """Step a float64 batch and its runs alone; the largest relative differences of θ
    and of the momenta over the runs."""
    batch = SimulatorBatch(group, dtype=F64)
    for _ in range(steps):
        losses, finite = batch.step([True] * len(group))
        for i, sim in enumerate(singles):
            loss, ok = sim.step()
            assert finite[i] and ok
            assert losses[i] == pytest.approx(loss, rel=tol)
    theta = max(
        rel_err(b.model.theta, s.model.theta) for b, s in zip(batch.sims, singles, strict=True)
    )
    mom = max(rel_err(b.momentum, s.momentum) for b, s in zip(batch.sims, singles, strict=True))
    return batch, theta, mom


@pytest.mark.numerics
@pytest.mark.parametrize("attack", [{"attack": "alie"}, {"attack": "lf", "strength": None}])
def test_batched_steps_equal_single_runs(fmnist_root, attack):
    group = specs(fmnist_root, MEMBERS, **attack)
    singles = [Simulator(s, dtype=F64) for s in group]
    batch, theta, mom = _lockstep(group, singles, 4)
    # same batches, attack noise and buckets: only float summation order may differ
    assert theta < TOL and mom < TOL, (theta, mom)
    for i, sim in enumerate(singles):
        assert batch.sims[i].step_idx == sim.step_idx == 4
    # the runs really differ from each other (seeds and betas reach the batch)
    assert not torch.allclose(batch.sims[0].model.theta, batch.sims[1].model.theta)
    assert not torch.allclose(batch.sims[0].model.theta, batch.sims[2].model.theta)


@pytest.mark.numerics
def test_the_batch_comparison_fails_for_a_slightly_different_path(fmnist_root):
    """The float64 comparison above can fail: single runs whose θ0 is moved by 1e-7
    relative, a difference float32's rounding (~1e-4) would hide, are far outside it."""
    group = specs(fmnist_root, MEMBERS[:2])
    singles = [Simulator(s, dtype=F64) for s in group]
    singles[1].model.theta.mul_(1 + 1e-7)
    _, theta, mom = _lockstep(group, singles, 2, tol=1e-3)
    assert theta > 100 * TOL and mom > 100 * TOL, (theta, mom)


@pytest.mark.numerics
def test_a_diverging_run_leaves_the_others_alone(fmnist_root):
    group = specs(fmnist_root, MEMBERS[:2])
    batch = SimulatorBatch(group, dtype=F64)
    alone = Simulator(group[1], dtype=F64)
    batch.sims[0].model.theta.fill_(float("nan"))
    _, finite = batch.step([True, True])
    alone.step()
    assert finite == [False, True]
    for _ in range(2):
        batch.step([False, True])
        alone.step()
    assert batch.sims[0].step_idx == 1
    assert rel_err(batch.sims[1].model.theta, alone.model.theta) < TOL


def test_run_batch_writes_one_json_per_run(fmnist_root, tmp_path):
    group = specs(fmnist_root, MEMBERS[:2])
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    results = run_batch(group, outs)
    for spec, out, res in zip(group, outs, results, strict=True):
        saved = json.loads(out.read_text())
        assert saved == json.loads(json.dumps(res))
        assert saved["spec"] == spec.to_dict()
        assert saved["status"] == "ok" and saved["curve"]["step"] == [3, 6]
        assert saved["batch"]["size"] == 2
        assert saved["batch"]["runs"] == [{"seed": 0, "beta": 0.5}, {"seed": 1, "beta": 0.5}]


def test_interrupted_batch_resumes_from_its_checkpoint(fmnist_root, tmp_path, monkeypatch):
    group = specs(fmnist_root, MEMBERS[:2], steps=6, checkpoint_every=2)
    ref = run_batch(group)
    ckpt = tmp_path / "batch.ckpt"
    calls = {"n": 0}
    original = SimulatorBatch.step

    def dying_step(self, active, diagnose=False):
        calls["n"] += 1
        if calls["n"] == 4:  # after the checkpoint of step 2... and 3 done
            raise KeyboardInterrupt
        return original(self, active, diagnose)

    monkeypatch.setattr(SimulatorBatch, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        run_batch(group, checkpoint=ckpt)
    assert ckpt.exists()
    monkeypatch.setattr(SimulatorBatch, "step", original)
    resumed = run_batch(group, checkpoint=ckpt)
    assert not ckpt.exists()
    for a, b in zip(ref, resumed, strict=True):
        assert b["resumed_from_step"] == 2
        assert b["curve"] == a["curve"]
        assert b["diagnostics"] == a["diagnostics"]  # also those of the steps before the kill


def test_only_seed_and_beta_may_differ(fmnist_root):
    check_batchable(specs(fmnist_root, MEMBERS))
    with pytest.raises(SpecError, match="these differ: defense"):
        check_batchable(specs(fmnist_root, [{"defense": "cm"}, {"defense": "mean", "seed": 1}]))
    with pytest.raises(SpecError, match="at least one run"):
        check_batchable([])
