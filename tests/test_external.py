"""The external-program adapter: rendering, isolation, failures, the DALEC example."""

import sys
import textwrap
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from bayescal.models.external import ExternalModel
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.run.ensemble import EnsembleStore, run_ensemble

PROGRAM = textwrap.dedent("""
    import sys, time
    params = dict(line.split("=") for line in open(sys.argv[1]).read().split() if "=" in line)
    a, b = float(params["a"]), float(params["b"])
    if a > 0.8:
        sys.stderr.write("model blew up\\n"); sys.exit(4)
    if b > 0.8:
        time.sleep(120)
    if a < 0.1:
        open(sys.argv[2], "w").write("this is not netcdf")
        sys.exit(0)
    import numpy as np, xarray as xr  # after the failures: only a finishing member pays the import
    xr.Dataset({"y": ("t", np.arange(5) * a + b)}).to_netcdf(sys.argv[2], engine="h5netcdf")
""")


@pytest.fixture
def program(tmp_path):
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    return path


@pytest.fixture
def space():
    return ParameterSpace([Parameter("a", 0.5, 0.0, 1.0), Parameter("b", 0.5, 0.0, 1.0)])


def make(program, space, tmp_path, template="a={{ a }}\nb={{ b }}\n", **kw):
    return ExternalModel([sys.executable, str(program), "{param_file}", "{output}"], template, space,
                         tmp_path / "work", timeout=kw.pop("timeout", 120), **kw)


def test_render_and_run(program, space, tmp_path):
    model = make(program, space, tmp_path)
    assert model.render(np.array([0.25, 0.125])) == "a=0.25\nb=0.125\n"
    ds = model.simulate(np.array([[0.5, 0.25], [0.3, 0.2]]))
    np.testing.assert_allclose(ds.y.values[0], np.arange(5) * 0.5 + 0.25)
    assert not (ds.status != "done").any()


def test_failing_members_get_reasons(program, space, tmp_path):
    """Through the runner, one batch of four members (``simulate`` fills the failed members of a
    mixed batch), then a member that outlives a 2 s timeout (it sleeps 120 s: no load makes it
    finish in time; a finishing member, which imports xarray, is never under a short timeout)."""
    model = make(program, space, tmp_path)
    theta = np.array([[0.5, 0.5], [0.9, 0.5], [0.05, 0.5], [0.4, 0.1]])
    summary = run_ensemble(model, theta, tmp_path / "store", batch_size=len(theta), progress=False)
    ds = EnsembleStore(tmp_path / "store").load()
    np.testing.assert_array_equal(ds.status.values == "failed", [False, True, True, False])
    assert summary.failed == 2
    assert ds.reason.values[1] == "exit code 4: model blew up"
    assert ds.reason.values[2].startswith("cannot read output 'output.nc'")
    assert np.isnan(ds.y.values[1:3]).all() and np.isfinite(ds.y.values[[0, 3]]).all()
    np.testing.assert_allclose(ds.y.values[3], np.arange(5) * 0.4 + 0.1)
    slow = make(program, space, tmp_path / "slow", timeout=2)
    summary = run_ensemble(slow, np.array([[0.5, 0.9]]), tmp_path / "slow_store", progress=False)
    ds = EnsembleStore(tmp_path / "slow_store").load()
    assert summary.failed == 1 and ds.reason.values[0] == "timeout after 2 s"


def test_a_missing_output_names_what_the_program_wrote(space, tmp_path):
    """A program that writes its output under another name: the reason lists the files it wrote."""
    prog = tmp_path / "elsewhere.py"
    prog.write_text("import sys, pathlib\npathlib.Path(sys.argv[2]).with_name('result.nc').write_text('x')\n")
    ds = make(prog, space, tmp_path).simulate(np.array([0.5, 0.5]))
    reason = str(ds["reason"].values[0])
    assert ds["status"].values[0] == "failed"
    assert reason.startswith("the program wrote no output file 'output.nc'")
    assert reason.endswith("holds ['result.nc'])"), reason


