"""The D-SGD simulator with Byzantine clients.

Each step (the setting of docs/claims.md and docs/simulator.md):

1. every honest client ``i`` draws a mini-batch from its own share and computes
   ``g_i = ∇ℓ(θ; batch_i) + λθ``; all clients' gradients come from **one** call over the
   stacked batches ``[m, B, C, H, W]`` with shared ``θ`` (:mod:`byzstress.sim.gradients`:
   ``vmap(grad(loss))``, or on the CPU one fused channels-last pass with per-client weight
   gradients);
2. worker momentum ``m_i ← β m_i + (1 − β) g_i`` (``ema``) or ``m_i ← β m_i + g_i``;
3. the attack crafts the ``f`` Byzantine vectors from what it knows;
4. the defense aggregates the ``n`` vectors (honest first, Byzantine last);
5. the server steps ``θ ← θ − η_t · agg``.

Parameters live in one flat tensor ``θ`` whose slices are the model's parameters, so the
server step is one in-place ``sub_`` and the momentum buffers are one ``[m, d]`` tensor.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..threats import attacks, defenses, plugins
from ..threats.attacks import AttackContext
from . import data, gradients, models
from .partition import PaddedShares, client_shares
from .spec import RunSpec
from .splits import heterogeneity

__all__ = [
    "DIAGNOSTICS",
    "FlatModel",
    "Simulator",
    "diagnostics",
    "resolve_device",
    "update_momentum",
]


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when available, else CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: 'cuda' requested but CUDA is not available; valid: auto, cpu")
    return torch.device(name)


def update_momentum(spec: RunSpec, momentum: Tensor, g: Tensor, theta: Tensor) -> None:
    """In place: ``g += λθ``, then ``m ← β m + (1 − β) g`` (``ema``) or ``m ← β m + g``.

    ``momentum`` and ``g`` are ``[..., m, d]``; ``theta`` broadcasts against them.
    """
    if spec.weight_decay:
        g.add_(theta, alpha=spec.weight_decay)
    damp = (1.0 - spec.momentum) if spec.momentum_form == "ema" else 1.0
    momentum.mul_(spec.momentum).add_(g, alpha=damp)


class FlatModel:
    """A module whose parameters are views into one flat vector ``theta`` ``[d]``."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        self.module = module.to(device)
        named = [(k, p.detach()) for k, p in module.named_parameters()]
        self.names = [k for k, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.dim = sum(p.numel() for _, p in named)
        self.rebind(torch.cat([p.flatten() for _, p in named]).to(device))

    def rebind(self, theta: Tensor) -> None:
        """Make ``theta`` (``[d]``, possibly a row of a ``[R, d]`` stack) the parameters."""
        self.theta = theta
        self.params = self.views(theta)

    def views(self, theta: Tensor) -> dict[str, Tensor]:
        """Parameter views of ``theta`` ``[..., d]`` (leading dims kept)."""
        lead, out, off = theta.shape[:-1], {}, 0
        for k, shape in zip(self.names, self.shapes, strict=True):
            size = shape.numel()
            out[k] = theta[..., off : off + size].view(*lead, *shape)
            off += size
        return out

    def flatten_grads(self, grads: dict[str, Tensor], m: int) -> Tensor:
        """Per-client gradient dict (leading dim ``m``) -> ``[m, d]``."""
        return torch.cat([grads[k].reshape(m, -1) for k in self.names], dim=1)

    def logits(self, x: Tensor) -> Tensor:
        return functional_call(self.module, self.params, (x,))


@dataclass
class SanitizeLog:
    """Which steps' defense input held non-finite or huge entries that the defense replaced
    (:func:`byzstress.threats.defenses.sanitize`): ``rows`` in all, and the steps as
    ``[first, last]`` ranges, so that a reader can tell sanitising from learning."""

    rows: int = 0
    steps: list[list[int]] = field(default_factory=list)

    def add(self, step: int, rows: int) -> None:
        self.rows += rows
        if self.steps and self.steps[-1][1] == step - 1:
            self.steps[-1][1] = step
        else:
            self.steps.append([step, step])

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "steps": [list(r) for r in self.steps]}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> SanitizeLog:
        return cls() if not d else cls(int(d["rows"]), [list(r) for r in d["steps"]])


