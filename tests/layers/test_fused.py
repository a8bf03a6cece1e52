"""The hand-written fast paths (custom autograd Functions) against formulas in float64:
BGN's statistics-only forward and two-pass backward, Batch Renorm through affine_batch_norm,
PositionalNorm over the channel dim, MABN's backward from one reduction."""

import pytest
import torch

from normlab.layers import BatchGroupNorm, BatchRenorm, PositionalNorm
from normlab.layers._fused import affine_batch_norm, batch_stats

D = torch.float64


def _cv(t, nd):
    return t.view((1, -1) + (1,) * (nd - 2))


@pytest.mark.parametrize("shape", [(5, 3, 4, 2), (3, 8, 96, 64), (1, 4, 200, 200)])
def test_batch_stats_are_the_biased_per_channel_moments(shape):
    # small inputs take BatchNorm's kernel, large ones (>= 2^17 values) GroupNorm's per
    # (sample, channel) moments combined over the batch
    x = torch.randn(shape, dtype=D) * 3 + 2
    x[:, 0] = 7.0                                          # a constant channel: variance exactly 0
    mean, var = batch_stats(x)
    torch.testing.assert_close(mean, x.mean(dim=(0, 2, 3)))
    torch.testing.assert_close(var, x.var(dim=(0, 2, 3), unbiased=False))
    assert var[0] == 0
    mean32, var32 = batch_stats(x.float())
    torch.testing.assert_close(mean32, mean.float(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(var32, var.float(), rtol=1e-5, atol=1e-5)


def test_affine_batch_norm_output_and_gradcheck():
    x = (torch.randn(4, 3, 5, dtype=D) * 2 + 1).requires_grad_(True)
    w = torch.rand(3, dtype=D, requires_grad=True)
    b = torch.randn(3, dtype=D, requires_grad=True)

    def f(x, w, b):
        mean, var = batch_stats(x)
        return affine_batch_norm(x, mean, var, w, b, 1e-5)

    mu = x.detach().mean(dim=(0, 2), keepdim=True)
    var = x.detach().var(dim=(0, 2), unbiased=False, keepdim=True)
    expected = (x.detach() - mu) / torch.sqrt(var + 1e-5) * _cv(w.detach(), 3) + _cv(b.detach(), 3)
    torch.testing.assert_close(f(x, w, b), expected)
    assert torch.autograd.gradcheck(f, (x, w, b), eps=1e-6, atol=1e-6)


def _bgn_reference(x, g, w, b, eps):
    n = x.shape[0]
    xv = x.reshape(n, g, -1)
    mu = xv.mean(dim=(0, 2), keepdim=True)
    var = xv.var(dim=(0, 2), unbiased=False, keepdim=True)
    y = ((xv - mu) / torch.sqrt(var + eps)).reshape(x.shape)
    if w is not None:
        y = y * _cv(w, x.dim()) + _cv(b, x.dim())
    return y, mu.flatten(), var.flatten()


@pytest.mark.parametrize("shape,groups", [((3, 4, 2, 3), 2), ((3, 4, 2, 3), 4), ((5, 6), 3),
                                          ((2, 4, 7), 1), ((2, 6, 2, 1, 3), 3)])
@pytest.mark.parametrize("affine", [True, False])
def test_bgn_whole_channel_groups_match_formula_and_gradcheck(shape, groups, affine):
    layer = BatchGroupNorm(shape[1], groups=groups, affine=affine, momentum=0.3).double()
    if affine:
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(shape, dtype=D) * 2 + 1).requires_grad_(True)
    dy = torch.randn(shape, dtype=D)
    w = layer.weight if affine else None
    b = layer.bias if affine else None
    xr = x.detach().clone().requires_grad_(True)
    wr = w.detach().clone().requires_grad_(True) if affine else None
    br = b.detach().clone().requires_grad_(True) if affine else None
    expected, mu, var = _bgn_reference(xr, groups, wr, br, layer.eps)
    y = layer(x)
    torch.testing.assert_close(y, expected)
    y.backward(dy)
    expected.backward(dy)
    torch.testing.assert_close(x.grad, xr.grad)
    if affine:
        torch.testing.assert_close(layer.weight.grad, wr.grad)
        torch.testing.assert_close(layer.bias.grad, br.grad)
    count = x.numel() // groups
    torch.testing.assert_close(layer.running_mean, 0.3 * mu.detach())
    torch.testing.assert_close(layer.running_var, 0.7 + 0.3 * var.detach() * count / (count - 1))
    params = tuple(layer.parameters())
    assert torch.autograd.gradcheck(lambda t, *_: layer(t), (x, *params), eps=1e-6, atol=1e-6)
    layer.eval()
    xe = torch.randn(shape, dtype=D)
    rm, rv = _cv(layer.running_mean, 3), _cv(layer.running_var, 3)
    ye = ((xe.reshape(shape[0], groups, -1) - rm) / torch.sqrt(rv + layer.eps)).reshape(shape)
    if affine:
        ye = ye * _cv(layer.weight.detach(), len(shape)) + _cv(layer.bias.detach(), len(shape))
    torch.testing.assert_close(layer(xe), ye)


@pytest.mark.parametrize("norm_batch", [None, 2])
def test_batch_renorm_with_active_r_and_d_matches_autograd_formula(norm_batch):
    c = 4
    layer = BatchRenorm(c, momentum=0.2, r_max=1.5, d_max=0.5, warmup_steps=0, r_max_steps=0,
                        d_max_steps=0, norm_batch=norm_batch).double()
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
        layer.running_mean.uniform_(-1, 1)
        layer.running_var.uniform_(0.2, 3)
        layer.num_batches_tracked.fill_(1)        # past the (empty) warm-up: full r_max, d_max
    rm, rv = layer.running_mean.clone(), layer.running_var.clone()
    x = (torch.randn(6, c, 3, 3, dtype=D) * 2 + 1).requires_grad_(True)
    dy = torch.randn(6, c, 3, 3, dtype=D)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = layer.bias.detach().clone().requires_grad_(True)
    xr = x.detach().clone().requires_grad_(True)
    outs = []
    for part in (xr.split(norm_batch) if norm_batch else (xr,)):       # sequential micro-batches
        mu = part.mean(dim=(0, 2, 3))
        var = part.var(dim=(0, 2, 3), unbiased=False)
        sb = torch.sqrt(var + layer.eps)
        run_std = torch.sqrt(rv + layer.eps)
        r = (sb / run_std).clamp(1 / 1.5, 1.5).detach()
        d = ((mu - rm) / run_std).clamp(-0.5, 0.5).detach()
        assert (r != 1).any() and (d != 0).any()
        outs.append(((part - _cv(mu, 4)) / _cv(sb, 4) * _cv(r, 4) + _cv(d, 4)) * _cv(w, 4) + _cv(b, 4))
        m = part.numel() // c
        rm = 0.8 * rm + 0.2 * mu.detach()
        rv = 0.8 * rv + 0.2 * var.detach() * m / (m - 1)
    expected = torch.cat(outs)
    y = layer(x)
    torch.testing.assert_close(y, expected)
    y.backward(dy)
    expected.backward(dy)
    torch.testing.assert_close(x.grad, xr.grad)
    torch.testing.assert_close(layer.weight.grad, w.grad)
    torch.testing.assert_close(layer.bias.grad, b.grad)
    torch.testing.assert_close(layer.running_mean, rm)
    torch.testing.assert_close(layer.running_var, rv)


@pytest.mark.parametrize("shape", [(3, 5, 4, 2), (4, 6), (2, 3, 7)])
@pytest.mark.parametrize("affine", [True, False])
def test_positional_norm_matches_formula_and_gradcheck(shape, affine):
    layer = PositionalNorm(shape[1], affine=affine).double()
    if affine:
        with torch.no_grad():
            layer.weight.uniform_(0.5, 1.5)
            layer.bias.uniform_(-0.5, 0.5)
    x = (torch.randn(shape, dtype=D) * 2 + 1).requires_grad_(True)
    mu = x.detach().mean(dim=1, keepdim=True)
    var = x.detach().var(dim=1, unbiased=False, keepdim=True)
    expected = (x.detach() - mu) / torch.sqrt(var + layer.eps)
    if affine:
        expected = expected * _cv(layer.weight.detach(), len(shape)) + _cv(layer.bias.detach(), len(shape))
    torch.testing.assert_close(layer(x), expected)
    params = tuple(layer.parameters())
    assert torch.autograd.gradcheck(lambda t, *_: layer(t), (x, *params), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_positional_norm_low_precision_computes_in_float32(dtype):
    x = torch.randn(2, 6, 3, 3) * 3 + 1
    y = PositionalNorm(6)(x.to(dtype))
    assert y.dtype == dtype
    ref = PositionalNorm(6).double()(x.double())
    torch.testing.assert_close(y.double(), ref, rtol=0.05, atol=0.05)


@pytest.mark.parametrize("kwargs", [{"affine": False}, {"track_running_stats": False},
                                    {"momentum": 0.5}])
def test_ghost_batchnorm_variants_equal_micro_batches(kwargs):
    from normlab.layers import BatchNorm

    ghost = BatchNorm(4, **kwargs).double()
    micro = BatchNorm(4, **kwargs).double()
    micro.load_state_dict(ghost.state_dict())
    ghost.norm_batch = 2
    for _ in range(2):
        x = (torch.randn(7, 4, 3, 3, dtype=D) * 2 + 1).requires_grad_(True)
        x2 = x.detach().clone().requires_grad_(True)
        dy = torch.randn(7, 4, 3, 3, dtype=D)
        y, ys = ghost(x), torch.cat([micro(c) for c in x2.split(2)])
        torch.testing.assert_close(y, ys)
        y.backward(dy)
        ys.backward(dy)
        torch.testing.assert_close(x.grad, x2.grad)
    for u, v in zip(ghost.buffers(), micro.buffers()):
        torch.testing.assert_close(u, v)


@pytest.mark.parametrize("spec", ["bn", "bgn:groups=2", "brn"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ghost_low_precision_input_stays_close_to_float64(spec, dtype):
    from normlab.layers import create_norm

    ref = create_norm(spec, 4).double()
    layer = create_norm(spec, 4)
    layer.norm_batch = ref.norm_batch = 2
    x = torch.randn(8, 4, 5, 5) * 2 + 1
    y = layer(x.to(dtype))
    assert y.dtype == dtype
    tol = 1e-4 if dtype == torch.float32 else 8e-2
    torch.testing.assert_close(y.double(), ref(x.to(dtype).double()), rtol=tol, atol=tol)
    for u, v in zip(layer.buffers(), ref.buffers()):
        assert u.dtype in (torch.float32, torch.long)
        torch.testing.assert_close(u.double(), v.double(), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("spec", ["bn", "bgn:groups=2", "brn", "mabn", "pn", "evonorm_b0",
                                  "evonorm_s0:groups=2", "frn"])
@pytest.mark.parametrize("norm_batch", [None, 2])
def test_outputs_can_be_modified_in_place(spec, norm_batch):
    """An in-place ReLU or residual add after the layer (the output is not a view made inside a
    custom Function, which autograd forbids modifying)."""
    from normlab.layers import create_norm

    layer = create_norm(spec, 4)
    if norm_batch and hasattr(layer, "norm_batch"):
        layer.norm_batch = norm_batch
    x = torch.randn(6, 4, 3, 3, requires_grad=True)
    y = layer(x)
    y.add_(1.0).relu_()
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("spec", ["bn", "bgn:groups=2", "bgn:groups=auto", "mabn", "pn", "frn", "evonorm_b0",
                                  "evonorm_s0:groups=2", "gn:groups=2", "bn:norm_batch=2", "bgn:groups=2,norm_batch=2"])
def test_every_layer_runs_on_the_meta_device(spec):
    """normlab validates a whole plan by running every model on the meta device before training:
    each layer's training forward must have meta kernels (or fall back to ops that do). Batch
    Renorm reads its step count (.item()) and is skipped by the validation, by design."""
    from normlab.layers import create_norm

    with torch.device("meta"):
        layer = create_norm(spec, 8)
        x = torch.empty(4, 8, 5, 5, requires_grad=True)
    layer.train()
    y = layer(x)
    assert y.shape == x.shape and y.device.type == "meta"
    y.sum().backward()
    assert x.grad.shape == x.shape
