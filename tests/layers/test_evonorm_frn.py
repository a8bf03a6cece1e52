"""EvoNorm-B0, EvoNorm-S0 and FRN+TLU against their formulas in float64."""

import pytest
import torch

from normlab.layers import EvoNormB0, EvoNormS0, FilterResponseNorm, evonorm

from conftest import SHAPES


def _view(t, nd):
    return t.view((1, -1) + (1,) * (nd - 2))


def _randomize(layer):
    with torch.no_grad():
        for p in layer.parameters():
            p.uniform_(-1.0, 1.5)
    return layer


@pytest.mark.parametrize("shape", SHAPES)
def test_evonorm_b0(shape, device):
    nd, eps, m = len(shape), 1e-5, 0.25
    bdims, sdims = (0,) + tuple(range(2, nd)), tuple(range(2, nd))
    layer = _randomize(EvoNormB0(shape[1], momentum=m).double())
    gamma, beta, v = (p.detach() for p in (layer.weight, layer.bias, layer.v))
    run_var = torch.ones(shape[1], dtype=torch.float64)

    def formula(x, batch_var):
        inst_var = ((x - x.mean(dim=sdims, keepdim=True)) ** 2).mean(dim=sdims, keepdim=True)
        den = torch.maximum(_view(torch.sqrt(batch_var + eps), nd), _view(v, nd) * x + torch.sqrt(inst_var + eps))
        return x / den * _view(gamma, nd) + _view(beta, nd)

    for _ in range(3):
        x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
        batch_var = ((x - x.mean(dim=bdims, keepdim=True)) ** 2).mean(dim=bdims)   # biased
        torch.testing.assert_close(layer(x), formula(x, batch_var), rtol=1e-10, atol=1e-10)
        run_var = (1 - m) * run_var + m * batch_var
    torch.testing.assert_close(layer.running_var, run_var)
    layer.eval()
    x = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(layer(x), formula(x, run_var), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("groups", [1, 2])
def test_evonorm_s0(shape, groups, device):
    nd, eps = len(shape), 1e-5
    layer = _randomize(EvoNormS0(shape[1], groups=groups).double())
    gamma, beta, v = (p.detach() for p in (layer.weight, layer.bias, layer.v))
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    xv = x.reshape(shape[0], groups, -1)
    var = ((xv - xv.mean(dim=2, keepdim=True)) ** 2).mean(dim=2, keepdim=True)
    std = torch.sqrt(var + eps).expand_as(xv).reshape(shape)
    expected = x * torch.sigmoid(_view(v, nd) * x) / std * _view(gamma, nd) + _view(beta, nd)
    for training in (True, False):
        torch.testing.assert_close(layer.train(training)(x), expected, rtol=1e-10, atol=1e-10)
        with torch.no_grad():            # the no-grad path (nothing kept for a backward)
            torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def _assert_same_gradients(layer, x, expected, reference_leaves):
    """layer(x) and the autograd formula `expected` give the same gradients for x and the
    layer's (weight, bias, v), under one random upstream gradient."""
    g = torch.randn(x.shape, dtype=torch.float64)
    layer(x).backward(g)
    expected.backward(g)
    for got, want in zip((x, layer.weight, layer.bias, layer.v), reference_leaves):
        torch.testing.assert_close(got.grad, want.grad, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("chunk", [1 << 20, 75, 1])
@pytest.mark.parametrize("training", [True, False])
def test_evonorm_b0_gradients_match_autograd_of_the_formula(training, chunk, monkeypatch):
    # both branches of the max populated: v of either sign, so sigma_B wins in places. The backward
    # runs over rows (sample, channel) in chunks: one chunk, 5+5+5+5+4 rows, one row at a time
    monkeypatch.setattr(evonorm, "_B0_CHUNK", chunk)
    shape, eps = (4, 6, 5, 3), 1e-5
    layer = _randomize(EvoNormB0(shape[1]).double()).train(training)
    layer.running_var.fill_(4.0)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 0.5).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    gamma, beta, v = (p.detach().clone().requires_grad_(True) for p in (layer.weight, layer.bias, layer.v))
    run_var = layer.running_var.clone()
    inst_var = xr.var(dim=(2, 3), keepdim=True, correction=0)
    batch_var = xr.var(dim=(0, 2, 3), correction=0) if training else run_var
    a = _view(torch.sqrt(batch_var + eps), 4)
    b = _view(v, 4) * xr + torch.sqrt(inst_var + eps)
    assert 0.1 < (b > a).double().mean() < 0.9
    expected = xr / torch.maximum(a, b) * _view(gamma, 4) + _view(beta, 4)
    _assert_same_gradients(layer, x, expected, (xr, gamma, beta, v))


@pytest.mark.parametrize("v_scale", [1.0, 1e-3, 0.0])
def test_evonorm_s0_gradients_match_autograd_of_the_formula(v_scale):
    shape, eps, groups = (3, 8, 4, 5), 1e-5, 4
    layer = _randomize(EvoNormS0(shape[1], groups=groups).double())
    with torch.no_grad():
        layer.v.mul_(v_scale)
    x = (torch.randn(shape, dtype=torch.float64) * 2 + 0.5).requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    gamma, beta, v = (p.detach().clone().requires_grad_(True) for p in (layer.weight, layer.bias, layer.v))
    xv = xr.reshape(shape[0], groups, -1)
    std = torch.sqrt(xv.var(dim=2, keepdim=True, correction=0) + eps).expand_as(xv).reshape(shape)
    expected = xr * torch.sigmoid(_view(v, 4) * xr) / std * _view(gamma, 4) + _view(beta, 4)
    _assert_same_gradients(layer, x, expected, (xr, gamma, beta, v))


def test_evonorm_s0_group_rule():
    assert EvoNormS0(64).groups == 32
    assert EvoNormS0(40).groups == 20
    with pytest.raises(ValueError, match="nearest valid groups"):
        EvoNormS0(40, groups=16)


@pytest.mark.parametrize("shape", SHAPES + [(5, 6)])
@pytest.mark.parametrize("tlu", [True, False])
def test_frn_tlu(shape, tlu, device):
    nd, eps = len(shape), 1e-6
    layer = _randomize(FilterResponseNorm(shape[1], tlu=tlu).double())
    x = torch.randn(shape, dtype=torch.float64) * 2 + 0.5
    nu2 = (x ** 2).mean(dim=tuple(range(2, nd)), keepdim=True) if nd > 2 else x ** 2
    y = x / torch.sqrt(nu2 + eps) * _view(layer.weight.detach(), nd) + _view(layer.bias.detach(), nd)
    if tlu:
        y = torch.maximum(y, _view(layer.tau.detach(), nd))
    torch.testing.assert_close(layer(x), y, rtol=1e-10, atol=1e-10)
    assert layer.replaces_activation is tlu


def test_frn_learnable_eps():
    layer = FilterResponseNorm(3, learnable_eps=True).double()
    with torch.no_grad():
        layer.eps_param.fill_(-0.01)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64) * 0.01
    nu2 = (x ** 2).mean(dim=(2, 3), keepdim=True)
    expected = torch.clamp(x / torch.sqrt(nu2 + 1e-6 + 0.01), min=0.0)
    torch.testing.assert_close(layer(x), expected)
    layer(x).sum().backward()
    assert layer.eps_param.grad is not None
