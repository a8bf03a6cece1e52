"""NAGO: the hierarchical generator (graphs, DAG rule, determinism, counts), the optuna search
through the runtime's store (resume, SIGKILL), and the CLI."""

from __future__ import annotations

import itertools

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
