"""BatchGroupNorm against the paper's formula, written out here in float64."""

import pytest
import torch
from torch import nn

from normlab.layers import BatchGroupNorm, BatchNorm

from conftest import SHAPES


def bgn_reference(x, groups, weight, bias, eps):
    """View (N, C, *S) as (N, G, C*S/G); statistics over the batch and each group's features."""
    n = x.shape[0]
    xv = x.reshape(n, groups, -1)
    mean = xv.mean(dim=(0, 2), keepdim=True)
    var = ((xv - mean) ** 2).mean(dim=(0, 2), keepdim=True)       # biased
    xhat = ((xv - mean) / torch.sqrt(var + eps)).reshape(x.shape)
    view = (1, -1) + (1,) * (x.dim() - 2)
    count = xv.shape[0] * xv.shape[2]
    return xhat * weight.view(view) + bias.view(view), mean.flatten(), var.flatten() * count / (count - 1)


def eval_reference(x, groups, weight, bias, eps, run_mean, run_var):
    xv = x.reshape(x.shape[0], groups, -1)
    xhat = ((xv - run_mean.view(1, -1, 1)) / torch.sqrt(run_var.view(1, -1, 1) + eps)).reshape(x.shape)
    view = (1, -1) + (1,) * (x.dim() - 2)
    return xhat * weight.view(view) + bias.view(view)


def _groups_for(shape):
    c = shape[1]
    feats = 1
    for s in shape[1:]:
        feats *= s
    # groups below C (whole channels), equal to C, above C (inside channels), and straddling
    cands = {1, 2, c, 2 * c, feats // 2}
    return sorted(g for g in cands if feats % g == 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_train_and_eval_match_formula(shape, device):
    for groups in _groups_for(shape):
        layer = BatchGroupNorm(shape[1], groups=groups, momentum=0.3, eps=1e-4).double()
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
        run_mean, run_var = torch.zeros(groups, dtype=torch.float64), torch.ones(groups, dtype=torch.float64)
        for _ in range(3):
            x = torch.randn(shape, dtype=torch.float64) * 2 + 0.7
            expected, bmean, bvar = bgn_reference(x, groups, layer.weight.detach(), layer.bias.detach(), 1e-4)
            torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)
            run_mean = 0.7 * run_mean + 0.3 * bmean
            run_var = 0.7 * run_var + 0.3 * bvar
        torch.testing.assert_close(layer.running_mean, run_mean)
        torch.testing.assert_close(layer.running_var, run_var)
        assert layer.running_mean.shape == (groups,)
        layer.eval()
        x = torch.randn(shape, dtype=torch.float64)
        expected = eval_reference(x, groups, layer.weight.detach(), layer.bias.detach(), 1e-4, run_mean, run_var)
        torch.testing.assert_close(layer(x), expected, rtol=1e-10, atol=1e-10)


def test_groups_straddling_channels():
    # C=6, G=4: each group holds 1.5 channels' worth of features.
    x = torch.randn(3, 6, 2, 2, dtype=torch.float64)
    layer = BatchGroupNorm(6, groups=4).double()
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 7.0))
    expected, _, _ = bgn_reference(x, 4, layer.weight.detach(), layer.bias.detach(), 1e-5)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("shape", [(8, 5, 7), (4, 16, 6, 6), (2, 3, 2, 3, 4)])
