"""A genome compiled to a layer: plain torch ops, one per live node, then the per-channel affine.

    layer = EvolvedLayer(64, Genome.from_code("s_bhw.0;mul.3.0;s_hw.0;add.5.6;max.4.7;div.0.8"))

Depends on torch alone (the genome is plain Python), so ``normlab.layers`` can build it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ._ghost import ghost_forward, init_ghost, sequential_update
from .genome import INITIAL, OPS, Genome, GenomeError, depends_on_x, formula, live_nodes

__all__ = ["EvolvedLayer", "apply_op", "check_valid", "InvalidLayer", "compiled_genome", "genome_source",
           "genome_function", "compile_failed", "forget_compiled"]


class InvalidLayer(ValueError):
    """A genome that is never trained: its output ignores x, or it is NaN/Inf on random input."""


def _unary(op: str, a: Tensor) -> Tensor:
    if op == "neg":
        return -a
    if op == "sigmoid":
        return torch.sigmoid(a)
    if op == "tanh":
        return torch.tanh(a)
    if op == "exp":
        return torch.exp(a)
    if op == "log":
        return torch.sign(a) * torch.log(torch.abs(a))
    if op == "abs":
        return torch.abs(a)
    if op == "square":
        return a * a
    if op == "sqrt":
        return torch.sign(a) * torch.sqrt(torch.abs(a))
    raise GenomeError(f"unknown unary op '{op}'")


def _binary(op: str, a: Tensor, b: Tensor) -> Tensor:
    if op == "add":
        return a + b
    if op == "mul":
        return a * b
    if op == "div":
        return a / b
    if op == "max":
        return torch.maximum(a, b)
    raise GenomeError(f"unknown binary op '{op}'")


def _moments(a: Tensor, axes: str, groups: int) -> tuple[Tensor, Tensor]:
    """Biased variance and mean of ``a`` (full shape N, C, *spatial) over the op's axes, broadcast
    back to ``a``'s shape."""
    n, c = a.shape[0], a.shape[1]
    if axes == "bhw":
        dims = (0, *range(2, a.dim()))
        var, mean = torch.var_mean(a, dim=dims, correction=0, keepdim=True)
    elif axes == "hw":
        dims = tuple(range(2, a.dim()))
        var, mean = torch.var_mean(a, dim=dims, correction=0, keepdim=True)
    else:                                                   # hwg: (C/G, *spatial) per group
        a3 = a.reshape(n, groups, -1)
        var, mean = torch.var_mean(a3, dim=2, correction=0, keepdim=True)
        k = c // groups
        var = var.repeat_interleave(k, dim=1)               # (N, C, 1)
        mean = mean.repeat_interleave(k, dim=1)
        shape = (n, c) + (1,) * (a.dim() - 2)
        var, mean = var.reshape(shape), mean.reshape(shape)
    return var, mean


def apply_op(op: str, args: list[Tensor], *, groups: int = 1, eps: float = 1e-5) -> Tensor:
    """One primitive on full-shape tensors (no running statistics: a batch aggregate uses the
    batch). For aggregates ``args[0]`` must have the layer input's shape."""
    spec = OPS[op]
    if spec.kind == "unary":
        return _unary(op, args[0])
    if spec.kind == "binary":
        return _binary(op, args[0], args[1])
    var, mean = _moments(args[0], spec.axes, groups)
    if spec.stat == "mu":
        return mean.expand_as(args[0])
    if spec.stat == "s2":
        return var.expand_as(args[0])
    return torch.sqrt(var + eps).expand_as(args[0])


