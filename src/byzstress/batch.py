"""Several runs of one configuration trained in lockstep in one process.

Runs that differ only in their seed or Dirichlet β do the same work per step. On a GPU one
run of the paper's CNNs leaves the device mostly idle (benchmarks/README.md), so a
:class:`SimulatorBatch` of ``R`` runs computes every client gradient of every run in one
nested ``vmap`` — ``vmap(vmap(grad(loss), (None, 0, 0)), (0, 0, 0))`` over the ``[R, d]``
parameters and the ``[R, m, B, C, H, W]`` batches — and updates the ``[R, m, d]`` momentum
in one operation. Attack, defense and server step stay per run: defenses hold state and
branch on data. Each run keeps its own random streams (batches, augmentation, attack noise,
bucketing), so it draws exactly what it draws when trained alone; only the floating-point
summation order of the batched kernels can differ.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.func import vmap

from . import gradients
from .spec import RunSpec, SpecError
from .storage import load_checkpoint, remove_stale_temps, save_checkpoint, write_json
from .training import Curve, Simulator, result_json, update_momentum

__all__ = ["BATCHABLE", "SimulatorBatch", "check_batchable", "run_batch"]

BATCHABLE = ("seed", "beta")


def check_batchable(specs: list[RunSpec]) -> None:
    """Runs of one batch may differ only in :data:`BATCHABLE` keys."""
    if not specs:
        raise SpecError("a batch needs at least one run")
    ref = specs[0].to_dict()
    for spec in specs[1:]:
        d = spec.to_dict()
        diff = sorted(k for k in ref if k not in BATCHABLE and d[k] != ref[k])
        if diff:
            raise SpecError(
                f"batched runs may differ only in {', '.join(BATCHABLE)}; "
                f"these differ: {', '.join(diff)}"
            )


class SimulatorBatch:
    """``R`` :class:`~byzstress.training.Simulator` s sharing the data and one nested
    ``vmap`` for their client gradients; each simulator's ``θ`` and momentum are rows of
    the batch's ``[R, d]`` and ``[R, m, d]`` tensors."""

    def __init__(self, specs: list[RunSpec], device: torch.device | None = None) -> None:
        check_batchable(specs)
        first = Simulator(specs[0], device)
        shared = (first.train, first.test)
        self.sims = [first] + [Simulator(s, first.device, shared) for s in specs[1:]]
        self.device = first.device
        self.theta = torch.stack([sim.model.theta for sim in self.sims])
        self.submitted = torch.stack([sim.submitted for sim in self.sims])
        self.momentum = self.submitted[:, : first.m]
        for i, sim in enumerate(self.sims):
            sim.model.rebind(self.theta[i])
            sim.submitted = self.submitted[i]
            sim.momentum = sim.submitted[: sim.m]
        self.params = first.model.views(self.theta)
        self._grads = vmap(gradients.VmapGrads(first.model.module).fn, in_dims=(0, 0, 0))

    def __len__(self) -> int:
        return len(self.sims)

    def client_vectors(self) -> Tensor:
        """Update every run's momentum ``[R, m, d]``; return the clients' losses ``[R, m]``."""
        if len(self.sims) == 1:  # one vmap level is enough
            return self.sims[0].client_vectors()[1].unsqueeze(0)
        batches = [sim.batches() for sim in self.sims]
        xb = torch.stack([x for x, _ in batches])
        yb = torch.stack([y for _, y in batches])
        grads, losses = self._grads(self.params, xb, yb)
        first = self.sims[0]
        mom = first.model.views(self.momentum)  # [R, m, *shape] views
        for k, g in grads.items():
            update_momentum(first.spec, mom[k], g, self.params[k].unsqueeze(1))
        return losses

    def step(self, active: list[bool], diagnose: bool = False) -> tuple[list[float], list[bool]]:
        """One step of every active run; returns each run's (train loss, finite?).

        The runs' results are read from the device once, after all of them are queued.
        With ``diagnose`` every active run records this step's diagnostics.
        """
        losses = self.client_vectors()
        flags = []
        for sim, on, loss in zip(self.sims, active, losses, strict=True):
            if on:
                flags.append(torch.stack(sim.server_step(loss, diagnose)).float())
            else:
                flags.append(torch.tensor([float("nan"), 0.0], device=self.device))
        values = torch.stack(flags).tolist()
        return [v[0] for v in values], [bool(v[1]) for v in values]


