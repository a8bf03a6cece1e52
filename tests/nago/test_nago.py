"""NAGO: the hierarchical generator (graphs, DAG rule, determinism, counts), the optuna search
through the runtime's store (resume, SIGKILL), and the CLI."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
import torch

nx = pytest.importorskip("networkx")

from normlab.nago import (PAPER_RANGES, GeneratorError, GeneratorParams, LevelParams, count_params,  # noqa: E402
                          level_graph, sample, to_dag)

ONE = LevelParams("er", 1, p=0.0)


def tiny(bottom=ONE, top=ONE, mid=ONE, stages=1, width=4, ratios=(1.0,)):
    return GeneratorParams(top=top, mid=mid, bottom=bottom, stages=stages, width=width, channel_ratios=ratios)


# -- graphs -----------------------------------------------------------------------------------

def test_dag_orients_low_to_high_and_finds_inputs_and_outputs():
    preds, inputs, outputs = to_dag(4, [(2, 0), (1, 2), (3, 3)])
    assert preds == [[], [], [0, 1], []]          # 2->0 becomes 0->2; the self-loop is dropped
    assert inputs == [0, 1, 3]
    assert outputs == [2, 3]
    preds, inputs, outputs = to_dag(5, [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)])
    assert preds == [[], [0], [1], [2], [0, 3]]
    assert inputs == [0] and outputs == [4]
    assert to_dag(1, []) == ([[]], [0], [0])


def test_ws_er_ba_map_to_networkx():
    n, k = 10, 4
    lattice = level_graph(LevelParams("ws", n, k, 0.0), seed=3)       # p = 0: the ring lattice itself
    expected = {frozenset((i, (i + d) % n)) for i in range(n) for d in (1, 2)}
    assert {frozenset(e) for e in lattice.edges} == expected
    g = level_graph(LevelParams("ws", 12, 4, 0.3), seed=7)
    assert sorted(g.edges) == sorted(nx.watts_strogatz_graph(12, 4, 0.3, seed=7).edges)
    assert g.number_of_edges() == 12 * 4 // 2                       # rewiring keeps the edge count
    assert level_graph(LevelParams("er", 6, p=1.0), 0).number_of_edges() == 15
    assert level_graph(LevelParams("er", 6, p=0.0), 0).number_of_edges() == 0
    g = level_graph(LevelParams("er", 9, p=0.4), 5)
    assert sorted(g.edges) == sorted(nx.erdos_renyi_graph(9, 0.4, seed=5).edges)
    n, m = 9, 2
    g = level_graph(LevelParams("ba", n, m=m), 1)
    assert g.number_of_edges() == (n - m) * m                       # each new node brings m edges
    assert sorted(g.edges) == sorted(nx.barabasi_albert_graph(n, m, seed=1).edges)
    # degenerate points map to the nearest valid graph
    assert level_graph(LevelParams("ws", 4, 5, 0.5), 0).number_of_edges() == 6      # k >= n: complete
    assert level_graph(LevelParams("ba", 3, m=5), 0).number_of_edges() == (3 - 2) * 2
    assert level_graph(LevelParams("ws", 1, 2, 0.5), 0).number_of_nodes() == 1


def test_every_sampled_level_is_a_dag_with_one_input_and_one_output():
    g = GeneratorParams(top=LevelParams("ws", 4, 2, 0.7), mid=LevelParams("er", 3, p=0.3),
                        bottom=LevelParams("ba", 4, m=2), width=4)
    net = sample(g, seed=11, in_channels=1)
    blocks = [m for m in net.modules() if type(m).__name__ == "GraphBlock"]
    assert len(blocks) == 3 * (1 + 4 * (1 + 3))                     # stages x (top + cells x (mid + nodes))
    for b in blocks:
        dg = nx.DiGraph(b.edges)
        dg.add_nodes_from(range(len(b.nodes)))
        assert nx.is_directed_acyclic_graph(dg)
        assert all(p < i for p, i in b.edges)
        assert b.inputs and b.outputs
    x = torch.randn(2, 1, 16, 16)
    assert net(x).shape == (2, 10)


def test_same_seed_same_network_different_seed_different_one():
    g = GeneratorParams(top=LevelParams("ws", 5, 2, 0.8), mid=LevelParams("er", 3, p=0.5),
                        bottom=LevelParams("ws", 5, 4, 0.8), width=4)
    a, b, c = sample(g, 1, in_channels=1), sample(g, 1, in_channels=1), sample(g, 2, in_channels=1)
    assert a.graphs == b.graphs
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert a.graphs != c.graphs
    x = torch.randn(3, 1, 12, 12)
    a.eval(), b.eval()
    assert torch.equal(a(x), b(x))
    before = torch.random.get_rng_state()
    sample(g, 5, in_channels=1)
    assert torch.equal(before, torch.random.get_rng_state())        # the global generator is left alone


@pytest.mark.parametrize("size,cin", [(28, 1), (32, 3)])
@pytest.mark.parametrize("norm", ["bn", "bgn:groups=4", "gn:groups=4", "evonorm_s0"])
def test_forward_shapes_and_every_norm(size, cin, norm):
    g = GeneratorParams(top=LevelParams("ws", 3, 2, 0.5), mid=LevelParams("er", 2, p=0.9),
                        bottom=LevelParams("ws", 3, 2, 0.5), width=8)
    net = sample(g, 0, norm=norm, in_channels=cin, num_classes=7)
    out = net(torch.randn(4, cin, size, size))
    assert out.shape == (4, 7) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.numel())


def test_params_counted_by_hand():
    # stem conv 1->4 (36) + bn (8); stage entry op conv 4->4 (144) + bn (8); one op (152); head 4*10+10
    net = sample(tiny(), 0, in_channels=1)
    assert count_params(net) == 36 + 8 + 152 + 152 + 50
    # bottom WS(3, 2, p=0) is a triangle: 3 ops, node 2 has two inputs -> two aggregation weights
    net = sample(tiny(bottom=LevelParams("ws", 3, 2, 0.0)), 0, in_channels=1)
    assert count_params(net) == 36 + 8 + 152 + 3 * 152 + 2 + 50
    # gn has the same 2C affine parameters; two stages of widths 4, 8
    net = sample(tiny(stages=2, ratios=(1, 2)), 0, norm="gn:groups=2", in_channels=3, num_classes=5)
    stage1 = 144 + 8 + 152
    stage2 = (4 * 8 * 9 + 16) + (8 * 8 * 9 + 16)
    assert count_params(net) == 3 * 4 * 9 + 8 + stage1 + stage2 + 8 * 5 + 5
    from normlab.models import profile
    prof = profile(net, (1, 3, 8, 8))
    assert prof.params == count_params(net)
    convs = 2 * (8 * 8 * (3 * 4 * 9 + 4 * 4 * 9 * 2) + 4 * 4 * (4 * 8 * 9 + 8 * 8 * 9)) + 2 * 8 * 5
    assert prof.flops == convs                                     # multiply-adds counted twice


def _corners(level):
    names = list(PAPER_RANGES[level])
    for values in itertools.product(*(PAPER_RANGES[level][k] for k in names)):
        yield dict(zip(names, values))


@pytest.mark.parametrize("level", ["top", "mid", "bottom"])
def test_every_range_limit_builds_a_network_that_trains(level):
    model = {"top": "ws", "mid": "er", "bottom": "ws"}[level]
    for corner in _corners(level):
        lv = LevelParams(model, **{k: (int(v) if k != "p" else float(v)) for k, v in corner.items()})
        g = tiny(**{level: lv}, width=2)
        net = sample(g, 0, in_channels=1)
        out = net(torch.randn(2, 1, 8, 8))
        assert out.shape == (2, 10)
        out.square().mean().backward()
        assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_generators_that_draw_the_same_networks_share_a_key():
    """Parameters that cannot change a graph do not split a key: the search then tells optuna the
    known result instead of training the same networks again."""
    same = [
        (LevelParams("ws", 2, 2, 0.3), LevelParams("ws", 2, 5, 0.9)),      # k >= n: the complete graph
        (LevelParams("ws", 5, 3, 0.4), LevelParams("ws", 5, 2, 0.4)),      # odd k acts as k - 1
        (LevelParams("ws", 5, 1, 0.2), LevelParams("ws", 5, 0, 0.8)),      # no lattice edges
        (LevelParams("er", 1, p=0.1), LevelParams("er", 1, p=0.9)),        # one node
        (LevelParams("ba", 3, m=2), LevelParams("ba", 3, m=7)),            # m >= n acts as n - 1
    ]
    for a, b in same:
        ga, gb = GeneratorParams(bottom=a), GeneratorParams(bottom=b)
        assert ga.key() == gb.key(), (a, b)
        assert sample(ga, 4).graphs == sample(gb, 4).graphs
    for a, b in [(LevelParams("ws", 5, 2, 0.2), LevelParams("ws", 5, 4, 0.2)),
                 (LevelParams("er", 2, p=0.2), LevelParams("er", 3, p=0.2))]:
        assert GeneratorParams(bottom=a).key() != GeneratorParams(bottom=b).key()


def test_bad_generator_params_say_what_is_wrong():
    with pytest.raises(GeneratorError, match="model='xx'"):
        LevelParams("xx")
    with pytest.raises(GeneratorError, match="p=1.5"):
        LevelParams("er", 3, p=1.5)
    with pytest.raises(GeneratorError, match="n=0"):
        LevelParams("ws", 0)
    with pytest.raises(GeneratorError, match="channel_ratios"):
        GeneratorParams(stages=2)
    with pytest.raises(GeneratorError, match="unknown generator setting"):
        GeneratorParams.from_dict({"tpo": {}})
    g = GeneratorParams(top=LevelParams("ba", 5, m=2))
    assert GeneratorParams.from_dict(g.to_dict()) == g
    assert g.key().startswith("ba(5,2)/er(")


# -- the search through the store ---------------------------------------------------------------

optuna = pytest.importorskip("optuna")

from normlab.nago.search import (NAGO_KIND, NagoConfig, NagoError, load_config, run_search,  # noqa: E402
                                 study_from_store)
from normlab.runtime import SerialExecutor, Store  # noqa: E402


def small_cfg(**kw):
    base = dict(name="t", dataset="synthetic:n=256,classes=4,channels=1,size=8", budget=4, samples=2,
                startup=2, stages=1, width=4, channel_ratios=(1,),
                ranges={"top": {"n": (1, 2), "k": (2, 3), "p": (0.1, 1.0)}, "mid": {"n": (1, 2), "p": (0.1, 1.0)},
                        "bottom": {"n": (1, 3), "k": (2, 3), "p": (0.1, 1.0)}},
                train={"steps": 3, "batch_size": 32, "lr": 0.1})
    base.update(kw)
    return NagoConfig(**base)


def test_search_end_to_end_through_the_store(tmp_path):
    path = tmp_path / "s.sqlite"
    seen = []
    result = run_search(small_cfg(), store=path, executor=SerialExecutor(threads=1),
                        on_result=lambda done, total, ev: seen.append((done, total, ev.key)))
    assert [d for d, _, _ in seen] == [1, 2, 3, 4] and len(result.history) == 4
    assert result.objectives == {"accuracy": "max", "params": "min"} and result.strategy == "tpe"
    for e in result.history:
        assert e.ok and 0 <= e.scores["accuracy"] <= 1 and e.scores["params"] > 0
        assert e.scores["samples"] == 2.0
    # the stored per-sample accuracies give the stored mean and spread
    db = Store(path)
    (exp,) = db.experiments(kind=NAGO_KIND)
    for row in db.rows(experiment_id=exp.id):
        accs = [h["accuracy"] for h in row["history"]]
        mean = sum(accs) / 2
        assert row["metrics"]["accuracy"] == pytest.approx(mean)
        assert row["metrics"]["accuracy_std"] == pytest.approx(abs(accs[0] - accs[1]) / 2 ** 0.5)
    # the front is non-dominated and everything off it is dominated by a member
    front = result.pareto_front()
    pts = [(e.scores["accuracy"], e.scores["params"]) for e in result.history]
    dom = lambda a, b: a[0] >= b[0] and a[1] <= b[1] and a != b          # noqa: E731
    fpts = [(e.scores["accuracy"], e.scores["params"]) for e in front]
    assert all(not dom(q, p) for p in fpts for q in pts)
    assert all(any(dom(f, p) or f == p for f in fpts) for p in pts)
    # readable by the generic search reader
    from normlab.search import load_search
    (again,) = load_search(db, "t")
    assert [e.key for e in again.history] == [e.key for e in result.history]
    db.close()


def test_resume_rebuilds_optuna_from_the_store_and_reruns_nothing(tmp_path):
    path = tmp_path / "s.sqlite"
    first = run_search(small_cfg(budget=3), store=path, executor=SerialExecutor(threads=1))
    db = Store(path)
    before = {r["id"]: r["finished"] for r in db.rows()}
    study = study_from_store(small_cfg(budget=3), db)
    assert len(study.trials) == 3
    for t, e in zip(study.trials, first.history):
        assert t.values == [e.scores["accuracy"], e.scores["params"]]
        assert t.params == next(r["description"]["params"] for r in db.rows() if r["description"]["key"] == e.key)
    db.close()
    second = run_search(small_cfg(budget=5), store=path, executor=SerialExecutor(threads=1))
    db = Store(path)
    after = {r["id"]: r["finished"] for r in db.rows()}
    assert len(after) == 5 and all(after[k] == v for k, v in before.items())     # nothing re-evaluated
    assert [e.key for e in second.history[:3]] == [e.key for e in first.history]
    assert len(study_from_store(small_cfg(budget=5), db).trials) == 5
    db.close()


KILLED = """
import sys, torch
sys.path.insert(0, {root!r})
from tests.nago.test_nago import small_cfg
from normlab.nago.search import run_search
from normlab.runtime import SerialExecutor
run_search(small_cfg(budget=6, train={{"steps": 40, "batch_size": 32, "lr": 0.1}}), store={path!r},
           executor=SerialExecutor(threads=1))