def test_metacharacters_cannot_execute_or_escape(program, space, tmp_path):
    marker = tmp_path / "pwned"
    template = f"a={{{{ a }}}}\nb={{{{ b }}}}\n# $(touch {marker}); `touch {marker}` ; rm -rf /\n"
    model = make(program, space, tmp_path, template=template)
    ds = model.simulate(np.array([0.5, 0.5]))
    assert not (ds.status != "done").any() and not marker.exists()
    text = (model.run_dir(np.array([0.5, 0.5])) / "params.txt").read_text()
    assert "$(touch" in text  # written verbatim, never interpreted
    # values can only be numbers
    with pytest.raises(ValueError):
        model.render(np.array(["0.5; rm -rf /", "1"]))
    # output and parameter files must stay inside the run directory
    for bad in ("../escape.nc", "/tmp/abs.nc", "sub/../../x.nc"):
        with pytest.raises(ValueError, match="inside the run directory"):
            make(program, space, tmp_path, output=bad)
    with pytest.raises(ValueError, match="never run by a shell"):
        ExternalModel("python prog.py", "a={{ a }}", space, tmp_path)
    with pytest.raises(ValueError, match=r"placeholders \['\{\{ c \}\}'\]"):
        make(program, space, tmp_path, template="c={{ c }}")
    assert all(p.parent == tmp_path / "work" for p in (tmp_path / "work").iterdir())


@pytest.mark.slow
def test_dalec_example_runs_through_adapter(tmp_path):
    here = Path(__file__).resolve().parents[1] / "examples" / "dalec"
    space = ParameterSpace.from_toml(here / "dalec_space.toml")
    drivers = resources.files("bayescal") / "data" / "metolius" / "dalec_drivers.OREGON.no_obs.dat"
    model = ExternalModel([sys.executable, str(here / "dalec_model.py"), "{param_file}", str(drivers),
                           "{output}"], here / "params.template", space, tmp_path / "work", timeout=120,
                          variables=["nee", "gpp", "lai"])
    ds = model.simulate(space.all_default)
    assert not (ds.status.values[0] != "done")
    assert ds.sizes["day"] == 1096
    annual_gpp = float(ds.gpp.sum()) / 3
    assert 300 < annual_gpp < 1500  # gC m-2 yr-1, a young ponderosa pine stand
    assert np.isfinite(ds.nee).all() and float(ds.lai.min()) > 0


# ------------------------------------------------------------------------ issue 17: hardening
WRAPPER = textwrap.dedent("""
    import subprocess, sys
    # a wrapper script that starts the real model and waits for it (as job scripts do)
    child = subprocess.Popen([sys.executable, "-c",
        "import os, time, pathlib; pathlib.Path('child.pid').write_text(str(os.getpid())); "
        "time.sleep(60); pathlib.Path('child_finished').write_text('ran on')"])
    child.wait()
""")


def test_timeout_kills_the_whole_process_group(tmp_path, space):
    import os
    import time

    wrapper = tmp_path / "wrapper.py"
    wrapper.write_text(WRAPPER)
    # the timeout leaves a loaded machine ample time to start the wrapper and its child; the child
    # sleeps far longer, so only the kill of the whole group can stop it
    model = ExternalModel([sys.executable, str(wrapper)], "a={{ a }}", space, tmp_path / "work", timeout=10)
    ds = model.simulate(np.array([[0.5, 0.5]]))
    assert (ds.status.values != "done")[0] and "timeout" in str(ds.reason.values[0])
    run_dir = model.run_dir(model.space.check(np.array([0.5, 0.5]), strict=False, full=True))
    pid = int((run_dir / "child.pid").read_text())
    deadline = time.monotonic() + 30  # the kill is sent at the timeout; the process may take a moment to go
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not (run_dir / "child_finished").exists()


