"""Issue 28: the same rules of input on every command, the messages, and the probes that a user
or an attacker would try (each test here failed before its fix)."""

import os

import pytest
from typer.testing import CliRunner

from normlab.cli import app


def _cli(args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def _one_line_exit_2(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1, r.output
    for needle in needles:
        assert needle in r.output, (needle, r.output)


# -- one validation of names, backends and workers, before anything is created ---------------------

_RUNS = {
    "bench": ["bench", "--steps", "1"],
    "evolve run": ["evolve", "run"],
    "evolve rerank": ["evolve", "rerank", "x"],
    "nago run": ["nago", "run"],
    "nago retrain": ["nago", "retrain", "x"],
    "nas search": ["nas", "search", "ck.pt"],
    "nas correlate": ["nas", "correlate"],
    "nas retrain": ["nas", "retrain", "x"],
    "nas run": ["nas", "run"],
}
_NAMED = ("bench", "evolve run", "nago run", "nas search", "nas correlate", "nas retrain", "nas run")
_DRY = ("bench", "evolve run", "nago run", "nas run")


_BAD = [(["--backend", "nonsense"], "--backend 'nonsense' is invalid: expected serial, process, ray"),
        (["--workers", "0"], "--workers 0 is invalid"),
        (["--name", "../../x"], "name='../../x' is invalid"),
        (["--name", "/abs"], "name='/abs' is invalid")]
_CASES = [(c, bad, needle, dry) for c in _RUNS for bad, needle in _BAD for dry in (False, True)
          if (bad[0] != "--name" or c in _NAMED) and (not dry or c in _DRY)]


@pytest.mark.parametrize("command, bad, needle, dry_run", _CASES)
def test_every_command_checks_name_backend_workers_before_creating_anything(
        command, bad, needle, dry_run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _cli([*_RUNS[command], *bad, "--store", "s.sqlite", *(["--dry-run"] if dry_run else [])])
    _one_line_exit_2(r, needle)
    assert os.listdir(tmp_path) == []                      # no store, no report or run folder


def test_search_api_checks_the_name_before_opening_the_store(tmp_path):
    from normlab.runtime import StoreError
    from normlab.search import random_search
    from normlab.search.space import BitString, onemax

    for bad in ("../../x", "/abs", "a//b", "a b"):
        with pytest.raises(StoreError, match="is invalid"):
            random_search(BitString(4), onemax, budget=2, store=tmp_path / "s.sqlite", name=bad)
    assert os.listdir(tmp_path) == []
    result = random_search(BitString(4), onemax, budget=2, store=tmp_path / "s.sqlite", name="run/search")
    assert len(result.history) == 2
