"""GroupNorm, LayerNorm, InstanceNorm and PositionalNorm against their formulas in float64."""

import pytest
import torch

from normlab.layers import GroupNorm, InstanceNorm, LayerNorm, PositionalNorm

from conftest import SHAPES


def _affine(y, w, b):
    view = (1, -1) + (1,) * (y.dim() - 2)
    return y * w.view(view) + b.view(view)


def group_reference(x, groups, eps):
    n = x.shape[0]
    xv = x.reshape(n, groups, -1)
    mean = xv.mean(dim=2, keepdim=True)
    var = ((xv - mean) ** 2).mean(dim=2, keepdim=True)
    return ((xv - mean) / torch.sqrt(var + eps)).reshape(x.shape)


def positional_reference(x, eps):
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def _randomize(layer):
    with torch.no_grad():
        if layer.weight is not None:
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
    return layer


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("training", [True, False])
def test_group_layer_and_instance_norm(shape, training, device):
    c = shape[1]
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    for layer, groups in ((GroupNorm(c, groups=2), 2), (LayerNorm(c), 1), (InstanceNorm(c), c)):
        layer = _randomize(layer.double()).train(training)
        expected = _affine(group_reference(x, groups, 1e-5), layer.weight.detach(), layer.bias.detach())
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("affine", [False, True])
def test_positional_norm(shape, affine, device):
    x = torch.randn(shape, dtype=torch.float64) * 3 + 2
    layer = _randomize(PositionalNorm(shape[1], affine=affine).double())
    expected = positional_reference(x, 1e-5)
    if affine:
        expected = _affine(expected, layer.weight.detach(), layer.bias.detach())
    torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.eval()(x), expected, rtol=1e-10, atol=1e-10)


def test_group_rule():
    assert GroupNorm(64).groups == 32
    assert GroupNorm(48).groups == 24      # default 32 reduced to the largest divisor below it
    assert GroupNorm(7).groups == 7
    assert GroupNorm(48, groups=12).groups == 12
    with pytest.raises(ValueError, match=r"groups=5 does not divide num_channels=48; nearest valid groups: 4 or 6"):
        GroupNorm(48, groups=5)


def test_instance_norm_needs_spatial_extent():
    with pytest.raises(ValueError, match="more than 1 spatial"):
        InstanceNorm(4)(torch.randn(2, 4, 1, 1))


def test_wrong_channel_count_is_clear():
    with pytest.raises(ValueError, match="built for 4 channels but the input has 5"):
        LayerNorm(4)(torch.randn(2, 5, 3))
