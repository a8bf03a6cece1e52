"""The evolved layer's generated and compiled code (layers/genome_module.py) against the plain
interpretation node by node: outputs, gradients (x and every parameter) and running statistics,
train and eval, for random genomes and the references."""

import random

import pytest
import torch

from normlab.layers.genome import Genome, random_genome, reference
from normlab.layers.genome_module import EvolvedLayer, check_valid, genome_function, InvalidLayer


def _valid_genomes(count, seed=0):
    rng, out = random.Random(seed), []
    while len(out) < count:
        g = random_genome(rng, 8)
        try:
            check_valid(g)
        except InvalidLayer:
            continue
        out.append(g)
    return out


def _run(layer, x, up):
    x = x.clone().requires_grad_(True)
    for p in layer.parameters():
        p.grad = None
    y = layer(x)
    (y * up).sum().backward()
    return y.detach(), x.grad, [p.grad for p in layer.parameters()]


def _compare(plain, other, shape, steps=2, rtol=1e-7, atol=1e-9):
    for _ in range(steps):
        x, up = torch.randn(shape, dtype=torch.float64) * 2 + 0.5, torch.randn(shape, dtype=torch.float64)
        (ya, ga, pa), (yb, gb, pb) = _run(plain, x, up), _run(other, x, up)
        torch.testing.assert_close(yb, ya, rtol=rtol, atol=atol, equal_nan=True)
        torch.testing.assert_close(gb, ga, rtol=rtol, atol=atol, equal_nan=True)
        for a, b in zip(pa, pb):
            if a is None or b is None:
                assert a is None and b is None
            else:
                torch.testing.assert_close(b, a, rtol=rtol, atol=atol, equal_nan=True)
    for a, b in zip(plain.buffers(), other.buffers()):
        torch.testing.assert_close(b, a, rtol=rtol, atol=atol)
    plain.eval(), other.eval()
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(other(x), plain(x), rtol=rtol, atol=atol, equal_nan=True)


class _Generated(EvolvedLayer):
    """The generated straight-line function run eagerly (no compiler): checks the code generator."""

    def forward(self, x):
        fn = genome_function(self.genome, self.training, self.groups, self.eps)
        return self._forward_compiled(fn, x)


@pytest.mark.parametrize("genome", _valid_genomes(12) + [reference("evonorm_b0"), reference("evonorm_s0")],
                         ids=lambda g: g.code)
def test_generated_code_equals_the_interpretation(genome):
    torch.manual_seed(0)
    plain = EvolvedLayer(8, genome, groups=4, unbiased_running=True).double()
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(torch.rand_like(p) * 0.3)
    gen = _Generated(8, genome, groups=4, unbiased_running=True).double()
    gen.load_state_dict(plain.state_dict())
    _compare(plain, gen, (5, 8, 4, 3))


@pytest.mark.slow
@pytest.mark.parametrize("code", [reference("evonorm_b0").code, _valid_genomes(1, seed=3)[0].code])
def test_compiled_genome_equals_the_interpretation(code):
    torch._dynamo.reset()
    genome = Genome.from_code(code)
    plain = EvolvedLayer(8, genome, groups=4)
    compiled = EvolvedLayer(8, genome, groups=4, compile=True)
    compiled.load_state_dict(plain.state_dict())
    for layer in (plain, compiled):
        layer.double()
    _compare(plain, compiled, (6, 8, 5, 5), steps=3, rtol=1e-6, atol=1e-8)