class Simulator:
    """Holds one run's tensors and state; :meth:`step` advances it by one D-SGD step."""

    def __init__(
        self,
        spec: RunSpec,
        device: torch.device | None = None,
        datasets: tuple[data.TensorData, data.TensorData] | None = None,
        grad_engine: str = "auto",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """``datasets``: the (train, test) splits already on ``device``, to share them
        between simulators of one process (:class:`byzstress.sim.batch.SimulatorBatch`).
        ``grad_engine``: how the per-client gradients are computed (:mod:`byzstress.sim.gradients`;
        the engines differ only in float rounding).
        ``dtype``: the precision of parameters, momenta, images and the defense's input.
        Runs train in float32; float64 is for checking that two computations of one
        quantity differ only by rounding (tests/test_batch.py, tests/test_training.py):
        float32's rounding, amplified over a few steps, depends on the CPU's kernels."""
        # names were checked where the spec was built (RunSpec.from_dict, a study's
        # expansion); the cheap field checks run again for a spec built in Python directly
        spec.check_fields()
        self.spec = s = spec.resolved()
        if s.plugins:
            plugins.load_plugins(list(s.plugins))
        if s.deterministic:
            torch.use_deterministic_algorithms(True)
        self.device = device or resolve_device(s.device)
        root = s.data_root
        if datasets is None:
            datasets = (
                data.load(s.dataset, root, True, self.device, s.download),
                data.load(s.dataset, root, False, self.device, s.download),
            )
        self.train, self.test = datasets
        self.h = s.n - s.f
        self.attack = attacks.build(
            s.attack,
            knowledge=s.knowledge,
            **({"strength": s.strength} if s.strength is not None else {}),
        )
        self.defense = defenses.build(s.defense, s.n, s.f, seed=s.seed + 1)
        self.defense.scale_radii(s.radius_scale())
        labels = self.train.y.cpu().numpy()
        honest, byz = client_shares(labels, s.n, s.f, s.beta, s.seed, s.min_samples, s.split)
        self.heterogeneity = heterogeneity(labels, honest, self.train.num_classes)
        self.with_byz = self.attack.uses_own_vectors and s.f > 0
        self.shares = PaddedShares(honest + (byz if self.with_byz else []), self.device)
        self.share_sizes = [len(x) for x in honest], [len(x) for x in byz]
        torch.manual_seed(s.seed)
        self.dtype = dtype
        module = models.build(s.model, self.train.num_classes).to(dtype)
        self.model = FlatModel(module, self.device)
        self.m = len(self.shares)
        # The momentum rows are the first rows of the defense's input buffer; when the
        # attack has no rows of its own, its f vectors fill the rest (no [n, d] concatenation).
        rows = self.m if self.with_byz else s.n
        self.submitted = torch.zeros(rows, self.model.dim, device=self.device, dtype=dtype)
        self.momentum = self.submitted[: self.m]
        self.data_gen = torch.Generator().manual_seed(s.seed + 2)
        self.attack_gen = torch.Generator().manual_seed(s.seed + 3)
        self.step_idx = 0
        self.strengths: list[float] = []
        self.last_diagnostics: dict[str, float | None] | None = None
        self.sanitized = SanitizeLog()

        self.grads = gradients.build(
            self.model.module,
            self.device,
            tuple(self.train.x.shape[1:]),
            self.train.num_classes,
            grad_engine,
        )
        self.milestones = sorted(round(q * s.steps) for q in s.lr_milestones)

    # ----------------------------------------------------------------- one step

    def lr_at(self, t: int) -> float:
        return self.spec.lr * self.spec.lr_gamma ** sum(t >= m for m in self.milestones)

    def batches(self) -> tuple[Tensor, Tensor]:
        """The step's stacked client batches: ``x`` ``[m, B, C, H, W]`` float, ``y`` ``[m, B]``."""
        s = self.spec
        idx = self.shares.sample(s.batch_size, self.data_gen)  # [m, B]
        xb = self.train.x[idx]  # uint8 [m, B, C, H, W]
        if s.augment:
            flat = xb.flatten(0, 1)
            xb = data.augment_crop_flip(flat, self.data_gen).view_as(xb)
        yb = self.train.y[idx]
        if self.attack.flip_labels:
            yb = yb.clone()
            yb[self.h :] = self.train.num_classes - 1 - yb[self.h :]
        return self.train.normalize(xb, self.dtype), yb

    def client_vectors(self) -> tuple[Tensor, Tensor]:
        """Update and return the momentum buffers ``[m, d]`` and the clients' losses ``[m]``."""
        s = self.spec
        xb, yb = self.batches()
        grads, losses = self.grads(self.model.params, xb, yb)
        # layer by layer, into views of the [m, d] buffer: no [m, d] concatenation
        mom = self.model.views(self.momentum)
        for k, g in grads.items():
            update_momentum(s, mom[k], g, self.model.params[k])
        return self.momentum, losses

    def step(self, diagnose: bool = False) -> tuple[float, bool]:
        """One D-SGD step; returns (honest mean train loss, finite?)."""
        _, losses = self.client_vectors()
        loss, finite = self.server_step(losses, diagnose)
        return float(loss), bool(finite)

    def server_step(self, losses: Tensor, diagnose: bool = False) -> tuple[Tensor, Tensor]:
        """Attack, defense and model update from the clients' momentum vectors ``[m, d]``
        (``self.momentum``, the first rows of ``self.submitted``).

        Returns the honest clients' mean train loss and whether it and the aggregate are
        finite, as device tensors: reading them waits for the device, so callers batch that
        read. Steps whose input the defense had to sanitise (non-finite or huge entries) are
        recorded in :attr:`sanitized`. With ``diagnose``, :attr:`last_diagnostics` describes
        this step (:func:`diagnostics`).
        """
        s = self.spec
        mom = self.momentum
        honest = mom[: self.h]
        if s.f > 0 and not self.attack.honest_only:
            ctx = AttackContext(
                honest=honest,
                f=s.f,
                knowledge=s.knowledge,
                byz_own=mom[self.h :] if self.with_byz else None,
                defense=self.defense,
                generator=self.attack_gen,
            )
            byz = self.attack(ctx).to(honest.dtype)
            if self.with_byz:  # the attack's own rows hold its momentum: keep them
                x = torch.cat([honest, byz])
            else:
                x = self.submitted
                x[self.h :].copy_(byz)
            if self.attack.last_strength is not None:
                self.strengths.append(self.attack.last_strength)
        else:
            x = honest
        self.defense.tracing = diagnose
        agg = self.defense(x)
        if diagnose:
            byz = torch.zeros(x.shape[0], device=x.device)
            byz[self.h :] = 1.0
            self.last_diagnostics = diagnostics(honest, agg, self.defense, byz)
        self.defense.tracing = False
        if self.defense.last_sanitized:
            self.sanitized.add(self.step_idx + 1, self.defense.last_sanitized)
        self.model.theta.sub_(agg, alpha=self.lr_at(self.step_idx))
        self.step_idx += 1
        train_loss = losses[: self.h].mean()
        return train_loss, torch.isfinite(agg).all() & torch.isfinite(train_loss)

    @torch.inference_mode()
    def evaluate(self) -> tuple[float, float]:
        """Accuracy and mean loss on the full test set.

        Convolutions run in channels-last layout (about 3x faster on CPU than NCHW here).
        The normalised channels-last test images are computed once per process and shared
        (elementwise, so each batch holds the same values as when normalised alone).
        """
        params = {k: gradients.nhwc(p) if p.dim() == 4 else p for k, p in self.model.params.items()}
        key = "eval_nhwc" if self.dtype == torch.float32 else f"eval_nhwc_{self.dtype}"
        images = self.test.derived.get(key)
        if images is None:
            images = gradients.nhwc(self.test.normalize(self.test.x, self.dtype))
            self.test.derived[key] = images
        correct, total_loss, n = 0, 0.0, len(self.test)
        bs = self.spec.eval_batch_size
        for i in range(0, n, bs):
            x = images[i : i + bs]
            y = self.test.y[i : i + bs]
            logits = functional_call(self.model.module, params, (x,))
            total_loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(1) == y).sum())
        return correct / n, total_loss / n

    # ----------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step_idx,
            "theta": self.model.theta.to("cpu", copy=True),
            "momentum": self.momentum.to("cpu", copy=True),
            "defense": self.defense.state_dict(),
            "data_gen": self.data_gen.get_state(),
            "attack_gen": self.attack_gen.get_state(),
            "strengths": list(self.strengths),
            "sanitized": self.sanitized.as_dict(),
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.step_idx = int(st["step"])
        self.model.theta.copy_(st["theta"].to(self.device))
        self.momentum.copy_(st["momentum"].to(self.device))
        d = st["defense"]
        if d["rule"].get("center") is not None:
            d["rule"]["center"] = d["rule"]["center"].to(self.device)
        self.defense.load_state_dict(d)
        self.data_gen.set_state(st["data_gen"])
        self.attack_gen.set_state(st["attack_gen"])
        self.strengths = list(st["strengths"])
        self.sanitized = SanitizeLog.from_dict(st.get("sanitized"))


