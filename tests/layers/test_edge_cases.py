"""Edge cases every layer handles like torch's BatchNorm: half precision on the CPU, empty batches,
non-finite hyper-parameters; and convert_norms on models it has nothing to do with."""

import warnings

import pytest
import torch
from torch import nn

from normlab.layers import available_norms, convert_norms, create_norm

NORMS = [n for n in available_norms() if n != "sync_bgn"] + ["bgn:groups=2", "bgn:groups=8", "bgn:groups=3",
                                                            "gn:groups=2"]


def _buffers(m):
    return {k: v.clone() for k, v in m.named_buffers()}


@pytest.mark.parametrize("spec", NORMS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_parameters_train_on_cpu_like_batchnorm(spec, dtype):
    torch.manual_seed(0)
    layer = create_norm(spec, 8).to(dtype).train()
    x = (torch.randn(4, 8, 6, 6) * 2 + 1).to(dtype).requires_grad_()
    y = layer(x)
    assert y.dtype == dtype and y.shape == x.shape and torch.isfinite(y.float()).all()
    y.float().square().mean().backward()
    assert x.grad.dtype == dtype and torch.isfinite(x.grad.float()).all()
    for p in layer.parameters():
        assert p.grad is None or p.grad.dtype == dtype
    # and it agrees with the float32 layer to half precision
    ref = create_norm(spec, 8).train()
    ref.load_state_dict({k: v.float() for k, v in create_norm(spec, 8).state_dict().items()})
    want = ref(x.detach().float())
    tol = 0.05 if dtype == torch.float16 else 0.15
    assert torch.allclose(y.float(), want, atol=tol, rtol=tol), (y.float() - want).abs().max()
    ref = nn.BatchNorm2d(8).to(dtype).train()          # the behaviour we match
    assert ref(x.detach()).dtype == dtype


@pytest.mark.parametrize("spec", NORMS)
@pytest.mark.parametrize("train", [True, False])
def test_empty_batch_returns_empty_and_leaves_statistics(spec, train):
    layer = create_norm(spec, 8).train(train)
    layer(torch.randn(8, 8, 6, 6))                      # some real statistics first
    before = _buffers(layer)
    x = torch.randn(0, 8, 6, 6, requires_grad=True)
    y = layer(x)
    assert y.shape == (0, 8, 6, 6)
    after = _buffers(layer)
    for k in before:
        assert torch.equal(before[k], after[k]) or (before[k].isnan().any() and after[k].isnan().any()), k
        assert not after[k].is_floating_point() or not after[k].isnan().any(), k
    y.sum().backward()                                  # still part of the graph
    assert x.grad.shape == x.shape


@pytest.mark.parametrize("name", [n for n in available_norms() if n not in ("sync_bgn", "evonorm_b0", "evonorm_s0",
                                                                            "frn")] + ["evonorm_b0", "frn"])
@pytest.mark.parametrize("eps", [float("inf"), float("nan"), -1.0, 0.0])
def test_non_finite_or_non_positive_eps_is_rejected(name, eps):
    with pytest.raises(ValueError) as info:
        create_norm(f"{name}", 4, eps=eps)
    assert "eps" in str(info.value) and "\n" not in str(info.value)


def test_convert_norms_on_a_model_without_norms_warns_and_changes_nothing():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3))
    before = [type(m) for m in model.modules()]
    with pytest.warns(UserWarning, match="no normalization layer"):
        out = convert_norms(model, "mabn")             # mabn would centre convs: not here
    assert out is model and [type(m) for m in model.modules()] == before
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # a model with norms converts silently
        convert_norms(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), "gn:groups=2")


def test_convert_norms_of_none_is_a_clear_error():
    with pytest.raises(TypeError, match="expects an nn.Module, got NoneType"):
        convert_norms(None, "bgn")
