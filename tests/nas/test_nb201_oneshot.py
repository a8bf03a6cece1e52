"""The NB201 supernet and its one-shot study: a supernet path is the stand-alone NB201 network
with the same weights (same outputs), BN-only training leaves every conv bit-identical, the
parameter-free ops follow BN-NAS's rule (no norm, indicator 0), the GPU command's whole path on a
tiny CPU setting with the table stand-in (and its resume), and ABS's drop on the stand-in."""

import itertools
import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import wait_for_trials
from normlab.models.nb201 import OPS, NB201Net
from normlab.models.nb201_supernet import NB201Supernet, NB201SupernetConfig
from normlab.nas import nb201
from normlab.nas.nb201 import oneshot
from normlab.nas.nb201.space import connected
from normlab.nas.scores import bn_scores, bn_table
from normlab.nas.train import TrainConfig, read_checkpoint, train_supernet, trainable_parameters

CODES = ["303100", "000000", "444444", "123412", "013024", "333333", "111111", "220404"]


def _perturb_norms(net: nn.Module) -> None:
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_()
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)


@pytest.mark.parametrize("C,N,cin,classes", [(4, 2, 3, 10), (3, 1, 1, 7)])
def test_supernet_path_equals_the_standalone_cell_with_the_same_weights(C, N, cin, classes):
    net = NB201Supernet(NB201SupernetConfig(C=C, N=N, in_channels=cin, num_classes=classes, image_size=8))
    _perturb_norms(net)
    x = torch.randn(6, cin, 8, 8)
    for code in CODES:
        path = [int(c) for c in code]
        arch = nb201.code_to_arch(code)
        sub = net.subnet(path)
        assert isinstance(sub, NB201Net) and sub.arch == arch
        # the same network as models/nb201.py builds for this cell: same parameter names and shapes
        ref = NB201Net(arch, C=C, N=N, in_channels=cin, num_classes=classes)
        assert {k: v.shape for k, v in sub.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
        for mode in ("eval", "train"):
            getattr(net, mode)()
            getattr(sub, mode)()
            torch.testing.assert_close(net(x, path), sub(x), rtol=0, atol=0)
        # counts of the path equal the analytic counts of the cell (and the built network's)
        assert net.params(path) == nb201.analytic_params(arch, C=C, N=N, num_classes=classes, in_channels=cin) \
            == sum(p.numel() for p in sub.parameters())
        assert net.flops(path) == nb201.analytic_flops(arch, C=C, N=N, num_classes=classes, in_channels=cin,
                                                       image_size=8)
    # the copy is a copy: training the subnet leaves the supernet alone
    before = {k: v.clone() for k, v in net.state_dict().items()}
    sub = net.subnet([3] * 6)
    with torch.no_grad():
        for p in sub.parameters():
            p.add_(1.0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())


def test_the_sampled_cell_is_shared_by_every_cell_and_weights_are_per_cell():
    net = NB201Supernet(NB201SupernetConfig(C=2, N=3, image_size=8))
    cells = net.search_cells()
    assert len(cells) == 9
    w = [c.edges["1<-0"][3][1].weight for c in cells]
    assert all(a.data_ptr() != b.data_ptr() for a, b in itertools.combinations(w, 2))
    # one path drives all cells: the output depends on the path, and only through it
    x = torch.randn(2, 3, 8, 8)
    net.eval()
    assert not torch.equal(net(x, [3] * 6), net(x, [2] * 6))
    with pytest.raises(nb201.NB201Error, match="six op indices 0-4"):
        net(x, [5] * 6) if net.check_path([5] * 6) else None


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """SPOS and BN-only NB201 supernets on digits (C=2, N=1), two and one epochs."""
    d = tmp_path_factory.mktemp("nb201sn")
    torch.set_num_threads(1)
    common = dict(dataset="digits", C=2, N=1, image_size=None, batch_size=64, seed=0, limit=256, threads=1)
    spos = oneshot.train_supernet(mode="full", epochs=2, lr=0.1, checkpoint=d / "spos.pt", **common)
    bn = oneshot.train_supernet(mode="bn", epochs=1, lr=0.5, checkpoint=d / "bn.pt", device="cpu", **common)
    return {"dir": d, "spos": spos, "bn": bn, "common": common}


def test_bn_only_training_leaves_every_conv_bit_identical(tiny):
    state = read_checkpoint(tiny["bn"])
    assert state["space"]["kind"] == "nb201" and state["train"]["mode"] == "bn"
    net = NB201Supernet(NB201SupernetConfig.from_dict(state["space"]))
    trained = {id(p) for p in trainable_parameters(net, "bn", "last")}
    names = {n for n, p in net.named_parameters() if id(p) in trained}
    changed = 0
    for name, p in net.named_parameters():
        init, now = state["init"][name], state["model"][name]
        if name in names:
            changed += not torch.equal(init, now)
        else:
            assert torch.equal(init, now), f"{name} moved in BN-only training"
    assert changed > 0
    # what trains: exactly the affine of the norm of every conv op (two conv ops x 6 edges x 3 cells)
    assert len(names) == 2 * 6 * 3 * 2
    assert all(n.split(".")[4] in ("2", "3") and n.split(".")[5] == "2" for n in names)


def test_parameter_free_ops_have_no_norm_and_score_zero(tiny):
    from normlab.nas.search import _load

    net = _load(str(tiny["bn"]))[0]
    table = bn_table(net)
    assert table.shape == (6, 5)
    for e in range(6):
        for o, name in enumerate(OPS):
            norms = net.op_norms(e, o)
            if name in ("none", "skip_connect", "avg_pool_3x3"):
                assert norms == [] and table[e, o] == 0.0
            else:     # one per cell (3 cells): the sum of mean |gamma| of each
                expect = sum(float(c.edges[f"{nb201.EDGES[e][0]}<-{nb201.EDGES[e][1]}"][o][2].weight.detach().abs().mean())
                             for c in net.search_cells())
                assert len(norms) == 3 and table[e, o] == pytest.approx(expect)
    archs = [nb201.code_to_arch(c) for c in CODES]
    got = oneshot.score_cells(tiny["bn"], archs, "bn")
    for arch, g in zip(archs, got):
        expect = sum(table[e, o] for e, o in enumerate(oneshot.cell_path(arch)) if OPS[o] in ("nor_conv_1x1", "nor_conv_3x3"))
        assert g == pytest.approx(expect)
    assert got[CODES.index("000000")] == 0 and got[CODES.index("444444")] == 0 and got[CODES.index("111111")] == 0
    assert np.allclose(bn_scores(table, [[0] * 6]), 0)


def test_score_cells_rebn_and_angle(tiny):
    archs = [nb201.code_to_arch(c) for c in CODES[:4]]
    rebn = oneshot.score_cells(tiny["spos"], archs, "rebn", limit=60, calib=64)
    assert all(0 <= r <= 1 for r in rebn)
    assert rebn == oneshot.score_cells(tiny["spos"], archs, "rebn", limit=60, calib=64)   # deterministic
    acc = oneshot.score_cells(tiny["spos"], archs, "acc", limit=60)           # no recalibration
    assert all(0 <= a <= 1 for a in acc)
    ang = oneshot.score_cells(tiny["spos"], archs, "angle")
    assert all(0 < a < np.pi for a in ang)
    with pytest.raises(ValueError, match="scorer 'x' is invalid"):
        oneshot.score_cells(tiny["spos"], archs, "x")
    # resuming a finished checkpoint trains nothing more and returns the same file
    path = oneshot.train_supernet(mode="full", epochs=2, lr=0.1, checkpoint=tiny["spos"], **tiny["common"])
    assert read_checkpoint(path)["epoch"] == 2


def test_abs_drop_rule_truth_and_best_reachable_on_the_standin(tiny):
    table = nb201.load_table("standin")
    truth = oneshot.edge_op_truth(table, "cifar10-valid")
    acc = table.mean_accuracy("cifar10-valid", "valid")
    codes = np.array([[int(c) for c in nb201.arch_to_code(a)] for a in table.archs])
    assert truth[2, 3] == pytest.approx(np.nanmean(acc[codes[:, 2] == 3]))
    scores = np.arange(30, dtype=float).reshape(6, 5)[::-1].copy()      # edge 5's ops lowest, then edge 4's...
    kept = oneshot.shrink_ops(scores, 20)
    assert sum(5 - len(k) for k in kept) == 20 and all(len(k) >= 1 for k in kept)
    assert kept[5] == [4] and kept[4] == [4] and kept[0] == [0, 1, 2, 3, 4]
    best, best_acc, size = oneshot._best_reachable(table, "cifar10-valid", kept)
    inside = np.all([np.isin(codes[:, e], k) for e, k in enumerate(kept)], axis=0)
    assert size == inside.sum() and best_acc == pytest.approx(np.nanmax(acc[inside]))
    res = oneshot.abs_drop(str(tiny["spos"]), table, "cifar10-valid", drop=20, children=1, random_drops=3,
                           val_limit=40, calib=32)
    for k in ("angle", "rebn"):
        r = res[k]
        assert len(r["dropped"]) == 20 and 0 <= r["kept_of_top"] <= 10 and r["regret"] >= 0
        assert sorted({d["truth_rank"] for d in r["dropped"]}) == sorted(d["truth_rank"] for d in r["dropped"])
        assert all(1 <= d["truth_rank"] <= 30 for d in r["dropped"])
    assert len(res["random"]["runs"]) == 3
    md = oneshot.abs_table_md(res)
    assert "STAND-IN" in md and "angle (ABS)" in md and "random (3 draws)" in md


def _product_best(table, dataset, allowed):
    """The shrunk space searched as before the generalisation: every product of the allowed ops
    looked up in the table (exhaustive; needs the full table)."""
    acc = table.mean_accuracy(dataset, "valid")
    best, best_acc, size = "", -np.inf, 0
    for path in itertools.product(*allowed):
        size += 1
        a = oneshot.path_cell(path)
        v = float(acc[table.row(a)])
        if np.isfinite(v) and v > best_acc:
            best, best_acc = a, v
    return best, best_acc, size


def test_best_reachable_scans_the_table_like_the_product_search():
    table = nb201.load_table("standin")
    rng = np.random.default_rng(1)
    for drop in (8, 14, 20, 20, 24):
        kept = oneshot.shrink_ops(rng.random((6, 5)), drop)
        assert oneshot._best_reachable(table, "cifar10-valid", kept) == _product_best(table, "cifar10-valid", kept)
    codes = oneshot._codes(table)                  # the vectorised connectivity is the per-cell rule
    assert oneshot._connected_codes(codes).tolist() == [connected(a) for a in table.archs]


# five sampled cells (op codes, edge order 1<-0 2<-0 2<-1 3<-0 3<-1 3<-2) and their two seeds, percent
HAND = {"333333": (80.0, 82.0), "000000": (10.0, 12.0), "312300": (70.0, 74.0), "313444": (60.0, 60.0),
        "121212": (50.0, 54.0)}


def _hand_table():
    archs = [nb201.code_to_arch(c) for c in HAND]
    return nb201.table.sampled_table(archs, list(HAND.values()), dataset="toy", seeds=[1, 2], label="5 hand cells")


def test_sampled_table_marginals_and_best_left_by_hand():
    t = _hand_table()
    assert t.sampled and t.label == "5 hand cells" and len(t) == 5
    assert np.all(np.isnan(t.mean_accuracy("toy", "valid")))             # nothing was measured there
    truth, cells = oneshot.edge_op_marginals(t, "toy", "test")
    # cell means: 333333 81, 000000 11, 312300 72, 313444 60, 121212 52
    assert truth[0, 3] == pytest.approx((81 + 72 + 60) / 3) and cells[0, 3] == 3
    assert truth[0, 1] == pytest.approx(52) and cells[0, 1] == 1
    assert truth[1, 1] == pytest.approx((72 + 60) / 2) and cells[1, 1] == 2
    assert truth[5, 0] == pytest.approx((11 + 72) / 2) and cells[5, 0] == 2
    assert np.isnan(truth[2, 4]) and cells[2, 4] == 0                       # no sampled cell has it
    assert (cells.sum(axis=1) == 5).all()                                   # every cell backs one op per edge
    assert np.array_equal(oneshot.edge_op_truth(t, "toy", "test"), truth, equal_nan=True)
    assert oneshot._ranks(truth)[2, 4] > 25                                 # a pair with no cell ranks last
    allowed = [[3], [1, 3], [2, 3], [0, 3], [0, 3], [0, 3]]                 # 333333 and 312300 survive
    assert oneshot._best_reachable(t, "toy", allowed, "test") == (nb201.code_to_arch("333333"), 81.0, 2)
    allowed[5] = [0]                                                        # now only 312300
    assert oneshot._best_reachable(t, "toy", allowed, "test") == (nb201.code_to_arch("312300"), 72.0, 1)
    assert oneshot._best_reachable(t, "toy", [[1]] * 6, "test") == ("", None, 0)
    with pytest.raises(nb201.NB201Error, match="2 columns for 3 seeds"):
        nb201.table.sampled_table(list(t.archs), list(HAND.values()), dataset="toy", seeds=[1, 2, 3], label="x")


def _dropped_are_lowest(scores, allowed):
    """Every dropped pair scores no higher than every kept pair of an edge that still had a choice
    (the last op of an edge is kept whatever its score)."""
    scores = np.asarray(scores)
    dropped = [scores[e, o] for e in range(6) for o in range(5) if o not in allowed[e]]
    kept = [scores[e, o] for e in range(6) for o in allowed[e] if len(allowed[e]) > 1]
    return len(dropped) == 20 and max(dropped) <= min(kept)


def test_study_abs_on_its_sampled_ground_truth(tiny):
    """The CPU study's ABS step on a sampled ground truth: pairs dropped are the lowest-scoring,
    truth ranks and the top kept follow the hand-computed marginals, the best left is the best
    surviving sampled cell (None when none survives), and the report says what the truth is."""
    from normlab.nas.nb201.study import StudyConfig, study_abs, study_truth_table

    cfg = StudyConfig(dataset="digits", image_size=None, train_images=None, test_images=None, C=2, N=1,
                      abs_children=1, random_drops=2, rebn_images=40)
    rng = np.random.default_rng(0)
    cells = [nb201.index_to_arch(int(i)) for i in rng.choice(nb201.NUM_ARCHS, 12, replace=False)]
    first = study_abs(cfg, cells, rng.uniform(0.1, 0.9, (12, 2)), tiny["spos"], lambda m: None)
    inside = [oneshot.path_cell(p) for p in itertools.islice(itertools.product(*first["angle"]["allowed"]), 3)]
    cells = [c for c in cells if c not in inside] + inside                 # some sampled cells survive the angle
    runs = rng.uniform(0.1, 0.9, (len(cells), 2))
    res = study_abs(cfg, cells, runs, tiny["spos"], lambda m: None)
    assert res["scores"] == first["scores"]                                # the operator scores do not depend on the truth
    assert res["sampled"] and res["truth_label"] == f"{len(cells)} sampled cells, stand-alone digits"
    assert study_truth_table(cfg, cells, runs).mean_accuracy(cfg.data_spec, "test") == pytest.approx(100 * runs.mean(1))
    mean = 100 * runs.mean(axis=1)
    codes = np.array([[int(c) for c in nb201.arch_to_code(a)] for a in cells])
    truth = np.array([[mean[codes[:, e] == o].mean() if (codes[:, e] == o).any() else -np.inf for o in range(5)]
                      for e in range(6)])
    order = np.argsort(-truth.reshape(-1), kind="stable")
    top = {divmod(int(i), 5) for i in order[:10]}
    assert (np.asarray(res["truth_cells"]).sum(axis=1) == len(cells)).all()
    for k in ("angle", "rebn"):
        r = res[k]
        assert _dropped_are_lowest(res["scores"][k], r["allowed"])
        edge = {f"{a}<-{b}": e for e, (a, b) in enumerate(nb201.EDGES)}
        for d in r["dropped"]:
            e, o = edge[d["edge"]], nb201.OPS.index(d["op"])
            assert o not in r["allowed"][e] and d["truth_rank"] == 1 + int(np.flatnonzero(order == 5 * e + o)[0])
        survive = np.all([np.isin(codes[:, e], r["allowed"][e]) for e in range(6)], axis=0)
        assert r["size"] == survive.sum()
        assert r["connected_left"] == sum(connected(c) for c, s in zip(cells, survive) if s)
        assert r["kept_of_top"] == sum(o in r["allowed"][e] for e, o in top)
        if survive.any():
            best = int(np.flatnonzero(survive)[np.argmax(mean[survive])])
            assert r["best_acc"] == pytest.approx(mean[best]) and r["best"] == cells[best]
            assert r["regret"] == pytest.approx(mean.max() - mean[survive].max())
        else:
            assert r["best"] == "" and r["best_acc"] is None and r["regret"] is None
    assert res["angle"]["size"] >= 3 and res["angle"]["best_acc"] is not None
    md = oneshot.abs_table_md(res)
    assert f"ground truth: {len(cells)} sampled cells, stand-alone digits" in md and "best SAMPLED cell" in md
    assert "random (2 draws)" in md and "table's top" not in md


@pytest.mark.slow            # ~15 s of CPU (imports, two supernets, 10 + 30 ReBN scorings); small
def test_the_gpu_command_path_on_cpu_with_the_standin(tmp_path):
    """`nas correlate --space nb201 --ground-truth nb201` end to end at a tiny size: dry run,
    the run (supernets, stored scores, report, ABS drop), its resume, and bad input in one line."""
    from typer.testing import CliRunner

    from normlab.cli.app import app

    runner = CliRunner()
    env = {"COLUMNS": "200"}
    store = str(tmp_path / "s.sqlite")
    args = ["nas", "correlate", "--space", "nb201", "--ground-truth", "nb201", "--dataset", "digits", "--table",
            "standin", "--table-dataset", "cifar10-valid", "--C", "2", "--N", "1", "--n", "10", "--spos-epochs", "1",
            "--bn-epochs", "1", "--batch-size", "64", "--train-limit", "192", "--val-limit", "40", "--abs-children",
            "1", "--bootstrap", "30", "--out-dir", str(tmp_path / "c"), "--store", store]
    r = runner.invoke(app, args + ["--dry-run"], env=env)
    assert r.exit_code == 0, r.output
    assert "on a GPU (estimate)" in r.output and "SPOS supernet" in r.output and "not measured" in r.output
    assert not (tmp_path / "c").exists()
    r = runner.invoke(app, args, env=env)
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep["n"] == 10 and rep["standin"] and rep["table_dataset"] == "cifar10-valid"
    assert set(rep["correlation"]) >= {"bn_indicator", "rebn_acc", "abs_angle", "acc_no_rebn"}
    assert "holds" in rep["verdict"] or "inconclusive" in rep["verdict"]
    assert "STAND-IN" in rep["verdict"] and len(rep["abs"]["angle"]["dropped"]) == 20
    md = (tmp_path / "c" / "report.md").read_text()
    assert "τ connected" in md and "ABS on NB201" in md
    again = runner.invoke(app, args, env=env)                       # resumes: nothing retrained or rescored
    assert again.exit_code == 0, again.output
    rep2 = json.loads((tmp_path / "c" / "report.json").read_text())
    assert rep2["proxies"] == rep["proxies"] and rep2["abs"]["angle"] == rep["abs"]["angle"]
    assert "supernet epoch" not in again.output
    bad = runner.invoke(app, ["nas", "correlate", "--space", "nb201", "--dataset", "digits", "--table", "standin"], env=env)
    assert bad.exit_code == 2 and "--space nb201 goes with --ground-truth nb201" in bad.output
    bad = runner.invoke(app, args[:-4] + ["--table-dataset", "cifar11", "--out-dir", str(tmp_path / "d")], env=env)
    assert bad.exit_code == 2 and "unknown dataset 'cifar11'" in bad.output


def test_train_config_keeps_older_checkpoints_resumable():
    d = TrainConfig().to_dict()
    assert "image_size" not in d and "augment" not in d
    assert TrainConfig(image_size=16, augment=True).to_dict()["image_size"] == 16


def test_augment_is_a_crop_and_flip_of_each_image():
    from normlab.nas.train import augment_batch

    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4) + 1
    out = augment_batch(x, torch.Generator().manual_seed(3), pad=1)
    for i in range(2):
        padded = torch.nn.functional.pad(x[i], (1, 1, 1, 1))
        crops = [padded[:, a:a + 4, b:b + 4] for a in range(3) for b in range(3)]
        assert any(torch.equal(out[i], c) or torch.equal(out[i], c.flip(-1)) for c in crops)


