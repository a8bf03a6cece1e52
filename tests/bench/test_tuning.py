"""The tuning evidence (issue 25): which G wins on validation at each batch size, decided in the
report's family, and what the auto rule picks per layer width beside it; on a tiny synthetic
store with a known truth."""

from __future__ import annotations

import random

import pytest
from typer.testing import CliRunner

from normlab.bench import load_experiment, plan, summarize
from normlab.bench.experiment import TUNED, ExperimentError
from normlab.bench.report import auto_picks, markdown, tuning_table, verdicts
from normlab.cli import app
from normlab.layers import BatchGroupNorm
from normlab.runtime import Store
from normlab.runtime.protocol import TrialResult

# synthetic 8x8 one-channel images: ResNet-20 at width 0.25 has the digits preset's layer shapes
SETUP = {"name": "gtune", "dataset": "synthetic:n=192,classes=3,channels=1,size=8", "models": ["resnet20"],
         "width": 0.25, "norms": ["bn", "bgn:groups=tuned"], "batch_sizes": [2, 32], "batch_mode": "norm",
         "fixed_batch_size": 32, "seeds": [0, 1, 2, 3], "steps": 4, "augment": False,
         "tune": {"grid": [16, 1, 4, "auto"], "val_fraction": 0.25}}


def _truth(norm: str, b: int, rng: random.Random) -> float:
    """Validation accuracy: at b=2 G=16 is 10 points above every other entry; at b=32 all equal."""
    top = norm == "bgn:groups=16" and b == 2
    return (0.95 if top else 0.85) + rng.gauss(0, 0.003)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A store of the SETUP experiment's trials with synthetic results (``_truth``): its path, rows."""
    path = tmp_path_factory.mktemp("tuning") / "s.sqlite"
    exp = load_experiment(**SETUP)
    rng = random.Random(0)
    with Store(path) as db:
        record = db.experiment(exp.name, "bench", exp.model_dump(), identity=exp.identity())
        trials = plan(exp)
        done = []
        for tid, d in zip(db.add_trials(record, trials), trials):
            if "tune" in d:
                metrics = {"val_acc": _truth(d["norm"], d["batch_size"], rng), "test_acc": 0.8}
            else:
                metrics = {"test_acc": 0.8 + rng.gauss(0, 0.003)}
            done.append((tid, TrialResult("ok", metrics=metrics)))
        db.write_trials(record, finish=done)
        return path, db.rows(experiment=exp.name)


def test_validated_winner_per_batch_size_and_auto_picks_per_width(stored, tmp_path):
    path, rows = stored
    [s] = summarize(rows)
    # the auto rule's picks per layer shape, from the layer's own rule (choose_groups)
    picks = auto_picks(s, "resnet20")
    assert [(c, sp) for c, sp, _ in picks] == [(4, 64), (8, 16), (16, 4)]
    for (c, sp, _), at in picks.items():
        assert at == {b: BatchGroupNorm.choose_groups(b, c, sp, 32) for b in (2, 32)}
        assert at[2] == 1 and at[32] == c                    # G=1 at b=2; BatchNorm at b=32
    assert auto_picks(s, "resnet20", "bgn:groups=auto,ref_batch=8")[(16, 4, 7)][2] == 4

    table = tuning_table(s, "resnet20")
    rows = {r[0]: r[1:] for r in table.rows}
    assert list(rows)[:4] == ["bgn:groups=1", "bgn:groups=4", "bgn:groups=16", "bgn:groups=auto"]
    assert rows["validated"][0] == "best: 16"                # shown by the family's rule
    assert rows["validated"][1].startswith("tied: ") and len(rows["validated"][1].split(", ")) == 4
    assert rows["auto picks, C=16 S=4 (7 layers)"] == ["G=1", "G=16"]
    assert "per layer width only through" in table.note

    lines = verdicts(s, "resnet20")
    [b2] = [x for x in lines if x.startswith(f"b=2, {TUNED}'s G on validation")]
    assert "best: bgn:groups=16" in b2 and "auto picks G = 1, 1, 1 at C = 4, 8, 16" in b2
    assert "entry 'auto', is behind the top" in b2
    [b32] = [x for x in lines if x.startswith(f"b=32, {TUNED}'s G on validation")]
    assert "tied: " in b32 and "entry 'auto', is among the leaders" in b32
    # one family: the two validation claims are counted with the report's others
    assert s.decide("resnet20").family.size == len(s.decide("resnet20").family.comparisons)
    assert any("comparison(s) in this report's family" in x for x in lines)

    # the same analysis wherever the tuning table is shown: `normlab report`, the markdown
    res = CliRunner().invoke(app, ["report", "--store", str(path), "--out",
                                   str(tmp_path / "rep")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "validated" in res.output and "auto picks, C=4 S=64" in res.output
    assert "| validated | best: 16 |" in markdown([s])


def test_grid_without_auto_compares_auto_through_its_uniform_picks(stored):
    rows = [r for r in stored[1] if r["description"]["norm"] != "bgn:groups=auto"]
    [s] = summarize(rows)
    [b2] = [x for x in verdicts(s, "resnet20") if x.startswith(f"b=2, {TUNED}'s G")]
    assert "as one G for every layer: G=1 behind the top" in b2


def test_grid_entries_are_group_counts_or_auto_rules():
    exp = load_experiment(**SETUP)
    assert exp.tune.grid == [1, 4, 16, "auto"]
    assert exp.trained_norms() == ["bn", "bgn:groups=1", "bgn:groups=4", "bgn:groups=16", "bgn:groups=auto"]
    ok = load_experiment(**{**SETUP, "tune": {"grid": [1, "auto, ref_batch=8"]}})
    assert ok.trained_norms()[-1] == "bgn:groups=auto,ref_batch=8"
    for bad in (["x"], ["auto", "auto"], ["gn:groups=2"]):
        with pytest.raises(ExperimentError, match="tune.grid"):
            load_experiment(**{**SETUP, "tune": {"grid": bad}})
