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


# -- messages ---------------------------------------------------------------------------------

@pytest.fixture
def onemax_store(tmp_path):
    """A store holding one generic search ('bits', not a NAS search)."""
    from normlab.runtime import Store
    from normlab.search import random_search
    from normlab.search.space import BitString, onemax

    path = tmp_path / "s.sqlite"
    with Store(path) as store:
        random_search(BitString(4), onemax, budget=3, store=store, name="bits")
    return path


def test_search_runs_with_an_unknown_kind_names_the_valid_kinds(onemax_store):
    r = _cli(["search", "runs", "--store", onemax_store, "--kind", "bogus"])
    _one_line_exit_2(r, "--kind bogus is invalid: expected one of evolve, nago, nago-retrain, nas, search")
    r = _cli(["search", "runs", "--store", onemax_store, "--kind", "search"])
    assert r.exit_code == 0 and "bits" in r.output


def test_search_kinds_listed_are_the_kinds_the_studies_store():
    from normlab.cli.search import KINDS
    from normlab.evolve.report import EVOLVE_KIND
    from normlab.nago.finalists import RETRAIN_KIND
    from normlab.nago.search import NAGO_KIND
    from normlab.search import SEARCH_KIND

    assert {SEARCH_KIND, EVOLVE_KIND, NAGO_KIND, RETRAIN_KIND, "nas"} == set(KINDS)


@pytest.mark.parametrize("command", [["nas", "export", "bits", "--out", "x.json"], ["nas", "retrain", "bits"]])
def test_nas_export_and_retrain_of_a_search_of_another_kind_say_so(command, onemax_store, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = _cli([*command, "--store", onemax_store])
    _one_line_exit_2(r, "search 'bits' is not a NAS path search (normlab.search.space.BitString)")
    assert "older run" not in r.output and not (tmp_path / "x.json").exists()


def test_bench_presets_are_its_own_and_a_foreign_one_names_its_command():
    from normlab.bench import available_presets

    assert {"quick", "study", "evolve-vs-fixed"} <= set(available_presets())
    assert not {"nas-quick", "evolve-quick", "nago-reduced"} & set(available_presets())
    for preset, owner in (("nas-quick", "'normlab nas run --preset quick'"),
                          ("evolve-paper", "'normlab evolve run --preset paper'"),
                          ("nago-reduced", "'normlab nago run normlab/configs/nago-reduced.yaml'")):
        r = _cli(["bench", "--preset", preset, "--dry-run"])
        _one_line_exit_2(r, f"preset '{preset}' is not a bench preset: it belongs to {owner}")
    _one_line_exit_2(_cli(["bench", "--preset", "nope"]), "presets: evolve-vs-fixed, g-fashion-b2, g-sweep-digits, paper-cifar10, quick, study")


@pytest.mark.parametrize("command", [["bench"], ["evolve", "run"], ["nago", "run"], ["nas", "run"],
                                     ["nas", "train", "--out", "x.pt", "--space"]])
def test_a_yaml_file_that_is_not_utf8_is_named(command, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "latin1.yaml").write_bytes("name: caf\u00e9\n".encode("latin-1"))
    r = _cli([*command, "latin1.yaml"])
    _one_line_exit_2(r, "latin1.yaml: it is not UTF-8 text (byte 0xe9 at position 9)")


def test_runs_output_writes_the_table_format_to_the_file(onemax_store, tmp_path):
    out = tmp_path / "runs.txt"
    r = _cli(["runs", "--store", onemax_store, "--output", out])
    assert r.exit_code == 0 and "wrote 3 row(s)" in r.output and "bits" not in r.output
    text = out.read_text()
    assert "3 trial(s)" in text and text.count("bits") == 3 and "\x1b[" not in text


# -- probes: evolve and nago on a local Ray cluster ------------------------------------------------

@pytest.mark.slow
def test_evolve_and_nago_run_on_a_local_ray_cluster_and_resume(tmp_path):
    """Probe of issue 28: `--backend ray` starts a local Ray instance (one worker here: the suite
    runs on 2 cores); every candidate is stored, nago matches a serial run, a rerun adds nothing."""
    pytest.importorskip("ray")
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "normlab.cli", *map(str, args)], capture_output=True,
                              text=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"}, timeout=600)

    evolve = ("evolve", "run", "--budget", "3", "--population", "2", "--sample-size", "1", "--steps", "5",
              "--store", "e.sqlite", "--name", "ev")
    nago = ("nago", "run", "--dataset", "digits", "--budget", "2", "--steps", "5", "--samples", "1",
            "--width", "4")
    for args in (evolve + ("--backend", "ray", "--workers", "1"), nago + ("--store", "r.sqlite", "--backend", "ray"),
                 nago + ("--store", "s.sqlite")):
        r = cli(*args)
        assert r.returncode == 0, r.stderr[-800:]
    from normlab.runtime import Store

    def rows(name):
        with Store(tmp_path / name, readonly=True) as db:
            return [(r["description"]["key"], r["status"]) for r in db.rows()]

    # the same proposals (accuracies may differ in the last bits: a Ray worker's torch threads
    # are not the serial run's, and CPU convolutions sum in thread-dependent order)
    assert len(rows("e.sqlite")) == 3 and rows("r.sqlite") == rows("s.sqlite")
    again = cli(*evolve, "--backend", "ray", "--workers", "1")
    assert again.returncode == 0 and len(rows("e.sqlite")) == 3
