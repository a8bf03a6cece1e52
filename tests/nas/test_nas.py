"""normlab nas: supernet, SPOS/BN-NAS training, the three scorers, search through the store,
correlation harness, ABS shrinking, CLI. Reference values are computed from the formulas here."""

import json
import math
import random

import numpy as np
import pytest
import torch
from torch import nn

from normlab.nas import MBConv, NasError, PathSpace, SpaceConfig, Supernet
from normlab.nas.scores import angle, bn_scores, bn_table, rebn_accuracy, synflow
from normlab.nas.train import TrainConfig, is_norm, load_split, load_supernet, train_supernet

TINY = SpaceConfig(image_size=8, stem=4, stem_stride=1, stages=((4, 1, 1), (8, 1, 2)),
                   kernels=(3, 5), expansions=(2,))
WIDER = SpaceConfig(image_size=8, stem=4, stem_stride=1, stages=((4, 2, 1), (8, 1, 2)),
                    kernels=(3, 5), expansions=(2,))                # 3 * 3 * 2 = 18 paths
TRAIN = dict(dataset="digits", batch_size=64, train_limit=256, lr=0.1)


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_default_space_size_and_ops():
    cfg = SpaceConfig()
    layers = cfg.layers()
    assert 6 <= len(layers) <= 8 and cfg.num_paths() >= 10 ** 4
    assert {l["cout"] for l in layers} == {8, 16, 32}
    for l in layers:
        assert ("id" in l["names"]) == (l["cin"] == l["cout"] and l["stride"] == 1)
        assert len([n for n in l["names"] if n != "id"]) == 6


def test_forward_every_op_and_random_path():
    torch.manual_seed(0)
    net = Supernet(TINY)
    x = torch.randn(3, 1, 8, 8)
    for layer, n in enumerate(net.num_ops):
        for i in range(n):
            path = [0] * len(net.num_ops)
            path[layer] = i
            assert net(x, path).shape == (3, 10)
    path = PathSpace.full(net.num_ops).sample(random.Random(1))
    out = net(x, path)
    assert torch.isfinite(out).all()
    net.eval()
    sub = net.subnet(path).eval()
    torch.testing.assert_close(sub(x), net(x, path))


def test_flops_match_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    net = Supernet(SpaceConfig(image_size=9, stem=4, stages=((4, 1, 1), (8, 2, 2))))
    for path in ([0, 0, 0], [5, 1, 6], [6, 3, 2]):
        sub = net.subnet(path).eval()
        with FlopCounterMode(display=False) as fc:
            sub(torch.randn(1, 1, 9, 9))
        assert net.flops(path) == fc.get_total_flops()
        assert net.params(path) == sum(p.numel() for p in sub.parameters())


def test_path_space_key_mutate_json():
    space = PathSpace(((0, 1, 2), (3,), (0, 4)), rate=0.5)
    rng = random.Random(0)
    for _ in range(50):
        p = space.sample(rng)
        assert space.contains(p)
        q = space.mutate(p, rng)
        assert space.contains(q) and q != p and q[1] == 3
        assert space.from_json(space.to_json(q)) == q
    assert space.key((2, 3, 4)) == "2-3-4" and space.size == 6
    with pytest.raises(NasError):
        PathSpace(((0,), ()))


def test_bad_space_settings():
    with pytest.raises(NasError, match="kernels"):
        SpaceConfig(kernels=(4,))
    with pytest.raises(NasError, match="norm"):
        SpaceConfig(norm="nosuchnorm")
    with pytest.raises(NasError, match="unknown"):
        SpaceConfig.from_dict({"widths": 3})
    with pytest.raises(NasError, match="mode"):
        TrainConfig(mode="half")


def test_bgn_norm_in_ops():
    net = Supernet(SpaceConfig(image_size=8, stem=4, stem_stride=1, stages=((4, 1, 1),), kernels=(3,),
                               expansions=(2,), norm="bgn:groups=2"))
    assert "BatchGroupNorm" in type(net.choices[0][0].last_norm).__name__
    net(torch.randn(4, 1, 8, 8), [0])


def _state(net):
    return {k: v.clone() for k, v in net.named_parameters()}


def test_spos_unsampled_ops_untouched():
    """One epoch restricted to op 0 everywhere: every other op is bit-identical (no momentum or
    weight-decay drift), op 0 and the stem moved."""
    torch.manual_seed(0)
    net = Supernet(TINY)
    before = _state(net)
    allowed = [[0] for _ in net.num_ops]
    train_supernet(TINY, TrainConfig(epochs=1, weight_decay=0.1, **TRAIN), net=net, allowed=allowed)
    after = _state(net)
    for name in before:
        parts = name.split(".")
        if parts[0] == "choices" and parts[2] != "0":
            assert torch.equal(before[name], after[name]), name
    assert not torch.equal(before["choices.0.0.expand.weight"], after["choices.0.0.expand.weight"])
    assert not torch.equal(before["stem.0.weight"], after["stem.0.weight"])


@pytest.mark.parametrize("bn_params", ["last", "all"])
def test_bn_only_training_changes_only_bn_affine(bn_params):
    torch.manual_seed(0)
    net = Supernet(TINY)
    before = _state(net)
    train_supernet(TINY, TrainConfig(epochs=1, mode="bn", bn_params=bn_params, **TRAIN), net=net)
    after = _state(net)
    last = {id(op.last_norm) for ops in net.choices for op in ops if op.last_norm is not None}
    modules = dict(net.named_modules())
    changed = 0
    for name in before:
        owner = modules[name.rsplit(".", 1)[0]]
        is_bn = is_norm(owner)
        trains = is_bn and (bn_params == "all" or id(owner) in last)
        if trains:
            changed += not torch.equal(before[name], after[name])
        else:
            assert torch.equal(before[name], after[name]), name
    assert changed > 0


