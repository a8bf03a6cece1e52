"""normlab.evolve: the EvoNorms layer genome, its compiled layer, the search through normlab.search
and the CLI. Expected values are written from the formulas in the tests."""

from __future__ import annotations

import json
import math
import random

import pytest
from conftest import wait_for_trials
import torch
from typer.testing import CliRunner

from normlab.cli.app import app
from normlab.evolve import (EvolvedLayer, Genome, GenomeError, InvalidLayer, OPS, canonical,
                            canonical_key, check_valid, formula, mutate, random_genome, reference)
from normlab.layers.genome import depends_on_x, live_nodes
from normlab.layers.genome_module import apply_op
from normlab.evolve.search import (EvolveConfig, EvolveError, LayerSpace, ProxyTask, rejection_counts,
                                   run_evolve)
from normlab.layers import BatchNorm, EvoNormB0, EvoNormS0, create_norm, norm_act, parse_spec
from normlab.runtime import Store

runner = CliRunner()
D = torch.float64


def _x(shape=(6, 8, 5, 4), seed=0):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=D, device="cpu") * 2 + 0.5
    return x.to(torch.get_default_device())          # the device a test's `device` fixture chose


# -- primitives against their formulas -------------------------------------------------------

def test_unary_and_binary_primitives_match_their_formulas(device):
    a, b = _x(seed=1), _x(seed=2)
    expect = {
        "neg": -a, "sigmoid": 1 / (1 + torch.exp(-a)), "tanh": (torch.exp(a) - torch.exp(-a)) / (torch.exp(a) + torch.exp(-a)),
        "exp": torch.exp(a), "abs": torch.where(a < 0, -a, a), "square": a * a,
        "log": torch.sign(a) * torch.log(a.abs()), "sqrt": torch.sign(a) * a.abs() ** 0.5,
    }
    for op, want in expect.items():
        torch.testing.assert_close(apply_op(op, [a]), want)
    torch.testing.assert_close(apply_op("add", [a, b]), a + b)
    torch.testing.assert_close(apply_op("mul", [a, b]), a * b)
    torch.testing.assert_close(apply_op("div", [a, b]), a / b)
    torch.testing.assert_close(apply_op("max", [a, b]), torch.where(a > b, a, b))


def test_aggregates_match_their_formulas(device):
    x = _x()
    n, c, h, w = x.shape
    eps, groups = 1e-5, 2
    # batch axes (N, H, W): one statistic per channel
    for ci in range(c):
        vals = x[:, ci].reshape(-1)
        mu = vals.sum() / vals.numel()
        var = ((vals - mu) ** 2).sum() / vals.numel()
        assert torch.allclose(apply_op("mu_bhw", [x])[:, ci], mu.expand(n, h, w))
        assert torch.allclose(apply_op("s2_bhw", [x])[:, ci], var.expand(n, h, w))
        assert torch.allclose(apply_op("s_bhw", [x], eps=eps)[:, ci], math.sqrt(var + eps) * torch.ones(n, h, w, dtype=D))
    # instance axes (H, W) and group axes (C/G, H, W)
    for i in range(n):
        for ci in range(c):
            vals = x[i, ci].reshape(-1)
            mu = vals.mean()
            var = ((vals - mu) ** 2).mean()
            assert torch.allclose(apply_op("s2_hw", [x])[i, ci], var.expand(h, w))
            assert torch.allclose(apply_op("mu_hw", [x])[i, ci], mu.expand(h, w))
            k = c // groups
            gi = ci // k
            gv = x[i, gi * k:(gi + 1) * k].reshape(-1)
            gmu = gv.mean()
            gvar = ((gv - gmu) ** 2).mean()
            assert torch.allclose(apply_op("mu_hwg", [x], groups=groups)[i, ci], gmu.expand(h, w))
            assert torch.allclose(apply_op("s_hwg", [x], groups=groups, eps=eps)[i, ci],
                                  torch.sqrt(gvar + eps).expand(h, w))


def test_op_table_is_the_papers():
    assert {op for op, o in OPS.items() if o.arity == 2} == {"add", "mul", "div", "max"}
    assert {op for op, o in OPS.items() if o.kind == "unary"} == {
        "neg", "sigmoid", "tanh", "exp", "log", "abs", "square", "sqrt"}
    assert len([o for o in OPS.values() if o.kind == "aggregate"]) == 9     # mu, s2, s x 3 axis sets