def test_groups_equal_channels_is_batchnorm(shape, device):
    c = shape[1]
    bgn, bn = BatchGroupNorm(c, groups=c), BatchNorm(c)
    ref = nn.BatchNorm2d(c) if len(shape) == 4 else None
    with torch.no_grad():
        for m in (bgn, bn):
            m.weight.copy_(torch.linspace(0.5, 2.0, c))
            m.bias.copy_(torch.linspace(-1.0, 1.0, c))
    for _ in range(3):
        x = torch.randn(shape) * 3 + 1
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        ya, yb = bgn(xa), bn(xb)
        # the same math; BGN's statistics come from GroupNorm's kernel, so not bit for bit
        close = dict(rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(ya, yb, **close)
        (ya * torch.arange(ya.numel()).reshape(ya.shape).sin()).sum().backward()
        (yb * torch.arange(yb.numel()).reshape(yb.shape).sin()).sum().backward()
        torch.testing.assert_close(xa.grad, xb.grad, **close)
        torch.testing.assert_close(bgn.weight.grad, bn.weight.grad, **close)
        torch.testing.assert_close(bgn.bias.grad, bn.bias.grad, **close)
    torch.testing.assert_close(bgn.running_mean, bn.running_mean, **close)
    torch.testing.assert_close(bgn.running_var, bn.running_var, **close)
    bgn.eval(), bn.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(bgn(x), bn(x), **close)
    if ref is not None:
        ref.load_state_dict(bn.state_dict())
        ref.eval()
        torch.testing.assert_close(ref(x), bgn(x), **close)


def test_trains_at_batch_one_where_batchnorm_cannot():
    torch.manual_seed(0)
    # BatchNorm cannot normalize one sample's single value per channel...
    with pytest.raises(ValueError):
        nn.BatchNorm1d(8).train()(torch.randn(1, 8))
    # ...BGN with few groups can, and a network with it learns from batches of one.
    def net(norm):
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), norm, nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, 8), BatchGroupNorm(8, groups=2), nn.ReLU(),
                             nn.Linear(8, 2))
    model = net(BatchGroupNorm(8, groups=2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    data = torch.randn(16, 1, 6, 6)
    labels = (data.mean(dim=(1, 2, 3)) > 0).long()
    data = data + labels.view(-1, 1, 1, 1).float() * 1.5 - 0.75
    def loss_all():
        return sum(nn.functional.cross_entropy(model(data[i:i + 1]), labels[i:i + 1]).item() for i in range(16))
    before = loss_all()
    for _ in range(10):
        for i in torch.randperm(16):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(data[i:i + 1]), labels[i:i + 1])
            loss.backward()
            assert torch.isfinite(loss)
            opt.step()
    assert loss_all() < 0.5 * before


def test_invalid_groups_name_the_nearest_valid():
    layer = BatchGroupNorm(6, groups=7)
    with pytest.raises(ValueError, match=r"groups=7 .* nearest valid groups: 6 or 8"):
        layer(torch.randn(2, 6, 2, 2))   # C*S = 24
    with pytest.raises(ValueError, match="groups=0"):
        BatchGroupNorm(6, groups=0)
    with pytest.raises(ValueError, match="momentum"):
        BatchGroupNorm(6, groups=2, momentum=1.5)


def test_channel_affine_matches_eval():
    layer = BatchGroupNorm(8, groups=4)
    for _ in range(3):
        layer(torch.randn(4, 8, 3, 3) * 2 + 1)
    layer.eval()
    x = torch.randn(2, 8, 3, 3)
    scale, shift = layer.channel_affine()
    torch.testing.assert_close(layer(x), x * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))
    assert BatchGroupNorm(8, groups=16).channel_affine() is None   # groups inside channels


def test_no_running_stats_uses_batch_statistics_in_eval():
    layer = BatchGroupNorm(4, groups=2, track_running_stats=False).double().eval()
    x = torch.randn(3, 4, 5, dtype=torch.float64)
    expected, _, _ = bgn_reference(x, 2, layer.weight.detach(), layer.bias.detach(), 1e-5)
    torch.testing.assert_close(layer(x), expected)


@pytest.mark.parametrize("groups", [2, 8])
def test_float32_statistics_survive_a_large_mean(groups):
    # |mean| / std = 1e3: a one-pass E[x^2] - E[x]^2 would lose most digits in float32.
    x64 = torch.randn(4, 8, 6, 6, dtype=torch.float64) + 1000.0
    layer = BatchGroupNorm(8, groups=groups)
    expected, _, var = bgn_reference(x64, groups, torch.ones(8, dtype=torch.float64),
                                     torch.zeros(8, dtype=torch.float64), 1e-5)
    y = layer(x64.float())
    torch.testing.assert_close(y.double(), expected, rtol=0, atol=2e-3)