class EvolvedLayer(nn.Module):
    """A normalization-activation layer given by a genome (EvoNorms, Liu et al. 2020).

        y = f(x, zero, v0, v1) * gamma + beta

    where f is the genome's graph of primitives (see :mod:`normlab.layers.genome`): v0 and v1 are
    per-channel parameters initialised to 0 and 1, gamma/beta the affine (``weight``/``bias``,
    initialised to 1 and 0). Aggregates: mean, biased variance and std = sqrt(var + eps) over the
    batch (N, *spatial), instance (*spatial) or group (C/G, *spatial) axes. Each batch aggregate
    node keeps a running statistic of its own input (mean for mu_bhw; variance for s2_bhw and
    s_bhw), updated new = (1 - momentum) * old + momentum * batch in training and used in eval, as
    BatchNorm does; the running variance is biased like EvoNorm-B0's reference code, or unbiased
    like torch's BatchNorm with ``unbiased_running=True``. Group rule as GroupNorm/EvoNorm-S0: the
    default 32 is reduced to the largest divisor of C not above it.

    It replaces the activation (``replaces_activation``). ``apply_act=False`` is the linear
    variant for slots that have no activation after them, y = x * gamma + beta, as EvoNorm's.

    ``compile=True`` runs the genome as straight-line code (:func:`genome_source`) compiled once by
    ``torch.compile`` (inductor) and cached per genome (:func:`compiled_genome`): the same ops in
    the same order, so the same math as the node-by-node interpretation (tested against it), one
    fused kernel per pass instead of one full-tensor pass per node. Compiling costs seconds to a
    minute per genome (train and eval each) and needs a C++ compiler on the CPU; if it fails, the
    layer warns once and interprets. While exporting or compiling a model, the layer interprets
    (the outer compiler then fuses it).

    Ghost batches (``norm_batch``, set by :func:`normlab.layers.ghost.set_norm_batch`, as fit()
    does for ``norm_batch_size``): in training each batch aggregate takes its statistics over
    consecutive groups of ``norm_batch`` samples (a remainder is its own group) and its running
    statistic takes one update per group, in order: what feeding the groups one at a time would
    compute, in one call.
    """

    def __init__(self, num_channels: int, genome: Genome | str | Any, *, groups: int | None = None,
                 eps: float = 1e-5, momentum: float = 0.1, apply_act: bool = True,
                 unbiased_running: bool = False, compile: bool = False) -> None:
        super().__init__()
        self.compile = bool(compile)
        from ..layers._common import check_momentum, check_positive_float, check_positive_int
        from ..layers.sample import resolve_groups

        self.num_channels = check_positive_int("num_channels", num_channels)
        self.genome = genome if isinstance(genome, Genome) else Genome.from_json(genome)
        if not depends_on_x(self.genome):
            raise InvalidLayer(f"layer {formula(self.genome)} does not depend on x")
        self.eps = check_positive_float("eps", eps)
        self.momentum = check_momentum(momentum)
        self.groups = resolve_groups(num_channels, groups, 32, "EvolvedLayer")
        self.apply_act = bool(apply_act)
        self.unbiased_running = bool(unbiased_running)
        init_ghost(self)                         # ghost batches (layers/ghost.py)
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.v0 = nn.Parameter(torch.zeros(num_channels))
        self.v1 = nn.Parameter(torch.ones(num_channels))
        live = live_nodes(self.genome)
        self._plan = [(i, op, ins) for i, (op, ins) in enumerate(self.genome.nodes, start=len(INITIAL))
                      if i in live]
        for i, op, _ in self._plan:
            if op.endswith("_bhw"):
                init = torch.zeros if op.startswith("mu") else torch.ones
                self.register_buffer(f"running_{i}", init(num_channels))

    @property
    def replaces_activation(self) -> bool:
        return self.apply_act

    @property
    def batch_dependent(self) -> bool:
        return any(op.endswith("_bhw") for _, op, _ in self._plan)

    def extra_repr(self) -> str:
        return (f"{self.num_channels}, {formula(self.genome)}, groups={self.groups}, eps={self.eps}, "
                f"momentum={self.momentum}")

    def forward(self, x: Tensor) -> Tensor:
        if self.compile and self.apply_act and x.shape[0] > 0 and not _tracing() and not self._ghost_on(x):
            fn = compiled_genome(self.genome, self.training, self.groups, self.eps)
            if fn is not None and x.dim() >= 3 and x.shape[1] == self.num_channels:
                return self._forward_compiled(fn, x)
        if x.dim() < 3 or x.shape[1] != self.num_channels:
            raise ValueError(f"EvolvedLayer expects input (N, {self.num_channels}, *spatial) with at "
                             f"least one spatial dimension, got {tuple(x.shape)}")
        if x.shape[0] == 0:              # an empty batch: nothing to normalize or track
            from ..layers._common import empty_batch

            return empty_batch(x)
        shape = (1, self.num_channels) + (1,) * (x.dim() - 2)
        dt = x.dtype
        affine = lambda p: p.to(dt).view(shape)  # noqa: E731
        if not self.apply_act:
            return x * affine(self.weight) + affine(self.bias)
        values: dict[int, Tensor] = {0: x, 1: x.new_zeros(()), 2: affine(self.v0), 3: affine(self.v1)}
        for i, op, ins in self._plan:
            spec = OPS[op]
            args = [values[k] for k in ins]
            if spec.kind != "aggregate":
                values[i] = _binary(op, *args) if spec.kind == "binary" else _unary(op, args[0])
                continue
            a = args[0].expand(x.shape)
            if spec.axes == "bhw":
                values[i] = self._batch_stat(i, spec.stat, a)
            else:
                values[i] = apply_op(op, [a], groups=self.groups, eps=self.eps)
        out = values[self.genome.output].expand(x.shape)
        return out * affine(self.weight) + affine(self.bias)

    def _forward_compiled(self, fn: Any, x: Tensor) -> Tensor:
        """The genome as one inductor-compiled function (see :func:`compiled_genome`); the running
        statistics of its batch aggregates are updated here from the batch moments it returns."""
        runs = [getattr(self, f"running_{i}") for i, op, _ in self._plan if op.endswith("_bhw")]
        out, moments = fn(x, self.v0, self.v1, self.weight, self.bias, *runs)
        if self.training:
            with torch.no_grad():
                m, count = self.momentum, x.numel() // x.shape[1]
                bhw = [(i, op) for i, op, _ in self._plan if op.endswith("_bhw")]
                for (i, op), running, (var, mean) in zip(bhw, runs, moments):
                    if op.startswith("mu"):
                        running.mul_(1 - m).add_(mean.reshape(-1).to(running.dtype), alpha=m)
                    else:
                        batch_var = var.reshape(-1)
                        if self.unbiased_running and count > 1:
                            batch_var = batch_var * (count / (count - 1))
                        running.mul_(1 - m).add_(batch_var.to(running.dtype), alpha=m)
        return out

    def _ghost_on(self, x: Tensor) -> bool:
        return bool(self.training and self.norm_batch and x.shape[0] > self.norm_batch)

    def _ghost_stat(self, running: Tensor, stat: str, g: Tensor) -> Tensor:
        """One batch aggregate over k ghost groups g (k, b, C, *spatial): per-group moments, and
        the running statistic updated once per group in order."""
        k, c = g.shape[0], g.shape[2]
        var, mean = torch.var_mean(g, dim=(1, *range(3, g.dim())), correction=0, keepdim=True)
        with torch.no_grad():
            if stat == "mu":
                batch = mean.reshape(k, c)
            else:
                count = g[0].numel() // c
                batch = var.reshape(k, c)
                if self.unbiased_running and count > 1:
                    batch = batch * (count / (count - 1))
            sequential_update([(running, batch.to(running.dtype))], self.momentum, None)
        return _stat_of(stat, var, mean, self.eps).expand_as(g)

    def _batch_stat(self, i: int, stat: str, a: Tensor) -> Tensor:
        running: Tensor = getattr(self, f"running_{i}")
        shape = (1, self.num_channels) + (1,) * (a.dim() - 2)
        if self._ghost_on(a):
            return ghost_forward(a, self.norm_batch, lambda g: self._ghost_stat(running, stat, g),
                                 self.ghost_interleaved)
        if self.training:
            var, mean = _moments(a, "bhw", self.groups)
            with torch.no_grad():
                m = self.momentum
                if stat == "mu":
                    running.mul_(1 - m).add_(mean.reshape(-1).to(running.dtype), alpha=m)
                else:
                    count = a.numel() // a.shape[1]
                    batch_var = var.reshape(-1)
                    if self.unbiased_running and count > 1:
                        batch_var = batch_var * (count / (count - 1))
                    running.mul_(1 - m).add_(batch_var.to(running.dtype), alpha=m)
        else:
            stat_value = running.to(a.dtype).view(shape)
            var, mean = stat_value, stat_value
        if stat == "mu":
            return mean.expand_as(a)
        if stat == "s2":
            return var.expand_as(a)
        return torch.sqrt(var + self.eps).expand_as(a)