def test_mbconv_supernet_still_trains_through_the_same_loop(tmp_path):
    from normlab.nas import SpaceConfig

    space = SpaceConfig(image_size=8, stem_stride=1, stages=((4, 1, 1), (8, 1, 2)))
    cfg = TrainConfig(dataset="digits", epochs=1, train_limit=64, mode="bn")
    state = train_supernet(space, cfg, checkpoint=tmp_path / "m.pt")
    assert state["epoch"] == 1 and "kind" not in state["space"]


def test_shrink_command(tiny, tmp_path):
    from typer.testing import CliRunner

    from normlab.cli.app import app

    runner = CliRunner()
    env = {"COLUMNS": "200"}
    out = tmp_path / "abs.json"
    r = runner.invoke(app, ["nas", "nb201", "shrink", str(tiny["spos"]), "--table", "standin", "--children", "1",
                            "--random-drops", "2", "--val-limit", "30", "--calib", "32", "--out", str(out)], env=env)
    assert r.exit_code == 0, r.output
    res = json.loads(out.read_text())
    assert len(res["angle"]["dropped"]) == 20 and "dropped by angle:" in r.output and "(#" in r.output
    r = runner.invoke(app, ["nas", "nb201", "shrink", str(tiny["spos"]), "--table", "standin", "--drop", "25"], env=env)
    assert r.exit_code == 2 and "--drop 25 is invalid" in r.output
    r = runner.invoke(app, ["nas", "nb201", "shrink", str(tmp_path / "none.pt"), "--table", "standin"], env=env)
    assert r.exit_code == 2 and "does not exist" in r.output


