"""Ghost batches equal sequential micro-batches: outputs, every gradient, the running statistics
after the step, and num_batches_tracked; for batches that are and are not multiples of b."""

import copy

import pytest
import torch
from torch import nn

from normlab.layers import create_norm
from normlab.layers.ghost import interleave, interleave_order, set_norm_batch, unsupported_norm_batch

SPECS = ["bn", "bgn:groups=4", "bgn:groups=1", "bgn:groups=3", "bgn:groups=24", "bgn:groups=auto",
         "brn:warmup_steps=0,r_max_steps=4,d_max_steps=4,r_max=1.5,d_max=0.5", "evonorm_b0"]


def _randomize(layer, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.rand(p.shape, generator=g, device="cpu") + 0.5)
        for name, b in layer.named_buffers():
            if b.is_floating_point() and b.numel():
                b.copy_(torch.rand(b.shape, generator=g, device="cpu") + 0.5)


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("n,b,shape", [(8, 2, (6, 4, 4)), (7, 2, (6, 4, 4)), (10, 4, (6, 4)), (9, 3, (6, 2, 2, 2)),
                                       (3, 8, (6, 4, 4)), (7, 2, (6, 64, 64))])      # the last: one call per group
@pytest.mark.parametrize("interleaved", [False, True], ids=["consecutive", "interleaved"])
def test_ghost_batches_equal_sequential_micro_batches(spec, n, b, shape, interleaved, device):
    """interleaved: the layer is fed ``interleave(x, b)`` (what fit() does) and must give the
    same groups: its output is the micro-batch output in the interleaved order."""
    torch.manual_seed(0)
    ghost = create_norm(spec, shape[0]).train().double()
    _randomize(ghost, 1)
    micro = copy.deepcopy(ghost)
    set_norm_batch(ghost, b, interleaved=interleaved)
    order = (lambda t: interleave(t, b)) if interleaved else (lambda t: t)
    for step in range(3):                                    # several steps: running stats feed r, d (BRN)
        x = (torch.randn(n, *shape, dtype=torch.float64) * 2 + 0.5).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        up = order(torch.randn(n, *shape, dtype=torch.float64))
        y = ghost(order(x))
        ys = order(torch.cat([micro(c) for c in x2.split(b)]))
        torch.testing.assert_close(y, ys)
        (y * up).sum().backward()
        (ys * up).sum().backward()
        torch.testing.assert_close(x.grad, x2.grad)
        for (name, p), q in zip(ghost.named_parameters(), micro.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=name)
        for (name, u), v in zip(ghost.named_buffers(), micro.buffers()):
            assert torch.equal(u, v) if not u.is_floating_point() else torch.allclose(u, v), name
    ghost.eval(), micro.eval()
    x = torch.randn(5, *shape, dtype=torch.float64)
    torch.testing.assert_close(ghost(x), micro(x))           # eval is unaffected


def test_interleave_order():
    assert interleave_order(8, 2).tolist() == [0, 2, 4, 6, 1, 3, 5, 7]   # group j at j, j + 4
    assert interleave_order(7, 2).tolist() == [0, 2, 4, 1, 3, 5, 6]      # the remainder stays last
    assert interleave_order(3, 8).tolist() == [0, 1, 2]
    t = torch.arange(9)
    assert sorted(interleave(t, 3).tolist()) == t.tolist()


def test_set_norm_batch_and_what_cannot_follow():
    from normlab.models import create_model

    net = create_model("resnet20", norm="bgn:groups=4", width=0.25, in_channels=1, num_classes=10)
    assert set_norm_batch(net, 2) == []
    assert all(m.norm_batch == 2 for m in net.modules() if hasattr(m, "norm_batch"))
    set_norm_batch(net, None)
    assert all(m.norm_batch is None for m in net.modules() if hasattr(m, "norm_batch"))
    mixed = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), create_norm("mabn", 4), create_norm("gn:groups=2", 4))
    assert unsupported_norm_batch(mixed) == ["1 (BatchNorm2d)", "2 (MovingAverageBatchNorm)"]
    with pytest.raises(ValueError, match="norm_batch=0"):
        set_norm_batch(net, 0)
    assert create_norm("bn:norm_batch=4", 3).norm_batch == 4


def test_too_small_ghost_batch_is_one_clear_error():
    layer = create_norm("bn", 3).train()
    layer.norm_batch = 1
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        layer(torch.randn(4, 3))


def test_set_norm_batch_is_exported_at_the_top_level_and_from_layers():
    import normlab
    import normlab.layers

    assert normlab.set_norm_batch is set_norm_batch and normlab.layers.set_norm_batch is set_norm_batch
    assert "set_norm_batch" in normlab.__all__ and "set_norm_batch" in normlab.layers.__all__
