"""The CPU study on NB201 (normlab.nas.nb201.study) at a reduced size on digits (CI has no
Fashion-MNIST), the supernet's chance check, and the data reductions it relies on."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

TINY = ("dataset: digits\nimage_size: 8\ntrain_images: 160\ntest_images: 64\nC: 4\nN: 1\ncells: 2\n"
        "extremes: 1\ntable: standin\nseeds: [1, 2]\nepochs: 1\nbatch_size: 32\nlr: 0.05\nthreads: 1\n"
        "spos_epochs: 1\nbn_epochs: 1\nrebn_images: 32\nbootstrap: 20\nabs_children: 1\nrandom_drops: 2\n")


def test_connected_cells():
    from normlab.nas.nb201.study import connected

    assert not connected("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert connected("|none~0|+|none~0|none~1|+|skip_connect~0|none~1|none~2|")           # 3 <- 0 directly
    assert connected("|nor_conv_1x1~0|+|none~0|avg_pool_3x3~1|+|none~0|none~1|nor_conv_3x3~2|")   # 0->1->2->3
    assert not connected("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")   # node 2 unreachable
    assert not connected("|none~0|+|none~0|none~1|+|none~0|skip_connect~1|nor_conv_3x3~2|")    # nothing leaves 0


def test_chance_test_is_the_binomial_test():
    from scipy.stats import binom

    from normlab.report.stats import chance_test

    at = chance_test(0.10, 287, 10)
    assert not at["above_chance"] and "WITHIN NOISE OF CHANCE" in at["text"]
    # the band: the 99% quantile of a guesser's count, over n
    assert at["band"] == pytest.approx(binom.ppf(0.99, 287, 0.1) / 287)
    above = chance_test(0.30, 287, 10)
    assert above["above_chance"] and above["p_value"] == pytest.approx(binom.sf(round(0.3 * 287) - 1, 287, 0.1))
    assert not chance_test(at["band"] - 1 / 287, 287, 10)["above_chance"]
    with pytest.raises(ValueError, match="classes=1"):
        chance_test(0.5, 10, 1)


def test_reduced_dataset_spec():
    from normlab.data import DataError, check_dataset, load_dataset

    d = load_dataset("digits:size=4,train=100,test=50")
    assert d.train_x.shape == (100, 1, 4, 4) and d.test_x.shape == (50, 1, 4, 4)
    again = load_dataset("digits:size=4,train=100,test=50")
    assert np.array_equal(d.train_y.numpy(), again.train_y.numpy())            # the same images every time
    info = check_dataset("digits:size=4,train=100,test=50")
    assert (info.image_size, info.n_train, info.n_test) == ((4, 4), 100, 50)
    with pytest.raises(DataError, match="train=0"):
        load_dataset("digits:train=0")
    with pytest.raises(DataError, match="no parameter colour"):
        load_dataset("digits:colour=3")


@pytest.mark.slow
def test_study_whole_chain_and_resume_after_sigkill(tmp_path):
    """The whole study at a tiny size (in process): ground truth as stored trials (2 seeds), both
    supernets, every proxy, the report with the ceiling row first, both cell sets, plots. Then
    `normlab nas nb201 study` killed with SIGKILL during the ground truth and started again ends
    with the stand-alone accuracies and proxy scores of the uninterrupted run."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    (tmp_path / "s.yaml").write_text(TINY)
    (tmp_path / "k.yaml").write_text(TINY + "abs_drop: 0\n")         # the killed run: no ABS step (not compared)

    def cmd(folder):
        return [sys.executable, "-m", "normlab.cli", "nas", "nb201", "study", str(tmp_path / "k.yaml"), "--out-dir",
                str(folder / "out"), "--store", str(folder / "s.sqlite"), "--backend", "serial", "--workers", "1"]

    _check_whole_chain(tmp_path / "s.yaml", tmp_path / "a")          # the uninterrupted run, in process
    env = {**os.environ, "COLUMNS": "200"}

    killed = tmp_path / "b"
    proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def done() -> int:
        try:
            with sqlite3.connect(killed / "s.sqlite") as con:
                return con.execute("select count(*) from trials where status='ok'").fetchone()[0]
        except sqlite3.Error:
            return 0
    deadline = time.time() + 120
    while time.time() < deadline and done() < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "out" / "report.json").exists()
    again = subprocess.run(cmd(killed), capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr
    assert "noise ceiling" in again.stdout
    a, b = (json.loads((f / "out" / "report.json").read_text()) for f in (tmp_path / "a", killed))
    assert a["cells"] == b["cells"] and a["runs"] == b["runs"]
    for k, v in a["proxies"].items():
        assert all(math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12) for x, y in zip(v, b["proxies"][k])), k
    assert a["correlation"] == b["correlation"] and a["noise_ceiling"] == b["noise_ceiling"]