ECHO = textwrap.dedent("""
    import json, sys
    import numpy as np, xarray as xr
    xr.Dataset({"y": ("t", np.zeros(2))}, attrs={"argv": json.dumps(sys.argv[1:])}).to_netcdf(
        sys.argv[1], engine="h5netcdf")
""")


def test_only_documented_fields_are_substituted_in_arguments(tmp_path, space):
    import json

    prog = tmp_path / "echo.py"
    prog.write_text(ECHO)
    model = ExternalModel([sys.executable, str(prog), "{output}", "${HOME}", '--opts={"n": 1}', "{x}"],
                          "a={{ a }}", space, tmp_path / "work")
    ds = model.simulate(np.array([[0.5, 0.5]]))
    assert not (ds.status.values != "done")[0], ds.reason.values[0]
    run_dir = model.run_dir(np.array([0.5, 0.5]))
    import xarray as xr

    argv = json.loads(xr.open_dataset(run_dir / "output.nc", engine="h5netcdf").attrs["argv"])
    assert argv[1:] == ["${HOME}", '--opts={"n": 1}', "{x}"]


def test_a_parameter_file_link_is_replaced_not_written_through(program, space, tmp_path):
    outside = tmp_path / "precious.txt"
    outside.write_text("do not touch")
    model = make(program, space, tmp_path)
    theta = np.array([0.5, 0.25])
    run_dir = model.run_dir(theta)
    run_dir.mkdir(parents=True)
    (run_dir / "params.txt").symlink_to(outside)
    ds = model.simulate(theta[None])
    assert not (ds.status.values != "done")[0]
    assert outside.read_text() == "do not touch"
    assert not (run_dir / "params.txt").is_symlink()
    assert (run_dir / "params.txt").read_text() == "a=0.5\nb=0.25\n"


def test_malformed_placeholders_are_named(program, space, tmp_path):
    with pytest.raises(ValueError, match=r"\{\{ label with space \}\}"):
        make(program, space, tmp_path, template="a={{ a }}\nb={{ label with space }}\n")
    with pytest.raises(ValueError, match=r"\{\{ c \}\}"):
        make(program, space, tmp_path, template="a={{ a }} c={{ c }}")
    pfts = ParameterSpace([Parameter("vcmax", [40.0, 60.0], 10.0, 100.0, groups=["tree", "grass"])])
    with pytest.raises(ValueError, match=r"'vcmax' is a vector: one placeholder per value, "
                                         r"\{\{ vcmax\[tree\] \}\}, \{\{ vcmax\[grass\] \}\};"):
        make(program, pfts, tmp_path, template="v={{ vcmax }}")


def test_a_command_given_as_one_string_in_the_list_is_named_with_its_words(tmp_path):
    """``["./model {param_file} {output}"]`` (a shell's line in a list): the error gives the list
    of words to write, before any run (it was "No such file or directory" from the run)."""
    from bayescal.workflows import ConfigError
    from bayescal.workflows.own_model import resolve_command

    with pytest.raises(ConfigError, match=r"its first entry './model \{param_file\} \{output\}' holds "
                                          r"spaces; .*\['./model', '\{param_file\}', '\{output\}'\]"):
        resolve_command(["./model {param_file} {output}"], tmp_path, ("params.txt", "output.nc"))