def _tracing() -> bool:
    return torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing()


def _stat_of(stat: str, var: Tensor, mean: Tensor, eps: float) -> Tensor:
    if stat == "mu":
        return mean
    if stat == "s2":
        return var
    return torch.sqrt(var + eps)


def genome_source(genome: Genome, training: bool, groups: int, eps: float) -> str:
    """Straight-line Python for the genome's layer (what :meth:`EvolvedLayer.forward` interprets
    node by node): ``f(x, v0, v1, weight, bias, *running) -> (y, [(var, mean) per batch
    aggregate])``, running statistics in the order of the batch-aggregate nodes. Same ops, same
    order, so the same math as the interpretation."""
    live = live_nodes(genome)
    plan = [(i, op, ins) for i, (op, ins) in enumerate(genome.nodes, start=len(INITIAL)) if i in live]
    bhw = [i for i, op, _ in plan if op.endswith("_bhw")]
    runs = ", ".join(f"r{i}" for i in bhw)
    lines = [f"def genome_fn(x, v0, v1, weight, bias{', ' + runs if runs else ''}):",
             "    shape = (1, x.shape[1]) + (1,) * (x.dim() - 2)",
             "    t0, t1 = x, x.new_zeros(())",
             "    t2, t3 = v0.to(x.dtype).view(shape), v1.to(x.dtype).view(shape)",
             "    moments = []"]
    for i, op, ins in plan:
        spec = OPS[op]
        args = [f"t{k}" for k in ins]
        if spec.kind == "unary":
            lines.append(f"    t{i} = _unary({op!r}, {args[0]})")
        elif spec.kind == "binary":
            lines.append(f"    t{i} = _binary({op!r}, {args[0]}, {args[1]})")
        elif spec.axes != "bhw":
            lines.append(f"    t{i} = apply_op({op!r}, [{args[0]}.expand(x.shape)], groups={groups}, eps={eps!r})")
        elif training:
            lines.append(f"    var{i}, mean{i} = _moments({args[0]}.expand(x.shape), 'bhw', {groups})")
            lines.append(f"    moments.append((var{i}.detach(), mean{i}.detach()))")
            lines.append(f"    t{i} = _stat_of({spec.stat!r}, var{i}, mean{i}, {eps!r}).expand(x.shape)")
        else:
            lines.append(f"    run{i} = r{i}.to(x.dtype).view(shape)")
            lines.append(f"    t{i} = _stat_of({spec.stat!r}, run{i}, run{i}, {eps!r}).expand(x.shape)")
    lines.append(f"    out = t{genome.output}.expand(x.shape)")
    lines.append("    return out * weight.to(x.dtype).view(shape) + bias.to(x.dtype).view(shape), moments")
    return "\n".join(lines) + "\n"


