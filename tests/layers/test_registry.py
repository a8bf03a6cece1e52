import pytest
from torch import nn

import normlab
from normlab.layers import (NORMS, BatchGroupNorm, EvoNormS0, FilterResponseNorm, NormSpec,
                            NormSpecError, create_norm, norm_act, parse_spec)


def test_parse_specs():
    assert parse_spec("bgn:groups=8") == NormSpec("bgn", {"groups": 8})
    assert parse_spec(" GN : groups=4 , eps=1e-3 ") == NormSpec("gn", {"groups": 4, "eps": 1e-3})
    assert parse_spec("frn:tlu=false").params == {"tlu": False}
    assert parse_spec("bn") == NormSpec("bn", {})
    assert str(parse_spec("bgn:groups=8,eps=0.001")) == "bgn:eps=0.001,groups=8"     # keys sorted


def test_specs_are_canonical():
    from normlab import canonical_spec

    same = ["gn:groups=4,eps=1e-5", "gn:eps=1e-5,groups=4", "gn:groups=4", "GN: eps=0.00001 ,groups=4"]
    assert {canonical_spec(s) for s in same} == {"gn:groups=4"}
    assert canonical_spec("BN") == canonical_spec("bn:momentum=0.1,affine=true") == "bn"
    assert canonical_spec("mabn:eps=1") == canonical_spec("mabn:eps=1.0") == "mabn:eps=1.0"
    assert canonical_spec("bgn:affine=off,groups=8") == "bgn:affine=false,groups=8"
    for spec in ("bgn:affine=false,groups=8", "frn:tlu=false", "bn:eps=0.001"):
        assert canonical_spec(canonical_spec(spec)) == canonical_spec(spec)     # round trip


@pytest.mark.parametrize("spec,message", [
    ("batchnorm", r"unknown norm 'batchnorm'.*known norms: bn, bgn"),
    ("", "empty"),
    ("bgn:group=8", r"no parameter 'group'; valid parameters: groups, eps, momentum"),
    ("bgn:groups", "expected key=value"),
    ("bgn:groups=eight", "groups='eight' should be an integer"),
    ("bgn:groups=2.5", "should be an integer"),
    ("frn:tlu=3", "should be true or false"),
])
def test_bad_specs_list_what_is_valid(spec, message):
    with pytest.raises(NormSpecError, match=message):
        parse_spec(spec)


def test_create_norm_and_bad_values():
    layer = create_norm("bgn:groups=8", 64)
    assert isinstance(layer, BatchGroupNorm) and layer.groups == 8
    with pytest.raises(NormSpecError, match="groups=5 does not divide num_channels=12; nearest valid groups: 4 or 6"):
        create_norm("gn:groups=5", 12)
    with pytest.raises(NormSpecError, match="eps=-1"):
        create_norm("bn:eps=-1", 12)
    with pytest.raises(ValueError):
        create_norm("bn", 0)


def test_norm_act_adds_activation_only_when_needed():
    seq = norm_act("bn", 8, act="relu")
    assert isinstance(seq, nn.Sequential) and isinstance(seq[1], nn.ReLU)
    assert isinstance(norm_act("evonorm_s0", 8, act="relu"), EvoNormS0)
    assert isinstance(norm_act("frn", 8), FilterResponseNorm)
    frn_plain = norm_act("frn:tlu=false", 8, act="silu")
    assert isinstance(frn_plain[1], nn.SiLU)
    assert isinstance(norm_act("gn", 8, act=None), normlab.GroupNorm)
    assert isinstance(norm_act("gn", 8, act=nn.GELU)[1], nn.GELU)
    with pytest.raises(NormSpecError, match="unknown activation 'relu9'"):
        norm_act("bn", 8, act="relu9")


def test_registry_metadata_matches_layers():
    assert normlab.available_norms() == list(NORMS)
    for name, info in NORMS.items():
        spec = name + (":groups=4" if "bgn" in name else "")
        layer = create_norm(spec, 8)
        assert isinstance(layer, info.cls)
        assert bool(getattr(layer, "replaces_activation", False)) == info.replaces_act
        has_running = any("running" in k for k in layer.state_dict())
        assert has_running == (info.batch_dependent), name
        assert info.paper


def test_layers_import_with_torch_alone():
    import subprocess
    import sys
    code = ("import sys; import normlab.layers, normlab; "
            "bad = [m for m in ('typer', 'rich', 'torchvision', 'timm', 'sklearn', 'numpy.random._pickle') "
            "if m in sys.modules and m != 'numpy.random._pickle']; print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr + out.stdout


def test_norm_act_without_activation_uses_the_linear_variants():
    import torch
    evo = norm_act("evonorm_b0", 4, act=None)
    assert isinstance(evo, normlab.EvoNormB0) and not evo.replaces_activation and evo.v is None
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(evo(x), x)          # gamma = 1, beta = 0: y = x * gamma + beta
    frn = norm_act("frn", 4, act=None)
    assert isinstance(frn, FilterResponseNorm) and frn.tau is None
    assert isinstance(norm_act("bn", 4, act=None), normlab.BatchNorm)