def test_a_finished_program_run_is_read_again_not_rerun_until_an_input_changes(tmp_path, space):
    """A batch cut short by a kill loses no finished program run: calling the model again with the
    same values reads each finished member's output (the program runs only for the others);
    editing the program (a file the command names) or the template runs it again."""
    log = tmp_path / "calls.log"
    prog = tmp_path / "prog.py"
    body = PROGRAM.replace("import sys, time\n", f"import sys, time\nopen({str(log)!r}, 'a').write('x')\n")
    prog.write_text(body)
    model = make(prog, space, tmp_path)
    theta = np.array([[0.5, 0.25], [0.3, 0.2], [0.9, 0.5]])  # the last fails (exit 4): not reused
    first = model.simulate(theta)
    assert log.read_text() == "xxx"
    (model.run_dir(theta[1]) / "bayescal_finished.json").unlink()  # as if killed before the record
    again = make(prog, space, tmp_path).simulate(theta)  # a new process: a new adapter
    assert log.read_text() == "xxx" + "xx"  # member 1 (no record) and the failed member 2
    np.testing.assert_array_equal(again.y.values[:2], first.y.values[:2])
    assert list(again.status.values) == ["done", "done", "failed"]
    prog.write_text(body.replace("* a + b", "* a + 2 * b"))  # the program edited
    edited = make(prog, space, tmp_path).simulate(theta[:1])
    assert log.read_text().count("x") == 6
    np.testing.assert_allclose(edited.y.values[0], np.arange(5) * 0.5 + 0.5)
    make(prog, space, tmp_path, template="a={{ a }}\nb={{ b }}\n# v2\n").simulate(theta[:1])
    assert log.read_text().count("x") == 7


MONTHS_PROGRAM = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    a = float(open(sys.argv[1]).read().split("=")[1].split()[0])
    t = xr.DataArray([0.5, 1.5, 2.5], dims="time", attrs={"units": "months since 2003-01-01",
                                                          "calendar": "noleap"})
    xr.Dataset({"gpp": ("time", a * np.arange(1.0, 4.0), {"units": "g m-2 d-1"})},
               coords={"time": t}).to_netcdf(sys.argv[2], engine="h5netcdf")
""")


def test_a_programs_output_counting_months_since_a_date_is_read_as_its_months(tmp_path, space):
    """A land model's monthly output with time in 'months since' in a noleap calendar (CF allows
    it in 360_day only; xarray refuses it): read as calendar months, not a failed run."""
    import cftime

    (tmp_path / "months.py").write_text(MONTHS_PROGRAM)
    ds = make(tmp_path / "months.py", space, tmp_path).simulate(np.array([[0.5, 0.5]]))
    assert (ds.status == "done").all(), ds.reason.values
    np.testing.assert_array_equal(ds["gpp"].values[0], [0.5, 1.0, 1.5])
    assert [(t.year, t.month) for t in ds["time"].values] == [(2003, 1), (2003, 2), (2003, 3)]
    assert all(isinstance(t, cftime.DatetimeNoLeap) for t in ds["time"].values)


CLM_PROGRAM = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    a = float(open(sys.argv[1]).read().split("=")[1].split()[0])
    ends, starts = [31.0, 59.0, 90.0], [0.0, 31.0, 59.0]  # CLM: each month stamped at its end
    cf = {"units": "days since 2003-01-01", "calendar": "noleap"}
    t = xr.DataArray(ends, dims="time", attrs={**cf, "bounds": "time_bounds"})
    xr.Dataset({"gpp": ("time", a * np.arange(1.0, 4.0), {"units": "g m-2 d-1"}),
                "time_bounds": (("time", "nbnd"), np.stack([starts, ends], 1), cf)},
               coords={"time": t}).to_netcdf(sys.argv[2], engine="h5netcdf")
""")


def test_a_programs_output_stamped_at_month_ends_is_read_by_its_time_bounds(tmp_path, space):
    """CLM/CESM history files stamp each month at its end (January on 1 February) with time
    bounds: read by the bounds' middle, January's value is January's, not February's."""
    (tmp_path / "clm.py").write_text(CLM_PROGRAM)
    ds = make(tmp_path / "clm.py", space, tmp_path).simulate(np.array([[0.5, 0.5]]))
    assert (ds.status == "done").all(), ds.reason.values
    assert [(t.year, t.month) for t in ds["time"].values] == [(2003, 1), (2003, 2), (2003, 3)]
    np.testing.assert_array_equal(ds["gpp"].values[0], [0.5, 1.0, 1.5])
    assert "time_bounds" not in ds