_COMPILED: dict[tuple, Any] = {}
_COMPILE_FAILED: set[tuple] = set()


def genome_function(genome: Genome, training: bool, groups: int, eps: float) -> Any:
    """The plain (eager) function of :func:`genome_source`, one code object per genome."""
    namespace: dict[str, Any] = {"_unary": _unary, "_binary": _binary, "apply_op": apply_op,
                                 "_moments": _moments, "_stat_of": _stat_of, "torch": torch}
    exec(compile(genome_source(genome, training, groups, eps), f"<genome {genome.code}>", "exec"),
         namespace)
    return namespace["genome_fn"]


def compiled_genome(genome: Genome, training: bool, groups: int, eps: float) -> Any | None:
    """The genome's layer as one ``torch.compile`` (inductor) function, cached by the genome's
    code (node for node: its batch aggregates are the layer's running-statistic buffers, in order)
    with training, groups and eps; its own code object, so genomes do not share dynamo's
    recompile budget.
    None when compiling failed here once (no C++ compiler, say): callers fall back to the plain
    interpretation, which has the same math."""
    key = (genome.code, bool(training), int(groups), float(eps))
    fn = _COMPILED.get(key)
    if fn is None and key not in _COMPILE_FAILED:
        fn = _COMPILED[key] = _Compiled(torch.compile(genome_function(genome, training, groups, eps),
                                                      dynamic=None), key, genome)
    return None if key in _COMPILE_FAILED else fn