def run_batch(
    specs: list[RunSpec],
    outs: list[str | Path | None] | None = None,
    checkpoint: str | Path | None = None,
    progress: bool | None = None,
) -> list[dict[str, Any]]:
    """Train the runs of ``specs`` in lockstep; write each JSON atomically to ``outs[i]``.

    Each run is evaluated every ``eval_every`` steps, at its last step and when it diverges
    (then it stops: status ``diverged``). With ``checkpoint`` and ``checkpoint_every > 0``
    the whole batch is saved every that many steps; a checkpoint of the same specs is
    resumed from, and deleted at the end. Timings in the JSONs are the whole batch's.
    """
    outs = list(outs) if outs is not None else [None] * len(specs)
    if len(outs) != len(specs):
        raise ValueError(f"{len(specs)} specs but {len(outs)} outputs")
    t_start = time.perf_counter()
    batch = SimulatorBatch(specs)
    sims = batch.sims
    s = sims[0].spec
    curves = [Curve.empty() for _ in sims]
    status = ["ok"] * len(sims)
    elapsed_before, resumed_from = 0.0, None
    train_time = eval_time = 0.0
    key = [spec.to_dict() for spec in specs]
    ckpt = Path(checkpoint) if checkpoint else None
    for owned in [ckpt, *outs]:  # leftovers of a write that was killed
        if owned is not None:
            remove_stale_temps(owned)
    if ckpt is not None and ckpt.exists():
        st = load_checkpoint(ckpt)
        if st.get("specs") == key:
            for sim, sst in zip(sims, st["sims"], strict=True):
                sim.load_state_dict(sst)
            curves = [Curve(**c) for c in st["curves"]]
            status = list(st["status"])
            elapsed_before = float(st["elapsed"])
            train_time, eval_time = float(st["train_time"]), float(st["eval_time"])
            resumed_from = int(st["step"])
    active = [x == "ok" for x in status]
    t = resumed_from or 0
    if progress is None:
        progress = sys.stderr.isatty()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=s.steps, initial=t, desc="train", unit="step")

    while t < s.steps and any(active):
        t0 = time.perf_counter()
        scheduled = (t + 1) % s.eval_every == 0 or t + 1 == s.steps
        losses, finite = batch.step(active, diagnose=scheduled)
        train_time += time.perf_counter() - t0
        t += 1
        for i, sim in enumerate(sims):
            if not active[i]:
                continue
            if scheduled and sim.last_diagnostics is not None:
                curves[i].add_diagnostics(t, sim.last_diagnostics)
            if not finite[i] or t % s.eval_every == 0 or t == s.steps:
                t1 = time.perf_counter()
                acc, test_loss = sim.evaluate()
                eval_time += time.perf_counter() - t1
                curves[i].step.append(t)
                curves[i].test_acc.append(acc)
                curves[i].test_loss.append(test_loss)
                curves[i].train_loss.append(losses[i])
                if bar is not None:
                    bar.set_postfix(acc=f"{acc:.3f}")
            if not finite[i]:
                status[i], active[i] = "diverged", False
        if bar is not None:
            bar.update(1)
        due = bool(s.checkpoint_every) and t % s.checkpoint_every == 0 and t < s.steps
        if ckpt is not None and due and any(active):
            save_checkpoint(
                ckpt,
                {
                    "specs": key,
                    "step": t,
                    "sims": [sim.state_dict() for sim in sims],
                    "curves": [c.as_dict() for c in curves],
                    "status": status,
                    "elapsed": elapsed_before + time.perf_counter() - t_start,
                    "train_time": train_time,
                    "eval_time": eval_time,
                },
            )
    if bar is not None:
        bar.close()

    wall_time = elapsed_before + time.perf_counter() - t_start  # the whole batch's
    batch_info = (
        {
            "size": len(sims),
            "runs": [{k: d[k] for k in BATCHABLE} for d in key],
            "note": "timings are the whole batch's",
        }
        if len(sims) > 1
        else None
    )
    results = []
    for spec, sim, curve, st_, out in zip(specs, sims, curves, status, outs, strict=True):
        result = result_json(
            spec,
            sim,
            curve,
            st_,
            wall_time=wall_time,
            train_time=train_time,
            eval_time=eval_time,
            resumed_from=resumed_from,
        )
        result["batch"] = batch_info
        if out is not None:
            write_json(out, result)
        results.append(result)
    if ckpt is not None:
        ckpt.unlink(missing_ok=True)
    return results