def test_bn_indicator_by_hand():
    torch.manual_seed(0)
    net = Supernet(TINY)
    with torch.no_grad():
        for ops in net.choices:
            for op in ops:
                if isinstance(op, MBConv):
                    for norm in (op.norm1, op.norm2, op.norm3):
                        norm.weight.uniform_(-2, 2)
    path = [2, 1]                    # layer 0: identity (index 2), layer 1: k5e2
    assert net.names(path) == ["id", "k5e2"]
    g = net.choices[1][1].norm3.weight.detach().double()
    expected = sum(abs(float(v)) for v in g) / len(g)      # identity contributes 0
    table = bn_table(net)
    assert table[0, 2] == 0.0
    assert bn_scores(table, [path])[0] == pytest.approx(expected, rel=1e-6)
    path = [0, 0]
    g0, g1 = net.choices[0][0].norm3.weight.detach(), net.choices[1][0].norm3.weight.detach()
    expected = float(g0.abs().sum()) / len(g0) + float(g1.abs().sum()) / len(g1)
    assert bn_scores(table, [path])[0] == pytest.approx(expected, rel=1e-6)
    # vectorised over many paths equals one at a time
    many = np.array([[i, j] for i in range(3) for j in range(2)])
    assert np.allclose(bn_scores(table, many), [bn_scores(table, [p])[0] for p in many])


def test_angle_by_hand_excludes_bn_and_unused_ops():
    torch.manual_seed(0)
    net = Supernet(TINY)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    trained = {k: v.clone() + 0.1 * torch.randn_like(v.float()).to(v.dtype) if v.is_floating_point() else v
               for k, v in init.items()}
    path = [0, 1]
    names = ["stem.0.weight", "choices.0.0.expand.weight", "choices.0.0.dw.weight", "choices.0.0.project.weight",
             "choices.1.1.expand.weight", "choices.1.1.dw.weight", "choices.1.1.project.weight",
             "classifier.weight", "classifier.bias"]
    v0 = np.concatenate([init[n].numpy().ravel() for n in names]).astype(np.float64)
    vt = np.concatenate([trained[n].numpy().ravel() for n in names]).astype(np.float64)
    expected = math.acos(v0 @ vt / (np.linalg.norm(v0) * np.linalg.norm(vt)))
    assert angle(init, trained, net, path) == pytest.approx(expected, rel=1e-9)
    # an unused op's or a norm's change does not move the angle; the identity contributes nothing
    t2 = dict(trained)
    t2["choices.1.0.expand.weight"] = t2["choices.1.0.expand.weight"] * 5
    t2["choices.0.0.norm3.weight"] = t2["choices.0.0.norm3.weight"] * 5
    assert angle(init, t2, net, path) == pytest.approx(expected, rel=1e-12)
    id_path = [2, 1]
    names_id = [n for n in names if not n.startswith("choices.0.")]
    v0 = np.concatenate([init[n].numpy().ravel() for n in names_id]).astype(np.float64)
    vt = np.concatenate([trained[n].numpy().ravel() for n in names_id]).astype(np.float64)
    assert angle(init, trained, net, id_path) == pytest.approx(
        math.acos(v0 @ vt / (np.linalg.norm(v0) * np.linalg.norm(vt))), rel=1e-9)


def test_rebn_does_not_leak_statistics_and_is_deterministic():
    torch.manual_seed(0)
    net = Supernet(TINY)
    split = load_split("digits")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    a = rebn_accuracy(net, [0, 1], split.train_x[:128], split.val_x, split.val_y)
    rebn_accuracy(net, [1, 0], split.train_x[:128], split.val_x, split.val_y)
    b = rebn_accuracy(net, [0, 1], split.train_x[:128], split.val_x, split.val_y)
    assert a == b
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_same_seed_same_run_and_checkpoint_resume(tmp_path):
    cfg = TrainConfig(epochs=2, **TRAIN)
    a = train_supernet(TINY, cfg)
    ck = tmp_path / "s.pt"
    train_supernet(TINY, cfg, checkpoint=ck, epochs=1)          # "killed" after one epoch
    b = train_supernet(TINY, cfg, checkpoint=ck)                 # resumed
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    c = train_supernet(TINY, TrainConfig(epochs=2, **{**TRAIN, "seed": 1}))
    assert not torch.equal(a["model"]["classifier.weight"], c["model"]["classifier.weight"])
    with pytest.raises(NasError, match="other settings"):
        train_supernet(TINY, TrainConfig(epochs=3, **TRAIN), checkpoint=ck)


def test_synflow_positive():
    torch.manual_seed(0)
    net = Supernet(TINY)
    assert synflow(net.subnet([0, 0]), (1, 8, 8)) > 0


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    ck = tmp_path_factory.mktemp("nas") / "spos.pt"
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    train_supernet(WIDER, TrainConfig(epochs=1, **TRAIN), checkpoint=ck)
    torch.set_num_threads(n)
    return ck


