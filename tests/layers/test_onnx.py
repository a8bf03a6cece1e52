"""ONNX: every layer in eval, and resnet20 / mobilenetv2 with each norm before and after
fuse_norms, exported with torch.onnx.export (the dynamo exporter) and run in onnxruntime: outputs
equal to eager within float32 tolerance. Skipped without the onnx extra (pip install 'normlab[onnx]')."""

import copy
import warnings

import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from normlab.layers import NORMS, create_norm, fuse_norms, is_norm  # noqa: E402
from normlab.models import create_model  # noqa: E402

NAMES = list(NORMS)


def _spec(name):
    if "bgn" in name:
        return f"{name}:groups=4"
    if name in ("gn", "evonorm_s0"):
        return f"{name}:groups=2"
    return name


def _onnx_run(model, x, optimize=True):
    """optimize=False skips onnxscript's graph optimizer (half of the export time of a whole
    model; onnxruntime optimizes the graph itself when it loads it). The per-layer tests and
    `normlab export` keep the default, so both paths are covered."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(model, (x,), dynamo=True, verbose=False, optimize=optimize)
    sess = ort.InferenceSession(program.model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])


def _assert_float32_close(got, expected):
    scale = float(expected.abs().max())
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * max(scale, 1e-3))


@pytest.mark.parametrize("name", NAMES)
def test_layer_onnx_matches_eager(name):
    torch.manual_seed(0)
    layer = create_norm(_spec(name), 8)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(torch.rand_like(p) * 0.3)
        for _ in range(3):                            # running statistics off their init
            layer(torch.randn(4, 8, 6, 6) * 2 + 1)
    layer.eval()
    x = torch.randn(2, 8, 6, 6) * 2 + 1
    with torch.no_grad():
        expected = layer(x)
    _assert_float32_close(_onnx_run(layer, x), expected)


def _trained_model(model_name, name):
    torch.manual_seed(0)
    model = create_model(model_name, norm=_spec(name), width=0.25)
    with torch.no_grad():
        for m in model.modules():                     # give every norm's affine some spread
            if m is not model and any(k in type(m).__name__ for k in ("Norm", "Renorm", "Evolved")):
                for p in m.parameters(recurse=False):
                    p.add_(torch.rand_like(p) * 0.3)
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("model_name", ["resnet20", "mobilenetv2"])
def test_model_onnx_before_and_after_fuse(model_name, name):
    model = _trained_model(model_name, name)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    _assert_float32_close(_onnx_run(model, x, optimize=False), expected)
    fused = fuse_norms(copy.deepcopy(model))
    with torch.no_grad():
        _assert_float32_close(fused(x), expected)
    if NORMS[name].foldable == "no":                  # fuse_norms leaves these models as they are
        assert [type(m) for m in fused.modules()] == [type(m) for m in model.modules()]
        return
    norms = lambda net: sum(1 for m in net.modules() if is_norm(m))  # noqa: E731
    assert norms(fused) < norms(model), "nothing was folded"
    _assert_float32_close(_onnx_run(fused, x, optimize=False), expected)
