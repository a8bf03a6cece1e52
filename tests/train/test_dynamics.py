import math
import statistics

import pytest
import torch
from typer.testing import CliRunner

from normlab.cli import app
from normlab.data import load_dataset
from normlab.models import create_model
from normlab.train import TrainConfig, fit
from normlab.train.dynamics import (AngularUpdate, angle_between, scale_invariant_weights,
                                    theory_angular_update)


def test_angle_is_accurate_for_tiny_rotations():
    a = torch.randn(1000, dtype=torch.float64)
    b = torch.randn(1000, dtype=torch.float64)
    b = b - (b @ a) / (a @ a) * a                     # orthogonal to a
    for theta in (1e-9, 1e-6, 1e-3, 0.5, 3.0):
        rotated = math.cos(theta) * a / a.norm() + math.sin(theta) * b / b.norm()
        assert angle_between(a, rotated * 7.0) == pytest.approx(theta, rel=1e-6)
    assert angle_between(a.float(), a.float()) == 0.0


def test_theory():
    assert theory_angular_update(0.1, 5e-4, 0.9) == pytest.approx(math.sqrt(2 * 0.1 * 5e-4 / 1.9))


def test_finds_every_conv_followed_by_a_norm():
    model = create_model("resnet20", norm="bn")
    found = scale_invariant_weights(model)
    assert len(found) == 21                           # 19 convs + 2 projection shortcuts
    assert "fc.weight" not in found
    assert not scale_invariant_weights(create_model("resnet20", norm="evonorm_s0:groups=4"))


def test_records_angles_norms_and_theory():
    data = load_dataset("digits")
    rec = AngularUpdate(every=2)
    model = create_model("resnet20", in_channels=1, width=0.25)
    fit(model, data, TrainConfig(steps=10, batch_size=32, lr=0.2, base_batch_size=None,
                                 schedule="constant", progress=False, eval_every=0), callbacks=[rec])
    assert rec.steps == [2, 4, 6, 8, 10]
    assert all(len(v) == 5 and all(x > 0 for x in v) for v in rec.angles.values())
    assert rec.theory[0] == pytest.approx(theory_angular_update(0.2, 5e-4, 0.9))
    (row,) = rec.summary()
    assert row["lr"] == pytest.approx(0.2) and row["measured"] > 0


@pytest.mark.slow
def test_resnet20_bn_reaches_the_spherical_motion_equilibrium():
    """Acceptance: ResNet-20 + BN on mnist5k, SGD (momentum 0.9, weight decay 5e-4): the median
    angular update over the last 20% of a constant-learning-rate phase is within 20% of theory.
    (A one-epoch warm-up precedes the constant phase: at lr 1 without it, some initialisations
    lose every ReLU in the first steps and stop moving at all.)"""
    data = load_dataset("mnist5k")
    torch.manual_seed(0)
    model = create_model("resnet20", norm="bn", in_channels=1, width=0.25)
    rec = AngularUpdate()
    cfg = TrainConfig(steps=600, batch_size=64, lr=1.0, base_batch_size=None, momentum=0.9,
                      weight_decay=5e-4, schedule="constant", warmup_epochs=1.0, augment=False,
                      progress=False, eval_every=0)
    result = fit(model, data, cfg, callbacks=[rec])
    assert result.status == "ok"
    phase = rec.summary(tail=0.2)[-1]                  # the constant phase after the warm-up
    theory = math.sqrt(2 * 1.0 * 5e-4 / 1.9)
    assert phase["lr"] == pytest.approx(1.0) and phase["theory"] == pytest.approx(theory)
    assert phase["last_step"] - phase["first_step"] > 500
    first = rec.steps.index(int(phase["first_step"]))
    n = len(rec.steps) - first
    tail = range(len(rec.steps) - round(n * 0.2), len(rec.steps))
    measured = statistics.median(statistics.median(rec.angles[k][i] for k in rec.angles) for i in tail)
    assert measured == pytest.approx(phase["measured"])
    assert abs(measured / theory - 1) < 0.2, (measured, theory)


def test_dynamics_command(tmp_path):
    runner = CliRunner()
    out = tmp_path / "dyn"
    result = runner.invoke(app, ["dynamics", "--dataset", "digits", "--steps", "12", "--width", "0.25",
                                 "--batch-size", "32", "--out", str(out)], env={"COLUMNS": "150"})
    assert result.exit_code == 0, result.output
    assert (out / "angular_update.png").stat().st_size > 10_000
    assert (out / "dynamics.json").exists()
    assert "measured / theory" in result.output
    bad = runner.invoke(app, ["dynamics", "--norm", "nope", "--out", str(out)])
    assert bad.exit_code == 2
    assert "unknown norm 'nope'" in bad.output