def test_the_nb201_angle_is_abs_block_construction():
    """V(W) of cell 3 4 0 1 0 2 (1<-0 conv3x3, 2<-0 pool, 2<-1 none, 3<-0 skip, 3<-1 none, 3<-2
    conv1x1), written out by hand: path 0->3 is a skip (nothing), 0->2->3 gives [pool 1/9,
    conv1x1(3<-2)], 0->1->2->3 and 0->1->3 cross a none (dropped); plus stem, reductions, tail."""
    from normlab.nas.scores import angle

    net = NB201Supernet(NB201SupernetConfig(C=2, N=2, image_size=8))
    init = {k: v.clone() for k, v in net.state_dict().items()}
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn_like(p))
    trained = net.state_dict()
    path = [3, 4, 0, 1, 0, 2]

    def vec(sd):
        parts = [sd["stem.0.weight"], sd["stem.1.weight"], sd["stem.1.bias"]]
        for i, cell in enumerate(net.cells):
            if isinstance(cell, nn.Module) and not hasattr(cell, "edges"):
                parts += [sd[f"cells.{i}.{n}"] for n, _ in cell.named_parameters()]
                continue
            c = cell.edges["1<-0"][3][1].weight.shape[0]
            parts += [torch.full((c, 3, 3), 1 / 9), sd[f"cells.{i}.edges.3<-2.2.1.weight"]]
        parts += [sd["lastact.0.weight"], sd["lastact.0.bias"], sd["classifier.weight"], sd["classifier.bias"]]
        return torch.cat([p.reshape(-1).double() for p in parts])

    v0, vt = vec(init), vec(trained)
    expect = float(torch.arccos(torch.dot(v0, vt) / (v0.norm() * vt.norm())))
    assert angle(init, trained, net, path) == pytest.approx(expect, rel=1e-9)
    # a cell cut by none everywhere keeps only stem, reductions and tail; ops off every path do not count
    assert len(net.angle_parts([0] * 6)) == len(net.angle_parts([3, 0, 0, 0, 0, 0]))
    assert angle(init, trained, net, [0] * 6) == pytest.approx(angle(init, trained, net, [2, 2, 0, 1, 0, 0]))