# -- reference layers: the genomes equal the hand-written layers -----------------------------

def _randomise(*params):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in params:
            p.copy_(0.5 + torch.rand(p.shape, generator=g, dtype=p.dtype, device="cpu"))


@pytest.mark.parametrize("shape", [(6, 8, 5, 4), (3, 8, 7), (2, 8, 3, 3, 2)])
def test_evonorm_b0_genome_equals_the_layer(shape, device):
    ref, lay = EvoNormB0(8).double(), EvolvedLayer(8, reference("evonorm_b0")).double()
    _randomise(ref.v, ref.weight, ref.bias)
    with torch.no_grad():
        lay.v1.copy_(ref.v), lay.weight.copy_(ref.weight), lay.bias.copy_(ref.bias)
    for step in range(3):                                # train: batch statistics, running var
        x = _x(shape, seed=step)
        torch.testing.assert_close(lay(x), ref(x))
    torch.testing.assert_close(lay.running_4, ref.running_var)
    ref.eval(), lay.eval()
    x = _x(shape, seed=9)
    torch.testing.assert_close(lay(x), ref(x))


def test_evonorm_s0_genome_equals_the_layer():
    ref, lay = EvoNormS0(8, groups=4).double(), EvolvedLayer(8, reference("evonorm_s0"), groups=4).double()
    _randomise(ref.v, ref.weight, ref.bias)
    with torch.no_grad():
        lay.v1.copy_(ref.v), lay.weight.copy_(ref.weight), lay.bias.copy_(ref.bias)
    x = _x()
    torch.testing.assert_close(lay(x), ref(x))
    ref.eval(), lay.eval()
    torch.testing.assert_close(lay(x), ref(x))
    # and its gradients (the hand-written layer has its own backward)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ref.train(), lay.train()
    ref(xa).pow(3).sum().backward()
    lay(xb).pow(3).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad)
    torch.testing.assert_close(lay.v1.grad, ref.v.grad)


def test_bn_relu_genome_equals_batchnorm_then_relu():
    bn = BatchNorm(8).double()
    lay = EvolvedLayer(8, reference("bn_relu"), unbiased_running=True).double()
    _randomise(bn.weight, bn.bias)
    with torch.no_grad():
        bn.bias.sub_(1.0)
        lay.v1.copy_(bn.weight), lay.v0.copy_(bn.bias)     # BN's affine sits before the ReLU
    for step in range(3):
        x = _x(seed=step)
        torch.testing.assert_close(lay(x), torch.relu(bn(x)))
    bn.eval(), lay.eval()
    x = _x(seed=5)
    torch.testing.assert_close(lay(x), torch.relu(bn(x)))


def test_gn_relu_genome_equals_groupnorm_then_relu():
    # GroupNorm: per sample and group of C/G channels, (x - mean) / sqrt(var + eps), biased var
    lay = EvolvedLayer(8, reference("gn_relu"), groups=4).double()
    w, b = torch.empty(8, dtype=D), torch.empty(8, dtype=D)
    _randomise(w, b)
    b -= 1.0
    with torch.no_grad():
        lay.v1.copy_(w), lay.v0.copy_(b)
    x = _x(seed=3)
    xg = x.view(x.shape[0], 4, -1)
    mean, var = xg.mean(-1, keepdim=True), xg.var(-1, unbiased=False, keepdim=True)
    want = ((xg - mean) / torch.sqrt(var + 1e-5)).view_as(x) * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    torch.testing.assert_close(lay(x), torch.relu(want))
    lay.eval()                                          # no batch statistics: eval is the same
    torch.testing.assert_close(lay(x), torch.relu(want))


def test_batch_aggregate_running_statistics_behave_like_batchnorm():
    genome = Genome.from_code("mu_bhw.0;s2_bhw.0;add.4.5;add.0.6")
    lay = EvolvedLayer(8, genome, momentum=0.2, unbiased_running=True).double()
    mean, var = torch.zeros(8, dtype=D), torch.ones(8, dtype=D)
    for step in range(4):
        x = _x(seed=step)
        lay(x)
        count = x.numel() // 8
        bm = x.mean(dim=(0, 2, 3))
        bv = ((x - bm.view(1, -1, 1, 1)) ** 2).sum(dim=(0, 2, 3)) / (count - 1)
        mean, var = 0.8 * mean + 0.2 * bm, 0.8 * var + 0.2 * bv
    torch.testing.assert_close(lay.running_4, mean)
    torch.testing.assert_close(lay.running_5, var)
    lay.eval()
    x = _x(seed=11)
    torch.testing.assert_close(lay(x), x + (mean + var).view(1, -1, 1, 1))


