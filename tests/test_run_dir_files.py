"""A run directory's files as a cluster's file system leaves them: a stage's file deleted or
made a folder, results of another config than the run directory's config.json, a full disk, a
file this user cannot read, a working directory that is gone. Each is said in one line naming
the path (exit 2 for what the user can fix, 1 for the machine), nothing finished is lost, and
nothing is kept as a model failure that was the disk's."""

import errno
import os
import shutil
import textwrap

import numpy as np
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.file_errors import file_error
from bayescal.testing import write_toy_site_csv

SITE = """
[run]
output = "run"
seed = 5
[model]
kind = "python"
entry_point = "bayescal.testing:ToySiteModel"
options = {start = "2001-01-01", end = "2003-12-31"}
[site]
calibration_years = [2001, 2002]
validation_years = [2003, 2003]
discrepancy = "none"
autocorrelation = false
ml_evaluations = 40
[[observations.products]]
variable = "nee"
format = "csv"
file = "nee.csv"
units = "gC m-2 d-1"
[posterior]
n_steps = 200
max_steps = 200
n_walkers = 8
[propagate]
n_draws = 5
"""


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished toy site run (its folder and config), copied by each test."""
    folder = tmp_path_factory.mktemp("site")
    write_toy_site_csv(folder / "nee.csv")
    (folder / "site.toml").write_text(textwrap.dedent(SITE))
    assert main(["run", str(folder / "site.toml"), "--quiet"]) == 0
    return folder


def _copy(finished, tmp_path):
    shutil.copytree(finished, tmp_path / "p")
    return tmp_path / "p" / "site.toml", tmp_path / "p" / "run"


def _plan(cfg, run):
    from bayescal.workflows import load_config, make_context

    return {p.name: (p.status, p.changed) for p in make_context(load_config(cfg), run, progress=False).plan()}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_stage_file_deleted_reruns_its_stage_and_the_report_names_it(finished, tmp_path, capsys):
    """``bands.nc`` deleted by hand: ``check`` plans propagate's rerun naming it, ``report``
    names it (exit 1, not a FileNotFoundError), ``run`` reruns propagate alone (its runs kept)."""
    cfg, run = _copy(finished, tmp_path)
    before = xr.load_dataset(run / "propagate" / "bands.nc")
    members = sorted((run / "propagate" / "ensemble" / "members").glob("member_*.nc"))
    stamps = [m.stat().st_mtime_ns for m in members]
    (run / "propagate" / "bands.nc").unlink()
    plan = _plan(cfg, run)
    assert plan["propagate"] == ("rerun", ["missing file bands.nc"])
    assert plan["optimize"][0] == plan["posterior"][0] == "reuse"
    capsys.readouterr()
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert "propagate/bands.nc: missing" in err and "Traceback" not in err
    assert main(["run", str(cfg), "--quiet"]) == 0
    xr.testing.assert_equal(xr.load_dataset(run / "propagate" / "bands.nc"), before)  # the same runs
    assert [m.stat().st_mtime_ns for m in members] == stamps


def test_the_report_refuses_results_of_another_config(finished, tmp_path, capsys):
    """An edited config run ``--until optimize`` rewrites config.json: the report would print the
    new config over the posterior of the old one, so it names the stages and refuses; run to
    the end, it reports."""
    cfg, run = _copy(finished, tmp_path)
    edited = cfg.with_name("edited.toml")
    edited.write_text(cfg.read_text().replace("ml_evaluations = 40", "ml_evaluations = 44"))
    assert main(["run", str(edited), "--run-dir", str(run), "--until", "optimize", "--quiet"]) == 0
    capsys.readouterr()
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err
    assert "stages ['posterior', 'propagate'] hold the results of another config" in err
    assert main(["run", str(edited), "--run-dir", str(run), "--quiet"]) == 0
    assert main(["report", str(run)]) == 0


def test_a_folder_where_the_report_writes_a_file_is_one_line(finished, tmp_path, capsys):
    cfg, run = _copy(finished, tmp_path)
    (run / "report.html").unlink()
    (run / "report.html").mkdir()
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"bayescal: {run / 'report.html'}: a folder where a file is expected"


def test_a_file_this_user_cannot_read_is_named_not_set_aside(finished, tmp_path, capsys, monkeypatch):
    """A chain this user may not read (a shared run directory, its mode 600 by another user) is
    not damaged: the run stops naming it (exit 2) and the file stays where it is."""
    import h5py

    cfg, run = _copy(finished, tmp_path)
    chain = run / "posterior" / "chain.h5"
    opened = h5py.File

    def refused(name, *args, **kwargs):
        if os.path.basename(str(name)) == "chain.h5":
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return opened(name, *args, **kwargs)

    monkeypatch.setattr(h5py, "File", refused)
    capsys.readouterr()
    assert main(["run", str(cfg), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"bayescal: {chain}: permission denied" in err and "Traceback" not in err
    assert chain.exists() and not list(chain.parent.glob("*.damaged*"))


def test_a_full_disk_stops_the_run_and_no_member_is_kept_as_failed(tmp_path, monkeypatch):
    """A member file the disk has no room for is not a failed member (kept as finished, never
    run again once there is room): the run stops with the disk's error; run again, every member
    runs and none failed."""
    from bayescal.run.ensemble import run_ensemble
    from bayescal.run.store import EnsembleStore
    from bayescal.testing import ToySimulator

    write = EnsembleStore._write_file
    calls = []

    def full(ds, tmp, member, *args):
        calls.append(member)
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
        return write(ds, tmp, member, *args)

    design = np.random.default_rng(0).random((8, 2))
    monkeypatch.setattr(EnsembleStore, "_write_file", staticmethod(full))
    with pytest.raises(OSError) as got:
        run_ensemble(ToySimulator(), design, tmp_path / "store", batch_size=1, progress=False)
    assert got.value.errno == errno.ENOSPC
    assert file_error(got.value)[1] == 1 and "no space left on the device" in file_error(got.value)[0]
    assert len(EnsembleStore(tmp_path / "store").finished()) == 3
    assert not list((tmp_path / "store" / "members").glob("*.tmp"))
    monkeypatch.setattr(EnsembleStore, "_write_file", staticmethod(write))
    summary = run_ensemble(ToySimulator(), design, tmp_path / "store", batch_size=1, progress=False)
    assert summary.already_done == 3 and summary.done == 5 and summary.failed == 0
    assert set(EnsembleStore(tmp_path / "store").status()["status"].values) == {"done"}


def test_an_unstorable_output_still_fails_only_its_member(tmp_path, monkeypatch):
    """The other side: an output netCDF cannot hold (not the disk) fails that member, as before."""
    from bayescal.run.ensemble import run_ensemble
    from bayescal.run.store import EnsembleStore
    from bayescal.testing import ToySimulator

    write = EnsembleStore._write_file

    def unstorable(ds, tmp, member, *args):
        if member == 2 and ds.data_vars:
            raise TypeError("illegal data type for attribute")
        return write(ds, tmp, member, *args)

    monkeypatch.setattr(EnsembleStore, "_write_file", staticmethod(unstorable))
    summary = run_ensemble(ToySimulator(), np.random.default_rng(0).random((4, 2)), tmp_path / "s",
                           batch_size=1, progress=False)
    assert summary.failed == 1 and summary.done == 3
    status = EnsembleStore(tmp_path / "s").status()
    assert str(status["reason"].values[2]).startswith("cannot store the output: TypeError")


@pytest.mark.parametrize("err, code, said", [
    (OSError(errno.ENOSPC, "No space left on device", "/scratch/run/x.nc"), 1,
     "/scratch/run/x.nc: no space left on the device: every finished model run and stage is kept"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/nee.csv"), 2,
     "/data/nee.csv: permission denied: this user cannot read or write it"),
    (OSError(errno.ENAMETOOLONG, "File name too long", "/tmp/" + "x" * 300), 2, "file name too long"),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "a.nc"), 2, "a.nc: no such file or folder"),
    (RuntimeError("Symlink loop from '/tmp/a'"), 2, "a symbolic link that points to itself"),
    (OSError("Unable to open file (name = 'c.h5', errno = 5)"), 1, "OSError: Unable to open file"),
])
def test_file_errors_are_said_in_one_line_with_their_path(err, code, said):
    message, status = file_error(err)
    assert status == code and said in message and "\n" not in message
    assert file_error(ValueError("x")) is None and file_error(RuntimeError("other")) is None


def test_a_working_directory_that_is_gone_is_said(tmp_path, monkeypatch, capsys):
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert main(["check", str(tmp_path / "any.toml")]) == 2
    assert "the working directory no longer exists" in capsys.readouterr().err


def test_a_stage_record_lists_its_files_not_its_stores_nor_yours(finished):
    """What a later run checks: the stage's own files, relative; its run stores and your files
    are checked (or left) otherwise."""
    import json

    record = json.loads((finished / "run" / "propagate" / "stage.json").read_text())
    assert record["files"] == ["bands.nc", "summary.json"]
    assert xr.load_dataset(finished / "run" / "propagate" / "bands.nc").sizes


def test_home_and_environment_variables_in_the_configs_paths(tmp_path, monkeypatch):
    """A cluster's config: ``$SCRATCH`` and ``~`` in the paths, expanded as a shell would; a
    variable that is not set names itself and the key (it was a file not found under
    ``<config folder>/$SCRATCH``)."""
    from bayescal.workflows import ConfigError, load_config

    (tmp_path / "scratch").mkdir()
    write_toy_site_csv(tmp_path / "scratch" / "nee.csv")
    text = textwrap.dedent(SITE).replace('file = "nee.csv"', 'file = "${SCRATCH}/nee.csv"')
    (tmp_path / "site.toml").write_text(text.replace('output = "run"', 'output = "~/runs/hai"'))
    monkeypatch.setenv("SCRATCH", str(tmp_path / "scratch"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    cfg = load_config(tmp_path / "site.toml")
    assert cfg["observations"]["products"][0]["file"] == str(tmp_path / "scratch" / "nee.csv")
    assert cfg["run"]["output"] == str(tmp_path / "home" / "runs" / "hai")
    monkeypatch.delenv("SCRATCH")
    with pytest.raises(ConfigError, match=r"'observations.products\[0\].file' '\$\{SCRATCH\}/nee.csv': the "
                                          r"environment variable SCRATCH is not set"):
        load_config(tmp_path / "site.toml")


@pytest.mark.parametrize("target", ["missing", "self"])
def test_a_run_directory_linked_to_nothing_is_refused_by_name(tmp_path, target):
    """A symbolic link to a folder not made yet, or to itself: refused naming the link (check
    said "new" and the run "File exists", or a symlink-loop traceback)."""
    from bayescal.workflow import check_run_dir
    from bayescal.workflow.rundir import RunDirRefused

    link = tmp_path / "out"
    link.symlink_to(tmp_path / "missing" if target == "missing" else link)
    with pytest.raises(RunDirRefused, match=r"out is a symbolic link to .*, which does not exist"):
        check_run_dir(link / "run" if target == "self" else link)