def test_fast_angle_equals_the_angle(tiny):
    from normlab.nas.scores import angle
    from normlab.nas.search import _load

    net, state, _ = _load(str(tiny["spos"]))
    sums = oneshot._angle_sums(tiny["spos"], state)
    for code in CODES:
        path = [int(c) for c in code]
        assert oneshot.fast_angle(sums, net, path) == pytest.approx(angle(state["init"], state["model"], net, path),
                                                                     rel=1e-9, abs=1e-12)


@pytest.mark.slow
def test_kill_9_during_the_gpu_command_resumes_to_the_uninterrupted_result(tmp_path):
    """`nas correlate --space nb201` killed with -9 once a few cells are scored, then rerun, writes
    the report an uninterrupted run writes (all but timings) and rescores nothing that finished."""
    import signal
    import subprocess
    import sys

    from normlab.runtime import Store

    def cmd(run):
        return [sys.executable, "-m", "normlab.cli", "nas", "correlate", "--space", "nb201", "--ground-truth", "nb201",
                "--dataset", "digits", "--table", "standin", "--table-dataset", "cifar10-valid", "--C", "2", "--N", "1",
                "--n", "8", "--spos-epochs", "2", "--bn-epochs", "1", "--batch-size", "64", "--train-limit", "192",
                "--val-limit", "40", "--abs-children", "1", "--bootstrap", "30", "--out-dir", str(tmp_path / run / "out"),
                "--store", str(tmp_path / run / "s.sqlite")]

    def scored(run):
        try:
            with Store(tmp_path / run / "s.sqlite", readonly=True) as db:
                return {r["description"]["key"]: r for e in db.experiments() if e.name.endswith("/scores")
                        for r in db.rows(experiment_id=e.id) if r["status"] == "ok"}
        except Exception:                                   # noqa: BLE001  (not created yet)
            return {}

    def report(run):
        rep = json.loads((tmp_path / run / "out" / "report.json").read_text())
        return json.dumps({k: v for k, v in rep.items() if k not in ("seconds_per_subnet", "supernet_seconds")},
                          sort_keys=True)

    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    clean = subprocess.run(cmd("a"), capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stderr[-800:]
    # The 8 cells score in about half a second, so a loaded machine can let the run finish before
    # the poll sees a scored cell: then the kill tested nothing, and the run is tried again afresh.
    for attempt in range(3):
        run = f"b{attempt}"
        proc = subprocess.Popen(cmd(run), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        # the store's first ok trials are the two supernets, the third is the first scored cell
        wait_for_trials(tmp_path / run / "s.sqlite", 3, timeout=300, poll=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not (tmp_path / run / "out" / "report.json").exists():
            break
    else:
        pytest.fail("the run finished before it could be killed, three times")
    first = {k: r["finished"] for k, r in scored(run).items()}
    again = subprocess.run(cmd(run), capture_output=True, text=True, env=env)
    assert first and again.returncode == 0, again.stderr[-800:]
    assert {k: r["finished"] for k, r in scored(run).items() if k in first} == first      # not scored again
    assert report(run) == report("a")
