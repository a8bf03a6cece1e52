from typer.testing import CliRunner

from normlab.cli import app
from normlab.layers import NORMS

runner = CliRunner()


def test_layers_table_lists_every_layer():
    result = runner.invoke(app, ["layers"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in NORMS:
        assert name in result.output
    assert "replaces act" in result.output and "folds into conv" in result.output


def test_layers_check_passes():
    result = runner.invoke(app, ["layers", "--check"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "FAIL" not in result.output
    assert f"all {len(NORMS) + 2} checks passed" in result.output
