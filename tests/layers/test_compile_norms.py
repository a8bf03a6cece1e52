"""compile_norms: every norm of a model compiled in place (inductor, fullgraph), the rest eager;
outputs, gradients and running statistics equal to the eager model."""

import copy

import pytest
import torch
from torch import nn

import normlab
from conftest import assert_trains_like
from normlab.layers import GroupNorm, compile_norms, create_norm, is_norm


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), create_norm("bn", 8), nn.ReLU(),
                         nn.Conv2d(8, 8, 3, padding=1), create_norm("evonorm_s0:groups=2", 8),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def _compiled(module):
    return getattr(module, "_compiled_call_impl", None) is not None


@pytest.mark.slow
def test_compiled_norms_match_eager_and_the_rest_stays_eager():
    torch._dynamo.reset()
    eager = _model()
    model = copy.deepcopy(eager)
    assert normlab.compile_norms(model) is model
    assert [i for i, m in enumerate(model) if _compiled(m)] == [1, 4]      # the two norms, nothing else
    assert not _compiled(model)
    assert model.state_dict().keys() == eager.state_dict().keys()
    assert_trains_like(eager, model, model, (6, 3, 6, 6), steps=2, atol=1e-5, grad_atol=1e-5, buffer_atol=1e-6)


class _Breaking(GroupNorm):
    def forward(self, x):
        torch._dynamo.graph_break()
        return super().forward(x)


def test_a_graph_break_in_a_norm_fails_under_fullgraph():
    torch._dynamo.reset()
    norm = _Breaking(4, groups=2)
    model = compile_norms(nn.Sequential(nn.Conv2d(2, 4, 1), norm))
    assert is_norm(norm) and _compiled(norm) and not _compiled(model[0])
    with pytest.raises(torch._dynamo.exc.Unsupported):
        model(torch.randn(2, 2, 3, 3))


def test_a_norm_model_compiles_itself_and_bad_input_is_named():
    torch._dynamo.reset()
    for spec in ("gn:groups=2", "evolved:compile=true"):       # the evolved layer's `compile` is a flag
        norm = create_norm(spec, 4)
        assert compile_norms(norm) is norm and _compiled(norm)
    with pytest.raises(TypeError, match="expects a torch.nn.Module, got str"):
        compile_norms("resnet20")
