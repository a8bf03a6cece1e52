"""Subnets scored per second by each one-shot scorer, side by side on one supernet: the BN
indicator (a table lookup, vectorised over many paths), the ABS angle (one dot product per path)
and ReBN accuracy (recalibration + a validation pass per path, as SPOS needs). Prints ratios;
asserts nothing.

    python benchmarks/nas.py --dataset digits --paths 20
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np
import torch

from normlab.nas import PRESETS, PathSpace, SpaceConfig, Supernet
from normlab.nas.scores import angle, bn_scores, bn_table, rebn_accuracy
from normlab.nas.train import load_split


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--paths", type=int, default=20, help="paths scored by the slow scorers")
    ap.add_argument("--calib", type=int, default=256)
    args = ap.parse_args()
    torch.set_num_threads(1)
    split = load_split(args.dataset)
    stem_stride = 1 if split.image_size <= 12 else 2
    space = SpaceConfig(**{**PRESETS["small"], "in_channels": split.in_channels, "num_classes": split.num_classes,
                           "image_size": split.image_size, "stem_stride": stem_stride})
    torch.manual_seed(0)
    net = Supernet(space)
    init = {k: v.clone() for k, v in net.state_dict().items()}
    trained = {k: (v + 0.01 * torch.randn_like(v)) if v.is_floating_point() else v for k, v in init.items()}
    rng = random.Random(0)
    ps = PathSpace.full(net.num_ops)
    paths = [ps.sample(rng) for _ in range(args.paths)]
    rates = {}
    t = time.perf_counter()
    for p in paths:
        rebn_accuracy(net, p, split.train_x[:args.calib], split.val_x, split.val_y)
    rates["rebn accuracy"] = len(paths) / (time.perf_counter() - t)
    t = time.perf_counter()
    for p in paths:
        angle(init, trained, net, p)
    rates["ABS angle"] = len(paths) / (time.perf_counter() - t)
    table = bn_table(net)
    t = time.perf_counter()
    for p in paths:
        bn_scores(table, [p])
    rates["BN indicator (one at a time)"] = len(paths) / (time.perf_counter() - t)
    many = np.stack([np.random.default_rng(0).integers(0, k, 1_000_000) for k in net.num_ops], axis=1)
    t = time.perf_counter()
    bn_scores(table, many)
    rates["BN indicator (vectorised)"] = len(many) / (time.perf_counter() - t)
    base = rates["rebn accuracy"]
    print(f"{args.dataset}, {space.num_paths():,}-path space, 1 thread")
    for name, r in rates.items():
        print(f"{name:30s} {r:14,.1f} subnets/s  {r / base:12,.0f}x ReBN")


if __name__ == "__main__":
    main()
