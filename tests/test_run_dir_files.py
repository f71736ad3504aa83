"""A run directory's files as a cluster's file system leaves them: a stage's file deleted or
made a folder, results of another config than the run directory's config.json, a full disk, a
file this user cannot read, a working directory that is gone. Each is said in one line naming
the path (exit 2 for what the user can fix, 1 for the machine), nothing finished is lost, and
nothing is kept as a model failure that was the disk's."""

import errno
import os
import shutil
import stat
import subprocess
import sys
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
n_particles = 200
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


def test_the_reports_page_deleted_or_made_a_folder_is_named(finished, tmp_path, capsys):
    """The report stage's page and figures are its files too: one deleted, the stage reruns (it
    was "reused", and the run printed the path of a page that was not there); a folder in its
    place is named, not removed (it is not bayescal's)."""
    cfg, run = _copy(finished, tmp_path)
    (run / "report.html").unlink()
    (run / "figures" / "trace.png").unlink()
    status, changed = _plan(cfg, run)["report"]
    assert status == "rerun" and sorted(changed) == ["missing file ../figures/trace.png",
                                                     "missing file ../report.html"]
    assert main(["run", str(cfg), "--quiet"]) == 0
    assert (run / "report.html").is_file() and (run / "figures" / "trace.png").is_file()
    (run / "report.html").unlink()
    (run / "report.html").mkdir()
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    said = f"bayescal: {run / 'report.html'}: a folder where a file is expected"
    assert capsys.readouterr().err.strip() == said
    assert main(["run", str(cfg), "--quiet"]) == 2
    assert f"bayescal: {run / 'report.html'}: a folder where a file is expected" in capsys.readouterr().err
    assert (run / "report.html").is_dir()


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
    (OSError("Unable to open file (name = 'c.h5', errno = 5)"), 1, "c.h5: input/output error"),
    (OSError("Unable to open file (truncated file)"), 1, "OSError: Unable to open file"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "run/report.html"), 2,
     "run/report.html: a folder where a file is expected"),
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


@pytest.mark.parametrize("fill", ["nan", "zeros", "log_prob only"])
def test_a_chain_whose_last_steps_the_disk_did_not_take_resumes_from_its_whole_steps(tmp_path, fill):
    """A full disk cut a flush short: the chain file counts 25 steps, the rows of 20 are on disk
    (the rest read as the fill value: NaN, or zeros in a file of an earlier bayescal; of one
    dataset, or of both). Resumed,
    the chain goes on from step 20 with a warning -- its 20 steps kept, every later step a real
    one (a stuck chain of blank rows before: no proposal ever accepted)."""
    import h5py

    from bayescal.parameters import Parameter, ParameterSpace
    from bayescal.posterior import PosteriorSampler
    from bayescal.posterior.errors import PosteriorWarning

    space = ParameterSpace([Parameter("a", 0.5, 0.0, 1.0), Parameter("b", 0.5, 0.0, 1.0)])

    def like(u):
        return -0.5 * (((u - 0.4) / 0.1) ** 2).sum(-1)

    path = tmp_path / "chain.h5"
    PosteriorSampler(like, space, n_walkers=8, seed=1, backend=path).run(20)
    with h5py.File(path, "a") as f:
        g = f["mcmc"]
        kept = g["chain"][:20].copy()
        for name in ("chain", "log_prob", "accepted_steps"):
            g[name].resize(30, axis=0)
        if fill == "zeros":
            g["chain"][20:] = 0.0
            g["log_prob"][20:] = 0.0
        if fill == "log_prob only":  # the chain's rows went out, the log-probabilities' did not
            g["chain"][20:25] = g["chain"][19]
        g.attrs["iteration"] = 25
    with pytest.warns(PosteriorWarning, match=r"25 steps recorded, the rows of 20 on disk"):
        PosteriorSampler(like, space, n_walkers=8, seed=1, backend=path).run(60)
    with h5py.File(path, "r") as f:
        g = f["mcmc"]
        assert int(g.attrs["iteration"]) == 60
        np.testing.assert_array_equal(g["chain"][:20], kept)
        assert np.isfinite(g["log_prob"][:60]).all() and (g["chain"][20:60] != 0).all()
        assert g["accepted_steps"][20:60].mean() > 0.1  # the walkers move (none did after blank rows)


