"""Per-client gradients: every client's gradient of one step from one call.

For ``m`` clients with stacked mini-batches ``x`` ``[m, B, ...]``, ``y`` ``[m, B]`` and shared
parameters ``θ``, an engine returns ``g_i = ∇_θ (1/B) Σ_b ℓ(θ; x_ib, y_ib)`` for every client
``i`` (a dict of ``[m, *shape]`` tensors, one per parameter) and the clients' mean losses
``[m]``. Two engines compute the same thing:

* :class:`VmapGrads`: ``torch.func.vmap(grad(loss))`` over the client axis. Works for any
  model ``vmap`` can batch.
* :class:`ExpandedGrads`: one fused forward and backward over all ``m·B`` samples in
  channels-last layout, the backward taken only to each layer's *output* ``z = W a + b``.
  Each client's weight gradient is then formed from the layer's input ``a`` and output
  gradient ``δ = ∂L/∂z`` restricted to that client's samples, ``∂L_i/∂W = Σ_{b ∈ i} δ_b a_bᵀ``
  and ``∂L_i/∂b = Σ_{b ∈ i} δ_b`` — the per-example gradient identity of Goodfellow (2015,
  "Efficient per-example gradient computations", arXiv:1510.01799), summed per client. For
  ``Linear`` it is one batched matrix product over the clients; for ``Conv2d`` it is the
  convolution's weight gradient on each client's ``B`` samples. On a 2-core CPU the fused
  pass and oneDNN's channels-last kernels take the FMNIST step's client vectors from 49 to
  37 ms against ``vmap``, whose weight gradients become grouped NCHW convolutions
  (benchmarks/README.md).

``ExpandedGrads`` needs every parameter to belong to a ``Linear`` or ``Conv2d`` layer that
is called once per forward, and samples that do not interact (no BatchNorm; the models of
:mod:`byzstress.sim.models` qualify, ResNet-20's GroupNorm does not). :func:`build` checks both:
the structure, then the gradients of the two engines on a small float64 probe batch.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value, vmap

__all__ = ["ENGINES", "ExpandedGrads", "GradEngine", "VmapGrads", "build", "nhwc"]

# (params, x [m, B, ...], y [m, B]) -> (grads {name: [m, *shape]}, losses [m])
GradEngine = Callable[[dict[str, Tensor], Tensor, Tensor], tuple[dict[str, Tensor], Tensor]]


def nhwc(t: Tensor) -> Tensor:
    """Channels-last copy of ``[N, C, H, W]``; explicit strides, since
    ``contiguous(memory_format=...)`` is a no-op for one-channel tensors, which then miss
    oneDNN's fast kernels."""
    _, c, h, w = t.shape
    out = torch.empty_strided(t.shape, (h * w * c, 1, w * c, c), dtype=t.dtype, device=t.device)
    return out.copy_(t)