def _check_whole_chain(config, folder):
    from normlab.nas.nb201.study import (
        PROXY_ORDER,
        _supernets,
        connected,
        load_study_config,
        run_study,
        study_plan,
        study_table,
    )
    from normlab.runtime import Store

    cfg = load_study_config(config)
    plan = study_plan(cfg)
    assert len(plan["cells"]) == 4 and plan["why"].count("table best") == 1 and plan["seconds"] > 0
    store = folder / "s.sqlite"
    report = run_study(cfg, out_dir=folder / "out", store=store)
    cells = report["cells"]
    assert cells == plan["cells"] and report["connected"] == [connected(a) for a in cells]
    assert len(report["runs"]) == 2 and all(0 <= a <= 1 for run in report["runs"] for a in run)
    assert report["truth"] == pytest.approx(np.mean(report["runs"], axis=0).tolist())
    assert set(report["proxies"]) == set(PROXY_ORDER)
    for subset in ("all", "connected"):
        assert set(report["correlation"][subset]) == set(PROXY_ORDER)
    assert report["spread"]["all"]["range"] >= 0
    assert {"spos", "bn"} <= set(report["supernet_check"])
    for chk in report["supernet_check"].values():
        assert chk["above_chance"] == (chk["p_value"] < chk["alpha"])
    rows = study_table(report).rows
    assert rows[0][0].startswith("ground truth seed 2 vs seed 1")           # the ceiling comes first
    assert "STAND-IN" in rows[-1][0]
    for f in ("report.json", "report.md", "report.html", "scatter.png", "seeds.png", "spos.pt", "bn.pt"):
        assert (folder / "out" / f).exists(), f
    with Store(store, readonly=True) as db:
        exp = next(e for e in db.experiments() if e.name.endswith("/ground-truth"))
        trained = db.rows(experiment_id=exp.id)
    assert len(trained) == 8 and all(r["status"] == "ok" for r in trained)
    # ABS's drop, judged against the study's own ground truth (the 4 sampled cells)
    res = report["abs"]
    assert res["sampled"] and res["n_cells"] == 4 and res["split"] == "test"
    assert (np.asarray(res["truth_cells"]).sum(axis=1) == 4).all()            # each cell backs one op per edge
    assert res["full_acc"] == pytest.approx(100 * max(report["truth"]))
    assert len(res["angle"]["dropped"]) == 20 and len(res["random"]["runs"]) == 2
    md = (folder / "out" / "report.md").read_text()
    assert "ground truth: 4 sampled cells, stand-alone digits" in md and "| angle (ABS) |" in md
    assert "ABS's drop on NB201" in (folder / "out" / "report.html").read_text()
    abs_claims = report["verdicts"]["abs"]                    # each ranking against the random drops, in the family
    assert {"angle", "rebn"} <= set(abs_claims) and "permutation test against 2 random drops" in md
    assert all(c["p"] == (1 + sum(k >= c["kept"] for k in res["random"]["kept_of_top"])) / 3
               for c in abs_claims.values())
    # a rerun trains no supernet: both checkpoints are reused as they are (the stored trainings too)
    stamps = {f: (folder / "out" / f).stat().st_mtime_ns for f in ("spos.pt", "bn.pt")}
    said = []
    with Store(store) as db:
        scores = _supernets(cfg, cells, folder / "out", db, said.append)[0]
    assert {f: (folder / "out" / f).stat().st_mtime_ns for f in stamps} == stamps
    assert sum("reused, nothing to train" in m for m in said) == 2
    assert scores["abs_angle"] == report["proxies"]["abs_angle"]


