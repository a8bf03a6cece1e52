"""What every layer promises: dtypes, float32 statistics, state_dict, gradcheck, torch.compile."""

import copy

import pytest
import torch

from conftest import assert_trains_like
from normlab.layers import NORMS, create_norm

NAMES = list(NORMS)


def _make(name, channels=8):
    spec = f"{name}:groups=4" if "bgn" in name else (f"{name}:groups=2" if name in ("gn", "evonorm_s0") else name)
    torch.manual_seed(0)
    layer = create_norm(spec, channels)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.rand_like(p) * 0.3)
    return layer


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("shape", [(4, 8, 16), (4, 8, 6, 6), (2, 8, 3, 4, 4)])
def test_low_precision_matches_float64(name, dtype, shape):
    ref, layer = _make(name).double(), _make(name)
    x64 = torch.randn(shape, dtype=torch.float64) * 2 + 1
    x = x64.to(dtype)
    for training in (True, False):
        ref.train(training), layer.train(training)
        expected = ref(x.double())
        got = layer(x)
        assert got.dtype == dtype
        tol = {torch.float16: 2e-2, torch.bfloat16: 8e-2, torch.float32: 1e-4}[dtype]
        torch.testing.assert_close(got.double(), expected, rtol=tol, atol=tol)
    for buf in layer.buffers():
        assert buf.dtype in (torch.float32, torch.long)   # statistics stay in float32


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    a = _make(name)
    for _ in range(3):
        a((torch.randn(4, 8, 5, 5) + 1).requires_grad_(True)).sum().backward()
    b = create_norm(f"{name}:groups=4" if "bgn" in name else (f"{name}:groups=2" if name in ("gn", "evonorm_s0") else name), 8)
    b.load_state_dict(copy.deepcopy(a.state_dict()))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    a.eval(), b.eval()
    x = torch.randn(2, 8, 5, 5)
    assert torch.equal(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_gradcheck_float64(name, device):
    layer = _make(name).double()
    if name == "mabn":
        layer = create_norm("mabn:warmup_iters=1000000,renorm_iters=1000000", 8).double()
    x = (torch.randn(3, 8, 3, 2, dtype=torch.float64) * 2 + 0.5).requires_grad_(True)
    if name == "frn":
        x = x.detach().abs().add(0.5).requires_grad_(True)
    params = tuple(p for p in layer.parameters())
    for training in (True, False):
        layer.train(training)
        # running statistics change at each training call but do not feed the training output
        assert torch.autograd.gradcheck(lambda t, *_: layer(t), (x, *params), eps=1e-6, atol=1e-5)


def _compile_matches_eager(eager, compiled_layer, shape, steps=3):
    """torch.compile(fullgraph=True): a graph break fails; train forward+backward for a few steps
    (running statistics carried), then eval, all equal to eager."""
    torch._dynamo.reset()
    compiled = torch.compile(compiled_layer, fullgraph=True)
    assert_trains_like(eager, compiled_layer, compiled, shape, steps=steps)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_torch_compile(name):
    _compile_matches_eager(_make(name), _make(name), (4, 8, 6, 6))


@pytest.mark.slow
@pytest.mark.parametrize("name, interleaved", [("bn", False), ("bgn", False), ("brn", False),
                                               ("evonorm_b0", False), ("bgn", True)])
def test_torch_compile_ghost_batches(name, interleaved):
    """The ghost-batch path (statistics over groups of 2 in a batch of 7: three groups and a
    remainder) compiles with fullgraph=True and matches eager."""
    from normlab.layers.ghost import set_norm_batch

    eager, compiled_layer = _make(name), _make(name)
    for layer in (eager, compiled_layer):
        set_norm_batch(layer, 2, interleaved=interleaved)
    _compile_matches_eager(eager, compiled_layer, (7, 8, 4, 4))


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["brn:warmup_steps=1,r_max_steps=4,d_max_steps=3",
                                  "mabn:buffer_size=2,warmup_iters=2,renorm_iters=3"])
def test_torch_compile_through_the_schedule(spec):
    """Batch Renorm and MABN compile once, not once per step: ten steps (more than dynamo's
    recompile limit of 8) through Batch Renorm's ramp and MABN's three phases (batch statistics,
    moving averages, renormalisation), fullgraph, with inputs, parameter gradients and buffers
    (MABN's ring buffers, the one of E[g z] written in the backward) equal to eager; an eager step
    after compiled ones continues from the counter."""
    torch.manual_seed(0)
    eager, compiled_layer = create_norm(spec, 8), create_norm(spec, 8)
    _compile_matches_eager(eager, compiled_layer, (4, 8, 3, 3), steps=10)
    eager.train(), compiled_layer.train()
    x = torch.randn(4, 8, 3, 3)
    torch.testing.assert_close(compiled_layer(x), eager(x), rtol=1e-4, atol=1e-4)
    assert int(compiled_layer.num_batches_tracked) == int(eager.num_batches_tracked)
