"""The batch-size study: plan, store, executors, resume after SIGKILL, report, CLI errors."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from normlab.bench import (ExperimentError, available_presets, load_experiment, plan, summarize,
                           sweep, write_report)
from normlab.bench.report import markdown
from normlab.cli import app
from normlab.runtime import PoolExecutor, SerialExecutor, Store, experiment_id, trial_id
from normlab.runtime.store import export

TINY = dict(name="tiny", dataset="synthetic:n=192,classes=3,channels=1,size=8", models=["resnet20"],
            width=0.25, norms=["bn", "gn:groups=2"], batch_sizes=[4, 16], seeds=[0], steps=4,
            augment=False)


def _yaml(tmp_path, **overrides):
    import yaml

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({**TINY, **overrides}))
    return path


def _ids(exp):
    eid = experiment_id("bench", exp.name, exp.identity())
    return [trial_id(eid, t) for t in plan(exp)]


def test_plan_is_the_product_of_the_axes_with_stable_hash_ids():
    exp = load_experiment(**{**TINY, "seeds": [0, 1], "lrs": [0.1, 0.2]})
    ids = _ids(exp)
    assert len(ids) == 1 * 2 * 2 * 2 * 2 == len(set(ids))
    assert _ids(exp) == ids                                                # deterministic
    other = _ids(load_experiment(**{**TINY, "seeds": [0, 1], "lrs": [0.1, 0.2], "steps": 5}))
    assert not set(ids) & set(other)                                       # budget is identity
    wd = _ids(load_experiment(**{**TINY, "seeds": [0, 1], "lrs": [0.1, 0.2], "weight_decay": 0.0}))
    assert not set(ids) & set(wd)                                          # so is weight decay
    more = _ids(load_experiment(**{**TINY, "seeds": [0, 1, 2], "lrs": [0.1, 0.2]}))
    assert set(ids) < set(more)                                            # a new seed keeps the rest
    renamed = _ids(load_experiment(**{**TINY, "name": "other", "seeds": [0, 1], "lrs": [0.1, 0.2]}))
    assert not set(ids) & set(renamed)                                     # a renamed study runs its own


def test_equivalent_specs_are_one_trial():
    a = load_experiment(**{**TINY, "norms": ["gn:groups=4,eps=1e-5", "BN"]})
    b = load_experiment(**{**TINY, "norms": ["gn:eps=1e-5,groups=4", "bn"]})
    c = load_experiment(**{**TINY, "norms": ["gn:groups=4", "bn"]})
    assert _ids(a) == _ids(b) == _ids(c)
    with pytest.raises(ExperimentError, match="more than once"):
        load_experiment(**{**TINY, "norms": ["gn:groups=4", "gn:groups=4,eps=0.00001"]})


def test_batch_modes():
    both = plan(load_experiment(**TINY))[0]["train"]
    assert (both["batch_size"], both["norm_batch_size"]) == (4, None)
    norm = plan(load_experiment(**{**TINY, "batch_mode": "norm", "fixed_batch_size": 16}))[0]["train"]
    assert (norm["batch_size"], norm["norm_batch_size"]) == (16, 4)
    opt = plan(load_experiment(**{**TINY, "batch_mode": "optimizer", "fixed_norm_batch_size": 2}))
    assert [(t["train"]["batch_size"], t["train"]["norm_batch_size"]) for t in opt[:2]] == [(4, 2), (16, 2)]
    with pytest.raises(ExperimentError, match="exceed fixed_batch_size"):
        load_experiment(**{**TINY, "batch_mode": "norm", "fixed_batch_size": 8})


@pytest.mark.parametrize("overrides,message", [
    ({"norms": ["batchnorm"]}, "unknown norm 'batchnorm'"),
    ({"norms": ["bgn:groups=x"]}, "groups='x' should be an integer"),
    ({"models": ["vgg"]}, "unknown model 'vgg'"),
    ({"dataset": "imagenet"}, "unknown dataset 'imagenet'"),
    ({"batch_sizes": []}, "batch_sizes is empty"),
    ({"colour": 1}, "unknown setting 'colour'"),
    ({"steps": 0}, "steps=0"),
])
def test_bad_experiments_fail_before_training(overrides, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiment(**{**TINY, **overrides})


def test_presets_validate():
    assert {"quick", "study", "paper-cifar10"} <= set(available_presets())
    quick = load_experiment(preset="quick")
    assert quick.dataset == "digits" and min(quick.batch_sizes) == 2 and max(quick.batch_sizes) >= 32
    assert len(quick.seeds) >= 5 and quick.threads == 1                  # decided claims; pinned rounding
    assert {"bn", "gn:groups=4", "bgn:groups=auto"} <= set(quick.norms)
    assert any(n.startswith("evonorm") for n in quick.norms)
    study = load_experiment(preset="study")                  # both ends of the BGN paper's claim
    assert study.dataset == "fashion-mnist" and min(study.batch_sizes) == 2 and max(study.batch_sizes) >= 128
    assert len(study.seeds) >= 3
    sweep = load_experiment(preset="g-sweep-digits")          # issue 25's evidence on the auto rule
    assert sweep.tune.grid == [1, 2, 4, 8, 16, "auto", "auto,ref_batch=8"] and len(sweep.seeds) == 3
    follow = load_experiment(preset="g-fashion-b2")           # the Fashion-MNIST follow-up: the study's training
    assert follow.tune.grid == [1, 16, "auto,ref_batch=8"] and follow.batch_sizes == [2]
    assert all(getattr(follow, k) == getattr(study, k) for k in ("dataset", "width", "epochs", "lr", "threads"))
    paper = load_experiment(preset="paper-cifar10")
    assert paper.dataset == "cifar10" and paper.batch_sizes == [2, 4, 8, 16, 32, 64, 128]


def test_bench_rows_are_json_queries_and_export(tmp_path):
    exp = load_experiment(**TINY)
    with Store(tmp_path / "s.sqlite") as store:
        sweep(exp, store)
        assert len(store.rows(where={"norm": "bn"})) == 2 and len(store.rows(where={"batch_size": 16})) == 2
        view = store.db.execute("SELECT model, norm, batch_size, seed, status FROM bench_trials").fetchall()
        assert len(view) == 4 and {tuple(v)[1] for v in view} == {"bn", "gn:groups=2"}
        csv_text = export(store.rows(), "csv")
        head = csv_text.splitlines()[0]
        assert head.startswith("id,experiment,status") and "model" in head and "test_acc" in head
        assert len(json.loads(export(store.rows(), "json"))) == 4


def test_sweep_stores_every_trial_and_resumes(tmp_path):
    exp = load_experiment(**TINY)
    with Store(tmp_path / "s.sqlite") as store:
        out = sweep(exp, store)
        assert (out.planned, out.ran, out.ok) == (4, 4, 4)
        rows = store.rows()
        assert all(r["status"] == "ok" and r["history"] and "test_acc" in r["metrics"] for r in rows)
        # a failed trial and an interrupted one run again; finished ones are skipped
        store.db.execute("UPDATE trials SET status='failed' WHERE id=?", (rows[0]["id"],))
        store.db.execute("UPDATE trials SET status='running' WHERE id=?", (rows[1]["id"],))
        again = sweep(exp, store)
        assert (again.skipped, again.ran) == (2, 2)
        assert store.count() == 4


def test_norm_mode_trains_a_batch_independent_norm_once_per_seed(tmp_path):
    """In norm mode GN's trials at b=4 and b=16 are the same computation (no batch statistics,
    same optimizer batches): one trains, the other is stored with its result; BN trains twice.
    Training it at both gives the same accuracy, which is what makes the sharing exact."""
    exp = load_experiment(**{**TINY, "batch_mode": "norm", "fixed_batch_size": 16})
    assert exp.batch_independent() == {("resnet20", "gn:groups=2")}
    assert load_experiment(**TINY).same_run() is None                     # both mode: never shared
    with Store(tmp_path / "s.sqlite") as store:
        out = sweep(exp, store)
        assert (out.planned, out.ran, out.ok) == (4, 4, 4)
        gn = store.rows(where={"norm": "gn:groups=2"})
        bn = store.rows(where={"norm": "bn"})
        assert [("same_run_as" in r["metrics"]) for r in gn] == [False, True]
        assert gn[1]["metrics"]["same_run_as"] == gn[0]["id"]
        assert not any("same_run_as" in r["metrics"] for r in bn)
        assert gn[0]["metrics"]["test_acc"] == gn[1]["metrics"]["test_acc"]
        [summary] = summarize(store.rows())
        assert summary.shared == {"gn:groups=2"}
        assert "gn:groups=2: no batch statistics, so each seed trained once" in summary.table("resnet20").note
    with Store(tmp_path / "t.sqlite") as store:            # the same two trials trained separately
        sweep(exp, store, same_run=False)
        gn_both = store.rows(where={"norm": "gn:groups=2"})
        assert not any("same_run_as" in r["metrics"] for r in gn_both)
        assert gn_both[0]["metrics"]["test_acc"] == gn_both[1]["metrics"]["test_acc"] == gn[0]["metrics"]["test_acc"]
        assert gn_both[0]["metrics"]["train_loss"] == gn_both[1]["metrics"]["train_loss"]


def test_a_diverged_trial_is_stored_and_the_sweep_goes_on(tmp_path):
    exp = load_experiment(**{**TINY, "norms": ["bn"], "batch_sizes": [16], "lrs": [0.05, 1e9]})
    with Store(tmp_path / "s.sqlite") as store:
        out = sweep(exp, store)
        assert (out.ok, out.diverged) == (1, 1)
        bad = store.rows(status="diverged")[0]
        assert bad["description"]["lr"] == 1e9 and "non-finite" in bad["error"]


def _results(store):
    return {r["id"]: (r["status"], r["metrics"]["test_acc"], r["metrics"]["train_loss"]) for r in store.rows()}


@pytest.mark.slow
def test_pool_and_ray_match_serial(tmp_path):
    exp = load_experiment(**TINY)
    stores = {}
    executors = {"serial": SerialExecutor(threads=1), "process": PoolExecutor(2, threads=1)}
    try:
        from normlab.runtime import RayExecutor

        executors["ray"] = RayExecutor(num_cpus=2, threads=1)
    except ValueError:
        pytest.fail("ray is not installed")
    for name, ex in executors.items():
        with Store(tmp_path / f"{name}.sqlite") as store:
            sweep(exp, store, ex)
            stores[name] = _results(store)
        ex.close()
    assert stores["serial"] == stores["process"] == stores["ray"]
    assert all(v[0] == "ok" for v in stores["serial"].values())


def _bench_cmd(config, store, *extra):
    return [sys.executable, "-m", "normlab.cli", "bench", str(config), "--store", str(store),
            "--out", str(Path(store).parent / "report"), *extra]


@pytest.mark.slow
def test_resume_after_sigkill_loses_nothing_finished(tmp_path):
    config = _yaml(tmp_path, norms=["bn", "gn:groups=2", "bgn:groups=2"], batch_sizes=[4, 8, 16],
                   steps=8)
    store_path = tmp_path / "kill.sqlite"
    env = {**os.environ, "COLUMNS": "120"}
    proc = subprocess.Popen(_bench_cmd(config, store_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 240
    finished = []
    try:
        while time.time() < deadline:
            time.sleep(0.5)
            if store_path.exists():
                db = sqlite3.connect(store_path, timeout=10)
                try:
                    finished = db.execute("SELECT id, finished FROM trials WHERE status='ok'").fetchall()
                except sqlite3.OperationalError:        # created, schema not written yet
                    finished = []
                finally:
                    db.close()
                if len(finished) >= 3:
                    break
        assert proc.poll() is None, "the sweep ended before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(finished) >= 3
    db = sqlite3.connect(store_path)
    before = dict(db.execute("SELECT id, finished FROM trials WHERE status='ok'").fetchall())
    db.close()
    done = subprocess.run(_bench_cmd(config, store_path), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "resuming" in done.stdout
    with Store(store_path) as store:
        rows = store.rows()
    assert len(rows) == 9 and len({r["id"] for r in rows}) == 9          # nothing duplicated
    assert all(r["status"] == "ok" for r in rows)
    for r in rows:
        if r["id"] in before:                                             # nothing finished is lost
            assert r["finished"] == before[r["id"]] and r["attempts"] == 1


def test_report_table_best_drop_plot_html_markdown(tmp_path):
    rows = []
    accs = {("bn", 2): [0.5, 0.6], ("bn", 32): [0.9, 0.92], ("gn", 2): [0.8, 0.82], ("gn", 32): [0.85, 0.85]}
    for (norm, b), values in accs.items():
        for seed, acc in enumerate(values):
            rows.append({"experiment": "e", "status": "ok", "metrics": {"test_acc": acc},
                         "description": {"model": "resnet20", "norm": norm, "dataset": "mnist5k",
                                         "batch_size": b, "batch_mode": "both", "seed": seed}})
    rows.append({"experiment": "e", "status": "diverged", "metrics": {}, "description":
                 {"model": "resnet20", "norm": "bn", "dataset": "mnist5k", "batch_size": 2,
                  "batch_mode": "both", "seed": 9}})
    [summary] = summarize(rows)
    assert summary.best("resnet20") == {2: "gn", 32: "bn"}                 # the top means
    drop = summary.drop("resnet20")
    assert drop["bn"] == pytest.approx(100 * (0.91 - 0.55)) and drop["gn"] == pytest.approx(4.0)
    cell = summary.groups["resnet20"]["bn"][2]
    assert cell.mean == pytest.approx(0.55) and cell.diverged == 1
    paths = write_report(summary, tmp_path / "r")
    assert paths["png"].stat().st_size > 5000 and paths["svg"].read_text().startswith("<?xml")
    page = paths["html"].read_text()
    assert "data:image/png;base64," in page and "<svg" in page
    assert "src=\"http" not in page and "href=\"http" not in page          # opens with no server
    md = markdown([summary])
    assert "| norm | b=2 | b=32 | drop |" in md and "**81.0 ± 12.7 (n=2)**" in md


def test_cli_errors_are_one_line_exit_2(tmp_path):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("norms: [bn\n")
    cases = [["--norm", "nope"], ["--model", "vgg"], ["--dataset", "imagenet"],
             ["--norm", "gn:groups=zero"], [str(bad_yaml)], [str(tmp_path / "missing.yaml")],
             ["--margin", "0"], ["--margin", "nan"]]
    for args in cases:
        res = subprocess.run([sys.executable, "-m", "normlab.cli", "bench", *args, "--store",
                              str(tmp_path / "x.sqlite")], capture_output=True, text=True)
        assert res.returncode == 2, (args, res.stderr)
        assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
        assert res.stderr.startswith("error: ")
    assert not (tmp_path / "x.sqlite").exists()                            # failed before any work


def test_bench_runs_report_and_dry_run_commands(tmp_path):
    runner = CliRunner()
    config = _yaml(tmp_path)
    store = tmp_path / "c.sqlite"
    env = {"COLUMNS": "160"}
    dry = runner.invoke(app, ["bench", str(config), "--store", str(store), "--dry-run"], env=env)
    assert dry.exit_code == 0, dry.output
    assert "4 trials" in dry.output and "estimated" in dry.output and not store.exists()
    res = runner.invoke(app, ["bench", str(config), "--store", str(store), "--out", str(tmp_path / "rep")], env=env)
    assert res.exit_code == 0, res.output
    assert "b=4" in res.output and "accuracy.png" in res.output
    assert (tmp_path / "rep" / "report.html").exists()
    listed = runner.invoke(app, ["runs", "--store", str(store), "--norm", "bn"], env=env)
    assert listed.exit_code == 0 and "2 trial(s)" in listed.output
    runner.invoke(app, ["runs", "--store", str(store), "--format", "json", "--output", str(tmp_path / "r.json")])
    assert len(json.loads((tmp_path / "r.json").read_text())) == 4
    rep = runner.invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "rep2")], env=env)
    assert rep.exit_code == 0 and (tmp_path / "rep2" / "accuracy.svg").exists()
    missing = runner.invoke(app, ["report", "--store", str(store), "--experiment", "nope"])
    assert missing.exit_code == 2


def test_mlflow_logs_each_trial(tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    from normlab.runtime.sinks import MLflowSink

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")     # a plain folder as the tracking store
    exp = load_experiment(**TINY)
    uri = f"file://{tmp_path / 'mlruns'}"
    with Store(tmp_path / "m.sqlite") as store:
        sweep(exp, store, sinks=[MLflowSink(uri, exp.name)])
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["tiny"], output_format="list")
    assert len(runs) == 4
    assert all("test_acc" in r.data.metrics and r.data.params["norm"] in ("bn", "gn:groups=2") for r in runs)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "normlab.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, "COLUMNS": "160"})


def _one_line_exit_2(res, *needles):
    assert res.returncode == 2, (res.returncode, res.stdout[-500:], res.stderr)
    assert "Traceback" not in res.stderr and res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("error: ")
    for needle in needles:
        assert needle in res.stderr, (needle, res.stderr)


@pytest.mark.parametrize("args,needles", [
    (["--dataset", "imagefolder:/no/such/folder"], ["/no/such/folder"]),
    (["--norm", "bgn:groups=5"], ["groups=5", "bgn"]),
    (["--batch-size", "512", "--steps", "1"], ["512", "training set"]),
    (["--lr", "nan"], ["lr", "finite"]),
    (["--epochs", "inf"], ["epochs", "finite"]),
    (["--norm", "bn", "--norm", "BN"], ["more than once"]),
    (["--address", "127.0.0.1:6379"], ["--address", "--backend ray"]),
    (["--name", ""], ["--name"]),
    (["--name", "../../escape"], ["name='../../escape'"]),
    (["--preset", "quick"], ["--preset quick", "config file"]),
    (["--preset", "nope"], ["unknown preset 'nope'"]),
    (["--workers", "0"], ["--workers 0"]),
])
def test_bad_bench_input_is_one_line_exit_2_before_any_work(tmp_path, args, needles):
    config = _yaml(tmp_path)
    store = tmp_path / "x.sqlite"
    with_config = [] if args[:1] == ["--preset"] and args[1] == "nope" else [config]
    res = _cli("bench", *with_config, *args, "--store", store, "--out", tmp_path / "out")
    _one_line_exit_2(res, *needles)
    assert not store.exists() and not (tmp_path / "escape").exists()


def test_yaml_booleans_and_nonfinite_numbers_are_rejected(tmp_path):
    for bad in ({"epochs": True}, {"steps": None, "epochs": float("nan")}, {"lr": float("inf")}):
        res = _cli("bench", _yaml(tmp_path, **bad), "--store", tmp_path / "x.sqlite")
        _one_line_exit_2(res, next(iter(k for k in bad if bad[k] is not None)))


def test_unwritable_outputs_fail_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = _cli("bench", _yaml(tmp_path), "--store", tmp_path / "x.sqlite", "--out", blocker)
    _one_line_exit_2(res, "--out", "is a file")
    assert not (tmp_path / "x.sqlite").exists()
    res = _cli("dynamics", "--steps", "2", "--out", blocker / "sub")
    _one_line_exit_2(res, "--out")
    res = _cli("dynamics", "--steps", "2", "--milestones", "0.5,x")
    _one_line_exit_2(res, "--milestones")
    res = _cli("dynamics", "--steps", "2", "--gamma", "-1")
    _one_line_exit_2(res, "--gamma")


def test_bad_stores_are_one_line(tmp_path):
    not_db = tmp_path / "notes.sqlite"
    not_db.write_text("hello\n" * 100)
    for cmd in (["runs"], ["report"], ["bench", _yaml(tmp_path)]):
        res = _cli(*cmd, "--store", not_db)
        _one_line_exit_2(res, str(not_db), "not a normlab store")
    assert not_db.read_text() == "hello\n" * 100
    res = _cli("bench", _yaml(tmp_path), "--store", tmp_path)
    _one_line_exit_2(res, "is a directory")
    res = _cli("runs", "--store", tmp_path / "missing.sqlite")
    _one_line_exit_2(res, "no store at")


def test_runs_and_report_read_a_previous_schema_store(tmp_path):
    from conftest import v1_store as _v1_store

    path = tmp_path / "old.sqlite"
    _v1_store(path)
    res = _cli("runs", "--store", path, "--norm", "BN")
    assert res.returncode == 0 and "2 trial(s)" in res.stdout, res.stderr
    res = _cli("report", "--store", path, "--out", tmp_path / "rep")
    assert res.returncode == 0, res.stderr
    assert "b=32" in res.stdout and (tmp_path / "rep" / "report.html").exists()


def test_configurations_are_never_pooled(tmp_path):
    store = tmp_path / "s.sqlite"
    base = {**TINY, "norms": ["bn"], "batch_sizes": [16]}
    with Store(store) as db:
        sweep(load_experiment(**base), db)
        sweep(load_experiment(**{**base, "weight_decay": 0.0}), db)   # an edited config, same name
        sweep(load_experiment(**{**base, "name": "renamed"}), db)     # renamed: its own trials, no crash
        rows = db.rows(experiment="tiny")
    summaries = summarize(rows, "tiny")
    assert len(summaries) == 2 and [list(s.config) for s in summaries] == [["train.weight_decay"]] * 2
    assert sorted(s.config["train.weight_decay"] for s in summaries) == [0.0, 0.0005]
    res = _cli("report", "--store", store, "--out", tmp_path / "rep")
    assert res.returncode == 0, res.stderr
    assert "2 configurations" in res.stdout and "train.weight_decay" in res.stdout


def test_every_trial_failing_exits_non_zero(tmp_path, monkeypatch):
    res = _cli("bench", _yaml(tmp_path, norms=["bn"], batch_sizes=[16], lrs=[1e9]), "--store",
               tmp_path / "s.sqlite", "--out", tmp_path / "o")
    assert res.returncode == 0                          # diverged is a result, not a failure
    import io

    import torch
    from PIL import Image

    buf = io.BytesIO()                        # a readable header, truncated pixel data: fails at decode only
    Image.fromarray((torch.rand(20, 20, 3) * 255).to(torch.uint8).numpy()).save(buf, "JPEG")
    folder = tmp_path / "imgs"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        for i in range(20):
            (folder / cls / f"{i}.jpg").write_bytes(buf.getvalue()[:-200])
    res = _cli("bench", "--dataset", f"imagefolder:{folder},size=8", "--model", "resnet20",
               "--norm", "bn", "--batch-size", "4", "--steps", "1", "--width", "0.25",
               "--store", tmp_path / "f.sqlite", "--out", tmp_path / "o2")
    assert res.returncode == 1 and "every trial failed" in res.stderr, (res.stdout[-800:], res.stderr)
    assert str(folder) in res.stderr                    # the bad file is named


def _rows(table):
    rows = []
    for (norm, b), accs in table.items():
        for seed, acc in enumerate(accs):
            rows.append({"experiment": "e", "status": "ok", "metrics": {"test_acc": acc},
                         "description": {"model": "resnet20", "norm": norm, "dataset": "mnist5k",
                                         "batch_size": b, "batch_mode": "norm", "seed": seed}})
    return rows


def test_report_statistics_n_intervals_and_significance():
    from normlab.bench.report import compare, verdicts

    rows = _rows({("bn", 2): [0.80, 0.82, 0.81], ("bn", 32): [0.90, 0.93, 0.91],
                  ("bgn:groups=4", 2): [0.86, 0.89, 0.87], ("bgn:groups=4", 32): [0.905, 0.925, 0.915],
                  ("gn:groups=4", 2): [0.9], ("bgn:groups=16", 2): [0.81, 0.84, 0.82]})
    [s] = summarize(rows)
    cells = s.groups["resnet20"]
    assert cells["gn:groups=4"][2].text() == "90.0 (n=1)"                  # one seed: n=1, no "± 0.0"
    # 95% t-interval by hand: mean 0.81, sd 0.01, t(0.975, 2) = 4.302653
    assert cells["bn"][2].stat.half_width == pytest.approx(4.302653 * 0.01 / 3 ** 0.5, rel=1e-5)
    assert cells["bn"][2].text() == "81.0 ± 2.5 (n=3)"
    c = compare(cells["bgn:groups=4"][2], cells["bn"][2])                  # paired by seed
    from scipy.stats import ttest_rel

    from normlab.report.stats import p_values

    assert c.diff == pytest.approx(100 * (0.873333 - 0.81), abs=1e-3) and c.n == 3
    p, _ = p_values(c.diff, c.se, c.df, 1.0)
    assert float(p) == pytest.approx(ttest_rel([0.86, 0.89, 0.87], [0.80, 0.82, 0.81]).pvalue)
    assert compare(cells["gn:groups=4"][2], cells["bn"][2]).n == 1        # n=1: no test
    text = " ".join(verdicts(s, "resnet20"))
    assert "BN's drop from b=32 to b=2: +10.3 points" in text and "paper: 9.6" in text
    assert "the claim that BN degrades at small batch holds" in text       # a big, steady drop
    # BGN G=4: +6.3 points at 3 seeds, but the family has several claims: Holm decides
    assert "bgn:groups=4 against BN at b=2" in text
    assert "comparison(s) in this report's family" in text and "Holm" in text
    assert "sensitivity to G" in text
    table = s.table("resnet20")
    assert not any(cell.endswith("*") for row in table.rows for cell in row)   # no unadjusted stars


def test_verdicts_are_holm_adjusted_and_say_inconclusive_with_seeds_needed():
    from normlab.bench.report import verdicts

    # BN's drop: +1.3 points with a spread of ~1.5: p about 0.3 at 3 seeds: neither shown nor refuted
    rows = _rows({("bn", 2): [0.90, 0.92, 0.905], ("bn", 32): [0.925, 0.915, 0.925]})
    [s] = summarize(rows)
    drop = next(v for v in verdicts(s, "resnet20") if v.startswith("BN's drop from"))
    assert "inconclusive at 3 seeds" in drop and "seeds would decide it" in drop
    assert "does not hold" not in drop
    # equal within a tight spread: equivalence within 1 point is shown: does not hold
    rows = _rows({("bn", 2): [0.90, 0.92, 0.91, 0.93], ("bn", 32): [0.901, 0.921, 0.912, 0.929]})
    [s] = summarize(rows)
    drop = next(v for v in verdicts(s, "resnet20") if v.startswith("BN's drop from"))
    assert "degrades at small batch does not hold (equivalence within ±1 points is shown)" in drop
    [s] = summarize(rows, margin=0.05)                                      # a margin too small to show
    drop = next(v for v in verdicts(s, "resnet20") if v.startswith("BN's drop from"))
    assert "inconclusive at 4 seeds" in drop


def test_the_large_batch_verdict_reads_one_way():
    from normlab.bench.report import verdicts

    def said(acc128):
        rows = _rows({("bn", 2): [0.80, 0.82, 0.81], ("bn", 32): [0.90, 0.93, 0.91], ("bn", 128): acc128})
        [s] = summarize(rows)
        return next(v for v in verdicts(s, "resnet20") if v.startswith("BN at b=128"))

    lower = said([0.85, 0.87, 0.86])                       # 5.3 points below b=32, steady
    assert lower.startswith("BN at b=128 against b=32: the claim that BN saturates")
    assert "very large batch holds: -5.33 points" in lower
    assert "inconclusive at 3 seeds" in said([0.905, 0.925, 0.92])     # within noise, not refuted
    assert "does not hold (the opposite difference is shown)" in said([0.95, 0.99, 0.96])  # +5, +6, +5


def test_best_only_when_it_beats_the_runner_up_else_tied():
    rows = _rows({("bn", 2): [0.80, 0.82, 0.81, 0.80, 0.81], ("bn", 32): [0.90, 0.93, 0.91, 0.92, 0.90],
                  ("gn", 2): [0.90, 0.92, 0.91, 0.905, 0.915], ("gn", 32): [0.905, 0.925, 0.91, 0.93, 0.905]})
    [s] = summarize(rows)
    table = s.table("resnet20")
    best = next(r for r in table.rows if r[0] == "best")
    assert best[1] == "best: gn"                                # +9.8 points every seed
    assert best[2].startswith("tied: ")                         # within noise
    assert set(best[2][6:].split(", ")) == {"bn", "gn"}


def test_a_best_norm_with_diverged_seeds_says_so():
    from normlab.bench.report import verdicts

    rows = _rows({("bn", 2): [0.80, 0.82, 0.81], ("bn", 32): [0.90, 0.93, 0.91],
                  ("evonorm_s0", 2): [0.95, 0.96], ("evonorm_s0", 32): [0.95, 0.96]})
    rows.append({**rows[-1], "status": "diverged", "metrics": {}})
    rows[-1]["description"] = {**rows[-1]["description"], "seed": 2}
    [s] = summarize(rows)
    said = {line.split(":")[0]: line for line in verdicts(s, "resnet20") if " against the runner-up " in line}
    assert "diverged" not in said["b=2"]                                   # no divergence at b=2
    assert said["b=32"].endswith("(1 of 3 seeds of evonorm_s0 diverged; its mean is of the rest).")


def test_a_group_sweep_in_one_spec():
    exp = load_experiment(**{**TINY, "norms": ["bn", "bgn:groups=[1,2,4]"]})
    assert exp.norms == ["bn", "bgn:groups=1", "bgn:groups=2", "bgn:groups=4"]
    with pytest.raises(ExperimentError, match="empty"):
        load_experiment(**{**TINY, "norms": ["bgn:groups=[]"]})


def test_estimate_times_with_the_workers_threads_and_counts_steps_updates_and_evaluation(monkeypatch):
    import torch

    import normlab.train
    from normlab.bench import estimate
    from normlab.runtime import threads_per_worker

    threads_seen = []

    def fake_timed_calls(fn, rounds=3, warmup=1):          # every timed call takes 10 ms
        threads_seen.append(torch.get_num_threads())
        return [0.01] * rounds

    monkeypatch.setattr(normlab.train, "timed_calls", fake_timed_calls)
    exp = load_experiment(**TINY)                           # 2 norms x 2 batches, 4 steps, one final evaluation
    before = torch.get_num_threads()
    est = estimate(exp, workers=2)
    assert est["runs"] == 4 and est["threads"] == threads_per_worker(2)
    assert set(threads_seen) == {threads_per_worker(2)} and torch.get_num_threads() == before
    # per run: 4 steps x (forward+backward 10 ms + update 10 ms) + one evaluation (the test set
    # fits one evaluation batch: 10 ms)
    assert est["seconds"] == pytest.approx(4 * (4 * 0.02 + 0.01))


@pytest.mark.parametrize("dry_run", [True, False])
def test_corrupt_test_image_stops_the_run_before_training(tmp_path, dry_run):
    """Issue 28: an unreadable file in the test split was found only at each trial's final
    evaluation (and --dry-run passed); every header is now read up front, the file named."""
    import torch
    from PIL import Image

    folder = tmp_path / "imgs"
    for split, n in (("train", 8), ("val", 2)):
        for cls in ("a", "b"):
            (folder / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray((torch.rand(10, 10, 3) * 255).to(torch.uint8).numpy()).save(
                    folder / split / cls / f"{i}.png")
    bad = folder / "val" / "b" / "1.png"
    bad.write_bytes(b"not an image")
    store = tmp_path / "s.sqlite"
    res = _cli("bench", "--dataset", f"imagefolder:{folder},size=8", "--model", "resnet20", "--norm", "bn",
               "--batch-size", "4", "--steps", "1", "--width", "0.25", "--store", store, "--out",
               tmp_path / "o", *(["--dry-run"] if dry_run else []))
    _one_line_exit_2(res, str(bad), "cannot decode image")
    assert not store.exists() and not (tmp_path / "o").exists()


def test_a_trial_is_bit_reproducible_for_a_seed_and_thread_count():
    """Two runs of one description give identical metrics, history and weights; the thread count
    is part of the description when the experiment pins it and is recorded in the metrics."""
    import torch

    from normlab.bench.run import run_trial
    from normlab.data import load_dataset
    from normlab.models import create_model
    from normlab.train import TrainConfig, fit

    exp = load_experiment(**{**TINY, "norms": ["bn"], "batch_sizes": [4], "steps": 6, "threads": 1})
    [trial] = plan(exp)
    assert trial["threads"] == 1
    assert "threads" not in plan(load_experiment(**TINY))[0]           # unpinned: old identities kept
    assert "threads" not in load_experiment(**TINY).identity()
    before = torch.get_num_threads()
    a, b = run_trial(trial), run_trial(trial)
    assert torch.get_num_threads() == before                          # the pin is undone afterwards
    assert a.status == b.status == "ok"
    def drop(m):                                                      # timings differ, nothing else
        return {k: v for k, v in m.items() if "sec" not in k}

    assert drop(a.metrics) == drop(b.metrics) and a.metrics["test_acc"] == b.metrics["test_acc"]
    assert [drop(h) for h in a.history] == [drop(h) for h in b.history]
    assert a.metrics["threads"] == 1 and a.metrics["cpu_capability"] and a.metrics["torch"]

    data = load_dataset(TINY["dataset"])
    cfg = TrainConfig.from_dict(trial["train"])

    def weights(threads):
        torch.set_num_threads(threads)
        try:
            torch.manual_seed(0)
            model = create_model("resnet20", norm="bn", in_channels=data.in_channels,
                                 num_classes=data.num_classes, width=0.25)
            fit(model, data, cfg)
            return model.state_dict()
        finally:
            torch.set_num_threads(before)

    for threads in {1, max(1, before)}:
        x, y = weights(threads), weights(threads)
        assert all(torch.equal(x[k], y[k]) for k in x)                 # bit for bit


def test_threads_setting_is_validated():
    with pytest.raises(ExperimentError, match="threads=0 is invalid"):
        load_experiment(**{**TINY, "threads": 0})


def test_bgn_groups_tuned_chooses_g_on_validation_and_reports_its_test_accuracy(tmp_path):
    """bgn:groups=tuned: one trial per G of the grid on the training data less a validation split
    (stored), G chosen by validation accuracy, the cell shows the chosen G's test accuracy only."""
    from normlab.bench.experiment import TUNED
    from normlab.bench.run import run_trial
    from normlab.bench.report import tuning_table, verdicts

    exp = load_experiment(**{**TINY, "norms": ["bn", "bgn:groups=tuned"], "seeds": [0, 1],
                             "tune": {"grid": [1, 4], "val_fraction": 0.25}})
    assert exp.norms == ["bn", TUNED] and exp.trained_norms() == ["bn", "bgn:groups=1", "bgn:groups=4"]
    trials = plan(exp)
    tune = [t for t in trials if "tune" in t]
    assert len(tune) == 2 * 2 * 2 and {t["norm"] for t in tune} == {"bgn:groups=1", "bgn:groups=4"}
    assert "tune" in exp.identity() and "tune" not in load_experiment(**TINY).identity()
    r = run_trial(tune[0])
    assert r.status == "ok" and 0 <= r.metrics["val_acc"] <= 1 and 0 <= r.metrics["test_acc"] <= 1
    assert "test_acc" not in r.history[-1] and "val_acc" in r.history[-1]

    # the choice, from stored-looking rows: G=4 wins on validation but G=1 has the better test accuracy
    rows = []
    def add(norm, b, seed, acc, val=None):
        d = {"model": "resnet20", "norm": norm, "dataset": "mnist5k", "batch_size": b, "batch_mode": "norm",
             "seed": seed}
        m = {"test_acc": acc}
        if val is not None:
            d["tune"] = {"norm": TUNED, "val_fraction": 0.1}
            m["val_acc"] = val
        rows.append({"experiment": "e", "status": "ok", "metrics": m, "description": d})
    for seed in range(3):
        add("bn", 2, seed, 0.80 + 0.01 * seed)
        add("bgn:groups=1", 2, seed, 0.99, val=0.70)
        add("bgn:groups=4", 2, seed, 0.85 + 0.01 * seed, val=0.90)
    [s] = summarize(rows)
    assert s.config == {}                                               # tune rows are not another configuration
    cell = s.groups["resnet20"][TUNED][2]
    assert cell.accs == pytest.approx([0.85, 0.86, 0.87]) and cell.text().endswith("[groups=4]")
    table = tuning_table(s, "resnet20")
    assert [r[0] for r in table.rows][:3] == ["bgn:groups=1", "bgn:groups=4", "validated"] and (1, 1) in table.emphasis
    assert any(line.startswith(f"{TUNED} against BN at b=2") for line in verdicts(s, "resnet20"))
    assert "bgn:groups=4" not in s.groups["resnet20"]                   # validation runs are not cells


def test_tune_settings_are_validated():
    with pytest.raises(ExperimentError, match="tune.grid"):
        load_experiment(**{**TINY, "norms": ["bgn:groups=tuned"], "tune": {"grid": [0]}})
    with pytest.raises(ExperimentError, match="val_fraction"):
        load_experiment(**{**TINY, "norms": ["bgn:groups=tuned"], "tune": {"val_fraction": 1.5}})