# -- genome structure: keys, pruning, mutation, serialisation --------------------------------

def test_canonical_key_identifies_equivalent_genomes():
    b0 = reference("evonorm_b0")
    # same layer: nodes in another order, commutative arguments swapped, a dead node added
    other = Genome.from_code("s_hw.0;mul.0.3;exp.2;add.4.5;s_bhw.0;max.7.8;div.0.9")
    assert canonical_key(other) == canonical_key(b0)
    assert canonical(other) == canonical(b0)
    assert 6 not in live_nodes(other)                      # exp(v0) is pruned
    # a different layer has a different key (div is not commutative)
    assert canonical_key(Genome.from_code("s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.8.0")) != canonical_key(b0)


def test_json_code_and_formula_round_trip():
    rng = random.Random(3)
    for _ in range(50):
        g = random_genome(rng, 8)
        assert Genome.from_json(json.loads(json.dumps(g.to_json()))) == g
        assert Genome.from_code(g.code) == g
        assert "," not in g.code and ":" not in g.code and "=" not in g.code
    assert formula(reference("evonorm_b0")) == "x / max(s_bhw(x), v1*x + s_hw(x))"
    assert formula(reference("evonorm_s0")) == "x*sigmoid(v1*x) / s_hwg(x)"


def test_malformed_genomes_are_one_line_errors():
    for bad, match in [("nope.0", "unknown op"), ("add.0", "takes 2"), ("neg.4", "not an earlier node"),
                       ("neg.x", "bad genome node"), ("", "at least one node")]:
        with pytest.raises(GenomeError, match=match):
            Genome.from_code(bad)


def test_random_genomes_depend_on_x_and_compile():
    rng = random.Random(0)
    valid = 0
    for _ in range(100):
        g = random_genome(rng, 8)
        assert depends_on_x(g)
        layer = EvolvedLayer(8, g, groups=4).double()
        y = layer(_x())
        assert y.shape == (6, 8, 5, 4)
        try:
            check_valid(g)
            valid += 1
        except InvalidLayer:
            pass
    assert valid > 30


def test_batch_independent_genomes_have_no_batch_aggregates():
    rng = random.Random(1)
    for _ in range(50):
        g = random_genome(rng, 8, batch_independent=True)
        assert not any(op.endswith("_bhw") for op, _ in g.nodes)
        assert not EvolvedLayer(8, g, groups=4).batch_dependent


def test_mutation_changes_exactly_one_node_and_keeps_validity():
    rng = random.Random(2)
    parent = reference("evonorm_b0")
    for _ in range(100):
        child = mutate(parent, rng)
        changed = [i for i, (a, b) in enumerate(zip(parent.nodes, child.nodes)) if a != b]
        assert len(changed) == 1 and len(child) == len(parent)
        assert depends_on_x(child) and canonical_key(child) != canonical_key(parent)
        op, ins = child.nodes[changed[0]]
        assert all(i < 4 + changed[0] for i in ins) and len(ins) == OPS[op].arity


def test_validity_rejects_constructed_bad_layers_and_keeps_references():
    for name in ("bn_relu", "evonorm_b0", "evonorm_s0"):
        check_valid(reference(name), groups=4)
    with pytest.raises(InvalidLayer, match="does not depend on x"):
        check_valid(Genome.from_code("neg.0;add.2.3"))
    with pytest.raises(InvalidLayer, match="not finite"):
        check_valid(Genome.from_code("div.0.2"))           # x / v0, v0 = 0 at init
    with pytest.raises(InvalidLayer, match="constant"):
        check_valid(Genome.from_code("mu_hw.0;s_hw.4"))    # std of a spatially constant map
    # issue 28: x + sqrt(v0) is finite with a finite gradient for x, but d/dv0 sqrt(v0) at v0 = 0 is
    # infinite, so it diverged at its first training step (using budget)
    with pytest.raises(InvalidLayer, match="non-finite gradient for v0"):
        check_valid(Genome.from_code("sqrt.2;add.0.4"))


