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

import torch
from torch import Tensor
from torch.func import vmap

from . import gradients
from .data import TensorData
from .spec import RunSpec, SpecError, knobs
from .training import Simulator, update_momentum

__all__ = ["BATCHABLE", "SimulatorBatch", "check_batchable"]

# the knobs the run spec marks batchable (seed and β: the same work per step)
BATCHABLE = knobs(batchable=True)


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
    """``R`` :class:`~byzstress.sim.training.Simulator` s sharing the data and one nested
    ``vmap`` for their client gradients; each simulator's ``θ`` and momentum are rows of
    the batch's ``[R, d]`` and ``[R, m, d]`` tensors."""

    def __init__(
        self,
        specs: list[RunSpec],
        device: torch.device | None = None,
        dtype: torch.dtype = torch.float32,
        datasets: tuple[TensorData, TensorData] | None = None,
    ) -> None:
        """``dtype`` and ``datasets`` (the splits already loaded on ``device``): as for
        :class:`~byzstress.sim.training.Simulator`; every run of the batch shares them."""
        check_batchable(specs)
        first = Simulator(specs[0], device, datasets, dtype=dtype)
        shared = (first.train, first.test)
        self.sims = [first] + [Simulator(s, first.device, shared, dtype=dtype) for s in specs[1:]]
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
                # float64 holds a float32 loss exactly, and a float64 run's too
                flags.append(torch.stack(sim.server_step(loss, diagnose)).double())
            else:
                flags.append(torch.tensor([float("nan"), 0.0], device=self.device).double())
        values = torch.stack(flags).tolist()
        return [v[0] for v in values], [bool(v[1]) for v in values]
