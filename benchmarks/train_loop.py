"""Training-loop overhead: images per second of normlab's fit() against a bare PyTorch loop
doing the same work (same model, data batches, optimizer, schedule), measured side by side.

Runs alternate (fit, bare, fit, bare, ...) from the same initial weights, and the ratio is taken
within each pair, so a slow moment of a shared machine hits both sides alike. Prints the median
ratio; the target is at most 5% overhead.

    python benchmarks/train_loop.py [--model resnet20] [--norm bn] [--steps 40] [--pairs 5]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

from normlab.data import load_dataset
from normlab.models import create_model
from normlab.train import TrainConfig, fit, lr_lambda, param_groups


def bare_loop(model, data, cfg: TrainConfig, steps: int) -> float:
    """The same work with nothing around it; returns images per second."""
    torch.manual_seed(cfg.seed)
    opt = torch.optim.SGD(param_groups(model, cfg.weight_decay, cfg.norm_weight_decay),
                          lr=cfg.scaled_lr, momentum=cfg.momentum)
    per_epoch = data.size("train") // cfg.batch_size
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg, steps, per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    model.train()
    done, seen = 0, 0
    start = time.perf_counter()
    while done < steps:
        for x, y in data.batches("train", cfg.batch_size, shuffle=True, generator=gen,
                                 augment=cfg.augment, drop_last=True):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
            done += 1
            seen += len(y)
            if done == steps:
                break
    return seen / (time.perf_counter() - start)


def timed_fit(model, data, cfg: TrainConfig) -> float:
    start = time.perf_counter()
    result = fit(model, data, cfg)
    return result.metrics["steps"] * cfg.batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--pairs", type=int, default=5)
    args = parser.parse_args()
    data = load_dataset(args.dataset)
    torch.manual_seed(0)
    initial = create_model(args.model, norm=args.norm, in_channels=data.in_channels,
                           num_classes=data.num_classes, width=args.width)
    cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, progress=False, eval_every=0,
                      final_eval=False, augment=False, device="cpu")
    bare_loop(copy.deepcopy(initial), data, cfg, 3)          # warm up both paths
    timed_fit(copy.deepcopy(initial), data, TrainConfig(**{**cfg.to_dict(), "steps": 3,
                                                           "milestones": cfg.milestones}))
    ratios, fits, bares = [], [], []
    for _ in range(args.pairs):
        f = timed_fit(copy.deepcopy(initial), data, cfg)
        b = bare_loop(copy.deepcopy(initial), data, cfg, args.steps)
        fits.append(f)
        bares.append(b)
        ratios.append(b / f)
    overhead = statistics.median(ratios) - 1
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.model} + {args.norm} "
          f"on {args.dataset}, batch {args.batch_size}, {args.steps} steps x {args.pairs} pairs")
    print(f"fit():      {statistics.median(fits):8.1f} images/s (median)")
    print(f"bare loop:  {statistics.median(bares):8.1f} images/s (median)")
    print(f"fit overhead (median of paired ratios): {overhead * 100:+.1f}%  (target <= +5%)")


if __name__ == "__main__":
    main()
