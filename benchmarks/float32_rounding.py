"""Why float32 results depend on the CPU's kernels: a probe of one Fashion-MNIST step.

Prints, for one client's batch of the FMNIST CNN at θ0:

* how many 2×2 max-pool choices float32 makes differently from float64 (a tie broken
  another way would route a gradient to another pixel);
* how many products conv1's weight gradient sums per entry (batch × output positions) and
  the ratio Σ|terms| / |Σ terms| (norms over the entries): the sum's condition number,
  which scales its rounding error (Higham, *Accuracy and Stability of Numerical
  Algorithms*, 2nd ed., §4.2: |error| ≤ γ_N Σ|terms|, typically ~√N·u·Σ|terms|);
* one step's relative difference, per parameter, between the fused and the ``vmap``
  engine and between each and float64;
* the relative difference between a lockstep batch of runs and the same runs alone after
  a few steps, in float32 and in float64 (what tests/test_batch.py compares).

Run it under other kernels to see the float32 figures move and the float64 ones stay::

    python benchmarks/float32_rounding.py --data-root data
    ATEN_CPU_CAPABILITY=avx2 python benchmarks/float32_rounding.py --data-root data
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from byzstress.runs.machine import kernels
from byzstress.runs.storage import write_json
from byzstress.sim import data, gradients
from byzstress.sim.batch import SimulatorBatch
from byzstress.sim.spec import RunSpec
from byzstress.sim.training import Simulator


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / b.double().norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", default="data")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", type=Path, help="also write the figures as JSON")
    a = ap.parse_args()
    torch.set_num_threads(1)
    base = {"device": "cpu", "defense": "rfa(buck)", "attack": "lf", "strength": None}
    base["data_root"] = a.data_root
    spec = RunSpec.from_dict({**base, "seed": 0, "beta": 0.5})
    # every simulator of this probe shares the splits, loaded once
    splits = (
        data.load(spec.dataset, a.data_root, True),
        data.load(spec.dataset, a.data_root, False),
    )
    sim = Simulator(spec, datasets=splits)
    xb, yb = sim.batches()
    params = sim.model.params

    # conv1's weight gradient as a sum of per-position products, in float64
    module = copy.deepcopy(sim.model.module).double()
    rec: dict[str, torch.Tensor] = {}
    module.conv1.register_forward_hook(lambda m, i, o: rec.__setitem__("z", o))
    x = xb[0].double()
    loss = F.cross_entropy(module(x), yb[0])
    (delta,) = torch.autograd.grad(loss, rec["z"])
    patches = F.unfold(x, module.conv1.kernel_size)
    terms = delta.flatten(2).unsqueeze(2) * patches.unsqueeze(1)
    total, absolute = terms.sum((0, 3)), terms.abs().sum((0, 3))
    out = {
        "kernels": kernels(),
        "conv1_products_per_entry": int(terms.shape[0] * terms.shape[3]),
        "conv1_condition": float(absolute.norm() / total.norm()),
    }

    # max-pool ties broken differently would send a gradient to another pixel: count the
    # pooling choices float32 makes differently from float64 on this batch
    m32, flips = sim.model.module, {}
    with torch.no_grad():
        h32, h64 = xb[0], x
        for name in ("conv1", "conv2"):
            z32, z64 = getattr(m32, name)(h32), getattr(module, name)(h64)
            p32, i32 = F.max_pool2d(z32, 2, return_indices=True)
            p64, i64 = F.max_pool2d(z64, 2, return_indices=True)
            flips[name] = [int((i32 != i64).sum()), int(i32.numel())]
            h32, h64 = F.relu(p32), F.relu(p64)
    out["pool_argmax_differing_from_float64"] = flips

    fused, _ = gradients.ExpandedGrads(sim.model.module)(params, xb, yb)
    vmapped, _ = gradients.VmapGrads(sim.model.module)(params, xb, yb)
    p64 = {k: v.double() for k, v in params.items()}
    exact, _ = gradients.VmapGrads(module)(p64, xb.double(), yb)
    out["step_rel_diff"] = {
        k: {
            "fused_vs_vmap": rel(fused[k], vmapped[k]),
            "fused_vs_float64": rel(fused[k], exact[k]),
            "vmap_vs_float64": rel(vmapped[k], exact[k]),
        }
        for k in params
    }

    members = [{"seed": 0, "beta": 0.5}, {"seed": 1, "beta": 0.5}]
    for dtype in (torch.float32, torch.float64):
        group = [RunSpec.from_dict({**base, **m}) for m in members]
        batch = SimulatorBatch(group, dtype=dtype)
        singles = [Simulator(s, datasets=splits, dtype=dtype) for s in group]
        for _ in range(a.steps):
            batch.step([True] * len(group))
            for s in singles:
                s.step()
        out[f"batch_vs_single_after_{a.steps}_steps_{str(dtype)[6:]}"] = {
            "theta": max(
                rel(b.model.theta, s.model.theta) for b, s in zip(batch.sims, singles, strict=True)
            ),
            "momentum": max(
                rel(b.momentum, s.momentum) for b, s in zip(batch.sims, singles, strict=True)
            ),
        }
    text = json.dumps(out, indent=1)
    print(text)
    if a.out:
        write_json(a.out, out)


if __name__ == "__main__":
    main()
