"""convert_norms then fuse_norms on torchvision's resnet18 and on timm models."""

import pytest
import torch
from torch import nn

from normlab._compat import import_timm, import_torchvision
from normlab.layers import (BatchGroupNorm, BatchNorm, BatchRenorm, CenteredConv2d, EvoNormS0,
                            GroupNorm, MovingAverageBatchNorm, convert_norms, fuse_norms, is_norm)

tv = import_torchvision()
timm = import_timm()


def _warm(model, steps=3, shape=(8, 3, 32, 32)):
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(shape) * 2 + 0.5)
    return model.eval()


def _fuse(model, x):
    """Outputs before and after fuse_norms on the same input."""
    with torch.no_grad():
        before = model(x)
        fuse_norms(model)
        return before, model(x)


def _count(model, cls):
    return sum(isinstance(m, cls) for m in model.modules())


@pytest.mark.parametrize("spec,cls", [("bn", BatchNorm), ("bgn:groups=32", BatchGroupNorm),
                                      ("brn", BatchRenorm), ("mabn", MovingAverageBatchNorm)])
def test_resnet18_convert_then_fuse(spec, cls):
    torch.manual_seed(0)
    model = tv.models.resnet18(num_classes=10)
    n_bn = _count(model, nn.BatchNorm2d)
    with torch.no_grad():
        model.bn1.weight.uniform_(0.5, 1.5)
    w = model.bn1.weight.clone()
    convert_norms(model, spec)
    assert _count(model, nn.BatchNorm2d) == 0 and _count(model, cls) == n_bn
    torch.testing.assert_close(model.bn1.weight, w)   # affine copied
    if spec == "mabn":
        assert _count(model, CenteredConv2d) == _count(model, nn.Conv2d)
    _warm(model)
    before, after = _fuse(model, torch.randn(4, 3, 32, 32))
    assert _count(model, cls) == 0, "every norm after a conv should fold"
    assert _count(model, CenteredConv2d) == 0
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_resnet18_unfoldable_norms_stay():
    model = convert_norms(tv.models.resnet18(num_classes=10), "gn")
    _warm(model, 1)
    n = _count(model, GroupNorm)
    before, after = _fuse(model, torch.randn(2, 3, 32, 32))
    torch.testing.assert_close(after, before)
    assert _count(model, GroupNorm) == n


def test_fuse_requires_eval_mode():
    with pytest.raises(ValueError, match="eval"):
        fuse_norms(tv.models.resnet18().train())


def test_timm_norm_act_keeps_one_activation():
    model = timm.create_model("efficientnet_b0", num_classes=10)
    norm_act_cls = timm.layers.BatchNormAct2d
    n = _count(model, norm_act_cls)
    assert n > 0
    converted = convert_norms(timm.create_model("efficientnet_b0", num_classes=10), "evonorm_s0:groups=8")
    assert _count(converted, norm_act_cls) == 0
    assert _count(converted, EvoNormS0) == n
    # the EvoNorm replaces timm's activation: no SiLU sits right after any EvoNorm
    for mod in converted.modules():
        kids = list(mod.children())
        for a, b in zip(kids, kids[1:]):
            assert not (isinstance(a, EvoNormS0) and isinstance(b, nn.SiLU))
    acts_before = _count(model, nn.SiLU)
    plain = convert_norms(timm.create_model("efficientnet_b0", num_classes=10), "bgn:groups=8")
    assert _count(plain, nn.SiLU) == acts_before       # kept once, not doubled
    with torch.no_grad():
        converted.eval()(torch.randn(2, 3, 32, 32))


@pytest.mark.parametrize("name", ["efficientnet_b0", "resnet18"])
def test_timm_convert_then_fuse(name):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=10)
    convert_norms(model, "bgn:groups=8")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    _warm(model)
    before, after = _fuse(model, torch.randn(2, 3, 32, 32))
    assert _count(model, BatchGroupNorm) == 0
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_fuse_timm_batchnorm_act_directly():
    model = _warm(timm.create_model("efficientnet_b0", num_classes=10))
    before, after = _fuse(model, torch.randn(2, 3, 32, 32))
    assert _count(model, timm.layers.BatchNormAct2d) == 0
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_converting_a_norm_act_layer_back_keeps_a_nonlinearity():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), EvoNormS0(8, groups=4))
    convert_norms(model, "bn")
    assert isinstance(model[1], nn.Sequential) and isinstance(model[1][1], nn.ReLU)
    assert is_norm(model[1][0])


def test_untraceable_model_falls_back_to_sequential_pairs():
    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())

        def forward(self, x):
            if x.sum() > 0:        # data-dependent control flow defeats torch.fx
                return self.body(x)
            return self.body(-x)

    model = _warm(Dynamic(), shape=(4, 3, 8, 8))
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    with pytest.warns(UserWarning, match="could not trace"):
        fuse_norms(model)
    assert isinstance(model.body[1], nn.Identity)
    torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)


class _Head(nn.Module):
    """A classifier head over (N, C) features after a functional flatten (what fx must see)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)
        self.fc, self.feat = nn.Linear(8, 16), nn.BatchNorm1d(16)

    def forward(self, x):
        x = torch.flatten(torch.relu(self.bn(self.conv(x))).mean((2, 3), keepdim=True), 1)
        return self.feat(self.fc(x))


def test_convert_refuses_a_norm_that_cannot_take_the_n_c_features_of_a_batchnorm1d():
    """Issue 28: 'in' on a BatchNorm1d over (N, C) converted silently and failed at the first
    forward; now the conversion is refused, naming the layer. BatchNorm1d over (N, C, L) converts."""
    seq = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                        nn.Linear(8, 16), nn.BatchNorm1d(16))
    for model, name in ((seq, "'5'"), (_Head(), "'feat'")):
        with pytest.raises(ValueError, match=f"layer {name} \\(BatchNorm1d\\(16\\)\\) normalizes \\(N, C\\)"):
            convert_norms(model, "in")
        assert isinstance(model.get_submodule(name.strip("'")), nn.BatchNorm1d)      # left untouched
        convert_norms(model, "gn:groups=4")                                          # (N, C) is fine for gn
        assert model(torch.randn(2, 3, 8, 8)).shape[-1] == 16
    seq1d = convert_norms(nn.Sequential(nn.Conv1d(3, 8, 3), nn.BatchNorm1d(8)), "in")
    assert seq1d(torch.randn(2, 3, 10)).shape == (2, 8, 8)
