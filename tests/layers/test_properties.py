"""Property tests over shapes, batch sizes and magnitudes (hypothesis)."""

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from normlab.layers import NORMS, BatchGroupNorm, create_norm

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PER_SAMPLE = [n for n, info in NORMS.items() if not info.batch_dependent]


def _spec(name, channels):
    return f"{name}:groups=1" if "bgn" in name else name


@st.composite
def shapes(draw, min_batch=1):
    n = draw(st.integers(min_batch, 4))
    c = draw(st.integers(1, 9))
    spatial = draw(st.lists(st.integers(2, 5), min_size=1, max_size=3))
    return (n, c, *spatial)


@SETTINGS
@given(shape=shapes(), name=st.sampled_from(PER_SAMPLE + ["bgn", "mabn", "evonorm_b0"]))
def test_any_batch_size_and_odd_channels_train(shape, name):
    layer = create_norm(_spec(name, shape[1]), shape[1])
    x = torch.randn(shape, requires_grad=True)
    y = layer(x)
    y.square().sum().backward()
    assert y.shape == x.shape
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()


@SETTINGS
@given(shape=shapes(), name=st.sampled_from(PER_SAMPLE))
def test_per_sample_layers_ignore_the_batch(shape, name):
    layer = create_norm(name, shape[1]).eval()
    x = torch.randn(shape)
    whole = layer(x)
    alone = torch.cat([layer(x[i:i + 1]) for i in range(shape[0])])
    torch.testing.assert_close(whole, alone)


@SETTINGS
@given(c=st.integers(2, 64), g=st.integers(2, 64))
def test_non_divisible_groups_fail_clearly(c, g):
    if c % g == 0:
        assert create_norm(f"gn:groups={g}", c).groups == g
        return
    with pytest.raises(ValueError, match=rf"groups={g} does not divide num_channels={c}; nearest valid groups: \d+"):
        create_norm(f"gn:groups={g}", c)


@SETTINGS
@given(c=st.integers(1, 12), spatial=st.integers(1, 6), g=st.integers(1, 80))
def test_bgn_groups_must_divide_features(c, spatial, g):
    layer = BatchGroupNorm(c, groups=g)
    x = torch.randn(2, c, spatial, spatial)
    if (c * spatial * spatial) % g == 0:
        assert layer(x).shape == x.shape
    else:
        with pytest.raises(ValueError, match="nearest valid groups"):
            layer(x)


@SETTINGS
@given(shape=shapes(min_batch=2), name=st.sampled_from(list(NORMS)),
       scale=st.sampled_from([1e-30, 1e-12, 1e-4, 1e4, 1e12, 1e18]))
def test_huge_and_tiny_magnitudes_stay_finite(shape, name, scale):
    layer = create_norm(_spec(name, shape[1]), shape[1])
    x = torch.randn(shape) * scale
    for training in (True, False):
        y = layer.train(training)(x)
        assert torch.isfinite(y).all(), (name, scale, training)