def test_a_quoted_run_dir_is_expanded_as_the_configs_paths(finished, tmp_path, monkeypatch, capsys):
    """``--run-dir '~/runs/x'`` (quoted: the shell leaves it) made a folder named ``~`` where the
    command ran; it is the home folder's, as ``output = "~/..."`` is, and an unset variable is named."""
    cfg, _ = _copy(finished, tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(cfg), "--run-dir", "~/runs/x", "--until", "optimize", "--quiet"]) == 0
    assert (tmp_path / "home" / "runs" / "x" / "optimize" / "stage.json").exists()
    assert not (tmp_path / "~").exists()
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    capsys.readouterr()
    assert main(["check", str(cfg), "--run-dir", "$NOT_SET_HERE/x", "--no-model-run"]) == 2
    err = capsys.readouterr().err
    assert "'--run-dir' '$NOT_SET_HERE/x': the environment variable NOT_SET_HERE is not set" in err


def test_an_hdf5_error_of_a_full_disk_is_named_with_its_file():
    """h5py's errors carry the system's errno in their text only."""
    from bayescal.file_errors import disk_full

    err = OSError("Unable to synchronously flush file (file write failed: time = Mon, filename = "
                  "'/scratch/run/posterior/chain.h5', file descriptor = 7, errno = 28, error message = "
                  "'No space left on device', buf = 0x1, total write size = 4096, bytes this sub-write = "
                  "4096, bytes actually written = 18446744073709551615, offset = 0)")
    assert disk_full(err)
    err2 = RuntimeError("Disable slist on flush dest failure failed (file write failed: name = "
                        "'/scratch/run/posterior/.posterior.nc.tmp', errno = 28, error message = 'x')")
    message, code = file_error(err2)
    assert code == 1 and message.startswith("/scratch/run/posterior/.posterior.nc.tmp: no space left")
    assert disk_full(err2) and not disk_full(OSError(errno.EACCES, "x", "f"))


def test_an_atomic_write_the_disk_refuses_leaves_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    """The report's page and figures are written whole or not at all: a full disk while
    ``bayescal report`` wrote them left half a page that later runs reused."""
    from bayescal.workflow.rundir import write_bytes_atomic

    page = tmp_path / "report.html"
    page.write_bytes(b"the old page")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as got:
        write_bytes_atomic(page, b"x" * 100_000)
    assert got.value.errno == errno.ENOSPC and got.value.filename == str(page)
    assert page.read_bytes() == b"the old page" and [p.name for p in tmp_path.iterdir()] == ["report.html"]


def _as_a_user(*args: str) -> subprocess.CompletedProcess:
    """``bayescal *args`` as a user file permissions apply to: root without the capabilities that
    bypass them (``setpriv``), or this user."""
    cmd = [sys.executable, "-m", "bayescal", *args]
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root, and no setpriv to drop the capabilities that bypass file permissions")
        cmd = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_check_shows_the_plan_of_a_read_only_run_directory_and_run_refuses(finished, tmp_path):
    """A run directory this user may only read (a colleague's, a finished project's): ``check``
    shows its plan and says ``run`` would be refused there; ``run`` refuses, changing nothing.
    Its ``config.toml`` names the config it was read from, where its relative paths start."""
    cfg, run = _copy(finished, tmp_path)
    head = (run / "config.toml").read_text().split("\n", 2)
    assert str((finished / "site.toml").resolve()) in head[0]
    assert head[1].startswith(f"# relative to {finished.resolve()} ") and head[2] == textwrap.dedent(SITE)
    before = sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*"))
    for p in (run, *run.rglob("*")):
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        checked = _as_a_user("check", str(cfg), "--no-model-run")
        assert checked.returncode == 0, checked.stderr
        assert "read-only for this user: 'bayescal run' would be refused there" in checked.stdout
        plan = {line.split()[0]: line.split(None, 1)[1] for line in checked.stdout.splitlines()
                if line.startswith("  ") and not line.startswith("   ")}
        assert set(plan) == {"optimize", "posterior", "propagate", "report"}, checked.stdout
        assert all(v.startswith("reused") for v in plan.values()), plan
        ran = _as_a_user("run", str(cfg), "--quiet")
        assert ran.returncode == 2 and "not writable" in ran.stderr and "Traceback" not in ran.stderr
        assert sorted((p.relative_to(run), p.stat().st_mtime_ns) for p in run.rglob("*")) == before
    finally:
        for p in (run, *run.rglob("*")):
            p.chmod(p.stat().st_mode | stat.S_IWUSR)