# -- the evolved layer as a norm spec ----------------------------------------------------------

def test_evolved_norm_spec_builds_the_layer(tmp_path):
    code = reference("evonorm_b0").code
    spec = parse_spec(f"evolved:genome={code},groups=4")
    layer = create_norm(spec, 8)
    assert isinstance(layer, EvolvedLayer) and layer.groups == 4 and layer.replaces_activation
    path = tmp_path / "layer.json"
    path.write_text(json.dumps({"genome": reference("evonorm_s0").to_json(), "groups": 2}))
    layer = create_norm(f"evolved:file={path}", 8)
    assert layer.genome == reference("evonorm_s0") and layer.groups == 2
    linear = norm_act(f"evolved:file={path}", 8, act=None)          # a slot with no activation
    x = _x().float()
    torch.testing.assert_close(linear(x), x)                         # gamma = 1, beta = 0 at init
    with pytest.raises(ValueError, match="no evolved-layer file"):
        create_norm(f"evolved:file={tmp_path / 'missing.json'}", 8)


# -- the search through normlab.search ----------------------------------------------------------

TINY = dict(dataset="digits", anchors="resnet20@0.25", steps=12, reject_steps=6, reject_acc=0.15,
            batch_size=32, budget=6, population=3, sample_size=2, eval_limit=100)


def test_proxy_task_trains_references_and_rejects_bad_layers():
    task = EvolveConfig(**{**TINY, "steps": 40, "reject_steps": 20}).task
    good = task(reference("bn_relu"))
    assert good.status == "ok" and good.metrics["resnet20@0.25"] > 0.3
    bad = task(Genome.from_code("mu_hw.0"))                # a spatial mean: throws the image away
    assert bad.status == "diverged" and "rejected (quality)" in bad.error


def test_stability_rejection_keeps_bn_relu_and_drops_an_exploding_layer():
    base = ProxyTask(dataset="digits", steps=1, stability_steps=3, stability_factor=1e3, eval_limit=50,
                     reject_acc=None)
    assert base(reference("bn_relu")).status == "ok"
    boom = base(Genome.from_code("exp.0;exp.4"))          # exp(exp(x)): gradients explode
    assert boom.status == "diverged" and "rejected (stability)" in boom.error


def test_search_runs_through_the_store_and_resumes(tmp_path):
    path = tmp_path / "s.sqlite"
    cfg = EvolveConfig(**TINY)
    first = run_evolve(cfg, store=str(path), name="t", progress=False)
    assert len(first.history) == 6
    counts = rejection_counts(first)
    assert sum(counts.values()) == 6
    with Store(path) as db:
        exps = db.experiments(name="t")
        assert len(exps) == 1 and exps[0].config["strategy"] == "evolution"
    again = run_evolve(cfg, store=str(path), name="t", progress=False)      # resume: nothing new
    assert [e.key for e in again.history] == [e.key for e in first.history]
    assert [e.scores for e in again.history] == [e.scores for e in first.history]
    rnd = run_evolve(EvolveConfig(**{**TINY, "strategy": "random"}), progress=False)
    assert len(rnd.history) == 6


def test_bad_settings_are_one_line_errors():
    for bad, match in [({"strategy": "grid"}, "strategy"), ({"anchors": "nope@1"}, "unknown"),
                       ({"budget": 0}, "budget"), ({"sample_size": 9, "population": 3}, "sample_size"),
                       ({"norm_batch_size": 64, "batch_size": 32}, "norm_batch_size")]:
        with pytest.raises(EvolveError, match=match):
            EvolveConfig(**bad)
    with pytest.raises(EvolveError, match="unknown preset"):
        EvolveConfig.preset("huge")


# -- CLI ----------------------------------------------------------------------------------------

def test_cli_run_show_export(tmp_path):
    store = str(tmp_path / "s.sqlite")
    args = ["evolve", "run", "--dataset", "digits", "--anchors", "resnet20@0.25", "--steps", "8",
            "--budget", "4", "--population", "2", "--sample-size", "2", "--store", store, "--name", "c"]
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "4 evaluated" in res.output
    res = runner.invoke(app, ["evolve", "show", "c", "--store", store], env={"COLUMNS": "200"})
    assert res.exit_code == 0 and "evaluated" in res.output and "invalid never trained" in res.output
    out = tmp_path / "best.json"
    res = runner.invoke(app, ["evolve", "export", "c", "--store", store, "--out", str(out), "--step", "0"])
    assert res.exit_code == 0, res.output
    layer = create_norm(f"evolved:file={out}", 8)
    assert isinstance(layer, EvolvedLayer)


