"""The per-client gradient engines (byzstress.sim.gradients) agree with a per-client loop, and
``auto`` only picks the fused engine where it is exact."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from byzstress.sim import gradients, models

CPU = torch.device("cpu")
SHAPES = {"fmnist_cnn": (1, 28, 28), "cifar_cnn": (3, 32, 32), "resnet20": (3, 32, 32)}


def batch(shape, m=4, b=5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(m, b, *shape, generator=gen, dtype=dtype)
    y = torch.randint(0, 10, (m, b), generator=gen)
    return x, y


def loop_reference(module, x, y):
    """Each client's gradient and loss from its own backward pass (no batching at all)."""
    grads, losses = [], []
    for i in range(x.shape[0]):
        module.zero_grad(set_to_none=True)
        loss = F.cross_entropy(module(x[i]), y[i])
        loss.backward()
        grads.append({k: p.grad.clone() for k, p in module.named_parameters()})
        losses.append(loss.detach())
    return grads, torch.stack(losses)


def rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["fmnist_cnn", "cifar_cnn"])
def test_expanded_equals_a_per_client_loop_in_float64(name):
    torch.manual_seed(0)
    module = models.build(name).double()
    params = {k: p.detach().clone() for k, p in module.named_parameters()}
    x, y = batch(SHAPES[name])
    grads, losses = gradients.ExpandedGrads(module)(params, x, y)
    ref, ref_losses = loop_reference(module, x, y)
    assert rel(losses, ref_losses) < 1e-12
    assert list(grads) == list(params)
    for k in params:
        assert grads[k].shape == (4, *params[k].shape)
        for i in range(4):
            assert rel(grads[k][i], ref[i][k]) < 1e-10, (name, k, i)


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["fmnist_cnn", "cifar_cnn"])
def test_expanded_and_vmap_agree_in_float64(name):
    # float64: in float32 the engines' difference is their rounding, which depends on the
    # CPU's kernels (oneDNN's channels-last convolutions against grouped NCHW ones)
    torch.manual_seed(1)
    module = models.build(name).double()
    params = {k: p.detach() for k, p in module.named_parameters()}
    x, y = batch(SHAPES[name], m=6, b=8, dtype=torch.float64, seed=1)
    got, got_loss = gradients.ExpandedGrads(module)(params, x, y)
    ref, ref_loss = gradients.VmapGrads(module)(params, x, y)
    assert rel(got_loss, ref_loss) < 1e-12
    flat = torch.cat([got[k].flatten(1) for k in params], 1)
    flat_ref = torch.cat([ref[k].flatten(1) for k in params], 1)
    for i in range(6):
        assert rel(flat[i], flat_ref[i]) < 1e-10, (name, i)


def test_auto_picks_expanded_on_cpu_only_where_it_applies():
    for name, want in [("fmnist_cnn", "expanded"), ("cifar_cnn", "expanded"), ("resnet20", "vmap")]:
        engine = gradients.build(models.build(name), CPU, SHAPES[name], 10)
        assert engine.name == want, name
    # CUDA keeps vmap (no CUDA call is made to decide)
    cuda = gradients.build(models.build("fmnist_cnn"), torch.device("cuda"), (1, 28, 28), 10)
    assert cuda.name == "vmap"


def test_bad_engine_choices_are_named():
    with pytest.raises(
        ValueError, match="grad engine: unknown 'fast'; valid: auto, vmap, expanded"
    ):
        gradients.build(models.build("fmnist_cnn"), CPU, (1, 28, 28), 10, "fast")
    with pytest.raises(ValueError, match=r"Linear or Conv2d.*use the vmap engine"):
        gradients.build(models.build("resnet20"), CPU, (3, 32, 32), 10, "expanded")


class BatchCentred(nn.Module):
    """Linear layers only, but samples interact: each is centred on the batch mean."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(12, 8), nn.Linear(8, 10)

    def forward(self, x):
        h = self.fc1(x.flatten(1))
        return self.fc2(torch.tanh(h - h.mean(0)))


class SharedLayer(nn.Module):
    """One layer applied twice: its weight gradient has two terms."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(12, 12)
        self.out = nn.Linear(12, 10)

    def forward(self, x):
        return self.out(torch.tanh(self.fc(torch.tanh(self.fc(x.flatten(1))))))


def test_auto_falls_back_when_samples_interact():
    torch.manual_seed(0)
    module = BatchCentred()
    params = {k: p.detach() for k, p in module.named_parameters()}
    x, y = batch((3, 4), dtype=torch.float32)
    # the structure qualifies, but the fused pass centres on all clients' samples at once
    fused, _ = gradients.ExpandedGrads(module)(params, x, y)
    per_client, _ = gradients.VmapGrads(module)(params, x, y)
    assert rel(fused["fc1.weight"], per_client["fc1.weight"]) > 1e-3
    assert gradients.build(module, CPU, (3, 4), 10).name == "vmap"


def test_a_layer_run_twice_is_refused_and_auto_falls_back():
    module = SharedLayer()
    params = {k: p.detach() for k, p in module.named_parameters()}
    x, y = batch((3, 4), dtype=torch.float32)
    with pytest.raises(RuntimeError, match="exactly once"):
        gradients.ExpandedGrads(module)(params, x, y)
    assert gradients.build(module, CPU, (3, 4), 10).name == "vmap"


def test_hooks_record_only_inside_the_engine():
    module = models.build("fmnist_cnn")
    engine = gradients.ExpandedGrads(module)
    params = {k: p.detach() for k, p in module.named_parameters()}
    x, y = batch((1, 28, 28), dtype=torch.float32)
    engine(params, x, y)
    assert engine._record is None
    with torch.inference_mode():  # evaluation goes through the same module
        module(x[0])
    assert engine._record is None


def test_nhwc_keeps_values_and_is_channels_last():
    t = torch.randn(2, 3, 5, 4)
    out = gradients.nhwc(t)
    assert torch.equal(out, t)
    assert out.stride() == (60, 1, 12, 3)
    one = gradients.nhwc(torch.randn(2, 1, 5, 4))  # one channel: contiguous() would not do it
    assert one.stride() == (20, 1, 4, 1)
