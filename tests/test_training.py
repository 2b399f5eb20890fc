"""End-to-end training on real Fashion-MNIST (minutes in all on 2 cores)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from byzstress.runs.runner import run
from byzstress.sim.spec import RunSpec
from byzstress.sim.training import Simulator
from byzstress.threats import attacks

TIMING = {
    "wall_time_s",
    "train_time_s",
    "eval_time_s",
    "steps_per_sec",
    "hostname",
    "threads",
    "resumed_from_step",
    "timings",
}


def spec(root, **kw):
    base = {"steps": 100, "eval_every": 50, "data_root": str(root), "device": "cpu"}
    return RunSpec.from_dict({**base, **kw})


@pytest.mark.slow
def test_clean_run_learns_well_above_chance(fmnist_root, tmp_path):
    r = run(spec(fmnist_root, beta=0.5, defense="mean"), out=tmp_path / "r.json")
    # measured: 0.74-0.78 after 100 steps (n=17, batch 25, lr 0.1); chance is 0.10
    assert r["status"] == "ok"
    assert r["max_acc"] > 0.6
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["curve"]["step"] == [50, 100]
    assert saved["max_acc"] == max(saved["curve"]["test_acc"])
    assert saved["final_acc"] == saved["curve"]["test_acc"][-1]
    for key in (
        "spec",
        "resolved",
        "versions",
        "device",
        "deterministic",
        "slurm_job_id",
        "steps_per_sec",
        "wall_time_s",
        "param_count",
        "grad_engine",
    ):
        assert key in saved, key
    assert saved["grad_engine"] == "expanded"  # the CPU's engine for this model
    assert saved["versions"]["torch"].startswith("2.14")
    assert saved["resolved"]["model"] == "fmnist_cnn"


@pytest.mark.slow
def test_large_ipm_against_the_mean_ends_near_chance(fmnist_root):
    r = run(spec(fmnist_root, beta=0.5, defense="mean", attack="ipm", strength=10))
    # 14 honest μ and 3 × (−10μ): the mean is −16/17 μ, gradient ascent
    assert r["final_acc"] < 0.2


def test_diverged_run_is_recorded_not_raised(fmnist_root):
    r = run(spec(fmnist_root, defense="mean", attack="ipm", strength=1e4, steps=60))
    assert r["status"] == "diverged"
    assert r["steps_done"] < 60
    assert r["max_acc"] is not None and r["curve"]["step"][-1] == r["steps_done"]
    assert r["divergence"]["step"] == r["steps_done"]
    assert r["divergence"]["quantity"] in ("train_loss", "aggregate", "test_loss", "parameters")


def test_a_last_step_that_breaks_the_model_is_diverged(fmnist_root):
    # one step: ε = 1e30 makes the mean ~1e29 times the honest mean; the train loss of that
    # step was computed before the update (finite), so only the evaluation can see it
    r = run(spec(fmnist_root, defense="mean", attack="ipm", strength=1e30, steps=1, eval_every=1))
    assert r["status"] == "diverged"
    assert r["divergence"] == {"step": 1, "quantity": "test_loss"}
    assert (
        r["curve"]["train_loss"][0] < 10
        and r["curve"]["test_loss"][0] != r["curve"]["test_loss"][0]
    )


def test_sanitised_defense_input_is_recorded(fmnist_root):
    r = run(spec(fmnist_root, defense="mean", attack="inf", steps=3, eval_every=3))
    # the f = 3 rows of +inf are replaced by +BIG at every step: no NaN, so the run is "ok",
    # and the JSON says why it learned nothing
    assert r["defense_info"]["sanitized"] == {"rows": 9, "steps": [[1, 3]]}
    clean = run(spec(fmnist_root, defense="mean", steps=3, eval_every=3))
    assert clean["defense_info"]["sanitized"] == {"rows": 0, "steps": []}


def test_sanitize_log_merges_consecutive_steps():
    from byzstress.sim.training import SanitizeLog

    log = SanitizeLog()
    for step in (1, 2, 3, 7, 9, 10):
        log.add(step, 2)
    assert log.as_dict() == {"rows": 12, "steps": [[1, 3], [7, 7], [9, 10]]}
    assert SanitizeLog.from_dict(log.as_dict()) == log


@pytest.mark.numerics
def test_same_spec_and_seed_give_the_same_json(fmnist_root):
    # bitwise: the same process kind on the same machine runs the same kernels in the same
    # order (what "identical" means here; across CPUs see README, "Reproducibility")
    s = spec(fmnist_root, steps=12, eval_every=6, attack="alie", strength=2, defense="rfa(buck)")
    a, b = run(s), run(s)
    strip = lambda r: {k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
    assert json.dumps(strip(a), sort_keys=True) == json.dumps(strip(b), sort_keys=True)
    c = run(
        spec(
            fmnist_root,
            steps=12,
            eval_every=6,
            attack="alie",
            strength=2,
            defense="rfa(buck)",
            seed=1,
        )
    )
    assert c["curve"]["test_acc"] != a["curve"]["test_acc"]


@pytest.mark.parametrize(
    "kw",
    [
        {"attack": "lf", "defense": "cm"},
        {"attack": "alie", "knowledge": "local", "defense": "trmean(nnm)"},
        {"attack": "minmax", "defense": "cclip"},
        {"attack": "ipm", "strength": "auto", "defense": "cm"},
        {"attack": "none", "defense": "rfa(buck)", "momentum_form": "heavy", "lr": 0.01},
        {"attack": "inf", "defense": "trmean"},
        {"attack": "gaussian", "defense": "krum", "beta": "iid"},
    ],
)
def test_every_attack_mode_runs(fmnist_root, kw):
    r = run(spec(fmnist_root, steps=4, eval_every=2, **kw))
    assert r["steps_done"] == 4 and r["status"] == "ok"
    if kw["attack"] in ("minmax",) or kw.get("strength") == "auto":
        assert r["strength_summary"]["min"] > 0
        assert len(r["strength_trace"]) == 4


def _train_cmd(root, out, steps):
    return [
        sys.executable,
        "-m",
        "byzstress",
        "train",
        "--data-root",
        str(root),
        "--steps",
        str(steps),
        "--eval-every",
        "10",
        "--checkpoint-every",
        "10",
        "--attack",
        "alie",
        "--strength",
        "4",
        "--defense",
        "cclip",
        "--beta",
        "0.3",
        "--device",
        "cpu",
        "--out",
        str(out),
    ]


def test_sigkill_mid_training_resumes_to_identical_metrics(fmnist_root, tmp_path):
    steps = 50
    ref_out = tmp_path / "ref.json"
    subprocess.run(
        _train_cmd(fmnist_root, ref_out, steps), check=True, timeout=600, capture_output=True
    )
    out = tmp_path / "killed.json"
    ckpt = tmp_path / "killed.json.ckpt"
    proc = subprocess.Popen(
        _train_cmd(fmnist_root, out, steps), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not ckpt.exists() and time.monotonic() < deadline and proc.poll() is None:
        assert not out.exists()  # never a partial (or early) result
        time.sleep(0.05)
    time.sleep(1.0)  # let it run past the checkpoint
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert ckpt.exists(), "the run finished before a checkpoint could be killed"
    assert not out.exists()
    # a kill during a checkpoint write leaves that write's temporary file (SIGKILL cannot be
    # caught); the resumed run removes it. Plant one for certain, so that this is tested.
    (tmp_path / ".killed.json.ckpt.planted1.tmp").write_bytes(b"partial")
    subprocess.run(
        _train_cmd(fmnist_root, out, steps), check=True, timeout=600, capture_output=True
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".killed.json.")]
    ref, res = json.loads(ref_out.read_text()), json.loads(out.read_text())
    assert res["resumed_from_step"] is not None and res["resumed_from_step"] > 0
    assert res["curve"] == ref["curve"]  # bitwise on CPU
    assert res["diagnostics"] == ref["diagnostics"]  # carried through the checkpoint
    assert (res["max_acc"], res["final_acc"]) == (ref["max_acc"], ref["final_acc"])
    assert not ckpt.exists()  # removed once the run completed
    # a fresh process: its start-up (interpreter, imports) is timed from /proc
    assert 0 < ref["timings"]["startup_s"] < 120


@pytest.mark.numerics
def test_both_gradient_engines_train_the_same_run(fmnist_root):
    # float64: in float32 the two engines' rounding differs by ~1e-4 after a step, by an
    # amount that depends on the CPU's kernels (tests/test_batch.py says why)
    sp = spec(fmnist_root, beta=0.1, attack="alie", strength=2.0, defense="trmean(nnm)")
    f64 = torch.float64
    fused = Simulator(sp, grad_engine="expanded", dtype=f64)
    vmapped = Simulator(sp, grad_engine="vmap", dtype=f64)
    assert (fused.grads.name, vmapped.grads.name) == ("expanded", "vmap")
    for _ in range(4):
        loss_a, ok_a = fused.step()
        loss_b, ok_b = vmapped.step()
        assert ok_a and ok_b
        assert loss_a == pytest.approx(loss_b, rel=1e-10)
    # same batches and attack: only float summation order differs
    diff = (fused.model.theta - vmapped.model.theta).norm() / vmapped.model.theta.norm()
    assert float(diff) < 1e-10
    start = Simulator(sp, dtype=f64).model.theta
    moved = (fused.model.theta - start).norm() / vmapped.model.theta.norm()
    assert float(moved) > 1e-3  # the runs did move, so the agreement above means something


def test_byzantine_vectors_fill_the_rows_behind_the_momentum(fmnist_root):
    sim = Simulator(spec(fmnist_root, attack="alie", strength=3.0, defense="cm"))
    assert sim.momentum.data_ptr() == sim.submitted.data_ptr()
    assert sim.submitted.shape == (17, sim.model.dim)
    sim.step()
    honest = sim.momentum[: sim.h]
    mu, sigma = attacks.mean_std(honest)
    expected = (mu - 3.0 * sigma).expand(3, -1)
    assert torch.allclose(sim.submitted[sim.h :], expected, rtol=1e-5, atol=1e-7)
    # an attack with its own clients (label flipping) keeps its rows in the momentum
    lf = Simulator(spec(fmnist_root, attack="lf", defense="cm"))
    assert lf.momentum.shape[0] == lf.submitted.shape[0] == 17
    lf.step()
    assert bool(lf.momentum[lf.h :].abs().sum() > 0)


def test_diagnostics_describe_the_step_they_were_taken_at(fmnist_root):
    sp = spec(fmnist_root, n=20, f=4, beta=0.1, attack="ipm", strength=2.5, defense="rfa(buck)")
    sim = Simulator(sp)
    sim.step()
    before = sim.model.theta.clone()
    sim.step(diagnose=True)
    agg = (before - sim.model.theta) / sim.lr_at(1)  # the server step undone
    mu = sim.momentum[: sim.h].mean(0)
    d = sim.last_diagnostics
    assert d["rel_err"] == pytest.approx(float((agg - mu).norm() / mu.norm()), rel=1e-3)
    assert d["cos"] == pytest.approx(float(agg @ mu / (agg.norm() * mu.norm())), rel=1e-3)
    assert d["norm_ratio"] == pytest.approx(float(agg.norm() / mu.norm()), rel=1e-3)
    assert d["byz_weight_rows"] == pytest.approx(4 / 20)  # buckets of two keep the total
    assert d["byz_weight_honest_rows"] is None and 0.0 <= d["rule_byz_share"] <= 1.0
    assert d["rel_err"] > 0.05  # IPM 2.5 does move the aggregate off the honest mean
    assert sim.defense.tracing is False  # only the asked-for step is traced


def test_run_json_records_diagnostics_at_every_scheduled_evaluation(fmnist_root):
    r = run(
        spec(
            fmnist_root,
            n=20,
            f=4,
            steps=6,
            eval_every=3,
            beta=0.1,
            attack="alie",
            strength=8.0,
            defense="trmean(nnm)",
        )
    )
    d = r["diagnostics"]
    assert d["step"] == [3, 6] == r["curve"]["step"]
    for key in ("rel_err", "cos", "byz_weight_rows", "byz_weight_honest_rows", "byz_values_kept"):
        assert len(d[key]) == 2 and all(isinstance(v, float) for v in d[key]), key
    # ALIE z=8 is far from every honest vector: NNM keeps it out of the honest rows' 16
    # nearest neighbours, so the 16 honest rows all become the honest mean
    assert d["byz_weight_honest_rows"] == [0.0, 0.0]
    assert max(d["rel_err"]) < 1e-4


def test_baselines_show_the_defense_n_or_n_minus_f_vectors(fmnist_root):
    alone = Simulator(spec(fmnist_root, attack="none[senders=honest]", defense="trmean"))
    everyone = Simulator(spec(fmnist_root, attack="none", defense="trmean"))
    assert not alone.with_byz and everyone.with_byz
    alone.step(diagnose=True)
    everyone.step(diagnose=True)
    assert alone.defense.rule_input.shape[0] == alone.h == 14
    assert everyone.defense.rule_input.shape[0] == 17
    assert alone.last_diagnostics["byz_weight_rows"] == 0.0
    assert everyone.last_diagnostics["byz_weight_rows"] == pytest.approx(3 / 17)


def test_defense_units_heavy_rescales_radii_under_ema(fmnist_root):
    r = run(spec(fmnist_root, steps=2, eval_every=2, defense="cclip", defense_units="heavy"))
    assert r["defense_radius_scale"] == pytest.approx(0.1)
    sim = Simulator(spec(fmnist_root, defense="cclip[tau=10]", defense_units="heavy"))
    assert sim.defense.rule.params["tau"] == pytest.approx(1.0)
    hb = spec(fmnist_root, defense="rfa", defense_units="heavy", momentum_form="heavy")
    assert Simulator(hb).defense.rule.params["nu"] == pytest.approx(0.1)


def test_run_json_times_setup_and_checkpoint_writes(fmnist_root, tmp_path):
    r = run(
        spec(fmnist_root, steps=6, eval_every=3, checkpoint_every=2),
        out=tmp_path / "r.json",
        checkpoint=tmp_path / "r.json.ckpt",
    )
    t = r["timings"]
    assert set(t) == {"startup_s", "setup_s", "write_s"}
    assert t["setup_s"] > 0 and t["write_s"] > 0  # checkpoints at steps 2 and 4
    inside = t["setup_s"] + r["train_time_s"] + r["eval_time_s"] + t["write_s"]
    assert inside <= r["wall_time_s"]
    no_ckpt = run(spec(fmnist_root, steps=2, eval_every=2))
    assert no_ckpt["timings"]["write_s"] == 0


def test_evaluation_shares_its_images_and_matches_per_batch_normalising(fmnist_root):
    from torch.func import functional_call

    from byzstress.sim import gradients
    from byzstress.sim.batch import SimulatorBatch

    specs = [spec(fmnist_root, steps=2, eval_batch_size=700, seed=s) for s in (0, 1)]
    batch = SimulatorBatch(specs)
    a, b = batch.sims
    batch.step([True, True])
    acc, loss = a.evaluate()
    assert b.test.derived["eval_nhwc"] is a.test.derived["eval_nhwc"]  # computed once

    # the former evaluation: each batch of 700 (the last one 200) normalised on its own
    params = {k: gradients.nhwc(p) if p.dim() == 4 else p for k, p in a.model.params.items()}
    correct, total = 0, 0.0
    with torch.inference_mode():
        for i in range(0, len(a.test), 700):
            x = gradients.nhwc(a.test.normalize(a.test.x[i : i + 700]))
            logits = functional_call(a.model.module, params, (x,))
            y = a.test.y[i : i + 700]
            total += float(torch.nn.functional.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
    assert (acc, loss) == (correct / len(a.test), total / len(a.test))  # bitwise


def test_a_cpu_training_job_imports_only_what_it_needs(fmnist_root, tmp_path):
    """Start-up is paid by every job of a study: torchvision (data comes from the tensor
    cache), pandas (reporting) and torch._dynamo (torch.func's transforms, once used by the
    engine probe) each cost a short run ~0.2-1.2 s, and none is needed to train on the CPU."""
    from byzstress.sim import data

    data.load("fmnist", fmnist_root, train=True)  # the cache exists, as after any first job
    code = (
        "import sys\n"
        "from byzstress.cli import main\n"
        "rc = main(sys.argv[1:])\n"
        "heavy = ('torchvision', 'pandas', 'seaborn', 'torch._dynamo')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
        "sys.exit(rc)\n"
    )
    args = ["train", "--steps", "2", "--eval-every", "2", "--data-root", str(fmnist_root)]
    args += ["--attack", "alie", "--defense", "rfa(buck)", "--out", str(tmp_path / "r.json")]
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "LOADED []" in proc.stdout, proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["grad_engine"] == "expanded"