def test_mean_ceiling_is_what_the_true_ranking_scores_against_the_mean_of_seeds():
    """Simulated cells: true accuracy + independent noise per seed. The ceiling computed from seed
    vs seed alone matches the measured rank correlation of the truth with the 2-seed mean."""
    from scipy.stats import kendalltau, spearmanr

    from normlab.nas.nb201.study import mean_ceiling

    rng = np.random.default_rng(0)
    true = rng.normal(size=20000)
    s1, s2 = true + rng.normal(size=true.size), true + rng.normal(size=true.size)
    mean = (s1 + s2) / 2
    for kind, fn in (("kendall", kendalltau), ("spearman", spearmanr)):
        pair = float(fn(s1, s2)[0])
        want = float(fn(true, mean)[0])
        assert mean_ceiling(pair, 2, kind) == pytest.approx(want, abs=0.01)
        assert mean_ceiling(pair, 2, kind) > pair          # the mean is less noisy than one seed
    assert mean_ceiling(1.0, 2) == pytest.approx(1.0)
    assert mean_ceiling(-0.2, 2) == 0.0

def test_abs_stage_wise_on_the_study_ground_truth(tmp_path):
    """ABS's stage-wise shrink in the study: abs_shrink's loop over the NB201 supernet (one
    schedule over spos_epochs), each stage dropping the lowest edge-ops by that stage's angles,
    every stage judged against the sampled truth; a rerun reuses the checkpoint."""
    from normlab.nas.nb201 import EDGES, NUM_ARCHS, OPS, NB201Error, index_to_arch
    from normlab.nas.nb201.study import StudyConfig, study_abs_stages

    cfg = StudyConfig(dataset="digits", image_size=8, train_images=160, test_images=64, C=2, N=1, batch_size=32,
                      spos_epochs=3, abs_drop=20, abs_stages=2, abs_stage_epochs=1, abs_children=1)
    rng = np.random.default_rng(0)
    cells = [index_to_arch(int(i)) for i in rng.choice(NUM_ARCHS, 10, replace=False)]
    runs = rng.uniform(0.1, 0.9, (10, 2))
    res = study_abs_stages(cfg, cells, runs, tmp_path, lambda m: None)
    st = res["per_stage_spaces"]
    assert [s["epoch"] for s in st] == [1, 2, 3] and [len(s["dropped"]) for s in st] == [0, 10, 20]
    assert res["final"]["allowed"] == st[-1]["allowed"] and res["final"]["kept_of_top"] == st[-1]["kept_of_top"]
    for before, after in itertools.pairwise(st):
        scores = {(e, int(o)): v for e, row in enumerate(before["angle_scores"]) for o, v in row.items()}
        gone = [scores[e, o] for e in range(len(EDGES)) for o in before["allowed"][e] if o not in after["allowed"][e]]
        kept = [scores[e, o] for e in range(len(EDGES)) for o in after["allowed"][e] if len(after["allowed"][e]) > 1]
        assert len(gone) == 10 and max(gone) <= min(kept)            # that stage's lowest angles went
    assert all(d["op"] in OPS for d in res["final"]["dropped"])
    stamp = (tmp_path / "abs-stages.pt").stat().st_mtime_ns
    again = study_abs_stages(cfg, cells, runs, tmp_path, lambda m: None)
    assert (tmp_path / "abs-stages.pt").stat().st_mtime_ns == stamp and again["final"] == res["final"]
    with pytest.raises(NB201Error, match="abs_drop a positive multiple of abs_stages"):
        StudyConfig(abs_drop=20, abs_stages=3)
    with pytest.raises(NB201Error, match="fewer than spos_epochs"):
        StudyConfig(abs_stages=4, abs_stage_epochs=4, spos_epochs=15)