class VmapGrads:
    """``vmap(grad_and_value(loss), in_dims=(None, 0, 0))`` with shared parameters."""

    name = "vmap"

    def __init__(self, module: nn.Module) -> None:
        def loss(params: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
            return F.cross_entropy(functional_call(module, params, (x,)), y)

        self.fn = vmap(grad_and_value(loss), in_dims=(None, 0, 0))

    def __call__(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        return self.fn(params, x, y)


def _expandable_layers(module: nn.Module) -> dict[str, nn.Module] | None:
    """The ``Linear`` / ``Conv2d`` layers holding all of ``module``'s parameters, or
    ``None`` when some parameter lives elsewhere or a layer is not plain."""
    layers: dict[str, nn.Module] = {}
    for name, mod in module.named_modules():
        own = [k for k, _ in mod.named_parameters(recurse=False)]
        if not own:
            continue
        # exact types: a subclass may change what forward computes
        if type(mod) is nn.Conv2d:
            plain = mod.padding_mode == "zeros" and not isinstance(mod.padding, str)
        else:
            plain = type(mod) is nn.Linear
        if not plain or not set(own) <= {"weight", "bias"}:
            return None
        layers[name] = mod
    return layers or None


class ExpandedGrads:
    """Per-client gradients from one fused channels-last pass (see the module docstring)."""

    name = "expanded"

    def __init__(self, module: nn.Module) -> None:
        layers = _expandable_layers(module)
        if layers is None:
            raise ValueError(
                f"{type(module).__name__}: the expanded engine needs every parameter in a "
                "Linear or Conv2d layer (zero padding); use the vmap engine"
            )
        self.module, self.layers = module, layers
        self._record: list[tuple[str, Tensor, Tensor]] | None = None
        for name, layer in layers.items():
            layer.register_forward_hook(self._hook(name))

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(_: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if self._record is not None:  # only inside __call__, not in evaluation
                self._record.append((name, inputs[0], output))

        return hook

    def __call__(
        self, params: dict[str, Tensor], x: Tensor, y: Tensor
    ) -> tuple[dict[str, Tensor], Tensor]:
        m, b = y.shape
        xf = x.flatten(0, 1)
        # channels-last: oneDNN's convolutions and poolings are 1.5-3x faster on the CPU
        xf = (nhwc(xf) if xf.dim() == 4 else xf.detach()).requires_grad_()
        run_params = {k: nhwc(p) if p.dim() == 4 else p for k, p in params.items()}
        self._record = []
        try:
            logits = functional_call(self.module, run_params, (xf,))
            record = self._record
        finally:
            self._record = None
        if sorted(name for name, _, _ in record) != sorted(self.layers):
            raise RuntimeError(
                "expanded gradients: each parameterised layer must run exactly once per "
                f"forward; ran {[name for name, _, _ in record]}"
            )
        losses = F.cross_entropy(logits, y.flatten(), reduction="none").view(m, b).mean(1)
        # d(Σ_i L_i)/dz: each sample's share of its own client's mean loss
        deltas = torch.autograd.grad(losses.sum(), [z for _, _, z in record])
        grads: dict[str, Tensor] = {}
        with torch.no_grad():
            for (name, a, _), delta in zip(record, deltas, strict=True):
                layer = self.layers[name]
                if type(layer) is nn.Conv2d:
                    w, bias = self._conv(layer, run_params[f"{name}.weight"], a, delta, m)
                else:
                    w, bias = self._linear(a, delta, m)
                grads[f"{name}.weight"] = w
                if layer.bias is not None:
                    grads[f"{name}.bias"] = bias
        return {k: grads[k] for k in params}, losses.detach()

    @staticmethod
    def _linear(a: Tensor, delta: Tensor, m: int) -> tuple[Tensor, Tensor]:
        """``∂L_i/∂W = δ_iᵀ a_i`` for all clients as one ``bmm``; ``∂L_i/∂b = Σ δ_i``."""
        a = a.reshape(m, -1, a.shape[-1])
        delta = delta.reshape(m, -1, delta.shape[-1])
        return torch.bmm(delta.transpose(1, 2), a), delta.sum(1)

    @staticmethod
    def _conv(
        layer: nn.Conv2d, weight: Tensor, a: Tensor, delta: Tensor, m: int
    ) -> tuple[Tensor, Tensor]:
        """The weight (and bias) gradient of the convolution on each client's samples."""
        per = a.shape[0] // m
        has_bias = layer.bias is not None
        ws, bs = [], []
        for i in range(m):
            rows = slice(i * per, (i + 1) * per)
            _, gw, gb = torch.ops.aten.convolution_backward(
                delta[rows],
                a[rows],
                weight,
                [weight.shape[0]] if has_bias else None,
                list(layer.stride),
                list(layer.padding),
                list(layer.dilation),
                False,
                [0, 0],
                layer.groups,
                [False, True, has_bias],
            )
            ws.append(gw)
            bs.append(gb)
        return torch.stack(ws), (torch.stack(bs) if has_bias else torch.empty(0))


ENGINES: dict[str, type] = {"vmap": VmapGrads, "expanded": ExpandedGrads}


def _per_client_loop(
    module: nn.Module, params: dict[str, Tensor], x: Tensor, y: Tensor
) -> tuple[dict[str, Tensor], Tensor]:
    """Each client's gradient from its own forward and backward pass: the definition both
    engines must meet. Plain autograd: ``torch.func``'s transforms would import
    ``torch._dynamo`` (about a second of every training job's start-up)."""
    grads: dict[str, list[Tensor]] = {k: [] for k in params}
    losses = []
    for i in range(x.shape[0]):
        p = {k: v.detach().requires_grad_() for k, v in params.items()}
        loss = F.cross_entropy(functional_call(module, p, (x[i],)), y[i])
        got = torch.autograd.grad(loss, list(p.values()), allow_unused=True)
        for (k, v), g in zip(p.items(), got, strict=True):
            grads[k].append(torch.zeros_like(v) if g is None else g)
        losses.append(loss.detach())
    return {k: torch.stack(v) for k, v in grads.items()}, torch.stack(losses)


def _agree(module: nn.Module, shape: tuple[int, ...], num_classes: int) -> bool:
    """Does the expanded engine give each client's own float64 gradients on a random probe
    batch (2 clients of 3 samples)?"""
    probe = copy.deepcopy(module).double().cpu()
    gen = torch.Generator().manual_seed(0)  # not the run's streams
    params = {k: p.detach() for k, p in probe.named_parameters()}
    x = torch.randn(2, 3, *shape, generator=gen, dtype=torch.float64)
    y = torch.randint(0, num_classes, (2, 3), generator=gen)
    try:
        ref, ref_loss = _per_client_loop(probe, params, x, y)
        got, got_loss = ExpandedGrads(probe)(params, x, y)
    except RuntimeError:
        return False

    def close(a: Tensor, b: Tensor) -> bool:
        return bool((a - b).norm() <= 1e-9 * max(float(b.norm()), 1e-30))

    return close(got_loss, ref_loss) and all(close(got[k], ref[k]) for k in ref)


def build(
    module: nn.Module,
    device: torch.device,
    sample_shape: tuple[int, ...],
    num_classes: int,
    engine: str = "auto",
) -> Any:
    """The gradient engine ``engine`` for ``module``.

    ``auto`` is ``expanded`` on the CPU when the model qualifies (its structure, then its
    gradients agreeing with a per-client loop on a float64 probe batch of ``sample_shape``
    inputs), else ``vmap``.
    On CUDA ``auto`` keeps ``vmap``: the H200 measurements were taken with it.
    """
    if engine not in ("auto", *ENGINES):
        raise ValueError(f"grad engine: unknown {engine!r}; valid: auto, {', '.join(ENGINES)}")
    if engine == "auto":
        ok = (
            device.type == "cpu"
            and _expandable_layers(module) is not None
            and _agree(module, sample_shape, num_classes)
        )
        engine = "expanded" if ok else "vmap"
    return ENGINES[engine](module)