@pytest.mark.parametrize("scorer", ["bn", "angle", "rebn"])
def test_search_through_store_resumes(tiny_checkpoint, tmp_path, scorer):
    from normlab.nas.search import search_paths
    from normlab.runtime import Store

    db = tmp_path / "s.sqlite"
    kw = dict(scorer=scorer, population=4, sample_size=2, seed=3, name="t", progress=False)
    with Store(db) as store:
        first = search_paths(tiny_checkpoint, budget=6, store=store, **kw)
    assert len(first.history) == 6 and all(e.ok for e in first.history)
    with Store(db) as store:
        again = search_paths(tiny_checkpoint, budget=9, store=store, **kw)
    assert [e.key for e in again.history[:6]] == [e.key for e in first.history]
    assert [e.scores for e in again.history[:6]] == [e.scores for e in first.history]
    with Store(db) as store:
        rows = store.rows(experiment_id=store.experiments(name="t")[-1].id)
    assert len(rows) == 9                                       # the first 6 were not evaluated again


def test_flops_limit_binds(tiny_checkpoint):
    from normlab.nas.search import search_paths

    net = Supernet(WIDER)
    flops = sorted(net.flops(p) for p in [(i, j, k) for i in range(3) for j in range(3) for k in range(2)])
    limit = flops[5]
    res = search_paths(tiny_checkpoint, scorer="bn", budget=6, population=2, sample_size=1,
                       max_flops=limit, progress=False)
    assert res.history and all(e.scores["flops"] <= limit for e in res.history)


def test_correlate_tiny(tmp_path):
    from normlab.nas.search import correlate

    cfg = TrainConfig(epochs=2, **TRAIN)
    report = correlate(TINY, standalone=cfg, spos=cfg, bn=TrainConfig(epochs=1, mode="bn", **TRAIN), n=4,
                       out_dir=tmp_path, bootstrap=20, calib=64, repeats=2)
    assert report["n"] == 4
    first, second = (np.array(r) for r in report["standalone_runs"])       # the mean of two seeds is the truth
    assert np.allclose(report["standalone_acc"], (first + second) / 2)
    ceiling = report["noise_ceiling"]
    if "kendall" in ceiling:
        from scipy.stats import kendalltau

        assert ceiling["kendall"] == pytest.approx(kendalltau(second, first)[0])
        assert "agrees with itself" in report["verdict"]
    for key in ("bn_indicator", "rebn_acc", "abs_angle", "params", "flops", "synflow"):
        assert len(report["proxies"][key]) == 4
        assert key in report["correlation"]
    from scipy.stats import kendalltau

    for key in ("params", "bn_indicator"):
        expected = kendalltau(report["proxies"][key], report["standalone_acc"])[0]
        got = report["correlation"][key].get("kendall", float("nan"))
        assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected)
    assert "BN-NAS" in report["verdict"] and (tmp_path / "report.json").exists()
    assert len(report["early_stage_tau"]["bn_indicator"]) == 1
    from normlab.nas.report import correlation_table, write_correlation_report

    paths = write_correlation_report(report, tmp_path)
    assert all(p.exists() for p in paths.values()) and (tmp_path / "scatter.svg").exists()
    html = paths["html"].read_text()
    assert "BN indicator" in html and "data:image/png;base64" in html and report["verdict"][:20] in html
    table = correlation_table(report)
    assert [r[0] for r in table.rows] == ["BN indicator", "ReBN accuracy", "ABS angle", "#params", "FLOPs",
                                          "synflow (log)"] + (["ground truth, 2nd seed (ceiling)"]
                                                              if "kendall" in ceiling else [])


def test_abs_shrink_drops_lowest_angle_ops():
    from normlab.nas.search import abs_shrink

    out = abs_shrink(TINY, TrainConfig(epochs=1, **TRAIN), first_epochs=1, stage_epochs=1, drop=2,
                     target=2, children=2)
    first = out["stages"][0]
    assert first["size"] == 6 and out["size"] <= 2
    scores = [(v, l, int(o)) for l, s in enumerate(first["scores"]) for o, v in s.items()]
    lowest = sorted(scores)[:2]
    second = out["stages"][1]["allowed"]
    for _, layer, op in lowest:
        if len(first["allowed"][layer]) > 1:
            assert op not in second[layer]
    assert all(len(a) >= 1 for a in out["allowed"])


def _cli(args):
    from typer.testing import CliRunner

    from normlab.cli.app import app

    return CliRunner().invoke(app, args, env={"COLUMNS": "200"})


