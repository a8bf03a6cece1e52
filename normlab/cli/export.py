"""`normlab export MODEL.pt --format onnx|pt2`: a saved model file to a deployable graph."""

from __future__ import annotations

from pathlib import Path

import typer

from ._app import app
from .common import check_out_file, console, fail


@app.command("export")
def export_cmd(model_file: str = typer.Argument(..., metavar="MODEL.pt",
                                                help="a model file written by normlab.models.save_model"),
               format: str = typer.Option("onnx", "--format", help="onnx or pt2 (torch.export program)"),
               out: str = typer.Option(None, "--out", help="output file (default: MODEL.onnx / MODEL.pt2)"),
               fuse: bool = typer.Option(True, "--fuse/--no-fuse",
                                         help="fold foldable norms into their convolutions first"),
               dynamic_batch: bool = typer.Option(True, "--dynamic-batch/--static-batch",
                                                  help="leave the batch size free in the graph"),
               check: bool = typer.Option(True, "--check/--no-check",
                                          help="run the exported file and compare it with eager")) -> None:
    """Export a saved model (torch.load weights_only=True: no code is unpickled) to ONNX or a
    torch.export program (.pt2), in eval mode, and check the exported file against eager."""
    from ..models import ModelError
    from ..models.deploy import EXPORT_FORMATS, check_export, export_model, load_model

    if format not in EXPORT_FORMATS:
        raise fail(f"--format {format!r} is invalid: expected one of {', '.join(EXPORT_FORMATS)}")
    target = check_out_file(out or str(Path(model_file).with_suffix(f".{format}")), "--out")
    try:
        model, desc = load_model(model_file)
        shape = tuple(desc["input_shape"])
        with console.status(f"exporting {desc['model']} ({desc['norm']}) to {format}..."):
            export_model(model, target, format, input_shape=shape, fuse=fuse, dynamic_batch=dynamic_batch)
            diff = check_export(model, target, format, input_shape=shape) if check else None
    except ModelError as exc:
        raise fail(str(exc)) from None
    line = f"wrote {target} ({desc['model']}, norm {desc['norm']}, input (N, {', '.join(map(str, shape))}))"
    if diff is not None:
        line += f"; max |exported - eager| = {diff:.2e}"
    console.print(line, highlight=False)
    if diff is not None and not diff <= 1e-3:
        raise fail(f"the exported file differs from eager by {diff:.2e} (> 1e-3)", code=1)
