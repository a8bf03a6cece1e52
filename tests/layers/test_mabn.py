"""MABN: the forward and backward moving averages, written out from the paper in float64."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normlab.layers import CenteredConv2d, MovingAverageBatchNorm, convert_norms

from conftest import SHAPES

EPS, MOM, B, WARM, RENORM, RMAX = 1e-5, 0.3, 3, 2, 4, 5.0


def _view(t, nd):
    return t.view((1, -1) + (1,) * (nd - 2))


@pytest.mark.parametrize("shape", SHAPES)
def test_forward_and_backward_follow_the_moving_averages(shape, device):
    c, nd = shape[1], len(shape)
    dims = (0,) + tuple(range(2, nd))
    layer = MovingAverageBatchNorm(c, eps=EPS, momentum=MOM, buffer_size=B, warmup_iters=WARM,
                                   renorm_iters=RENORM, r_max=RMAX).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    w, b = layer.weight.detach(), layer.bias.detach()
    buf_x2 = torch.zeros(B, c, dtype=torch.float64)
    buf_gz = torch.zeros(B, c, dtype=torch.float64)
    rv = torch.ones(c, dtype=torch.float64)
    renormalised = False
    for t in range(1, 12):
        x = (torch.randn(shape, dtype=torch.float64) * (1 + t % 4)).requires_grad_(True)
        dy = torch.randn(shape, dtype=torch.float64)
        # forward: x2 = E[x^2] of this batch, SMA over the buffer once it is full and warm
        x2 = (x.detach() ** 2).mean(dim=dims)
        buf_x2[t % B] = x2
        use_avg = t > B and t >= WARM
        var = buf_x2.mean(dim=0) if use_avg else x2
        std = torch.sqrt(var + EPS)
        if t <= max(RENORM, WARM):
            r = torch.ones(c, dtype=torch.float64)
        else:
            r = (std / torch.sqrt(rv + EPS)).clamp(1 / RMAX, RMAX)
            renormalised = renormalised or bool((r != 1).any())
        z = x.detach() / _view(std, nd)
        expected = _view(r, nd) * z * _view(w, nd) + _view(b, nd)
        rv = (1 - MOM) * rv + MOM * var
        # backward: E[g z] replaced by its SMA over the same window
        g = dy * _view(w * r, nd)
        gz = (g * z).mean(dim=dims)
        buf_gz[t % B] = gz
        mean_gz = buf_gz.mean(dim=0) if use_avg else gz
        expected_gx = (g - z * _view(mean_gz, nd)) / _view(std, nd)

        layer.weight.grad = None
        y = layer(x)
        torch.testing.assert_close(y, expected, rtol=1e-10, atol=1e-10)
        y.backward(dy)
        torch.testing.assert_close(x.grad, expected_gx, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(layer.weight.grad, (dy * _view(r, nd) * z).sum(dim=dims))
        torch.testing.assert_close(layer.bias.grad is not None, True)
        torch.testing.assert_close(layer.running_var, rv)
        torch.testing.assert_close(layer.buffer_x2, buf_x2)
        torch.testing.assert_close(layer.buffer_gz, buf_gz)
    assert renormalised, "the test never left the r = 1 warm-up"
    layer.eval()
    x = torch.randn(shape, dtype=torch.float64)
    expected = x / _view(torch.sqrt(rv + EPS), nd) * _view(w, nd) + _view(b, nd)
    torch.testing.assert_close(layer(x), expected)


def test_gradcheck_in_warmup_is_the_exact_gradient():
    layer = MovingAverageBatchNorm(3, warmup_iters=10**9, renorm_iters=10**9).double()
    x = torch.randn(4, 3, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-6)
    x3 = torch.randn(2, 3, 2, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x3,), eps=1e-6, atol=1e-6)


def test_state_dict_round_trip_keeps_the_step():
    a = MovingAverageBatchNorm(4, buffer_size=2, warmup_iters=1, renorm_iters=2)
    for _ in range(5):
        a(torch.randn(2, 4, 3, 3)).sum().backward()
    b = MovingAverageBatchNorm(4, buffer_size=2, warmup_iters=1, renorm_iters=2)
    b.load_state_dict(a.state_dict())
    assert b._step == 5
    x = torch.randn(2, 4, 3, 3)
    torch.manual_seed(1)
    ya = a(x)
    yb = b(x)
    torch.testing.assert_close(ya, yb)


def test_centered_conv_removes_each_filters_mean():
    conv = CenteredConv2d(3, 5, 3, padding=1, bias=True).double()
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    w = conv.weight.detach()
    centred = w - w.mean(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(conv(x), F.conv2d(x, centred, conv.bias.detach(), padding=1))
    assert centred.sum(dim=(1, 2, 3)).abs().max() < 1e-12


def test_convert_to_mabn_swaps_convs_unless_opted_out():
    def model():
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 1))
    m = convert_norms(model(), "mabn")
    assert [type(x) for x in m] == [CenteredConv2d, MovingAverageBatchNorm, nn.ReLU, CenteredConv2d]
    m = convert_norms(model(), "mabn", center_convs=False)
    assert type(m[0]) is nn.Conv2d and type(m[1]) is MovingAverageBatchNorm
    src = model()
    with torch.no_grad():
        src[0].weight.normal_()
    dst = convert_norms(src, "mabn")
    torch.testing.assert_close(dst[0].weight, src[0].weight)   # parameters carried over