@pytest.mark.parametrize("args, message", [
    (["nas", "search", "nope.pt"], "does not exist"),
    (["nas", "train", "--out", "x.pt", "--mode", "half"], "mode='half' is invalid"),
    (["nas", "train", "--out", "x.pt", "--space", "huge"], "neither a preset"),
    (["nas", "train", "--out", "x.pt", "--dataset", "nosuchdata"], "nosuchdata"),
    (["nas", "correlate", "--n", "2"], "--n 2 is invalid"),
    (["nas", "show", "x", "--store", "missing.sqlite"], "no store"),
])
def test_cli_bad_input_one_line(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _cli(args)
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output


def test_cli_train_search_show(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "space.yaml"
    space.write_text("stem: 4\nstages: [[4, 2, 1], [8, 1, 2]]\nkernels: [3, 5]\nexpansions: [2]\n")
    r = _cli(["nas", "train", "--out", "bn.pt", "--mode", "bn", "--dataset", "digits", "--space", str(space),
              "--epochs", "1", "--train-limit", "128", "--lr", "0.5"])
    assert r.exit_code == 0, r.output
    r = _cli(["nas", "search", "bn.pt", "--scorer", "bn", "--budget", "5", "--population", "3",
              "--sample-size", "2", "--store", "s.sqlite", "--name", "x"])
    assert r.exit_code == 0, r.output
    assert "best paths" in r.output
    r = _cli(["nas", "show", "x", "--store", "s.sqlite", "--checkpoint", "bn.pt"])
    assert r.exit_code == 0 and "bn@" in r.output, r.output
    r = _cli(["nas", "bn-train", "--out", "bn2.pt", "--dataset", "digits", "--space", str(space),
              "--train-limit", "128"])
    assert r.exit_code == 0 and "supernet (bn)" in r.output, r.output
    state = torch.load("bn2.pt", weights_only=True)
    assert state["train"]["mode"] == "bn" and state["train"]["lr"] == 0.5
    r = _cli(["nas", "search", "bn.pt", "--scorer", "bogus"])
    assert r.exit_code == 2 and "--scorer bogus" in r.output


def test_nas_run_chain_resumes_and_retrain_reads_a_stored_search(tmp_path):
    """`normlab nas run`: BN-only supernet -> BN-indicator search -> retrain the top paths, all
    stored; a second run trains nothing again; `nas retrain` works on any stored search."""
    import subprocess
    import sys
    import os

    from normlab.runtime import Store

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "normlab.cli", "nas", *map(str, args)], capture_output=True,
                              text=True, env={**os.environ, "COLUMNS": "200"})

    store = tmp_path / "s.sqlite"
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("dataset: digits\nspace: {stem: 4, stages: [[4, 2, 1], [8, 1, 2]], kernels: [3, 5], "
                   "expansions: [2]}\nsupernet: {epochs: 1, lr: 0.5, train_limit: 256}\n"
                   "search: {population: 4, sample_size: 2}\nretrain: {epochs: 1}\n")
    args = ("run", cfg, "--budget", "12", "--top", "2", "--store", store, "--out-dir", tmp_path / "out")
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "retrained from scratch" in res.stdout and res.stdout.count("│ ") >= 2
    with Store(store, readonly=True) as db:
        first = {r["id"]: r["finished"] for r in db.rows()}
        names = set(db.experiment_names())
    assert {"nas-run/search", "nas-run/retrain"} <= names and len(first) == 14
    assert cli(*args).returncode == 0
    with Store(store, readonly=True) as db:
        assert {r["id"]: r["finished"] for r in db.rows()} == first          # nothing ran twice
    res = cli("retrain", "nas-run/search", "--top", "1", "--dataset", "digits", "--epochs", "1", "--store", store,
              "--train-limit", "128")
    assert res.returncode == 0 and "top 1 paths retrained" in res.stdout, res.stderr
    for bad, needle in ((("run", "--preset", "huge"), "--preset 'huge'"), (("retrain", "nope", "--store", store),
                                                                           "no search named 'nope'")):
        res = cli(*bad)
        assert res.returncode == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr


def test_abs_shrink_resumes_exactly_after_a_kill_in_any_stage(tmp_path):
    """A shrink interrupted after any epoch (first stage or a later one) ends, on rerun, with the
    same stages, operator lists and weights as an uninterrupted run."""
    from normlab.nas.search import abs_shrink

    cfg = TrainConfig(epochs=1, **TRAIN)
    kw = dict(first_epochs=2, stage_epochs=2, drop=1, target=2, children=2)
    clean = abs_shrink(WIDER, cfg, checkpoint=tmp_path / "clean.pt", **kw)
    assert len(clean["stages"]) >= 3                     # the kills below land in the first and later stages
    for kill_at in (1, 3, 4):
        ck = tmp_path / f"k{kill_at}.pt"

        def die(epoch, row, kill_at=kill_at):
            if epoch == kill_at:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            abs_shrink(WIDER, cfg, checkpoint=ck, on_epoch=die, **kw)
        again = abs_shrink(WIDER, cfg, checkpoint=ck, **kw)
        assert again["stages"] == clean["stages"] and again["allowed"] == clean["allowed"], kill_at
        for k, v in clean["state"]["model"].items():
            assert torch.equal(again["state"]["model"][k], v), (kill_at, k)
    with pytest.raises(NasError, match="other settings"):
        abs_shrink(WIDER, cfg, checkpoint=tmp_path / "clean.pt", **{**kw, "drop": 2})


def test_chain_config_presets_overrides_and_bad_settings(tmp_path):
    from normlab.nas.pipeline import ChainConfig, load_chain_config

    quick = load_chain_config(preset="quick")
    assert quick.scorer == "bn" and quick.supernet.mode == "bn" and quick.supernet.dataset == quick.dataset
    paper = load_chain_config(preset="paper")
    assert paper.dataset == "cifar10" and paper.search.budget >= 1000
    over = load_chain_config(preset="quick", scorer="rebn", budget=7, top=1, seed=3, norm="bgn:groups=2")
    assert (over.supernet.mode, over.search.budget, over.retrain.top, over.supernet.seed, over.norm) == \
        ("full", 7, 1, 3, "bgn:groups=2")
    assert ChainConfig.from_dict(over.to_dict()) == over                # round trip
    cfg = tmp_path / "c.yaml"
    cfg.write_text("dataset: digits\nscorer: angle\nshrink: {first_epochs: 1, target: 10}\n")
    loaded = load_chain_config(cfg)
    assert loaded.shrink.target == 10 and loaded.supernet.mode == "full"
    for text, needle in (("scorer: magic\n", "scorer='magic'"), ("budget: 3\n", "unknown setting(s) budget"),
                         ("search: {budjet: 3}\n", "unknown search setting(s) budjet"),
                         ("supernet: {mode: full}\n", "supernet.mode is set by the chain"),
                         ("retrain: {top: 0}\n", "retrain.top=0"), ("shrink: [1]\n", "shrink settings should be a mapping"),
                         ("search: {budget: 5\n", "malformed YAML")):
        cfg.write_text(text)
        with pytest.raises(ValueError, match=__import__("re").escape(needle)):
            load_chain_config(cfg)
    with pytest.raises(NasError, match="both given"):
        load_chain_config(cfg, preset="quick")


