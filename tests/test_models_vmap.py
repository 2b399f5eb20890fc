"""The batched per-client gradients equal a per-client loop over model copies."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from byzstress.sim import models
from byzstress.sim.training import FlatModel


@pytest.mark.numerics
@pytest.mark.parametrize(
    ("name", "shape"),
    [("fmnist_cnn", (1, 28, 28)), ("cifar_cnn", (3, 32, 32)), ("resnet20", (3, 32, 32))],
)
def test_vmap_gradients_equal_per_client_loop(name, shape):
    # float64: float32's rounding of these sums depends on the CPU's kernels
    torch.manual_seed(0)
    m, b = 4, 5
    model = FlatModel(models.build(name).double(), torch.device("cpu"))
    x = torch.randn(m, b, *shape, dtype=torch.float64)
    y = torch.randint(0, 10, (m, b))

    def loss(params, xb, yb):
        return F.cross_entropy(functional_call(model.module, params, (xb,)), yb)

    batched = model.flatten_grads(vmap(grad(loss), in_dims=(None, 0, 0))(model.params, x, y), m)
    for i in range(m):
        copy = models.build(name).double()
        copy.load_state_dict({k: v.clone() for k, v in model.params.items()})
        copy.zero_grad()
        F.cross_entropy(copy(x[i]), y[i]).backward()
        ref = torch.cat([p.grad.flatten() for p in copy.parameters()])
        err = float((batched[i] - ref).norm() / ref.norm())
        assert err < 1e-10, (name, i, err)


def test_flat_model_views_share_storage():
    fm = FlatModel(models.build("fmnist_cnn"), torch.device("cpu"))
    assert fm.dim == 431_080
    fm.theta.zero_()
    assert all(float(p.abs().sum()) == 0 for p in fm.params.values())


@pytest.mark.numerics
@pytest.mark.parametrize("name", ["fmnist_cnn", "cifar_cnn"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_after_pooling_is_the_textbook_order_exactly(name, seed):
    """The CNNs compute max_pool(relu(conv)) as relu(max_pool(conv)); ReLU is monotone, so
    the outputs and gradients are bitwise those of the textbook order."""
    torch.manual_seed(seed)
    model = models.build(name)
    convs = [model.conv1, model.conv2] if name == "fmnist_cnn" else list(model.convs)
    shape = (1, 28, 28) if name == "fmnist_cnn" else (3, 32, 32)
    x = torch.randn(6, *shape)
    y = torch.randint(0, 10, (6,))

    def textbook(h):
        for conv in convs:
            h = F.max_pool2d(F.relu(conv(h)), 2)
        h = h.flatten(-3)
        fcs = [model.fc1, model.fc2] if name == "fmnist_cnn" else [model.fc1, model.fc2, model.fc3]
        for fc in fcs[:-1]:
            h = F.relu(fc(h))
        return fcs[-1](h)

    params = list(model.parameters())
    ref = F.cross_entropy(textbook(x), y)
    got = F.cross_entropy(model(x), y)
    assert torch.equal(got, ref)
    for a, b in zip(
        torch.autograd.grad(got, params), torch.autograd.grad(ref, params), strict=True
    ):
        assert torch.equal(a, b)
