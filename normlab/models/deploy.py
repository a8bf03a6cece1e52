"""Saving a trained model so that it can be rebuilt safely, and exporting it for deployment.

A *model file* (``MODEL.pt``) is what ``torch.save`` writes for a plain dict that
``torch.load(..., weights_only=True)`` reads back without unpickling any code:

    {"normlab_model": 1,                        # format version
     "description": '{"model": "resnet20", "norm": "bgn:groups=8", "act": "relu",
                      "in_channels": 3, "num_classes": 10, "width": 1.0,
                      "options": {}, "input_shape": [3, 32, 32]}',   # JSON text
     "state_dict": {...}}                       # tensors only

The description holds exactly what :func:`normlab.models.create_model` needs to rebuild the
network; the state dict then fills it.

    save_model("model.pt", model, "resnet20", norm="bgn:groups=8")
    model, desc = load_model("model.pt")                  # eval mode
    export_model(model, "model.onnx", "onnx", input_shape=desc["input_shape"])

``export_model`` writes a ``torch.export`` program (``.pt2``, for AOTInductor / ExecuTorch or
``torch.export.load``) or an ONNX file (``torch.onnx.export``, needs ``normlab[onnx]``). By default
it first folds every foldable norm into its convolution (:func:`normlab.layers.fuse_norms`) and
leaves the batch dimension dynamic.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..layers import fuse_norms
from . import ModelError, create_model

__all__ = ["save_model", "load_model", "export_model", "check_export", "FORMAT_VERSION", "EXPORT_FORMATS"]

FORMAT_VERSION = 1
EXPORT_FORMATS = ("onnx", "pt2")
_KEYS = ("model", "norm", "act", "in_channels", "num_classes", "width", "options", "input_shape")


def save_model(path: str | Path, model: nn.Module, name: str, *, norm: str = "bn", act: str = "relu",
               in_channels: int = 3, num_classes: int = 10, width: float = 1.0,
               input_shape: tuple[int, ...] | None = None, **options: Any) -> Path:
    """Write ``model`` (built by ``create_model(name, norm, act, ...)``) as a model file; the
    arguments must be the ones it was built with (checked: the file is rebuilt and its state dict
    must load strictly). ``input_shape`` (C, H, W) is the example input for export (default
    (in_channels, 32, 32)); ``options`` are create_model's model options (JSON-serialisable)."""
    desc = {"model": name, "norm": str(norm), "act": act, "in_channels": int(in_channels),
            "num_classes": int(num_classes), "width": float(width), "options": options,
            "input_shape": list(input_shape) if input_shape is not None else [int(in_channels), 32, 32]}
    try:
        text = json.dumps(desc, sort_keys=True)
    except TypeError as exc:
        raise ModelError(f"model options must be JSON-serialisable ({exc})") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    rebuilt = _build(desc)
    try:
        rebuilt.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"the model does not match create_model({name!r}, norm={norm!r}, ...): {first}") from None
    path = Path(path)
    torch.save({"normlab_model": FORMAT_VERSION, "description": text, "state_dict": state}, path)
    return path


def _build(desc: dict[str, Any]) -> nn.Module:
    return create_model(desc["model"], norm=desc["norm"], act=desc["act"], in_channels=desc["in_channels"],
                        num_classes=desc["num_classes"], width=desc["width"], **desc["options"])


def load_model(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model file's network (``torch.load(weights_only=True)``: no code is unpickled) and
    load its weights; returns (model in eval mode, description). A file that is not a model file
    raises ModelError with one line saying what was wrong."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ModelError(f"no model file at {path}") from None
    except Exception as exc:  # noqa: BLE001 - unpickling refused or a corrupt file: one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"{path} is not a readable model file ({first})") from None
    if not isinstance(payload, dict) or payload.get("normlab_model") != FORMAT_VERSION:
        raise ModelError(f"{path} is not a normlab model file (expected a dict with normlab_model="
                         f"{FORMAT_VERSION}, a JSON 'description' and a 'state_dict'; see save_model)")
    try:
        desc = json.loads(payload["description"])
        missing = [k for k in _KEYS if k not in desc]
        if missing:
            raise ValueError(f"missing {', '.join(missing)}")
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path}: its model description is invalid ({exc})") from None
    model = _build(desc)
    try:
        model.load_state_dict(payload["state_dict"], strict=True)
    except (KeyError, RuntimeError) as exc:
        first = (str(exc).strip().splitlines() or [""])[0]
        raise ModelError(f"{path}: its weights do not fit {desc['model']} with {desc['norm']} ({first})") from None
    return model.eval(), desc


def _example(model: nn.Module, input_shape: tuple[int, ...], batch_size: int) -> torch.Tensor:
    try:
        ref = next(model.parameters())
        dtype, device = ref.dtype, ref.device
    except StopIteration:
        dtype, device = torch.float32, torch.device("cpu")
    return torch.randn((batch_size, *input_shape), generator=torch.Generator().manual_seed(0)).to(device, dtype)


def export_model(model: nn.Module, path: str | Path, fmt: str, *, input_shape: tuple[int, ...],
                 batch_size: int = 2, fuse: bool = True, dynamic_batch: bool = True) -> Path:
    """Export ``model`` (eval mode; a copy is exported, ``model`` is left as is) to ``path`` as
    ``fmt``: "pt2" (``torch.export.save`` of ``torch.export.export``) or "onnx"
    (``torch.onnx.export``, the dynamo-based exporter; needs the onnx extra). ``fuse`` folds
    foldable norms into their convolutions first; ``dynamic_batch`` leaves the batch size free."""
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r} is invalid: expected one of {', '.join(EXPORT_FORMATS)}")
    net = copy.deepcopy(model).eval()
    if fuse:
        fuse_norms(net)
    x = _example(net, tuple(input_shape), max(2, batch_size))
    dyn = {"x": {0: torch.export.Dim("batch", min=1, max=65536)}} if dynamic_batch else None
    path = Path(path)
    if fmt == "pt2":
        ep = torch.export.export(net, (x,), dynamic_shapes=dyn)
        torch.export.save(ep, path)
        return path
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError:
        raise ModelError("ONNX export needs the onnx extra: pip install 'normlab[onnx]'") from None
    dyn_onnx = {"x": {0: torch.export.Dim("batch", min=1, max=65536)}} if dynamic_batch else None
    program = torch.onnx.export(net, (x,), dynamo=True, dynamic_shapes=dyn_onnx, input_names=["x"],
                                output_names=["y"], verbose=False)
    program.save(str(path))
    return path


def check_export(model: nn.Module, path: str | Path, fmt: str, *, input_shape: tuple[int, ...],
                 batch_size: int = 3) -> float:
    """Run an exported file (``torch.export.load`` or onnxruntime) on a random batch and return
    the largest absolute difference from eager ``model`` (eval mode)."""
    x = _example(model, tuple(input_shape), batch_size).float()
    with torch.no_grad():
        expected = model.eval()(x)
    if fmt == "pt2":
        with torch.no_grad():
            got = torch.export.load(str(path)).module()(x)
    else:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("checking an ONNX file needs onnxruntime: pip install 'normlab[onnx]'") from None
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = torch.from_numpy(sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0])
    return float((got - expected).abs().max())
