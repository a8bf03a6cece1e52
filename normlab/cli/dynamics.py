"""`normlab dynamics`: angular updates against the Spherical Motion Dynamics equilibrium."""

from __future__ import annotations

import typer
from rich.table import Table

from ._app import app
from .common import check_out_dir, console, fail


@app.command()
def dynamics(
    model: str = typer.Option("resnet20", help="anchor model (normlab.models)"),
    norm: str = typer.Option("bn", help="norm spec, e.g. bn or bgn:groups=8"),
    dataset: str = typer.Option("mnist5k", help="dataset spec"),
    width: float = typer.Option(0.5, help="model width multiplier"),
    steps: int = typer.Option(800, help="optimizer steps"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(1.0, help="learning rate (no batch-size scaling here)"),
    momentum: float = typer.Option(0.9),
    weight_decay: float = typer.Option(5e-4),
    milestones: str = typer.Option("0.5", help="step-schedule milestones, fractions of the run"),
    gamma: float = typer.Option(0.1, help="learning-rate factor at each milestone"),
    warmup_epochs: float = typer.Option(1.0, help="linear warm-up before the first phase"),
    seed: int = typer.Option(0),
    out: str = typer.Option("runs/dynamics", help="folder for the plot and the JSON record"),
    data_root: str = typer.Option(None, help="where downloadable datasets live"),
    download: bool = typer.Option(False, help="download the dataset if it is missing"),
) -> None:
    """Train across a step learning-rate schedule and compare the angular update of every
    scale-invariant weight with the Spherical Motion Dynamics equilibrium."""
    import json
    from pathlib import Path

    from ..data import load_dataset
    from ..models import create_model
    from ..train import TrainConfig, fit
    from ..train.dynamics import AngularUpdate

    try:
        try:
            marks = tuple(float(m) for m in milestones.split(",") if m.strip())
        except ValueError:
            raise fail(f"--milestones {milestones!r} is invalid: expected comma-separated fractions "
                       f"of the run in (0, 1), e.g. 0.5,0.75") from None
        if not marks or not all(0 < m < 1 for m in marks):
            raise fail(f"--milestones {milestones!r} is invalid: expected comma-separated fractions "
                       f"of the run in (0, 1), e.g. 0.5,0.75")
        if not (gamma > 0 and gamma < float("inf")):
            raise fail(f"--gamma {gamma} is invalid: expected a positive finite number "
                       f"(the learning-rate factor at each milestone, e.g. 0.1)")
        cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, base_batch_size=None,
                          momentum=momentum, weight_decay=weight_decay, schedule="step",
                          milestones=marks, gamma=gamma, warmup_epochs=warmup_epochs,
                          seed=seed, augment=False,
                          eval_every=0, progress=True)
        data = load_dataset(dataset, root=data_root, download=download)
        import torch

        torch.manual_seed(seed)
        net = create_model(model, norm=norm, in_channels=data.in_channels,
                           num_classes=data.num_classes, width=width)
    except ValueError as exc:        # DataError, NormSpecError, ModelError, ConfigError
        raise fail(str(exc))
    check_out_dir(out, "--out")                # before training, not after
    recorder = AngularUpdate()
    try:
        result = fit(net, data, cfg, callbacks=[recorder])
    except ValueError as exc:
        raise fail(str(exc))
    folder = Path(out)
    plot = folder / "angular_update.png"
    recorder.plot(str(plot))
    rows = recorder.summary()
    record = {"model": model, "norm": norm, "dataset": dataset, "config": cfg.to_dict(),
              "status": result.status, "metrics": result.metrics, "summary": rows,
              "steps": recorder.steps, "lr": recorder.lrs, "theory": recorder.theory,
              "angles": recorder.angles, "norms": recorder.norms}
    (folder / "dynamics.json").write_text(json.dumps(record))
    table = Table(title=f"angular update, {model} + {norm} on {dataset} "
                        f"({len(recorder.weights)} scale-invariant weights)")
    for col in ("steps", "lr", "theory", "measured (last 20%)", "measured / theory"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(f"{int(r['first_step'])}-{int(r['last_step'])}", f"{r['lr']:.3g}",
                      f"{r['theory']:.4f}", f"{r['measured']:.4f}", f"{r['ratio']:.2f}")
    console.print(table)
    if result.diverged:
        console.print(f"[red]training diverged:[/] {result.message}")
    console.print(f"plot: {plot}\nrecord: {folder / 'dynamics.json'}")