"""


@pytest.mark.slow
def test_sigkill_mid_search_then_resume(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    path = str(tmp_path / "s.sqlite")
    root = os.getcwd()
    proc = subprocess.Popen([sys.executable, "-c", KILLED.format(root=root, path=path)], cwd=root)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            time.sleep(0.3)
            if os.path.exists(path):
                db = Store(path)
                statuses = [r["status"] for r in db.rows()]
                db.close()
                if statuses.count("ok") >= 1 and "running" in statuses:
                    break
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    db = Store(path)
    rows = db.rows()
    done = {r["id"]: r["finished"] for r in rows if r["status"] == "ok"}
    killed = [r["id"] for r in rows if r["status"] == "running"]
    db.close()
    assert done and killed
    cfg = small_cfg(budget=6, train={"steps": 40, "batch_size": 32, "lr": 0.1})
    result = run_search(cfg, store=path, executor=SerialExecutor(threads=1))
    db = Store(path)
    rows = db.rows()
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert all(r["finished"] == done[r["id"]] for r in rows if r["id"] in done)   # not run again
    assert all(r["id"] in {x["id"] for x in rows} for r in rows)
    assert set(killed) <= {r["id"] for r in rows}                  # the killed evaluation was finished
    assert len(study_from_store(cfg, db).trials) == 6 == len(result.history)
    db.close()


def test_config_errors_are_one_line():
    with pytest.raises(NagoError, match="strategy='bo'"):
        small_cfg(strategy="bo")
    with pytest.raises(NagoError, match=r"ranges.top.n=\[4, 2\]"):
        small_cfg(ranges={"top": {"n": (4, 2), "k": (2, 3), "p": (0.1, 1)}, "mid": {"n": (1, 2), "p": (0.1, 1)},
                          "bottom": {"n": (1, 3), "k": (2, 3), "p": (0.1, 1)}})
    with pytest.raises(NagoError, match=r"ranges.mid.m=\[0, 2\] is invalid"):
        small_cfg(models={"top": "ws", "mid": "ba", "bottom": "ws"}, ranges={"mid": {"m": (0, 2)}})
    assert small_cfg(models={"top": "ws", "mid": "ba", "bottom": "ws"}, ranges={}).ranges["mid"] == {
        "n": (1, 2), "m": (1, 2)}
    with pytest.raises(NagoError, match="unknown preset"):
        load_config(preset="huge")
    with pytest.raises(NagoError, match="unknown NAGO setting"):
        NagoConfig.from_dict({"bogus": 1})
    with pytest.raises(NagoError, match="train: "):
        small_cfg(train={"lr": -1})
    assert load_config(preset="paper").ranges["top"]["n"] == (3, 10)


def _cli(*args, **kw):
    from typer.testing import CliRunner

    from normlab.cli.app import app
    return CliRunner().invoke(app, ["nago", *args], **kw)


@pytest.mark.parametrize("args,message", [
    (["run", "--preset", "huge"], "unknown preset 'huge'"),
    (["run", "--norm", "zz"], "unknown norm 'zz'"),
    (["run", "--strategy", "bo"], "strategy='bo'"),
    (["run", "--budget", "0"], "budget=0"),
    (["run", "--dataset", "nosuch"], "unknown dataset"),
    (["run", "/no/such.yaml"], "cannot read config"),
    (["sample", "{\"tpo\": 1}"], "unknown generator setting"),
    (["sample", "/no/such.json"], "cannot read generator"),
    (["run", "--halving", "1"], "halving_eta=1 is invalid"),
    (["run", "--strategy", "randwire", "--halving", "3"], "successive halving needs a generator search"),
    (["run", "--randwire-n", "0"], "randwire_n=0 is invalid"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, message):
    r = _cli(*args)
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert message in text and "Traceback" not in r.output


def test_cli_run_show_sample(tmp_path):
    import yaml

    cfg = small_cfg(budget=2).to_dict()
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    store = str(tmp_path / "s.sqlite")
    front = str(tmp_path / "front.json")
    r = _cli("run", str(tmp_path / "c.yaml"), "--store", store, "--threads", "1", "--export", front)
    assert r.exit_code == 0, r.output
    assert "Pareto front" in r.output
    r = _cli("show", "t", "--store", store, "--draw", str(tmp_path / "g.png"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "g.png").stat().st_size > 1000
    r = _cli("sample", front, "--seed", "3", "--dataset", "synthetic:n=64,size=8,channels=1")
    assert r.exit_code == 0, r.output
    assert "params" in r.output
    r = _cli("run", "--dry-run", str(tmp_path / "c.yaml"), "--threads", "1")
    assert r.exit_code == 0 and "trainings" in r.output
    r = _cli("run", str(tmp_path / "c.yaml"), "--store", store, "--threads", "1", "--strategy", "randwire",
             "--randwire-n", "3", "--name", "t-rw")
    assert r.exit_code == 0, r.output
    r = _cli("report", "t", "t-rw", "--store", store, "--out", str(tmp_path / "rep"))
    assert r.exit_code == 0, r.output
    page = (tmp_path / "rep" / "report.html").read_text()
    for fig in ("progress.png", "pareto-tpe.png", "pareto-randwire.png", "best-graphs.png"):
        assert (tmp_path / "rep" / fig).stat().st_size > 1000
    assert page.count("<img") == 4 and "the best generators" in page and "randwire" in page
    r = _cli("show", "t", "--store", store, "--export-model", str(tmp_path / "m.json"), "--seed", "2")
    assert r.exit_code == 0, r.output
    from normlab.models import create_model
    assert create_model(str(tmp_path / "m.json"), in_channels=1, num_classes=4).seed == 2
    r = _cli("retrain", "t", "--store", store, "--top", "1", "--steps", "2", "--anchors", "resnet20",
             "--threads", "1")
    assert r.exit_code == 0, r.output
    assert "resnet20" in r.output and "nago #1" in r.output
    r = _cli("retrain", "t", "--store", store, "--anchors", "vgg")
    assert r.exit_code == 2 and "unknown anchor model 'vgg'" in r.output
    r = _cli("report", "nosuch", "--store", store, "--out", str(tmp_path / "rep"))
    assert r.exit_code == 2 and "Traceback" not in r.output


# -- baselines and multi-fidelity ------------------------------------------------------------------

def test_randwire_baseline_draws_new_networks_of_one_fixed_generator(tmp_path):
    from normlab.nago import randwire_params

    path = tmp_path / "s.sqlite"
    cfg = small_cfg(strategy="randwire", randwire_n=3, budget=3)
    result = run_search(cfg, store=path, executor=SerialExecutor(threads=1))
    fixed = randwire_params(3, stages=1, width=4, channel_ratios=(1,)).to_dict()
    assert fixed["bottom"] == {"model": "ws", "n": 3, "k": 4, "p": 0.75, "m": 1}
    assert len(result.history) == 3 and len({e.key for e in result.history}) == 3
    db = Store(path)
    rows = db.rows()
    assert all(r["description"]["arch"] == fixed for r in rows)
    # draw i trains the networks of seeds seed + i * samples, seed + i * samples + 1
    assert sorted(h["seed"] for r in rows for h in r["history"]) == [0, 1, 2, 3, 4, 5]
    db.close()
    more = run_search(small_cfg(strategy="randwire", randwire_n=3, budget=4), store=path,
                      executor=SerialExecutor(threads=1))
    assert [e.key for e in more.history[:3]] == [e.key for e in result.history] and len(more.history) == 4
    assert more.history[3].key.endswith("#3")
    with pytest.raises(NagoError, match="successive halving needs a generator search"):
        small_cfg(strategy="randwire", halving_eta=3)


def test_successive_halving_promotes_the_best_and_resumes_without_rerunning(tmp_path):
    path = tmp_path / "s.sqlite"
    cfg = small_cfg(budget=4, halving_eta=2, halving_rungs=2, train={"steps": 6, "batch_size": 32, "lr": 0.1})
    assert cfg.rung_train(0)["steps"] == 3 and cfg.rung_train(1)["steps"] == 6
    run_search(cfg, store=path, executor=SerialExecutor(threads=1))
    db = Store(path)
    rows = db.rows()
    low = [r for r in rows if r["description"]["rung"] == 0]
    high = [r for r in rows if r["description"]["rung"] == 1]
    assert len(low) == 4 and all(r["description"]["eval"]["train"]["steps"] == 3 for r in low)
    assert all(r["description"]["eval"]["train"]["steps"] == 6 and r["metrics"]["train_steps"] == 6 for r in high)
    # ASHA: the final top floor(4 / 2) of rung 0 were all promoted; nothing else is promoted twice
    top = sorted(low, key=lambda r: -r["metrics"]["accuracy"])[:2]
    promoted = [r["description"]["gen"] for r in high]
    assert {r["description"]["gen"] for r in top} <= set(promoted) and len(set(promoted)) == len(promoted)
    assert 2 <= len(high) <= 3
    # the low-fidelity evaluations of promoted generators stay recorded; optuna hears rung 0 only
    assert {r["description"]["gen"] for r in low} >= set(promoted)
    assert len(study_from_store(cfg, db).trials) == 4
    before = {r["id"]: r["finished"] for r in rows}
    db.close()
    run_search(cfg, store=path, executor=SerialExecutor(threads=1))            # resume: nothing to do
    db = Store(path)
    assert {r["id"]: r["finished"] for r in db.rows()} == before
    db.close()
    run_search(replace(cfg, budget=5), store=path, executor=SerialExecutor(threads=1))
    db = Store(path)
    after = {r["id"]: r["finished"] for r in db.rows()}
    assert all(after[k] == v for k, v in before.items())          # no evaluation, low or high, re-run
    assert sum(r["description"]["rung"] == 0 for r in db.rows()) == 5
    db.close()
    from normlab.nago.report import arm, write_report
    from normlab.search import load_search
    db = Store(path)
    (result,) = load_search(db, "t")
    db.close()
    assert arm(result) == "tpe+halving2"
    write_report([result], tmp_path / "rep")
    assert (tmp_path / "rep" / "pareto-tpe+halving2.png").exists()
    assert "@6 steps" in (tmp_path / "rep" / "report.md").read_text()


def test_nago_runs_on_the_search_loop_window_resume_time_outs_and_fail_fast(tmp_path):
    """Issue 26: NAGO is a strategy of the one search loop, so it has the loop's sliding window
    (here batch 2: proposal i is asked right after result i - 2 is told), replay on resume with
    successive-halving promotions, time-outs and failing fast."""
    cfg = small_cfg(budget=4, halving_eta=2, halving_rungs=2, train={"steps": 4, "batch_size": 32, "lr": 0.1})
    whole = run_search(cfg, store=tmp_path / "a.sqlite", executor=SerialExecutor(threads=1), batch=2)
    assert sum("@4 steps" in e.key for e in whole.history) >= 2           # promotions ran in the window
    import shutil
    import sqlite3

    shutil.copy(tmp_path / "a.sqlite", tmp_path / "b.sqlite")
    with sqlite3.connect(tmp_path / "b.sqlite") as con:          # a kill lost the last three results
        con.execute("UPDATE trials SET status='running', owner='gone', lease_expires=0 WHERE id IN "
                    "(SELECT id FROM trials ORDER BY rowid DESC LIMIT 3)")
    with Store(tmp_path / "b.sqlite", readonly=True) as db:
        kept = {r["id"]: r["finished"] for r in db.rows() if r["status"] == "ok"}
    assert len(kept) == len(whole.history) - 3
    resumed = run_search(cfg, store=tmp_path / "b.sqlite", executor=SerialExecutor(threads=1), batch=2)
    assert [(e.key, e.scores["accuracy"]) for e in resumed.history] == \
        [(e.key, e.scores["accuracy"]) for e in whole.history]              # the window's sequence, resumed
    with Store(tmp_path / "b.sqlite", readonly=True) as db:
        assert all(r["finished"] == kept[r["id"]] for r in db.rows() if r["id"] in kept)   # not re-run
    with pytest.raises(NagoError, match="first 3 evaluations all failed .* timed out"):
        run_search(small_cfg(budget=5), executor=SerialExecutor(threads=1), timeout=1e-6)


# -- export as a model, retraining against anchors ------------------------------------------------

def test_create_model_builds_the_sampled_network_from_options_or_a_json_file(tmp_path):
    import json

    from normlab.models import ModelError, create_model, is_model

    gen = GeneratorParams(top=LevelParams("ws", 2, 2, 0.5), mid=LevelParams("er", 2, p=0.7),
                          bottom=LevelParams("ws", 3, 2, 0.5), stages=2, width=4, channel_ratios=(1, 2))
    ref = sample(gen, 5, norm="gn:groups=2", in_channels=1, num_classes=3)
    net = create_model("nago", norm="gn:groups=2", in_channels=1, num_classes=3, generator=gen.to_dict(), seed=5)
    path = tmp_path / "net.json"
    path.write_text(json.dumps({"model": "nago", "generator": gen.to_dict(), "seed": 5}))
    again = create_model(str(path), norm="gn:groups=2", in_channels=1, num_classes=3)
    x = torch.randn(2, 1, 8, 8)
    for m in (net, again):
        assert m.graphs == ref.graphs
        assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), ref.state_dict().values()))
        m.eval()
    ref.eval()
    assert torch.allclose(net(x), ref(x)) and torch.allclose(again(x), ref(x))
    assert is_model(str(path)) and is_model("nago") and not is_model(str(tmp_path / "none.json"))
    with pytest.raises(ModelError, match="takes no options"):
        create_model("resnet20", generator=gen.to_dict())
    with pytest.raises(ModelError, match="nago: .*n=0"):
        create_model("nago", generator={"top": {"model": "ws", "n": 0}})
    # the batch-size study takes the JSON file as a model
    from normlab.bench.experiment import Experiment
    exp = Experiment(name="x", dataset="digits", models=[str(path)], norms=["bn"], batch_sizes=[16], seeds=[0])
    assert exp.models == [str(path)]
    with pytest.raises(ValueError, match="cannot read model file"):
        Experiment(name="x", dataset="digits", models=[str(tmp_path / "none.json")], norms=["bn"],
                   batch_sizes=[16], seeds=[0])


def test_retrain_best_generators_next_to_width_matched_anchors(tmp_path):
    import math

    from normlab.models import create_model
    from normlab.nago.finalists import RETRAIN_KIND, WIDTHS, match_width, retrain

    path = tmp_path / "s.sqlite"
    result = run_search(small_cfg(budget=3), store=path, executor=SerialExecutor(threads=1))
    target = 3000
    counts = {w: sum(p.numel() for p in create_model("resnet20", in_channels=1, num_classes=4, width=w).parameters())
              for w in WIDTHS}
    w_best = min(counts, key=lambda w: abs(math.log(counts[w] / target)))
    assert match_width("resnet20", target, "bn", 1, 4) == (w_best, counts[w_best])
    db = Store(path)
    rows = retrain(result, top=2, steps=4, anchors=("resnet20",), store=db, executor=SerialExecutor(threads=1))
    assert [r["kind"] for r in rows] == ["nago", "nago", "anchor"] and all(r["status"] == "ok" for r in rows)
    best = sorted(result.ok, key=lambda e: -e.scores["accuracy"])[:2]
    assert [r["search_accuracy"] for r in rows[:2]] == [e.scores["accuracy"] for e in best]
    sizes = sorted(r["params"] for r in rows[:2])
    assert rows[2]["width"] == match_width("resnet20", int((sizes[0] + sizes[1]) / 2), "bn", 1, 4)[0]
    (exp,) = db.experiments(kind=RETRAIN_KIND)
    stored = db.rows(experiment_id=exp.id)
    assert len(stored) == 3 and all(r["description"]["train"]["steps"] == 4 for r in stored)
    before = {r["id"]: r["finished"] for r in stored}
    again = retrain(result, top=2, steps=4, anchors=("resnet20",), store=db, executor=SerialExecutor(threads=1))
    assert {r["id"]: r["finished"] for r in db.rows(experiment_id=exp.id)} == before      # resumed, not re-run
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]
    db.close()


@pytest.mark.slow
def test_reduced_quick_run_end_to_end(tmp_path):
    """The quick preset through the CLI, reduced (digits, 3 generators x 1 network x 20 steps):
    BO, its RandWire baseline at the same budget, the report, resumed without re-training."""
    store = str(tmp_path / "s.sqlite")
    common = ["--budget", "3", "--samples", "1", "--steps", "20", "--dataset", "digits", "--store", store,
              "--threads", "1"]
    r = _cli("run", "--preset", "quick", *common)
    assert r.exit_code == 0, r.output
    r = _cli("run", "--preset", "quick", "--strategy", "randwire", "--randwire-n", "6", "--name", "q-rw", *common)
    assert r.exit_code == 0, r.output
    db = Store(store)
    before = {r["id"]: r["finished"] for r in db.rows()}
    db.close()
    assert len(before) == 6
    r = _cli("run", "--preset", "quick", *common)                # resume: nothing left to train
    assert r.exit_code == 0, r.output
    db = Store(store)
    assert {r["id"]: r["finished"] for r in db.rows()} == before
    db.close()
    r = _cli("report", "nago-quick", "q-rw", "--store", store, "--out", str(tmp_path / "rep"))
    assert r.exit_code == 0, r.output
    assert (tmp_path / "rep" / "report.html").stat().st_size > 10000


def test_generator_key_is_exactly_what_the_networks_are_built_from():
    """Issue 28: the key rounded p to 0.01 while the graphs used the exact p, so WS with p = 0.503
    and p = 0.4951 shared a key (a search reused one's result for the other) yet drew different
    graphs for some seeds."""
    from normlab.nago.generator import GeneratorParams, LevelParams, level_graph

    a, b = LevelParams("ws", 4, 2, 0.503), LevelParams("ws", 4, 2, 0.4951)
    differ = sum(sorted(level_graph(a, s).edges()) != sorted(level_graph(b, s).edges()) for s in range(100))
    assert differ > 0                                                  # different networks...
    assert GeneratorParams(bottom=a).key() != GeneratorParams(bottom=b).key()   # ...so different keys
    assert GeneratorParams(bottom=a).key().endswith("ws(4,2,0.503)")
    assert GeneratorParams().key() == "ws(4,2,0.50)/er(2,0.50)/ws(4,2,0.50)"    # two decimals when exact
    assert a.label() == "ws(4,2,0.50)"                                   # the display label stays short


def test_strategies_are_decided_under_the_shared_rule():
    from normlab.nago.report import strategy_claims
    from normlab.search import Evaluation, SearchResult

    def search(strategy, seed, best):
        evs = [Evaluation(i, f"k{i}", {}, {"accuracy": v, "params": 1000.0}) for i, v in enumerate([0.5, best])]
        return SearchResult(f"{strategy}{seed}", strategy, {"accuracy": "max", "params": "min"}, evs, {})

    results = ([search("tpe", s, 0.95 + 0.001 * s) for s in range(4)]
               + [search("random", s, 0.85 + 0.002 * s) for s in range(4)]
               + [search("randwire", s, 0.95 - 0.001 * s) for s in range(4)])
    lines = strategy_claims(results)
    assert len(lines) == 3 and "2 comparison(s)" in lines[-1]
    assert "the claim that tpe beats random holds" in lines[0]
    # +0.3 points with a tiny spread: a difference is shown, and it is also inside the margin
    assert "the claim that tpe beats randwire holds (but the difference is also shown to lie within ±1" in lines[1]