def compile_failed(genome: Genome) -> bool:
    """Whether compiling this genome failed here (in training or eval), so its layers interpret."""
    return any(key[0] == genome.code for key in _COMPILE_FAILED)


def forget_compiled(genome: Genome) -> None:
    """Drop this genome's compiled functions (and failure marks) from the cache, so a long search,
    which meets each genome once, does not keep every candidate's compiled code alive."""
    for key in [k for k in _COMPILED if k[0] == genome.code]:
        del _COMPILED[key]
    _COMPILE_FAILED.difference_update([k for k in _COMPILE_FAILED if k[0] == genome.code])


class _Compiled:
    """A compiled genome function that falls back to the plain one if compilation fails."""

    def __init__(self, fn: Any, key: tuple, genome: Genome) -> None:
        self.fn, self.key, self.genome = fn, key, genome

    def __call__(self, *args: Tensor) -> Any:
        try:
            return self.fn(*args)
        except Exception as exc:  # noqa: BLE001 - inductor needs a C++ compiler; fall back once
            import warnings

            warnings.warn(f"evolved layer {formula(self.genome)}: torch.compile failed "
                          f"({type(exc).__name__}); using the plain interpretation", stacklevel=3)
            _COMPILE_FAILED.add(self.key)
            _COMPILED.pop(self.key, None)
            _, training, groups, eps = self.key
            return genome_function(self.genome, training, groups, eps)(*args)


def check_valid(genome: Genome, *, channels: int = 8, shape: tuple[int, ...] = (4, 4, 4),
                groups: int | None = None, seed: int = 0, eps: float = 1e-5) -> None:
    """Raise InvalidLayer unless the layer depends on x and is finite, with finite gradients for x
    and for every parameter (v0, v1, gamma, beta at their initial values), on random input (train
    and eval)."""
    if not depends_on_x(genome):
        raise InvalidLayer(f"layer {formula(genome)} does not depend on x")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn((shape[0], channels, *shape[1:]), generator=g, requires_grad=True)
    layer = EvolvedLayer(channels, genome, groups=groups, eps=eps)     # parameters at their init
    y = layer(x)
    name = formula(genome)
    if not torch.isfinite(y).all():
        raise InvalidLayer(f"layer {name} is not finite on random input")
    spread = float(y.detach().std())
    if not spread > 1e-6 * (1.0 + float(y.detach().abs().mean())):
        raise InvalidLayer(f"layer {name} is constant on random input")
    (y * torch.randn(y.shape, generator=g)).sum().backward()
    if x.grad is None or not torch.isfinite(x.grad).all():
        raise InvalidLayer(f"layer {name} has a non-finite gradient on random input")
    if not float(x.grad.abs().max()) > 1e-8:
        raise InvalidLayer(f"layer {name} has a zero gradient with respect to x")
    for pname, p in layer.named_parameters():        # v0, v1, gamma, beta: trained from step 1
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise InvalidLayer(f"layer {name} has a non-finite gradient for {pname} on random input "
                               f"(parameters at their initial values)")
    layer.eval()
    with torch.no_grad():
        if not torch.isfinite(layer(x)).all():
            raise InvalidLayer(f"layer {name} is not finite in eval mode")
