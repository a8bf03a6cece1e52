"""The supernet's chance check (nas run says when its supernet is within noise of chance) and
fix_reductions (the quick preset's way out of it)."""

from __future__ import annotations

import torch


def test_supernet_accuracy_of_an_untrained_supernet_is_chance_and_leaves_no_trace():
    from normlab.nas.pipeline import resolve_space
    from normlab.nas.supernet import Supernet
    from normlab.nas.train import load_split, supernet_accuracy

    space = resolve_space({"stem": 4, "stages": [[4, 1, 1], [8, 1, 2]], "kernels": [3], "expansions": [2]}, "digits")
    split = load_split("digits", 0)
    torch.manual_seed(0)
    net = Supernet(space).eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    out = supernet_accuracy(net, split.val_x, split.val_y, paths=3)
    assert not net.training and all(torch.equal(v, net.state_dict()[k]) for k, v in before.items())
    assert out["n"] == len(split.val_y) and out["paths"] == 3 and len(out["path_accuracies"]) == 3
    assert out["accuracy"] == sum(out["path_accuracies"]) / 3
    assert not out["above_chance"] and "WITHIN NOISE OF CHANCE" in out["text"]        # random weights


def test_fix_reductions_keeps_one_op_where_the_shape_changes():
    from normlab.nas.pipeline import ChainConfig, chain_plan, load_chain_config, reduction_fixed, resolve_space
    from normlab.nas.supernet import NasError

    quick = load_chain_config(preset="quick")
    assert quick.fix_reductions and quick.supernet.bn_params == "all"
    space = resolve_space(quick.space, quick.dataset, quick.norm)
    allowed = reduction_fixed(space)
    changing = [i for i, layer in enumerate(space.layers()) if layer["cin"] != layer["cout"] or layer["stride"] != 1]
    assert changing == [2, 5]
    assert all((a == [0]) == (i in changing) for i, a in enumerate(allowed))
    assert chain_plan(quick, space, measure=False)["space_paths"] == 7 ** 6
    try:
        ChainConfig.from_dict({**quick.to_dict(), "shrink": {"first_epochs": 1}})
    except NasError as exc:
        assert "fix_reductions and shrink" in str(exc)
    else:
        raise AssertionError("fix_reductions with shrink was accepted")
