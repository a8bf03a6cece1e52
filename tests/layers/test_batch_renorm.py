"""Batch Renormalization against the paper's formula, schedule and bounded step counter."""

import pytest
import torch

from normlab.layers import BatchNorm, BatchRenorm

from conftest import SHAPES


def _view(t, nd):
    return t.view((1, -1) + (1,) * (nd - 2))


@pytest.mark.parametrize("shape", SHAPES)
def test_train_formula_with_r_and_d(shape, device):
    nd, eps, m = len(shape), 1e-5, 0.2
    dims = (0,) + tuple(range(2, nd))
    layer = BatchRenorm(shape[1], momentum=m, r_max=2.0, d_max=0.5, warmup_steps=1, r_max_steps=3,
                        d_max_steps=2).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    w, b = layer.weight.detach(), layer.bias.detach()
    rm, rv = torch.zeros(shape[1], dtype=torch.float64), torch.ones(shape[1], dtype=torch.float64)
    for t in range(6):
        r_max = 1 + (2.0 - 1) * min(1.0, max(0, t - 1) / 2)
        d_max = 0.5 * min(1.0, max(0, t - 1) / 1)
        assert layer.limits() == pytest.approx((r_max, d_max))
        x = torch.randn(shape, dtype=torch.float64) * (1 + 2 * t) + 3 * t
        mu = x.mean(dim=dims)
        var = ((x - _view(mu, nd)) ** 2).mean(dim=dims)
        sigma_b, sigma = torch.sqrt(var + eps), torch.sqrt(rv + eps)
        r = (sigma_b / sigma).clamp(1 / r_max, r_max)
        d = ((mu - rm) / sigma).clamp(-d_max, d_max)
        xhat = (x - _view(mu, nd)) / _view(sigma_b, nd) * _view(r, nd) + _view(d, nd)
        expected = xhat * _view(w, nd) + _view(b, nd)
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
        n = x.numel() // shape[1]
        rm = (1 - m) * rm + m * mu
        rv = (1 - m) * rv + m * var * n / (n - 1)
    torch.testing.assert_close(layer.running_mean, rm)
    torch.testing.assert_close(layer.running_var, rv)
    layer.eval()
    x = torch.randn(shape, dtype=torch.float64)
    expected = (x - _view(rm, nd)) / _view(torch.sqrt(rv + eps), nd) * _view(w, nd) + _view(b, nd)
    torch.testing.assert_close(layer(x), expected)


def test_r_and_d_carry_no_gradient():
    # With r and d stopped, the gradient is BatchNorm's gradient scaled by r.
    x = torch.randn(6, 3, 4, dtype=torch.float64, requires_grad=True)
    brn = BatchRenorm(3, warmup_steps=0, r_max_steps=0, d_max_steps=0, r_max=1.0, d_max=0.0).double()
    bn = BatchNorm(3).double()
    x2 = x.detach().clone().requires_grad_(True)
    brn(x).pow(3).sum().backward()
    bn(x2).pow(3).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_step_counter_stays_bounded():
    layer = BatchRenorm(2, warmup_steps=2, r_max_steps=5, d_max_steps=4)
    for _ in range(50):
        layer(torch.randn(4, 2, 3))
    assert int(layer.num_batches_tracked) == 5
    assert layer.limits() == (3.0, 5.0)
    layer.eval()
    layer(torch.randn(4, 2, 3))
    assert int(layer.num_batches_tracked) == 5


def test_paper_schedule_defaults():
    layer = BatchRenorm(2)
    assert layer.limits(0) == (1.0, 0.0)
    assert layer.limits(5000) == (1.0, 0.0)
    assert layer.limits(40000) == (3.0, 5.0)
    assert layer.limits(25000)[1] == 5.0
    assert 1.0 < layer.limits(20000)[0] < 3.0
    with pytest.raises(ValueError, match="r_max_steps"):
        BatchRenorm(2, warmup_steps=10, r_max_steps=5)


def test_loads_a_batchnorm_state_dict():
    bn = BatchNorm(4)
    for _ in range(3):
        bn(torch.randn(8, 4, 3, 3) + 2)
    brn = BatchRenorm(4)
    brn.load_state_dict(bn.state_dict())
    bn.eval(), brn.eval()
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(brn(x), bn(x))
