"""`normlab layers --check`: a quick end-to-end check of every registered layer.

Each layer is built from its spec, run forward and backward in train mode and forward in eval
mode on 1-D, 2-D and 3-D inputs in float32 and bfloat16, its state_dict is round-tripped, and the
batch-independent claims are checked (BGN with G=C equals BatchNorm to float tolerance; BGN trains at batch 1).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from .layers import NORMS, BatchGroupNorm, BatchNorm, create_norm

CHANNELS = 16
SHAPES = ((4, CHANNELS, 12), (4, CHANNELS, 6, 6), (2, CHANNELS, 3, 4, 4))
CHECK_SPECS = {"bgn": "bgn:groups=8", "sync_bgn": "sync_bgn:groups=8"}


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


def _check_layer(name: str) -> CheckResult:
    spec = CHECK_SPECS.get(name, name)
    torch.manual_seed(0)
    layer = create_norm(spec, CHANNELS)
    cases = 0
    for shape in SHAPES:
        for dtype in (torch.float32, torch.bfloat16):
            x = (torch.randn(shape) * 3 + 1).to(dtype).requires_grad_(True)
            layer.train()
            y = layer(x)
            y.float().square().mean().backward()
            if y.shape != x.shape or y.dtype != dtype:
                return CheckResult(name, False, f"{tuple(x.shape)} {dtype}: got {tuple(y.shape)} {y.dtype}")
            if not (torch.isfinite(y.float()).all() and torch.isfinite(x.grad.float()).all()):
                return CheckResult(name, False, f"non-finite output or gradient for {tuple(shape)} {dtype}")
            layer.eval()
            with torch.no_grad():
                y_eval = layer(x)
            if not torch.isfinite(y_eval.float()).all():
                return CheckResult(name, False, f"non-finite eval output for {tuple(shape)} {dtype}")
            cases += 1
    clone = create_norm(spec, CHANNELS)
    clone.load_state_dict(copy.deepcopy(layer.state_dict()))
    x = torch.randn(SHAPES[1])
    layer.eval(), clone.eval()
    if not torch.equal(layer(x), clone(x)):
        return CheckResult(name, False, "state_dict round trip changed the eval output")
    return CheckResult(name, True, f"{cases} shape/dtype cases, state_dict round trip")


def _check_bgn_claims() -> list[CheckResult]:
    torch.manual_seed(0)
    x = torch.randn(8, CHANNELS, 5, 5)
    bgn, bn = BatchGroupNorm(CHANNELS, groups=CHANNELS), BatchNorm(CHANNELS)
    close = lambda a, b: torch.allclose(a, b, rtol=1e-5, atol=1e-5)  # noqa: E731  (not the same kernel)
    same = close(bgn(x), bn(x)) and close(bgn.running_var, bn.running_var)
    bgn.eval(), bn.eval()
    same = same and close(bgn(x), bn(x))
    out = [CheckResult("bgn == bn at G=C", same, "train and eval outputs, running statistics, "
                       "to float tolerance")]
    small = BatchGroupNorm(CHANNELS, groups=4)
    x1 = torch.randn(1, CHANNELS, 5, 5, requires_grad=True)
    y = small(x1)
    y.square().mean().backward()
    ok = bool(torch.isfinite(x1.grad).all()) and abs(float(y.detach().mean())) < 1e-5
    out.append(CheckResult("bgn trains at batch 1", ok, "groups=4, batch of one sample"))
    return out


def run_checks() -> list[CheckResult]:
    """Run every check; never raises for a failing layer (the failure is reported)."""
    results = []
    for name in NORMS:
        try:
            results.append(_check_layer(name))
        except Exception as exc:  # noqa: BLE001 - a crashing layer is a failed check
            results.append(CheckResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results + _check_bgn_claims()