DIAGNOSTICS = (
    "rel_err",
    "cos",
    "norm_ratio",
    "byz_weight_rows",
    "byz_weight_rows_max",
    "byz_weight_honest_rows",
    "rule_byz_share",
    "byz_values_kept",
)


def diagnostics(
    honest: Tensor, agg: Tensor, defense: defenses.Defense, byzantine: Tensor
) -> dict[str, float | None]:
    """Why an attack works or not, from one step's tensors (no extra pass over the data).

    With ``μ_h`` the honest clients' mean momentum: ``rel_err = ||agg − μ_h|| / ||μ_h||``,
    ``cos = ⟨agg, μ_h⟩ / (||agg|| ||μ_h||)``, ``norm_ratio = ||agg|| / ||μ_h||``, and where
    the Byzantine weight went inside the defense
    (:meth:`byzstress.threats.defenses.Defense.diagnose`; ``byzantine`` marks the rows the
    attack sent).
    """
    mu = honest.mean(0)
    mu_norm, agg_norm = mu.norm(), agg.norm()
    vals = torch.stack(
        [
            (agg - mu).norm() / mu_norm,
            (agg @ mu) / (agg_norm * mu_norm),
            agg_norm / mu_norm,
        ]
    ).tolist()
    out: dict[str, float | None] = dict(zip(DIAGNOSTICS[:3], vals, strict=True))
    out.update(defense.diagnose(byzantine))
    return out
