"""Model files (save_model / load_model, weights_only) and `normlab export MODEL.pt --format onnx|pt2`:
the recipe of the README's "Deploying" section, run end to end."""

import pickle

import pytest
import torch
from typer.testing import CliRunner

from normlab.cli import app
from normlab.models import ModelError, create_model
from normlab.models.deploy import check_export, export_model, load_model, save_model

runner = CliRunner()


def _trained(norm="bgn:groups=auto", name="resnet20"):
    torch.manual_seed(0)
    model = create_model(name, norm=norm, width=0.25)
    model.train()
    with torch.no_grad():
        for _ in range(2):
            model(torch.randn(8, 3, 32, 32))
    return model.eval()


def test_model_file_round_trip(tmp_path):
    model = _trained()
    path = save_model(tmp_path / "m.pt", model, "resnet20", norm="bgn:groups=auto", width=0.25)
    payload = torch.load(path, weights_only=True)                 # plain tensors and text
    assert payload["normlab_model"] == 1 and isinstance(payload["description"], str)
    rebuilt, desc = load_model(path)
    assert not rebuilt.training and desc["input_shape"] == [3, 32, 32]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))


def test_save_model_checks_the_description(tmp_path):
    with pytest.raises(ModelError, match="does not match"):
        save_model(tmp_path / "m.pt", _trained(), "resnet20", norm="bn", width=0.5)


def test_load_model_refuses_what_is_not_a_model_file(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "evil.pt"
    bad.write_bytes(pickle.dumps({"normlab_model": 1, "x": Evil()}))
    with pytest.raises(ModelError, match="not a readable model file"):
        load_model(bad)
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="not a normlab model file"):
        load_model(tmp_path / "plain.pt")
    with pytest.raises(ModelError, match="no model file"):
        load_model(tmp_path / "missing.pt")


@pytest.mark.parametrize("norm", ["evonorm_b0", "bgn:groups=4"])
def test_export_pt2_dynamic_batch(tmp_path, norm):
    model = _trained(norm)
    path = export_model(model, tmp_path / "m.pt2", "pt2", input_shape=(3, 32, 32))
    assert check_export(model, path, "pt2", input_shape=(3, 32, 32), batch_size=5) < 1e-4
    program = torch.export.load(str(path)).module()
    x = torch.randn(1, 3, 32, 32)                                  # another batch size
    with torch.no_grad():
        torch.testing.assert_close(program(x), model(x), rtol=1e-4, atol=1e-5)


def test_cli_export_pt2_and_onnx(tmp_path):
    path = save_model(tmp_path / "m.pt", _trained("frn"), "resnet20", norm="frn", width=0.25)
    r = runner.invoke(app, ["export", str(path), "--format", "pt2"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "m.pt2").exists() and "max |exported - eager|" in r.output
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    r = runner.invoke(app, ["export", str(path), "--format", "onnx", "--out", str(tmp_path / "x.onnx")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "x.onnx").exists()


def test_cli_export_bad_input(tmp_path):
    r = runner.invoke(app, ["export", str(tmp_path / "none.pt"), "--format", "pt2"])
    assert r.exit_code == 2 and "no model file" in r.output and "Traceback" not in r.output
    path = save_model(tmp_path / "m.pt", _trained("bn"), "resnet20", norm="bn", width=0.25)
    r = runner.invoke(app, ["export", str(path), "--format", "tflite"])
    assert r.exit_code == 2 and "--format 'tflite' is invalid" in r.output
