import pytest
import torch
from torch import nn

from normlab.layers import EvoNormS0, GroupNorm
from normlab.models import ModelError, available_models, create_model, profile


@pytest.mark.parametrize("name", available_models())
@pytest.mark.parametrize("norm", ["bn", "bgn:groups=4", "evonorm_s0:groups=4"])
def test_models_build_train_and_eval(name, norm):
    width = 0.25 if name == "resnet50v2" else 0.5
    model = create_model(name, norm=norm, num_classes=7, width=width)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    model.eval()
    assert model(x).shape == (2, 7)


def test_grey_small_images():
    model = create_model("resnet20", in_channels=1, num_classes=10, width=0.5)
    assert model(torch.randn(3, 1, 28, 28)).shape == (3, 10)
    assert create_model("resnet20", in_channels=1)(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_every_norm_slot_goes_through_norm_act():
    gn = create_model("resnet20", norm="gn:groups=4")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in gn.modules())
    n_gn = sum(isinstance(m, GroupNorm) for m in gn.modules())
    assert n_gn == 19 + 2                              # 19 convs' norms + 2 projection shortcuts
    for name in ("resnet20", "resnet50v2"):
        evo = create_model(name, norm="evonorm_s0:groups=4", width=0.25)
        # EvoNorm replaces every activation: no ReLU is left
        assert not any(isinstance(m, nn.ReLU) for m in evo.modules())
        assert any(isinstance(m, EvoNormS0) and m.apply_act for m in evo.modules())
    plain = create_model("resnet20", norm="bn")
    assert sum(isinstance(m, nn.ReLU) for m in plain.modules()) > 0


def test_profile_counts_with_torch_flop_counter():
    tiny = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(8 * 16 * 16, 10))
    p = profile(tiny, (1, 3, 16, 16))
    conv_flops = 2 * 3 * 8 * 9 * 16 * 16
    linear_flops = 2 * 8 * 16 * 16 * 10
    assert p.flops == conv_flops + linear_flops
    assert p.params == 3 * 8 * 9 + 8 * 16 * 16 * 10 + 10
    r20 = profile(create_model("resnet20"), (1, 3, 32, 32))
    assert 0.26e6 < r20.params < 0.29e6                 # the paper's 0.27M
    assert 75e6 < r20.flops < 90e6                     # about 41M multiply-adds


def test_bad_model_arguments():
    with pytest.raises(ModelError, match="unknown model 'resnet18'; known models: resnet20"):
        create_model("resnet18")
    with pytest.raises(ModelError, match="width"):
        create_model("resnet20", width=0)
    with pytest.raises(ValueError, match="unknown norm"):
        create_model("resnet20", norm="batchnorm")


def test_mabn_models_use_centred_convolutions():
    from normlab.layers import CenteredConv2d, MovingAverageBatchNorm

    model = create_model("resnet20", norm="mabn", width=0.25)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(isinstance(m, CenteredConv2d) for m in convs)
    assert any(isinstance(m, MovingAverageBatchNorm) for m in model.modules())
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)