CLM_NO_BOUNDS = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    a = float(open(sys.argv[1]).read().split("=")[1].split()[0])
    t = xr.DataArray([31.0, 59.0, 90.0], dims="time", attrs={"units": "days since 2003-01-01",
                                                             "calendar": "noleap"})
    xr.Dataset({"gpp": ("time", a * np.arange(1.0, 4.0), {"units": "g m-2 d-1"})}, coords={"time": t},
               attrs={"case_id": "I2000Clm50"}).to_netcdf(sys.argv[2], engine="h5netcdf")
""")


def test_a_programs_clm_output_stamped_at_month_ends_without_bounds_is_warned_of(tmp_path, space):
    """Without time bounds the stamps are all there is (read as the months they name: February to
    April), but a CESM/CLM file stamps each month at its end: said, naming the output; with its
    bounds (CLM_PROGRAM) nothing is said."""
    (tmp_path / "clm.py").write_text(CLM_NO_BOUNDS)
    with pytest.warns(UserWarning, match=r"program's output 'output.nc'.* stamps fall on the 1st, from "
                      r"2003-02 to 2003-04, without time bounds.*a month late"):
        ds = make(tmp_path / "clm.py", space, tmp_path).simulate(np.array([[0.5, 0.5]]))
    assert [(t.year, t.month) for t in ds["time"].values] == [(2003, 2), (2003, 3), (2003, 4)]
    (tmp_path / "clm.py").write_text(CLM_PROGRAM)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make(tmp_path / "clm.py", space, tmp_path / "b").simulate(np.array([[0.5, 0.5]]))


CLM_DAILY = textwrap.dedent("""
    import sys
    import numpy as np, xarray as xr
    a = float(open(sys.argv[1]).read().split("=")[1].split()[0])
    first, bounds = float(sys.argv[3]), sys.argv[4] == "bounds"
    ends = first + np.arange(365.0)  # CLM's h1 file: each day's mean stamped at the day's end
    cf = {"units": "days since 2003-01-01", "calendar": "noleap"}
    t = xr.DataArray(ends, dims="time", attrs={**cf, **({"bounds": "time_bounds"} if bounds else {})})
    data = {"gpp": ("time", a * np.arange(365.0), {"units": "g m-2 d-1"})}
    if bounds:
        data["time_bounds"] = (("time", "nbnd"), np.stack([ends - 1, ends], 1), cf)
    xr.Dataset(data, coords={"time": t}).to_netcdf(sys.argv[2], engine="h5netcdf")
""")


@pytest.mark.parametrize("first, bounds, said", [(1.0, "none", True), (1.0, "bounds", False),
                                                 (0.0, "none", False)])
def test_a_programs_daily_output_stamped_at_day_ends_without_bounds_is_warned_of(tmp_path, space, first,
                                                                                   bounds, said):
    """A year of daily means stamped at each day's end (2 January to 1 January), as CLM's history
    files stamp them: without bounds read by the stamps, a day late, and said; with its bounds
    read by their middle (the right days), and stamps at the days' starts are not warned of."""
    (tmp_path / "daily.py").write_text(CLM_DAILY)
    model = ExternalModel([sys.executable, str(tmp_path / "daily.py"), "{param_file}", "{output}", str(first),
                           bounds], "a={{ a }}\nb={{ b }}\n", space, tmp_path / "work")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = model.simulate(np.array([[0.5, 0.5]]))
    assert (ds.status == "done").all(), ds.reason.values
    shown = [str(w.message) for w in caught if "daily time stamps" in str(w.message)]
    assert len(shown) == int(said), shown
    if said:
        assert "from 2003-01-02 to 2004-01-01, without time bounds" in shown[0] and "a day late" in shown[0]
    day0 = (ds["time"].values[0].month, ds["time"].values[0].day)
    assert day0 == ((1, 2) if said else (1, 1))


