"""CUDA agrees with the CPU: every defense and attack, the batched gradients, and a short
training run. Needs a CUDA device; CI has none, so these run on a GPU machine with
``pytest -m gpu tests/test_gpu.py`` (benchmarks/README.md, "GPU")."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from byzstress.runs.runner import run
from byzstress.sim import gradients, models
from byzstress.sim.batch import SimulatorBatch
from byzstress.sim.spec import RunSpec
from byzstress.sim.training import FlatModel, Simulator
from byzstress.threats import attacks, defenses
from byzstress.threats.attacks import AttackContext

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

CUDA = torch.device("cuda")
N, F_BYZ, D = 17, 3, 4000
# one spelling per rule class (aliases share a class) plus the paper's compositions
DEFENSE_SPECS = [
    *sorted({cls: name for name, cls in defenses.RULES.items()}.values()),
    "trmean(nnm)",
    "rfa(buck)",
    "cm(nnm)",
    "krum(nnm)",
    "mean(arc)",
    "mean(clip)",
]
ATTACKS = [
    ("alie", {"strength": 8.0}),
    ("alie", {}),
    ("ipm", {"strength": 2.5}),
    ("sf", {}),
    ("inf", {}),
    ("gaussian", {}),
    ("mimic", {}),
    ("minmax", {}),
    ("minsum", {}),
]


def _stack(seed: int) -> torch.Tensor:
    """14 honest-like rows (shared mean + spread) and 3 far rows: no near-ties."""
    g = torch.Generator().manual_seed(seed)
    honest = torch.randn(D, generator=g) + 0.3 * torch.randn(N - F_BYZ, D, generator=g)
    byz = 5.0 + torch.randn(F_BYZ, D, generator=g)
    return torch.cat([honest, byz])


@pytest.mark.parametrize("spec", DEFENSE_SPECS)
def test_defense_on_cuda_matches_cpu(spec):
    x = _stack(7)
    cpu = defenses.build(spec, N, F_BYZ, seed=1)
    gpu = defenses.build(spec, N, F_BYZ, seed=1)
    for step in range(2):  # twice: stateful rules (CClip's center) carry state on the device
        xs = x + step
        ref = cpu(xs)
        out = gpu(xs.to(CUDA))
        assert out.device.type == "cuda"
        assert torch.isfinite(out).all()
        err = (out.cpu().double() - ref.double()).norm() / ref.double().norm()
        assert err < 1e-5, (spec, step, float(err))


@pytest.mark.parametrize("spec", ["cm", "trmean", "rfa", "krum", "trmean(nnm)", "cclip"])
def test_defense_on_cuda_survives_nan_and_inf(spec):
    x = _stack(3).to(CUDA)
    x[-1] = float("nan")
    x[-2] = float("inf")
    out = defenses.build(spec, N, F_BYZ)(x)
    assert torch.isfinite(out).all(), spec


@pytest.mark.parametrize(("name", "params"), ATTACKS)
def test_attack_on_cuda_matches_cpu(name, params):
    honest = _stack(11)[: N - F_BYZ]
    outs = []
    for dev in ("cpu", "cuda"):
        atk = attacks.build(name, **params)
        ctx = AttackContext(
            honest=honest.to(dev),
            f=F_BYZ,
            defense=defenses.build("trmean(nnm)", N, F_BYZ),
            generator=torch.Generator().manual_seed(0),
        )
        outs.append(atk(ctx))
    cpu, gpu = outs
    assert gpu.device.type == "cuda" and gpu.shape == (F_BYZ, D)
    if name == "inf":
        assert torch.isinf(gpu).all()
        return
    err = (gpu.cpu().double() - cpu.double()).norm() / cpu.double().norm()
    assert err < 1e-4, (name, float(err))


@pytest.mark.parametrize(
    ("name", "shape"),
    [("fmnist_cnn", (1, 28, 28)), ("cifar_cnn", (3, 32, 32)), ("resnet20", (3, 32, 32))],
)
def test_vmap_gradients_on_cuda_equal_cpu_loop(name, shape):
    # float64 on both sides: this checks the batched path, not float32 rounding (in float32
    # the 20-layer ResNet's CUDA and CPU gradients differ by ~2e-3 relative)
    torch.manual_seed(0)
    m, b = 4, 8
    model = FlatModel(models.build(name).double(), CUDA)
    x = torch.randn(m, b, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (m, b))

    def loss(params, xb, yb):
        return F.cross_entropy(functional_call(model.module, params, (xb,)), yb)

    batched = model.flatten_grads(
        vmap(grad(loss), in_dims=(None, 0, 0))(model.params, x.to(CUDA), y.to(CUDA)), m
    ).cpu()
    for i in range(m):
        ref_model = models.build(name).double()
        ref_model.load_state_dict({k: v.detach().cpu().clone() for k, v in model.params.items()})
        F.cross_entropy(ref_model(x[i]), y[i]).backward()
        ref = torch.cat([p.grad.flatten() for p in ref_model.parameters()])
        err = (batched[i] - ref).norm() / ref.norm()
        assert err < 1e-9, (name, i, float(err))


@pytest.mark.parametrize(
    ("name", "shape"), [("fmnist_cnn", (1, 28, 28)), ("cifar_cnn", (3, 32, 32))]
)
def test_expanded_gradients_on_cuda_equal_cpu_loop(name, shape):
    # the fused engine is the CPU's default; on CUDA it is opt-in (grad_engine="expanded")
    torch.manual_seed(0)
    m, b = 4, 8
    module = models.build(name).double()
    params = {k: p.detach().to(CUDA) for k, p in module.named_parameters()}
    x = torch.randn(m, b, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (m, b))
    engine = gradients.ExpandedGrads(module.to(CUDA))
    grads, _ = engine(params, x.to(CUDA), y.to(CUDA))
    for i in range(m):
        ref_model = models.build(name).double()
        ref_model.load_state_dict({k: v.cpu() for k, v in params.items()})
        F.cross_entropy(ref_model(x[i]), y[i]).backward()
        for k, p in ref_model.named_parameters():
            err = (grads[k][i].cpu() - p.grad).norm() / p.grad.norm()
            assert err < 1e-9, (name, k, i, float(err))


def test_training_run_on_cuda_learns(fmnist_root, tmp_path):
    spec = RunSpec.from_dict(
        {
            "steps": 100,
            "eval_every": 50,
            "data_root": str(fmnist_root),
            "device": "cuda",
            "beta": 0.5,
            "defense": "trmean(nnm)",
            "attack": "alie",
            "strength": 1.0,
        }
    )
    r = run(spec, out=tmp_path / "r.json")
    saved = json.loads((tmp_path / "r.json").read_text())
    # the CPU run of this setting (tests/test_training.py's clean run) reaches 0.74-0.78
    assert r["status"] == "ok"
    assert r["max_acc"] > 0.6
    assert saved["device"].startswith("cuda")
    assert saved["steps_per_sec"] > 0


def test_batched_runs_on_cuda_equal_single_runs(fmnist_root):
    base = {"data_root": str(fmnist_root), "device": "cuda", "defense": "rfa(buck)"}
    group = [
        RunSpec.from_dict({**base, "attack": "alie", "seed": s, "beta": b})
        for s, b in ((0, 0.5), (1, 0.5), (0, 0.1))
    ]
    # float64, as on the CPU (tests/test_batch.py): float32's rounding depends on the kernels
    batch = SimulatorBatch(group, dtype=torch.float64)
    singles = [Simulator(s, dtype=torch.float64) for s in group]
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        for _ in range(3):
            batch.step([True] * len(group))
            for sim in singles:
                sim.step()
    for b, s in zip(batch.sims, singles, strict=True):
        err = (b.model.theta - s.model.theta).norm() / s.model.theta.norm()
        assert err < 1e-9, float(err)
