"""Why a BN-only SPOS supernet stays at chance on digits (docs/nas.md, "Why a BN-only supernet
stays at chance"): small supernet trainings that vary what is trained, the learning rate, the
gamma initialisation and whether paths are sampled, and a probe of how much the gradient on an op's
norm affine agrees across batches and across paths.

    python benchmarks/nas_bn_only.py gradients          # the cosine table (about a minute)
    python benchmarks/nas_bn_only.py table [--epochs 20] [--only NAME]   # the training table

One thread; the numbers are accuracies and cosines, not timings, so load does not change them
(it changes how long they take).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import random

import torch
import torch.nn.functional as F


def setup():
    from normlab.nas.pipeline import resolve_space
    from normlab.nas.train import load_split

    return resolve_space("small", "digits"), load_split("digits", 0)


def last_norms(net):
    return [p for ops in net.choices for op in ops if op.last_norm is not None for p in op.last_norm.parameters()]


def all_norms(net):
    from normlab.nas.train import norm_modules

    return [p for m in norm_modules(net) for p in m.parameters(recurse=False)]


def classifier(net):
    return list(net.classifier.parameters())


def train(space, split, params, *, lr=0.5, epochs=20, fixed=None, fixed_layers=(), optimizer="sgd", seed=0,
          gamma_uniform=False, batch_size=64):
    """Train the chosen parameters of a BN-only supernet; returns the last epoch's training accuracy
    and the mean validation accuracy of 20 random paths (batch statistics, as in training)."""
    from normlab.nas.supernet import Supernet
    from normlab.nas.train import norm_modules

    torch.manual_seed(seed)
    net = Supernet(space)
    if gamma_uniform:                                     # OpenLTH's "uniform" batchnorm init
        g = torch.Generator().manual_seed(1)
        for m in norm_modules(net):
            m.weight.data = torch.rand(m.weight.shape, generator=g)
    for p in net.parameters():
        p.requires_grad_(False)
    ps = params(net)
    for p in ps:
        p.requires_grad_(True)
    opt = (torch.optim.SGD(ps, lr=lr, momentum=0.9, nesterov=True) if optimizer == "sgd"
           else torch.optim.Adam(ps, lr=lr))
    n = len(split.train_y)
    steps = n // batch_size
    total, t = steps * epochs, 0
    rng = random.Random(seed)

    def sample():
        if fixed is not None:
            return fixed
        return [0 if i in fixed_layers else rng.randrange(k) for i, k in enumerate(net.num_ops)]
    for e in range(epochs):
        net.train()
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + e))
        correct = seen = 0
        for s in range(steps):
            for group in opt.param_groups:
                group["lr"] = 0.5 * lr * (1 + math.cos(math.pi * t / total))
            t += 1
            idx = order[s * batch_size:(s + 1) * batch_size]
            out = net(split.train_x[idx], sample())
            loss = F.cross_entropy(out, split.train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            correct += int((out.argmax(1) == split.train_y[idx]).sum())
            seen += len(idx)
    accs, check = [], random.Random(123)
    net.train()
    with torch.no_grad():
        for _ in range(20):
            path = fixed or [0 if i in fixed_layers else check.randrange(k) for i, k in enumerate(net.num_ops)]
            hit = sum(int((net(split.val_x[s:s + 64], path).argmax(1) == split.val_y[s:s + 64]).sum())
                      for s in range(0, len(split.val_y), 64))
            accs.append(hit / len(split.val_y))
    return {"train_acc": round(correct / seen, 3), "val_acc_20_paths": round(sum(accs) / len(accs), 3)}


def table(epochs: int, only: str | None) -> None:
    space, split = setup()
    layers = space.layers()
    shape_changing = [i for i, l in enumerate(layers) if l["cin"] != l["cout"] or l["stride"] != 1]
    fixed = [0] * len(layers)
    runs = {
        "sampled, last norms, lr 0.5, 2 epochs": dict(params=last_norms, epochs=2),
        "sampled, last norms, lr 0.01": dict(params=last_norms, lr=0.01),
        "sampled, last norms, lr 0.05": dict(params=last_norms, lr=0.05),
        "sampled, last norms, lr 0.5": dict(params=last_norms),
        "sampled, last norms, gamma ~ U[0,1]": dict(params=last_norms, gamma_uniform=True),
        "sampled, last norms + classifier": dict(params=lambda n: last_norms(n) + classifier(n)),
        "sampled, every norm": dict(params=all_norms),
        "sampled, every norm + classifier, lr 0.1": dict(params=lambda n: all_norms(n) + classifier(n), lr=0.1),
        "sampled, every norm + classifier, Adam 0.01": dict(params=lambda n: all_norms(n) + classifier(n), lr=0.01,
                                                           optimizer="adam"),
        "sampled, every norm, shape-changing layers fixed": dict(params=all_norms, fixed_layers=shape_changing),
        "sampled, last norms, shape-changing layers fixed": dict(params=last_norms, fixed_layers=shape_changing),
        "fixed path, last norms": dict(params=last_norms, fixed=fixed),
        "fixed path, last norms + classifier": dict(params=lambda n: last_norms(n) + classifier(n), fixed=fixed),
        "fixed path, every norm": dict(params=all_norms, fixed=fixed),
    }
    for name, kw in runs.items():
        if only and only not in name:
            continue
        kw = {"epochs": epochs, **kw}
        print(json.dumps({"run": name, "epochs": kw["epochs"], **train(space, split, **kw)}), flush=True)


def gradients() -> None:
    """Cosine similarity of the gradient on one op's last-norm (gamma, beta), over 12 samples:
    the same path on other batches, the same batch on other paths, and both (what SPOS does)."""
    from normlab.nas.supernet import Supernet

    space, split = setup()
    torch.manual_seed(0)
    net = Supernet(space)
    net.train()

    def grad(layer, path, idx):
        path = list(path)
        path[layer] = 0
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(split.train_x[idx], path), split.train_y[idx]).backward()
        norm = net.choices[layer][0].last_norm
        return torch.cat([norm.weight.grad.flatten(), norm.bias.grad.flatten()]).clone()

    def mean_cos(gs):
        cs = [float(F.cosine_similarity(a, b, dim=0)) for a, b in itertools.combinations(gs, 2)]
        return round(sum(cs) / len(cs), 3)
    rng = random.Random(0)
    for layer in (0, 3, len(net.num_ops) - 1):
        base = [rng.randrange(k) for k in net.num_ops]
        batches = [torch.randperm(len(split.train_y), generator=torch.Generator().manual_seed(b))[:64]
                   for b in range(12)]
        paths = [[rng.randrange(k) for k in net.num_ops] for _ in range(12)]
        print(json.dumps({"layer": layer,
                          "same path, other batches": mean_cos([grad(layer, base, b) for b in batches]),
                          "same batch, other paths": mean_cos([grad(layer, p, batches[0]) for p in paths]),
                          "other paths and batches (SPOS)": mean_cos([grad(layer, p, b)
                                                                      for p, b in zip(paths, batches)])}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=("table", "gradients"))
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--only", default=None, help="run only the rows whose name contains this")
    args = ap.parse_args()
    torch.set_num_threads(1)
    table(args.epochs, args.only) if args.what == "table" else gradients()


if __name__ == "__main__":
    main()