# -- groups="auto" ---------------------------------------------------------------------------

def _divides(g, c, s):
    return (c * s) % g == 0


@pytest.mark.parametrize("n,c,hw", [(2, 16, (8, 8)), (32, 16, (8, 8)), (128, 16, (4, 4)), (1, 3, (7, 7)),
                                    (5, 7, (3, 5)), (64, 6, (5,)), (3, 13, (1, 1))])
def test_auto_groups_rule_and_valid_for_odd_shapes(n, c, hw):
    import math

    from normlab.layers import BatchGroupNorm

    s = math.prod(hw)
    g = BatchGroupNorm.choose_groups(n, c, s, ref_batch=32)
    assert _divides(g, c, s) and g <= max(1, n * c * s // 2)
    # the rule, written out: the divisor of C*S nearest to N*C/32 in ratio
    target = n * c / 32
    divs = [d for d in range(1, c * s + 1) if (c * s) % d == 0 and d <= max(1, n * c * s // 2)]
    best = min(abs(math.log(d / target)) for d in divs)
    assert abs(abs(math.log(g / target)) - best) < 1e-12
    layer = BatchGroupNorm(c, groups="auto").train()
    x = torch.randn(n, c, *hw) * 3 + 1
    if n * c * s // g >= 2:
        y = layer(x)
        assert layer.groups == g and int(layer.chosen_groups) == g and layer.running_mean.shape == (g,)
        ref = BatchGroupNorm(c, groups=g).train()
        assert torch.allclose(y, ref(x), atol=1e-5)


def test_auto_groups_equal_batchnorm_at_the_reference_batch():
    from normlab.layers import BatchGroupNorm

    layer = BatchGroupNorm(8, groups="auto", ref_batch=16).train()
    x = torch.randn(16, 8, 5, 5)
    assert torch.allclose(layer(x), torch.nn.functional.batch_norm(x, None, None, layer.weight, layer.bias,
                                                                   True, 0.1, 1e-5), atol=1e-5)
    assert layer.groups == 8


def test_auto_groups_are_kept_and_round_trip_through_state_dict():
    from normlab.layers import BatchGroupNorm, create_norm

    layer = create_norm("bgn:groups=auto", 16).train()
    layer(torch.randn(4, 16, 6, 6))
    assert layer.groups == 2 and "auto->2" in repr(layer)
    layer(torch.randn(64, 16, 6, 6))                      # kept: not re-chosen for another batch
    assert layer.groups == 2
    fresh = BatchGroupNorm(16, groups="auto")
    fresh.load_state_dict(layer.state_dict())
    assert fresh.groups == 2 and torch.equal(fresh.running_var, layer.running_var)
    x = torch.randn(3, 16, 6, 6)
    assert torch.allclose(fresh.eval()(x), layer.eval()(x))
    with pytest.raises(ValueError, match="first training forward"):
        BatchGroupNorm(16, groups="auto").eval()(x)
    with pytest.raises(ValueError, match="positive integer or 'auto'"):
        BatchGroupNorm(16, groups="many")


def test_auto_groups_in_a_model_and_the_summary():
    from normlab.layers import norm_summary
    from normlab.models import create_model

    net = create_model("resnet20", norm="bgn:groups=AUTO", width=0.25, in_channels=1, num_classes=10)
    rows = norm_summary(net, torch.randn(2, 1, 28, 28))
    assert rows and all(r["groups"] == "auto->1" for r in rows)
    assert rows[0]["input"] == (2, 4, 28, 28)
    with torch.device("meta"):
        big = create_model("resnet20", norm="bgn:groups=auto", in_channels=3, num_classes=10)
        rows = norm_summary(big, torch.empty(128, 3, 32, 32))
    assert rows[0]["groups"] == "auto->64"
