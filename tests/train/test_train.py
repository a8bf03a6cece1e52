import math

import pytest
import torch
from torch import nn

from normlab.data import load_dataset
from normlab.layers import GroupNorm
from normlab.models import create_model
from normlab.train import (Callback, ConfigError, TrainConfig, evaluate, fit, lr_lambda,
                           param_groups)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _small(norm="bn", classes=10, seed=0):
    torch.manual_seed(seed)          # fit() seeds training; the initial weights are the caller's
    return create_model("resnet20", norm=norm, in_channels=1, num_classes=classes, width=0.25)


QUICK = dict(batch_size=64, lr=0.1, progress=False, augment=False)


def test_fit_learns_and_reports(digits):
    result = fit(_small(), digits, TrainConfig(epochs=4, **QUICK))
    assert result.status == "ok"
    assert result.metrics["test_acc"] > 0.8
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["steps"] == 4 * (digits.size("train") // 64)
    assert result.metrics["images_per_sec"] > 0


def test_deterministic_for_a_seed_on_cpu(digits):
    runs = [fit(_small(), digits, TrainConfig(epochs=1, seed=s, **QUICK)).history for s in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_norm_batch_size_splits_the_batch_for_normalization_only(digits):
    def one_step(norm, nbs):
        torch.manual_seed(0)
        model = _small(norm)
        fit(model, digits, TrainConfig(steps=1, norm_batch_size=nbs, eval_every=0,
                                       **{**QUICK, "lr": 0.5}))
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    # per-sample normalization: micro-batches change nothing but the accumulation order
    torch.testing.assert_close(one_step("gn:groups=2", 8), one_step("gn:groups=2", None),
                               rtol=1e-4, atol=1e-6)
    # batch normalization sees 8 samples instead of 64: a different step
    assert not torch.allclose(one_step("bn", 8), one_step("bn", None), atol=1e-4)


def test_norm_parameters_skip_weight_decay():
    model = _small("gn:groups=2")
    groups = param_groups(model, 5e-4, 0.0)
    norm_params = {id(p) for m in model.modules() if isinstance(m, GroupNorm) for p in m.parameters()}
    assert {id(p) for p in groups[1]["params"]} == norm_params and groups[1]["weight_decay"] == 0.0
    assert groups[0]["weight_decay"] == 5e-4 and not norm_params & {id(p) for p in groups[0]["params"]}


def test_learning_rate_rule_and_schedules():
    cfg = TrainConfig(lr=0.1, batch_size=256, base_batch_size=128)
    assert cfg.scaled_lr == pytest.approx(0.2)
    assert TrainConfig(lr=0.1, batch_size=256, base_batch_size=None).scaled_lr == 0.1
    f = lr_lambda(TrainConfig(schedule="cosine", warmup_epochs=1), total=100, steps_per_epoch=10)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(100) == pytest.approx(0.0)
    g = lr_lambda(TrainConfig(schedule="step", milestones=(0.5, 0.75), gamma=0.1), 100, 10)
    assert [g(0), g(49), g(50), g(75)] == pytest.approx([1, 1, 0.1, 0.01])


def test_divergence_is_reported_not_raised(digits):
    result = fit(_small(), digits, TrainConfig(epochs=2, **{**QUICK, "lr": 1e9}))
    assert result.status == "diverged" and result.diverged
    assert "non-finite" in result.message
    assert result.metrics["steps"] < 2 * (digits.size("train") // 64)


def test_checkpoint_resume_matches_an_uninterrupted_run(digits, tmp_path):
    cfg = TrainConfig(epochs=3, **QUICK)
    full_model = _small()
    full = fit(full_model, digits, cfg)

    class Crash(Callback):
        def on_epoch_end(self, state):
            if state.epoch == 2:
                raise KeyboardInterrupt

    path = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(_small(), digits, TrainConfig(epochs=3, checkpoint=str(path), **QUICK), callbacks=[Crash()])
    payload = torch.load(path, weights_only=True)
    assert payload["epoch"] == 2
    resumed_model = _small()
    resumed = fit(resumed_model, digits, TrainConfig(epochs=3, checkpoint=str(path), resume=True, **QUICK))
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in full.history]
    for a, b in zip(full_model.state_dict().values(), resumed_model.state_dict().values()):
        assert torch.equal(a, b)


def test_evaluate_with_batch_statistics_leaves_no_trace(digits):
    model = _small()
    fit(model, digits, TrainConfig(epochs=1, **QUICK))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    running = evaluate(model, digits, mode="running")
    batch = evaluate(model, digits, mode="batch", batch_size=100)
    assert 0 <= batch["test_acc"] <= 1 and running["test_loss"] != batch["test_loss"]
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_label_smoothing_clipping_adamw_run(digits):
    cfg = TrainConfig(epochs=1, optimizer="adamw", lr=1e-3, label_smoothing=0.1, grad_clip=1.0,
                      schedule="step", warmup_epochs=0.5, **{k: v for k, v in QUICK.items() if k != "lr"})
    result = fit(_small(), digits, cfg)
    assert result.status == "ok" and math.isfinite(result.metrics["test_loss"])


@pytest.mark.parametrize("kwargs,message", [
    ({"batch_size": 0}, "batch_size=0"),
    ({"optimizer": "lamb"}, "optimizer='lamb' is invalid: expected one of sgd, adamw"),
    ({"norm_batch_size": 256, "batch_size": 128}, "norm_batch_size=256"),
    ({"momentum": 1.5}, "momentum"),
    ({"milestones": (0.5, 2.0)}, "milestones"),
    ({"resume": True}, "checkpoint"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**kwargs)


def test_batch_larger_than_the_set_is_a_clear_error(digits):
    with pytest.raises(ValueError, match="larger than the training set"):
        fit(_small(), digits, TrainConfig(batch_size=5000, progress=False))


def test_progress_bar_runs(digits, capsys):
    fit(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), digits, TrainConfig(steps=3, batch_size=32, progress=True))


def test_fit_uses_ghost_batches_and_falls_back_to_micro_batches(digits, monkeypatch):
    """fit(norm_batch_size=b): one forward with ghost batches when every batch-dependent layer
    supports them (same step as micro-batches), micro-batches with one warning otherwise."""
    import warnings

    import normlab.train.loop as loop

    def one_step(norm, ghost_allowed):
        torch.manual_seed(0)
        model = _small(norm)
        if not ghost_allowed:
            monkeypatch.setattr(loop, "set_norm_batch", lambda m, b, **kw: ["forced (test)"] if b else [])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fit(model, digits, TrainConfig(steps=2, norm_batch_size=4, eval_every=0, **{**QUICK, "lr": 0.5}))
        monkeypatch.undo()
        assert all(getattr(m, "norm_batch", None) is None for m in model.modules())   # restored
        return torch.cat([p.detach().flatten() for p in model.parameters()]), caught

    for norm in ("bn", "bgn:groups=2"):
        ghost, quiet = one_step(norm, True)
        micro, warned = one_step(norm, False)
        torch.testing.assert_close(ghost, micro, rtol=1e-4, atol=1e-5)
        assert not [w for w in quiet if "micro-batches" in str(w.message)]
        assert [w for w in warned if "micro-batches" in str(w.message)]


def test_unreadable_fit_checkpoint_is_one_clear_error(tmp_path):
    from normlab.train import load_checkpoint

    path = tmp_path / "run.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot be read as tensors and plain data"):
        load_checkpoint(path, None)


def test_rules_stop_a_run_with_their_reason(digits):
    """Early rejection and the stability test are callbacks: the run stops, fit's result names the
    rule and the reason, and nothing after the stop is trained."""
    from normlab.train import EarlyRejection, StabilityCheck

    cfg = TrainConfig(steps=6, eval_every=0, final_eval=False, **QUICK)
    reject = EarlyRejection(2, 1.01, lambda m: evaluate(m, digits, limit=64)["test_acc"])
    out = fit(_small(), digits, cfg, [reject])
    assert (out.status, out.stopped_by, out.metrics["steps"]) == ("stopped", "quality", 2.0)
    assert "after 2 steps" in out.message and reject.score is not None
    model = _small()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stab = StabilityCheck(digits, steps=2, batch_size=32, seed=0, factor=1.0)   # any growth is too much
    out = fit(model, digits, cfg, [stab])
    assert (out.status, out.stopped_by, out.metrics["steps"]) == ("stopped", "stability", 0.0)
    assert "gradient norm grew" in out.message and stab.ratio > 1.0
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())   # put back
    passed = fit(_small(), digits, cfg, [EarlyRejection(2, 0.0, lambda m: 0.5)])
    assert passed.status == "ok" and passed.stopped_by == "" and passed.metrics["steps"] == 6


def test_torch_threads_restores_the_callers_count_even_on_error():
    from normlab.train import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(None):
        torch.set_num_threads(1)                       # what a study step may do inside
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
