"""torch.export of every layer, train and eval: outputs and running statistics equal to eager.

Layers with an eager fast path (hand-written backward, ``out=`` buffers, host-side step counter)
take their plain formula while exporting (``normlab.layers._common.tracing``); eager keeps the
fast path. Batch Renorm's r_max / d_max schedule runs on the device in the exported graph.
"""

import copy

import pytest
import torch

from normlab.layers import NORMS, BatchRenorm, create_norm
from normlab.layers._common import tracing

NAMES = list(NORMS)


def _spec(name):
    if "bgn" in name:
        return f"{name}:groups=4"
    if name in ("gn", "evonorm_s0"):
        return f"{name}:groups=2"
    if name == "brn":            # a short schedule, so the exported graph runs through its ramp
        return "brn:warmup_steps=1,r_max_steps=4,d_max_steps=3"
    return name


def _trained(spec, channels=8, steps=2):
    torch.manual_seed(0)
    layer = create_norm(spec, channels)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.rand_like(p) * 0.3)
    for _ in range(steps):                        # move running statistics off their init
        layer((torch.randn(4, channels, 6, 6) * 2 + 1).requires_grad_(True)).square().sum().backward()
    return layer


def _check_export(layer, shape, training, calls=3):
    layer.train(training)
    eager = copy.deepcopy(layer)
    x0 = torch.randn(shape) * 2 + 1
    ep = torch.export.export(copy.deepcopy(layer), (x0,))
    exported = ep.module()
    for _ in range(calls):                        # repeated calls: buffer updates carry over
        x = torch.randn(shape) * 2 + 1
        expected, got = eager(x), exported(x)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    want = dict(eager.named_buffers())
    for name, buf in exported.named_buffers():
        torch.testing.assert_close(buf, want[name], rtol=1e-5, atol=1e-6, msg=f"buffer {name}")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_export_matches_eager(name, training):
    _check_export(_trained(_spec(name)), (4, 8, 6, 6), training)


@pytest.mark.parametrize("name", ["bn", "bgn", "brn", "evonorm_b0"])
def test_export_ghost_batches(name):
    """The ghost-batch path (normalization batch 2 inside a batch of 6) exports in train mode."""
    layer = _trained(_spec(name))
    layer.norm_batch = 2
    _check_export(layer, (6, 8, 5, 5), True)


def test_export_brn_schedule_runs_on_device():
    """The exported Batch Renorm reads r_max / d_max from its step counter at run time: through the
    warm-up, the ramp and past the schedule's end, as eager does; no .item() in the graph."""
    layer = BatchRenorm(8, warmup_steps=1, r_max_steps=3, d_max_steps=2, r_max=1.5, d_max=0.5)
    layer.train()
    ep = torch.export.export(copy.deepcopy(layer), (torch.randn(4, 8, 3, 3),))
    targets = {str(n.target) for n in ep.graph_module.graph.nodes if n.op == "call_function"}
    for gm in ep.graph_module.modules():          # and inside the no-grad submodules
        targets |= {str(n.target) for n in getattr(gm, "graph", ep.graph).nodes if n.op == "call_function"}
    assert not any("aten.item" in t or "_local_scalar_dense" in t for t in targets), targets
    exported = ep.module()
    for _ in range(6):
        x = torch.randn(4, 8, 3, 3) * 3 + 2
        torch.testing.assert_close(exported(x), layer(x), rtol=1e-5, atol=1e-5)
        assert int(dict(exported.named_buffers())["num_batches_tracked"]) == int(layer.num_batches_tracked)
    assert int(layer.num_batches_tracked) == 3                     # saturated at the schedule's end


def test_limits_tensor_matches_limits():
    layer = BatchRenorm(4, warmup_steps=3, r_max_steps=9, d_max_steps=6)
    steps = torch.arange(0, 14)
    r, d = layer.limits_tensor(steps)
    for t in range(14):
        assert (float(r[t]), float(d[t])) == layer.limits(t)
    flat = BatchRenorm(4, warmup_steps=2, r_max_steps=2, d_max_steps=2)
    r, d = flat.limits_tensor(steps)
    assert [(float(a), float(b)) for a, b in zip(r, d)] == [flat.limits(t) for t in range(14)]


def test_eager_keeps_its_fast_path():
    """Outside tracing the layers run their hand-written backward (an autograd.Function node)."""
    assert not tracing()
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    for name in ("evonorm_b0", "evonorm_s0", "frn"):
        y = _trained(_spec(name), steps=0)(x)
        names, node = [], y.grad_fn
        while node is not None:
            names.append(type(node).__name__)
            node = node.next_functions[0][0] if node.next_functions else None
        assert any(n.endswith("FunctionBackward") for n in names), (name, names)


@pytest.mark.parametrize("name", ["evonorm_b0", "evonorm_s0", "frn"])
def test_jit_trace_takes_the_plain_formula(name):
    layer = _trained(_spec(name)).eval()
    x = torch.randn(2, 8, 5, 5)
    traced = torch.jit.trace(copy.deepcopy(layer), (x,), check_trace=False)
    x2 = torch.randn(2, 8, 5, 5)
    torch.testing.assert_close(traced(x2), layer(x2), rtol=1e-5, atol=1e-5)


def test_export_mabn_phases_run_on_device():
    """MABN's step, ring-buffer slot and phase (moving average, renormalisation) come from its
    step counter at run time in the exported graph: equal to eager through every phase."""
    layer = create_norm("mabn:buffer_size=2,warmup_iters=2,renorm_iters=3", 8)
    _check_export(layer, (4, 8, 3, 3), True, calls=6)