@pytest.mark.parametrize("args,match", [
    (["--preset", "nope"], "unknown preset"),
    (["--anchors", "foo@1"], "unknown"),
    (["--budget", "0"], "budget"),
    (["--strategy", "grid"], "strategy"),
    (["/no/such.yaml"], "does not exist"),
])
def test_cli_bad_input_exits_2_with_one_line(args, match):
    res = runner.invoke(app, ["evolve", "run", *args])
    assert res.exit_code == 2
    lines = [line for line in res.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and match in lines[0], res.output


def test_cli_show_unknown_search(tmp_path):
    store = tmp_path / "s.sqlite"
    Store(store).close()
    res = runner.invoke(app, ["evolve", "show", "nope", "--store", str(store)])
    assert res.exit_code == 2 and "no search named" in res.output


def test_same_seed_same_search():
    a = run_evolve(EvolveConfig(**TINY, seed=3), progress=False)
    b = run_evolve(EvolveConfig(**TINY, seed=3), progress=False)
    assert [e.key for e in a.history] == [e.key for e in b.history]
    assert [e.scores.get("resnet20@0.25") for e in a.history] == [e.scores.get("resnet20@0.25") for e in b.history]


@pytest.mark.slow
def test_reduced_quick_run_gives_evolution_and_random_curves(tmp_path):
    """A reduced quick run end to end through one store: both strategies leave a best-so-far
    curve over the same budget (which is higher is reported, not asserted)."""
    path = str(tmp_path / "s.sqlite")
    cfg = dict(TINY, budget=10, population=4, steps=20, reject_steps=10)
    curves = {}
    for strategy in ("evolution", "random"):
        r = run_evolve(EvolveConfig(**cfg, strategy=strategy), store=path, name=strategy, progress=False)
        curves[strategy] = r.best_so_far("resnet20@0.25") if r.ok else []
        assert len(r.history) == 10
    assert all(len(c) > 0 for c in curves.values())
    print({k: (v[-1] if v else None) for k, v in curves.items()})
    # and the report of the two: the curve figure, the page with both strategies and the fixed line
    res = runner.invoke(app, ["evolve", "report", "evolution", "random", "--store", path,
                              "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "rep" / "progress.png").stat().st_size > 1000
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "random search" in page and "evolution" in page and "BN-ReLU" in page


# -- report, re-ranking, invalid counts, resume after SIGKILL -------------------------------------

def _search(history, proxy, infeasible=0, anchors=("a", "b")):
    from normlab.search import Evaluation, SearchResult

    evs = [Evaluation(i, f"k{i}", Genome.from_code("max.0.1"), scores, status, err)
           for i, (scores, status, err) in enumerate(history)]
    return SearchResult("s", "evolution", {a: "max" for a in anchors}, evs,
                        {"proxy": json.dumps(proxy), "seed": 0}, infeasible=infeasible)


def test_top_layers_rank_by_mean_anchor_accuracy_and_rejections_count_saved_steps():
    from normlab.evolve.report import rejection_table, top_layers

    proxy = {"dataset": "digits", "anchors": ["resnet20@0.25", "resnet20@0.125"], "steps": 10,
             "data_seed": 0}
    r = _search([({"resnet20@0.25": 0.9, "resnet20@0.125": 0.5, "seconds": 2.0}, "ok", None),   # mean .7
                 ({"resnet20@0.25": 0.6, "resnet20@0.125": 0.6, "seconds": 2.0}, "ok", None),   # mean .6
                 ({"steps_total": 5}, "failed", "rejected (quality) on x: acc"),
                 ({"steps_total": 10}, "failed", "rejected (quality) on y: acc")],
                proxy, infeasible=2, anchors=("resnet20@0.25", "resnet20@0.125"))
    assert [e.step for e, _ in top_layers([r], 5)] == [0, 1]
    [row] = rejection_table([r]).rows
    # full training = 10 steps x 2 anchors = 20: (20-5) + (20-10) + 2 invalid x 20 = 65 steps,
    # at 2 s / 20 steps = 0.1 s per step -> 6.5 s (prints as 6 or 7 after rounding: check steps)
    assert row[2:8] == ["4", "2", "2", "0", "0", "2"] and row[8] == "65"


TWO = dict(TINY, anchors="resnet20@0.25,resnet20@0.5", steps=8, reject_steps=4, budget=4,
           population=2, sample_size=2, eval_limit=60)


def test_cli_report_and_rerank_are_stored_and_resumable(tmp_path):
    store = tmp_path / "s.sqlite"
    for strategy, name in (("evolution", "evo"), ("random", "rnd")):
        for seed in (0, 1):
            run_evolve(EvolveConfig(**TWO, strategy=strategy, seed=seed), store=str(store), name=name,
                       progress=False)
    out = tmp_path / "rep"
    args = ["evolve", "report", "evo", "rnd", "--store", str(store), "--out", str(out)]
    res = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    page = (out / "report.html").read_text()
    for part in ("BN-ReLU", "Pareto front", "rejection", "random search", "evolution", "top 5 layers"):
        assert part in page, part
    assert (out / "progress.png").stat().st_size > 0 and (out / "pareto.png").stat().st_size > 0
    md = (out / "report.md").read_text()
    assert "| evolution | 2 |" in md and "| random search | 2 |" in md
    with Store(store, readonly=True) as db:
        n = db.count()
    assert runner.invoke(app, args).exit_code == 0           # BN-ReLU's line is stored: no new trial
    with Store(store, readonly=True) as db:
        assert db.count() == n
    rr = ["evolve", "rerank", "evo", "--top", "2", "--seeds", "2", "--steps", "6",
          "--references", "bn_relu,gn_relu", "--store", str(store)]
    res = runner.invoke(app, rr, env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    assert "evolved #1" in res.output and "GN-ReLU" in res.output
    from normlab.evolve.report import top_layers
    from normlab.search import load_search

    with Store(store, readonly=True) as db:
        k = len(top_layers(load_search(db, "evo", decode=Genome.from_json), 2))
        assert k >= 1 and db.count() == n + (k + 2) * 2     # (evolved + 2 references) x 2 seeds
    assert runner.invoke(app, rr).exit_code == 0           # resumed: nothing trained again
    with Store(store, readonly=True) as db:
        assert db.count() == n + (k + 2) * 2
    assert runner.invoke(app, args).exit_code == 0
    assert "re-ranking: 6 steps, 2 seeds" in (out / "report.md").read_text()
    bad = runner.invoke(app, ["evolve", "rerank", "evo", "--references", "ln", "--store", str(store)])
    assert bad.exit_code == 2 and "unknown reference layer" in bad.output


def test_invalid_candidates_are_counted_and_stored(tmp_path):
    store = tmp_path / "s.sqlite"
    r = run_evolve(EvolveConfig(**TINY), store=str(store), name="t", progress=False)
    space = EvolveConfig(**TINY).space
    with Store(store, readonly=True) as db:
        [stored] = __import__("normlab.search", fromlist=["load_search"]).load_search(
            db, "t", decode=Genome.from_json)
    assert stored.infeasible == r.invalid
    assert all(space.valid(e.arch) for e in stored.history)   # what was evaluated passed validity


KILLED_CMD = ["evolve", "run", "--dataset", "digits", "--anchors", "resnet20@0.25", "--steps", "10",
              "--budget", "8", "--population", "3", "--sample-size", "2", "--name", "k"]


@pytest.mark.slow
def test_evolve_run_resumes_after_sigkill_to_the_uninterrupted_result(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from normlab.search import load_search

    def run(store):
        return subprocess.Popen([sys.executable, "-m", "normlab.cli", *KILLED_CMD, "--store", str(store)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    victim = run(tmp_path / "k.sqlite")
    done = wait_for_trials(tmp_path / "k.sqlite", 3, ("ok", "diverged"), timeout=90)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(10)
    assert 3 <= done < 8
    resumed = run(tmp_path / "k.sqlite")
    ref = runner.invoke(app, [*KILLED_CMD, "--store", str(tmp_path / "ref.sqlite")])   # uninterrupted
    assert ref.exit_code == 0, ref.output
    assert resumed.wait(120) == 0, resumed.stderr.read()
    with Store(tmp_path / "ref.sqlite", readonly=True) as a, Store(tmp_path / "k.sqlite", readonly=True) as b:
        [want], [got] = load_search(a, "k"), load_search(b, "k")
    assert [(e.key, e.status, e.scores.get("resnet20@0.25")) for e in got.history] == \
           [(e.key, e.status, e.scores.get("resnet20@0.25")) for e in want.history]
    assert len(got.history) == 8 and got.infeasible == want.infeasible


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_presets_are_yaml_configs_the_cli_accepts(preset):
    from pathlib import Path

    from normlab._yaml import read_yaml_mapping

    path = Path(__file__).resolve().parents[2] / "normlab" / "configs" / f"evolve-{preset}.yaml"
    assert EvolveConfig.from_dict(read_yaml_mapping(path, "config")) == EvolveConfig.preset(preset)
    res = runner.invoke(app, ["evolve", "run", str(path), "--budget", "0"])   # parsed, then checked
    assert res.exit_code == 2 and "budget=0" in res.output, res.output


def test_cli_report_bad_input_is_one_line(tmp_path):
    from normlab.search import BitString, onemax, random_search

    store = tmp_path / "s.sqlite"
    random_search(BitString(4), onemax, budget=3, store=store, name="bits")
    for args, match in [(["nope"], "no search named"), (["bits"], "not a layer search"),
                        (["bits", "--top", "0"], "--top 0"), (["bits", "--fixed", "ln"], "unknown reference")]:
        res = runner.invoke(app, ["evolve", "report", *args, "--store", str(store), "--out", str(tmp_path / "r")])
        lines = [line for line in res.output.strip().splitlines() if line.strip()]
        assert res.exit_code == 2 and len(lines) == 1 and match in lines[0], res.output


def test_evolution_against_random_is_decided_under_the_shared_rule():
    from normlab.evolve.report import strategy_claims
    from normlab.search import Evaluation, SearchResult

    def search(strategy, seed, best):
        evs = [Evaluation(i, f"k{i}", Genome.from_code("max.0.1"), {"a": v, "b": v})
               for i, v in enumerate([best - 0.05, best])]
        return SearchResult(f"{strategy}{seed}", strategy, {"a": "max", "b": "max"}, evs, {"seed": seed})

    far = [search("evolution", s, 0.90 + 0.002 * s) for s in range(4)] + \
          [search("random", s, 0.80 + 0.003 * s) for s in range(4)]
    [line, family] = strategy_claims(far)
    assert line.startswith("evolution against random search (best fitness after the budget, 4 vs 4 searches)")
    assert "beats random search holds" in line and "Welch" in line and "1 comparison(s)" in family
    close = [search("evolution", s, 0.90 + 0.01 * (s % 2)) for s in range(3)] + \
            [search("random", s, 0.90 + 0.01 * ((s + 1) % 2)) for s in range(3)]
    assert "is inconclusive at 3 searches" in strategy_claims(close)[0]
    assert strategy_claims(far[:4]) == []                       # no baseline: no claim


def test_norm_batch_2_trains_through_fit_with_ghost_batches(monkeypatch):
    """--norm-batch-size 2: the proxy trains through train.fit, whose ghost path sets every
    evolved layer to groups of 2 and runs one forward per step (not 16 micro-batches)."""
    import normlab.train.loop as loop

    seen, forwards = [], []
    original = loop._forward_backward

    def spy(run, xb, yb):
        seen.append((run.ghost, run.micro, sorted({m.norm_batch for m in run.model.modules()
                                                   if type(m).__name__ == "EvolvedNorm"})))
        handle = run.model.register_forward_hook(lambda *a: forwards.append(1))
        try:
            return original(run, xb, yb)
        finally:
            handle.remove()

    monkeypatch.setattr(loop, "_forward_backward", spy)
    task = ProxyTask(dataset="digits", steps=3, batch_size=8, norm_batch_size=2, reject_acc=None, eval_limit=50)
    out = task(reference("evonorm_b0"))
    assert out.status == "ok" and out.metrics["steps_total"] == 3
    assert seen == [(True, 2, [2])] * 3 and len(forwards) == 3
    assert task.fit_config().norm_batch_size == 2


def test_evolved_layer_ghost_batches_equal_micro_batches():
    """A batch aggregate over ghost groups of 2: the output and the running statistics of feeding
    the groups one by one (consecutive groups, and interleaved as fit() feeds them)."""
    from normlab.layers.ghost import interleave_order

    g = Genome.from_code("s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.0.8")
    for n in (8, 9):
        x = _x((n, 6, 5, 4)).float()
        one, ref, inter = (EvolvedLayer(6, g, groups=2) for _ in range(3))
        expect = torch.cat([ref(part) for part in x.split(2)])
        one.norm_batch = 2
        torch.testing.assert_close(one(x), expect)
        inter.norm_batch, inter.ghost_interleaved = 2, True
        order = interleave_order(n, 2)
        torch.testing.assert_close(inter(x[order]), expect[order])
        for name, buf in ref.named_buffers():
            torch.testing.assert_close(dict(one.named_buffers())[name], buf)
            torch.testing.assert_close(dict(inter.named_buffers())[name], buf)


# -- compiled candidates (EvolveConfig.compile) -------------------------------------------------

SMALL_PROXY = {"dataset": "digits", "steps": 3, "batch_size": 16, "reject_acc": None, "eval_limit": 64}


def test_compile_is_a_task_setting_recorded_per_trial_and_not_part_of_the_identity():
    on, off = EvolveConfig(**TINY, compile=True), EvolveConfig(**TINY)
    assert on.task.compile and not off.task.compile
    assert on.space == off.space                       # a search resumes with it switched
    assert on.task.spec(reference("evonorm_b0")).endswith(",compile=true")
    model, _ = on.task.build(reference("evonorm_b0"), "resnet20", 0.25)
    assert {m.compile for m in model.modules() if isinstance(m, EvolvedLayer)} == {True}
    with pytest.raises(EvolveError, match="compile='yes' is invalid"):
        EvolveConfig(compile="yes")
    from normlab.cli.evolve import _load_config

    assert _load_config(None, "quick", {"compile": True}).compile is True       # what --compile passes
    for flag in ("--compile", "--no-compile"):                                  # accepted; budget=0 stops it
        out = runner.invoke(app, ["evolve", "run", flag, "--budget", "0", "--dry-run"])
        assert out.exit_code == 2 and "budget=0 is invalid" in out.output, out.output


def test_a_compile_failure_in_the_layer_falls_back_to_plain_ops(monkeypatch):
    """No working compiler (torch.compile's function raises): the layer falls back on its first
    call, the candidate trains and scores as interpreted, and the trial counts the fallback."""
    import normlab.layers.genome_module as gm

    def broken(fn, **kw):
        def call(*args):
            raise RuntimeError("no C++ compiler")
        return call

    genome = reference("evonorm_b0")
    plain = ProxyTask(**SMALL_PROXY)(genome)
    monkeypatch.setattr(gm.torch, "compile", broken)
    with pytest.warns(UserWarning, match="torch.compile failed"):
        out = ProxyTask(**SMALL_PROXY, compile=True)(genome)
    assert out.status == "ok" and out.metrics["compile_fallbacks"] == 1 and out.metrics["compiled"] == 0
    assert out.metrics["resnet20@0.25"] == pytest.approx(plain.metrics["resnet20@0.25"], abs=2 / 64)
    assert not gm.compile_failed(genome) and not any(k[0] == genome.code for k in gm._COMPILED)   # forgotten


def test_an_error_while_training_compiled_retrains_the_anchor_interpreted(monkeypatch):
    """An error raised outside the layer's call (the backward's compilation, say) never fails the
    candidate: that anchor trains again interpreted from the same seed, the same score exactly."""
    genome = reference("evonorm_b0")
    task = ProxyTask(**SMALL_PROXY, compile=True)
    plain = ProxyTask(**SMALL_PROXY)(genome)
    original = ProxyTask._train_one

    def flaky(self, genome, model_name, width, compile=None):
        if compile:
            raise RuntimeError("inductor: backward compilation failed")
        return original(self, genome, model_name, width, compile)

    monkeypatch.setattr(ProxyTask, "_train_one", flaky)
    with pytest.warns(UserWarning, match="training it interpreted"):
        out = task(genome)
    assert out.status == "ok" and out.metrics["compile_fallbacks"] == 1 and out.metrics["compiled"] == 0
    assert out.metrics["resnet20@0.25"] == plain.metrics["resnet20@0.25"]
    assert plain.metrics["compiled"] == 0 and "compile_fallbacks" not in plain.metrics