def test_chain_plan_estimates_every_step():
    from normlab.nas.pipeline import chain_plan, load_chain_config

    cfg = load_chain_config(preset="quick", scorer="rebn")
    cfg = type(cfg).from_dict({**cfg.to_dict(), "fix_reductions": False,           # ABS shrinks the whole space
                               "shrink": {"first_epochs": 2, "stage_epochs": 1}})
    plan = chain_plan(cfg)
    assert [s[0] for s in plan["steps"]] == ["shrink", "search", "retrain"]    # ReBN scores the ABS supernet
    assert plan["seconds"] == pytest.approx(sum(s[2] for s in plan["steps"])) and plan["step_seconds"] > 0
    bn = chain_plan(load_chain_config(preset="quick"))
    assert [s[0] for s in bn["steps"]] == ["supernet", "search", "retrain"]
    paper = chain_plan(load_chain_config(preset="paper"), measure=False)     # no CIFAR-10 on disk: still plans
    assert paper["space_paths"] > 10 ** 6


@pytest.mark.slow
def test_nas_run_whole_chain_resumes_after_sigkill(tmp_path):
    """The quick chain at reduced size, with ABS shrinking and the ReBN scorer, killed with
    SIGKILL while it runs and started again, ends with what an uninterrupted run gives."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from normlab.runtime import Store

    cfg = tmp_path / "chain.yaml"
    cfg.write_text(
        "dataset: digits\nscorer: rebn\nnorm: bgn:groups=2\n"
        "space: {stem: 4, stages: [[4, 2, 1], [8, 2, 2]], kernels: [3, 5], expansions: [2]}\n"
        "supernet: {epochs: 1, lr: 0.1, batch_size: 64, train_limit: 256}\n"
        "shrink: {first_epochs: 3, stage_epochs: 2, drop: 2, target: 8, children: 2}\n"
        "search: {budget: 12, population: 4, sample_size: 2}\nretrain: {top: 2, epochs: 2}\n")

    def cmd(folder):
        return [sys.executable, "-m", "normlab.cli", "nas", "run", str(cfg), "--out-dir", str(folder / "out"),
                "--store", str(folder / "s.sqlite")]

    env = {**os.environ, "COLUMNS": "200"}
    clean = subprocess.run(cmd(tmp_path / "a"), capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stderr
    assert "ABS stage 0" in clean.stdout and "retrained from scratch" in clean.stdout

    killed = tmp_path / "b"
    proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 60
    while time.time() < deadline and not list((killed / "out").glob("*-abs-*.pt")):
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    again = subprocess.run(cmd(killed), capture_output=True, text=True, env=env)
    assert again.returncode == 0, again.stderr

    def results(folder):
        with Store(folder / "s.sqlite", readonly=True) as db:
            return {(e.name, r["description"]["key"]): r["metrics"]["score"]
                    for e in db.experiments() for r in db.rows(experiment_id=e.id)}

    a, b = results(tmp_path / "a"), results(killed)
    assert a.keys() == b.keys() and any(k[0] == "nas-run/retrain" for k in a)
    assert all(a[k] == pytest.approx(b[k]) for k in a)
    shrunk = [json.loads(p.read_text()) for p in sorted((tmp_path / "a" / "out").glob("*shrunk.json"))]
    assert shrunk == [json.loads(p.read_text()) for p in sorted((killed / "out").glob("*shrunk.json"))]
    assert math.prod(len(x) for x in shrunk[0]["allowed"]) <= 8


@pytest.mark.parametrize("norm", ["bn", "bgn:groups=2"])
def test_recalibration_is_the_plain_average_of_batch_statistics(norm):
    """ReBN's statistics are the mean over the calibration batches of each batch's statistic,
    for torch's BN and normlab's BGN alike (checked on the stem's norm, whose input is fixed)."""
    from normlab.nas.scores import recalibrate

    torch.manual_seed(0)
    net = Supernet(SpaceConfig(**{**TINY.to_dict(), "norm": norm}))
    sub = net.subnet([0, 0])
    x = torch.randn(96, 1, 8, 8)
    before = {name: m.momentum for name, m in sub.named_modules() if hasattr(m, "momentum")}
    recalibrate(sub, x, batch_size=32)
    # issue 28: each norm's momentum is restored (it was left at 1/3, the last batch's)
    assert {name: m.momentum for name, m in sub.named_modules() if hasattr(m, "momentum")} == before
    conv, stem_norm = sub.stem[0], sub.stem[1]
    with torch.no_grad():
        feats = [conv(x[i:i + 32]) for i in (0, 32, 64)]
    if norm == "bn":
        expected = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
        assert torch.allclose(stem_norm.running_mean, expected, atol=1e-5)
    else:                                                  # BGN: one statistic per group of (C/G, H, W)
        g = stem_norm.running_mean.numel()
        expected = torch.stack([f.reshape(f.shape[0], g, -1).mean((0, 2)) for f in feats]).mean(0)
        assert torch.allclose(stem_norm.running_mean, expected, atol=1e-5)
    split = load_split("digits")
    assert 0 <= rebn_accuracy(net, [1, 1], split.train_x[:64], split.val_x, split.val_y) <= 1


def test_export_writes_a_genotype_that_builds_the_path(tiny_checkpoint, tmp_path, monkeypatch):
    """`nas export` writes the best stored path with its space; build_genotype makes a fresh network
    of exactly that path (same op types and shapes as the supernet's), with any norm."""
    from normlab.nas.search import search_paths
    from normlab.nas.supernet import build_genotype, genotype
    from normlab.runtime import Store

    monkeypatch.chdir(tmp_path)
    with Store("s.sqlite") as db:
        res = search_paths(tiny_checkpoint, scorer="bn", budget=6, population=3, sample_size=2, store=db,
                           name="found", progress=False)
    best = max(res.ok, key=lambda e: e.scores["score"])
    r = _cli(["nas", "export", "found", "--out", "arch.json", "--store", "s.sqlite"])
    assert r.exit_code == 0, r.output
    data = json.loads((tmp_path / "arch.json").read_text())
    assert data["model"] == "nas" and tuple(data["path"]) == tuple(best.arch)
    assert data["space"] == WIDER.to_dict() and data["scores"]["score"] == best.scores["score"]
    net = build_genotype(data["space"], data["path"], norm="gn:groups=2", num_classes=3)
    sub = Supernet(WIDER).subnet(data["path"])
    assert [type(m).__name__ for m in net.ops] == [type(m).__name__ for m in sub.ops]
    assert [p.shape for p in net.ops.parameters()] == [p.shape for p in sub.ops.parameters()]
    assert net(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    assert any(type(m).__name__ == "GroupNorm" for m in net.modules())
    assert genotype(WIDER, data["path"])["ops"] == data["ops"]
    for args, needle in ((["--rank", "0"], "--rank 0"), (["--rank", "99"], "--rank 99"),
                         (["--store", "nope.sqlite"], "no store")):
        r = _cli(["nas", "export", "found", "--out", "x.json", "--store", "s.sqlite", *args])
        assert r.exit_code == 2 and needle in r.output, r.output
    with pytest.raises(NasError, match="layer 0 has|op 7 at layer 0"):
        build_genotype(data["space"], [7, 0, 0])


def test_exported_genotype_is_a_model_for_create_model_and_bench(tmp_path):
    """A genotype file is a model name: create_model builds it with the requested norm and
    classes, and normlab bench validates and trains it."""
    from normlab.models import ModelError, create_model
    from normlab.nas.supernet import genotype

    arch = tmp_path / "arch.json"
    arch.write_text(json.dumps(genotype(WIDER, [1, 2, 0], scores={"score": 1.0})))
    net = create_model(str(arch), norm="bgn:groups=2", in_channels=1, num_classes=4)
    assert net(torch.randn(3, 1, 8, 8)).shape == (3, 4)
    assert net.path == (1, 2, 0) and any(type(m).__name__ == "BatchGroupNorm" for m in net.modules())
    wide = create_model("nas", space=WIDER.to_dict(), path=[1, 2, 0], in_channels=1, width=2.0)
    assert sum(p.numel() for p in wide.parameters()) > sum(p.numel() for p in net.parameters())
    for kwargs, needle in ((dict(space=[1]), "expected space"), (dict(space=WIDER.to_dict(), path=[5, 0, 0]),
                                                                      "op 5 at layer 0"),
                           (dict(space=WIDER.to_dict(), path=[0, 0, 0], colour=1), "unknown option")):
        with pytest.raises(ModelError, match=needle):
            create_model("nas", in_channels=1, **kwargs)
    r = _cli(["bench", "--model", str(arch), "--dataset", "digits", "--norm", "bn", "--norm", "gn:groups=2",
              "--batch-size", "16", "--steps", "5", "--seed", "0", "--store", str(tmp_path / "b.sqlite"),
              "--width", "1", "--out", str(tmp_path / "r")])
    assert r.exit_code == 0, r.output


# -- checkpoints hold tensors and plain data only (issue 28, Major 1) ------------------------------

class _Payload:
    """A pickle that would run a shell command when unpickled with weights_only=False."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("args", [
    ["nas", "search", "evil.pt", "--scorer", "bn", "--budget", "2", "--store", "s.sqlite"],
    ["nas", "train", "--out", "evil.pt", "--dataset", "digits", "--space", "space.yaml", "--epochs", "1",
     "--train-limit", "64"],
    ["nas", "shrink", "--out", "a.json", "--checkpoint", "evil.pt", "--dataset", "digits", "--space",
     "space.yaml", "--train-limit", "64"],
])
def test_crafted_checkpoint_never_runs_its_payload(args, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "space.yaml").write_text("stem: 4\nstages: [[4, 2, 1], [8, 1, 2]]\nkernels: [3, 5]\nexpansions: [2]\n")
    marker = tmp_path / "PAYLOAD-RAN"
    torch.save({"space": _Payload(marker), "train": {}, "epoch": 0, "model": {}}, tmp_path / "evil.pt")
    r = _cli(args)
    assert not marker.exists()
    assert r.exit_code == 2, r.output
    assert "holds objects other than tensors and plain data (posix.system)" in r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    assert not (tmp_path / "s.sqlite").exists()                  # checked before the store is created


def test_a_file_that_is_not_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    torch.save({"model": {}}, tmp_path / "partial.pt")
    for name, message in (("notes.txt", "torch cannot read it"), ("partial.pt", "missing space, train, epoch")):
        r = _cli(["nas", "search", name, "--scorer", "bn", "--budget", "2", "--store", "s.sqlite"])
        assert r.exit_code == 2 and message in r.output, r.output
        assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1


def test_checkpoints_are_plain_and_older_ones_still_load(tiny_checkpoint, tmp_path):
    from normlab.nas.train import read_checkpoint, write_checkpoint

    state = torch.load(tiny_checkpoint, map_location="cpu", weights_only=True)   # readable without pickle code
    old = tmp_path / "old.pt"
    torch.save(state, old)                                   # what the earlier code wrote: the same dict
    again = read_checkpoint(old)
    assert again["space"] == state["space"] and again["epoch"] == state["epoch"]
    assert load_supernet(again) is not None
    with pytest.raises(TypeError, match="only tensors and plain data"):
        write_checkpoint({**state, "net": Supernet(WIDER)}, tmp_path / "bad.pt")
    assert not (tmp_path / "bad.pt").exists()


def test_correlation_verdict_uses_the_shared_rule():
    from normlab.nas.report import correlation_verdict
    from normlab.search import rank_correlation

    rng = np.random.default_rng(0)
    truth = rng.normal(size=60)

    def report(bn, rebn):
        return {"standalone_acc": truth.tolist(), "proxies": {"bn_indicator": bn.tolist(), "rebn_acc": rebn.tolist()},
                "correlation": {"bn_indicator": rank_correlation(bn, truth, bootstrap=10).to_dict(),
                                "rebn_acc": rank_correlation(rebn, truth, bootstrap=10).to_dict()},
                "seconds_per_subnet": {"bn_indicator": 1e-5, "rebn_acc": 1e-2}}

    good = correlation_verdict(report(truth + 0.05 * rng.normal(size=60), truth + 0.05 * rng.normal(size=60)),
                               bootstrap=200)
    assert "ranks architectures like their stand-alone accuracy (Kendall tau 0.9" in good
    assert good.count(" holds") == 2 and "Holm" in good and "2 comparison(s)" in good
    assert "1,000x faster" in good
    noise = correlation_verdict(report(rng.normal(size=60), truth + 0.05 * rng.normal(size=60)), bootstrap=200)
    assert "ranks at least as well as ReBN (tau 0.9" in noise
    assert "does not hold (it is shown to be worse)" in noise
    assert "inconclusive at 60 architectures" in noise or "does not hold (equivalence" in noise


_CHAIN = ("dataset: digits\nspace: {stem: 4, stages: [[4, 2, 1], [8, 1, 2]], kernels: [3, 5], expansions: [2]}\n"
          "supernet: {epochs: 2, lr: 0.5, train_limit: 256}\nsearch: {budget: 8, population: 4, sample_size: 2}\n"
          "retrain: {top: 2, epochs: 2}\n")


def _chain_cmd(tmp_path, store, out):
    import sys

    (tmp_path / "chain.yaml").write_text(_CHAIN)
    return [sys.executable, "-m", "normlab.cli", "nas", "run", str(tmp_path / "chain.yaml"), "--store", str(store),
            "--out-dir", str(out)]


def _trials(store):
    from normlab.runtime import Store

    with Store(store, readonly=True) as db:
        return {(e.name, e.config.get("tag"), r["description"]["key"]): (r["status"], r["attempts"], r["finished"])
                for e in db.experiments() for r in db.rows(experiment_id=e.id)}


@pytest.mark.slow
def test_sigint_during_nas_run_keeps_what_finished_and_resumes(tmp_path):
    """Probe of issue 28: Ctrl-C while `nas run` retrains: exit 130 with one line, no trial left
    running, and the rerun trains nothing that had finished."""
    import signal
    import subprocess
    import time

    store = tmp_path / "s.sqlite"
    cmd = _chain_cmd(tmp_path, store, tmp_path / "out")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(0.1)
        if store.exists() and any(k[0] == "nas-run/retrain" and v[0] == "running" for k, v in _safe(store).items()):
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-800:]
    assert "interrupted: what finished is kept" in out and "Traceback" not in err
    before = _trials(store)
    assert "running" not in {v[0] for v in before.values()}
    again = subprocess.run(cmd, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-800:]
    after = _trials(store)
    assert all(after[k] == v for k, v in before.items() if v[0] == "ok")      # nothing finished ran again
    assert {v[0] for v in after.values()} == {"ok"} and sum(k[0] == "nas-run/retrain" for k in after) == 2


def _safe(store):
    try:
        return _trials(store)
    except Exception:                                       # noqa: BLE001  (the store is being created)
        return {}


@pytest.mark.slow
def test_two_nas_runs_at_once_on_one_store_and_folder_share_the_work(tmp_path):
    """Probe of issue 28: two `nas run`s started together on one store and output folder. Before,
    both trained the supernet into one file, the one behind overwrote the other's later epoch (a
    search could read a less-trained supernet), and each scored its own copy (the tag hashed the
    file's timings): 26 evaluations for 14 trials. Now they take turns on the checkpoint and
    share the search: every trial runs once."""
    import subprocess

    store = tmp_path / "s.sqlite"
    cmd = _chain_cmd(tmp_path, store, tmp_path / "out")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e[-800:] for _, e in outs]
    trials = _trials(store)
    assert len({k[1] for k in trials if k[0] == "nas-run/search"}) == 1      # one supernet, one search
    assert len(trials) == 8 + 2 and all(v[:2] == ("ok", 1) for v in trials.values())
    assert outs[0][0].splitlines()[-3:] == outs[1][0].splitlines()[-3:]      # the same retrained paths


@pytest.mark.slow
def test_kill_9_during_nas_retrain_resumes_to_the_uninterrupted_result(tiny_checkpoint, tmp_path):
    """Probe of issue 28: `nas retrain` killed with -9 after its first path, then rerun, stores
    what an uninterrupted retrain stores (nothing finished is trained again)."""
    import shutil
    import signal
    import subprocess
    import sys
    import time

    from normlab.nas.search import search_paths
    from normlab.runtime import Store

    with Store(tmp_path / "a.sqlite") as store:
        search_paths(tiny_checkpoint, scorer="bn", budget=6, population=4, sample_size=2, store=store,
                     name="s", progress=False)
    shutil.copy(tmp_path / "a.sqlite", tmp_path / "b.sqlite")

    def cmd(db):
        return [sys.executable, "-m", "normlab.cli", "nas", "retrain", "s", "--top", "3", "--epochs", "2",
                "--dataset", "digits", "--train-limit", "256", "--store", str(tmp_path / db), "--name", "rt"]

    def rows(db):
        with Store(tmp_path / db, readonly=True) as store:
            return {r["description"]["key"]: r for r in store.rows(experiment="rt")}

    assert subprocess.run(cmd("a.sqlite"), capture_output=True).returncode == 0
    proc = subprocess.Popen(cmd("b.sqlite"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any(r["status"] == "ok" for r in _safe_rows(rows, "b.sqlite")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {k: r["finished"] for k, r in rows("b.sqlite").items() if r["status"] == "ok"}
    assert first and subprocess.run(cmd("b.sqlite"), capture_output=True).returncode == 0
    a, b = rows("a.sqlite"), rows("b.sqlite")
    assert a.keys() == b.keys() and all(r["status"] == "ok" for r in b.values())
    for k in a:
        assert {m: v for m, v in a[k]["metrics"].items() if m != "seconds"} == \
            {m: v for m, v in b[k]["metrics"].items() if m != "seconds"}
    assert all(b[k]["finished"] == t for k, t in first.items())          # not trained again


def _safe_rows(rows, db):
    try:
        return list(rows(db).values())
    except Exception:                                       # noqa: BLE001  (the experiment is not there yet)
        return []


@pytest.mark.slow
def test_kill_9_during_nas_correlate_resumes_to_the_uninterrupted_result(tmp_path):
    """Probe of issue 28: `nas correlate` killed with -9 once its first ground-truth training is
    stored, then rerun, writes the report an uninterrupted run writes (all but its timings), and
    trains nothing that had finished again."""
    import re
    import signal
    import subprocess
    import sys
    import time

    from normlab.runtime import Store

    (tmp_path / "space.yaml").write_text("stem: 4\nstages: [[4, 1, 1], [8, 1, 2]]\nkernels: [3, 5]\nexpansions: [2]\n")

    def cmd(run):
        return [sys.executable, "-m", "normlab.cli", "nas", "correlate", "--space", str(tmp_path / "space.yaml"),
                "--dataset", "digits", "--n", "4", "--repeats", "2", "--standalone-epochs", "1", "--spos-epochs", "1",
                "--train-limit", "512", "--val-limit", "128", "--lr", "0.2", "--out-dir", str(tmp_path / run / "out"),
                "--store", str(tmp_path / run / "s.sqlite")]

    def rows(run):
        with Store(tmp_path / run / "s.sqlite", readonly=True) as db:
            return {(e.name, r["description"]["key"]): r for e in db.experiments() for r in db.rows(experiment_id=e.id)}

    def report(run):
        timing = {"seconds_per_subnet", "bn_indicator_subnets_per_second", "supernet_seconds"}
        rep = json.loads((tmp_path / run / "out" / "report.json").read_text())
        rep["verdict"] = re.sub(r"Scoring is [0-9.,]+x (faster|slower)", "Scoring is ...", rep["verdict"])
        return json.dumps({k: v for k, v in rep.items() if k not in timing}, sort_keys=True)   # NaN == NaN

    clean = subprocess.run(cmd("a"), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-800:]
    proc = subprocess.Popen(cmd("b"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not any(r["status"] == "ok" for r in _safe_rows(rows, "b")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b" / "out" / "report.json").exists()             # killed mid-way, not at the end
    first = {k: (r["finished"], r["attempts"]) for k, r in rows("b").items() if r["status"] == "ok"}
    again = subprocess.run(cmd("b"), capture_output=True, text=True)
    assert first and again.returncode == 0, again.stderr[-800:]
    a, b = rows("a"), rows("b")
    assert a.keys() == b.keys() and all(r["status"] == "ok" for r in b.values())
    assert {k: (r["finished"], r["attempts"]) for k, r in b.items() if k in first} == first     # not trained again
    assert report("b") == report("a")
    assert len(set(json.loads(report("a"))["standalone_acc"])) > 1        # a real ground truth, not all at chance


def test_standalone_trains_through_fit(monkeypatch):
    """train_standalone is normlab.train.fit with nas's settings (fit_config), its shuffling and
    its weight-decay rule; the same seed gives the same accuracies."""
    import normlab.train as train
    from normlab.nas.train import SupernetSettings, train_standalone

    assert TrainConfig is SupernetSettings                      # the name nas's code imports
    calls = []
    real = train.fit

    def spy(model, data, config, callbacks=(), **kw):
        calls.append((config, kw))
        return real(model, data, config, callbacks, **kw)

    monkeypatch.setattr(train, "fit", spy)
    cfg = TrainConfig(epochs=1, **TRAIN)
    first = train_standalone(TINY, [0, 1], cfg)
    again = train_standalone(TINY, [0, 1], cfg)
    assert len(calls) == 2 and isinstance(calls[0][0], train.TrainConfig)
    fc = calls[0][0]
    assert (fc.epochs, fc.batch_size, fc.lr, fc.base_batch_size, fc.augment) == (1, 64, 0.1, None, False)
    assert calls[0][1]["optimizer"].param_groups[0]["weight_decay"] == cfg.weight_decay
    assert (first["test_acc"], first["val_acc"]) == (again["test_acc"], again["val_acc"])