def test_time_bounds_that_are_not_dates_leave_the_stamps_as_they_are():
    """Numbers without units in the bounds are not a time: the output's stamps are kept (the
    contract then names them), and a bounds attribute is not left dangling when dates are used."""
    import xarray as xr

    from bayescal.models.external import _at_bounds_middle

    ds = xr.Dataset({"gpp": ("time", [1.0, 2.0]), "time_bnds": (("time", "nv"), [[0.0, 1.0], [1.0, 2.0]])},
                    coords={"time": ("time", [1.0, 2.0], {"bounds": "time_bnds"})})
    xr.testing.assert_identical(_at_bounds_middle(ds), ds)
    days = np.array(["2003-01-01", "2003-02-01", "2003-03-01"], dtype="datetime64[ns]")
    dated = ds.isel(time=[0, 1]).assign_coords(time=("time", days[1:], {"bounds": "time_bnds"}))
    dated["time_bnds"] = (("time", "nv"), np.stack([days[:2], days[1:]], 1))
    out = _at_bounds_middle(dated)
    assert "time_bnds" not in out and "bounds" not in out["time"].attrs
    np.testing.assert_array_equal(out["time"].values.astype("datetime64[D]"),
                                  np.array(["2003-01-16", "2003-02-15"], dtype="datetime64[D]"))


SLOW = textwrap.dedent("""
    import os, sys, time
    open("program.pid", "w").write(str(os.getpid()))
    time.sleep(float(open(os.environ["SLEEP_FILE"]).read()))
    import numpy as np, xarray as xr
    xr.Dataset({"y": ("t", np.zeros(2))}).to_netcdf(sys.argv[1], engine="h5netcdf")
""")


def test_a_program_left_running_by_a_killed_run_is_stopped_before_the_member_runs_again(tmp_path, space):
    """bayescal killed with -9 while a member's program runs (its own session: the kill of
    bayescal's group does not reach it): the program runs on; the member's next run stops it
    first (it would write its output into the folder after the new run finished), says so, and
    runs the member."""
    import contextlib
    import os
    import subprocess
    import time

    (tmp_path / "slow.py").write_text(SLOW)
    sleep = tmp_path / "sleep.txt"
    sleep.write_text("120")
    args = ([sys.executable, str(tmp_path / "slow.py"), "{output}"], "a={{ a }}", space, tmp_path / "work")
    env = {"SLEEP_FILE": str(sleep)}
    (tmp_path / "run.py").write_text(
        "import sys, numpy as np\nfrom bayescal.models.external import ExternalModel\n"
        "from bayescal.parameters import Parameter, ParameterSpace\n"
        "space = ParameterSpace([Parameter('a', 0.5, 0.0, 1.0), Parameter('b', 0.5, 0.0, 1.0)])\n"
        f"model = ExternalModel(*{args[:2]!r}, space, {str(args[3])!r}, env={env!r})\n"
        "model.simulate(np.array([[0.5, 0.5]]))\n")
    from bayescal.models.external import _start_time

    runner = subprocess.Popen([sys.executable, str(tmp_path / "run.py")])
    pid = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "work").glob("*/program.pid")):
            time.sleep(0.1)
        pid_file = next((tmp_path / "work").glob("*/program.pid"))
        time.sleep(0.2)  # the pid written
        runner.kill()
        runner.wait()
        pid = int(pid_file.read_text())
        assert _start_time(pid) is not None  # still running, its parent gone
        sleep.write_text("0")
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            ds = ExternalModel(*args, env=env).simulate(np.array([[0.5, 0.5]]))
        assert str(ds.status.values[0]) == "done"
        assert any("left running in" in str(w.message) for w in said)
        deadline = time.monotonic() + 30  # gone, or a zombie where nothing reaps orphans
        while time.monotonic() < deadline and _start_time(pid) is not None:
            time.sleep(0.05)
        assert _start_time(pid) is None
        assert not (pid_file.parent / ".bayescal_program.json").exists()
    finally:
        runner.kill()
        if pid is not None:
            with contextlib.suppress(OSError):
                os.killpg(pid, 9)
