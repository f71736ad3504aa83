"""What a newcomer's own model met (docs/own-model.md): units that change between members and
calls, cftime calendars, daily values stamped at noon, a relative ``command``, a missing output
variable, a model given through the Python API, the shape of a transposed dict output."""

import json
import os
import re
import sys
import textwrap
import warnings
from importlib import resources

import cftime
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.models.contract import ConformingModel, ModelOutputError, conform_output
from bayescal.models.external import ExternalModel
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.testing import toy_site_series, write_toy_site_csv
from bayescal.workflows import load_config, make_context
from bayescal.workflows.config import ConfigError

MODEL = '''
import numpy as np
import pandas as pd
from bayescal.parameters import Parameter, ParameterSpace


class Model:
    """Daily nee 2003-2005 (a leap year inside), as a dict; ``form`` says how time is stamped."""

    def __init__(self, form="ok"):
        self.space = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0), Parameter("b", 0.0, -2.0, 2.0)])
        self.units = {"nee": "gC m-2 d-1"}
        self.form = form
        t = pd.date_range("2003-01-01", "2005-12-31", freq="D")
        self.t = t[~((t.month == 2) & (t.day == 29))] if form in ("noleap", "360_day") else t

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        doy = np.asarray(self.t.values, dtype="datetime64[D]").astype(int) % 365.25
        nee = theta[:, :1] * np.sin(2 * np.pi * doy / 365.25)[None, :] + theta[:, 1:]
        time = self.t.values
        if self.form in ("noleap", "360_day"):
            import cftime

            if self.form == "noleap":
                time = np.array([cftime.DatetimeNoLeap(d.year, d.month, d.day) for d in self.t])
            else:
                time = np.array([cftime.Datetime360Day(d.year, d.month, min(d.day, 30)) for d in self.t])
        elif self.form == "noon":
            time = time + np.timedelta64(12, "h")
        elif self.form == "fails_high":  # a corner where the model fails
            nee[theta[:, 0] > 4.5] = np.nan
        return {"nee": nee, "time": time}
'''

PROGRAM = '''
import sys

import h5netcdf
import numpy as np

params = {k.strip(): float(v) for k, v in (line.split("=") for line in open(sys.argv[1]) if "=" in line)}
a, b, mode = params["a"], params["b"], sys.argv[3]
days = np.arange(np.datetime64("2003-01-01"), np.datetime64("2005-12-31") + 1)
nee = a * np.sin(2 * np.pi * (days.astype(int) % 365.25) / 365.25) + b
units, name, stamps, calendar = "gC m-2 d-1", "nee", np.arange(days.size) + 0.0, "standard"
if mode == "units" and a > 4.5:
    units = "W m-2"
elif mode == "units" and a > 3:
    nee, units = nee * 1e-3 / 86400, "kgC m-2 s-1"
if mode == "missing" and a > 3:
    name = "gpp"
if mode == "noon":
    stamps = stamps + 0.5
if mode == "badunits":
    units = "kg C m-2 s-1 (PFT-weighted)"
if mode == "fail" and a != 2.0:  # runs at its defaults only
    sys.exit("FATAL: soil respiration solver diverged")
if mode == "noleap":
    keep = np.array([str(d)[5:] != "02-29" for d in days])
    nee, stamps, calendar = nee[keep], np.arange(keep.sum()) + 0.0, "noleap"
with h5netcdf.File(sys.argv[2], "w") as f:
    f.dimensions["time"] = stamps.size
    t = f.create_variable("time", ("time",), "f8", data=stamps)
    t.attrs["units"] = "days since 2003-01-01"
    t.attrs["calendar"] = calendar
    f.create_variable(name, ("time",), "f8", data=nee).attrs["units"] = units
'''

SPACE = '[parameters.a]\ndefault = 2.0\nlower = 0.0\nupper = 5.0\n' \
        '[parameters.b]\ndefault = 0.0\nlower = -2.0\nupper = 2.0\n'


def _setup(tmp_path, model: str) -> os.PathLike:
    """A site config over 2004 (a leap year; validation 2005) with the model section ``model``."""
    (tmp_path / "newcomer_model.py").write_text(MODEL)
    (tmp_path / "prog.py").write_text(f"#!{sys.executable}\n" + PROGRAM)
    (tmp_path / "prog.py").chmod(0o755)
    (tmp_path / "params.template").write_text("a = {{ a }}\nb = {{ b }}\n")
    (tmp_path / "space.toml").write_text(SPACE)
    write_toy_site_csv(tmp_path / "nee.csv", end="2005-12-31", sigma=0.3)
    cfg = tmp_path / "site.toml"
    cfg.write_text(textwrap.dedent("""
        [run]
        output = "run"
        seed = 3
        [model]
        {model}
        [site]
        calibration_years = [2004, 2004]
        validation_years = [2005, 2005]
        discrepancy = "none"
        autocorrelation = false
        ml_evaluations = 60
        [[observations.products]]
        variable = "nee"
        format = "csv"
        file = "nee.csv"
        units = "gC m-2 d-1"
        [posterior]
        n_steps = 300
        max_steps = 300
        n_walkers = 8
        [propagate]
        n_draws = 10
        """).format(model=model))
    return cfg


def _python(form: str) -> str:
    return f'kind = "python"\nentry_point = "newcomer_model:Model"\noptions = {{form = "{form}"}}'


def _external(command: str) -> str:
    return (f'kind = "external"\ncommand = {command}\ntemplate = "params.template"\n'
            'parameters_file = "space.toml"\ntimeout = 60.0')


# ----------------------------------------------------------------------------- time axis
def test_cftime_calendars_are_read_as_their_dates():
    """noleap: the dates themselves, 29 February absent; all_leap: a 29 February of a common year
    dropped with its value; julian: the same labels; 360_day: refused, naming the calendar."""
    x = np.arange(365.0)[None, :]
    noleap = xr.date_range("2004-01-01", periods=365, freq="D", calendar="noleap", use_cftime=True)
    ds = conform_output({"nee": x, "time": np.asarray(noleap)}, 1, ["nee"])
    assert ds["time"].dtype == np.dtype("datetime64[ns]") and ds["time"].attrs["model_calendar"] == "noleap"
    t = pd.DatetimeIndex(ds["time"].values)
    assert not ((t.month == 2) & (t.day == 29)).any() and t[-1] == pd.Timestamp("2004-12-31")
    assert float(ds["nee"].sel(time="2004-03-01").item()) == 59.0  # day 60 of a 365-day year
    all_leap = np.asarray(xr.date_range("2003-01-01", periods=366, freq="D", calendar="all_leap",
                                        use_cftime=True))
    ds = conform_output({"nee": np.arange(366.0)[None], "time": all_leap}, 1, ["nee"])
    assert ds.sizes["time"] == 365 and float(ds["nee"].sel(time="2003-03-01").item()) == 60.0
    julian = np.array([cftime.DatetimeJulian(2004, 2, d) for d in range(1, 30)])
    ds = conform_output({"nee": np.zeros((1, 29)), "time": julian}, 1, ["nee"])
    assert str(ds["time"].values[-1])[:10] == "2004-02-29"
    d360 = np.asarray(xr.date_range("2004-01-01", periods=360, freq="D", calendar="360_day", use_cftime=True))
    with pytest.raises(ModelOutputError, match=r"'time' is in the '360_day' calendar"):
        conform_output({"nee": np.zeros((1, 360)), "time": d360}, 1, ["nee"])
    year1 = np.array([cftime.DatetimeNoLeap(1, 1, d) for d in range(1, 11)])  # a run's own years
    with pytest.raises(ModelOutputError, match=r"'time' runs from year 1 to 1.*write the real years"):
        conform_output({"nee": np.zeros((1, 10)), "time": year1}, 1, ["nee"])


def test_the_runner_tells_a_daily_cftime_model_from_a_monthly_one():
    """``run_ensemble`` (``series=None``) serves both routes: days -- two in a month, or days
    across a month's end -- stay days; months (mid-month stamps) become month starts; a single
    stamp stays as it is. The global route (``series=False``) refuses days."""
    day = cftime.DatetimeNoLeap

    def times(dates, series=None):
        return conform_output({"nee": np.zeros((1, len(dates))), "time": np.array(dates)}, 1,
                              series=series)["time"].values

    np.testing.assert_array_equal(times([day(2003, 6, 30), day(2003, 7, 1)]).astype("datetime64[D]"),
                                  np.array(["2003-06-30", "2003-07-01"], dtype="datetime64[D]"))
    np.testing.assert_array_equal(times([day(2003, m, 15) for m in (1, 2, 3)]).astype("datetime64[D]"),
                                  np.array(["2003-01-01", "2003-02-01", "2003-03-01"], dtype="datetime64[D]"))
    assert times([day(2003, 6, 15)])[0] == day(2003, 6, 15)
    shuffled = times([day(2003, 1, 31), day(2003, 3, 1), day(2003, 2, 1)])  # days, in any order
    assert str(shuffled.astype("datetime64[D]")[2]) == "2003-02-01"
    with pytest.raises(ModelOutputError, match=r"'time' mixes the calendars \['noleap', 'standard'\]"):
        times([day(2003, 1, 1), cftime.DatetimeGregorian(2003, 1, 2)])
    with pytest.raises(ModelOutputError, match="the global route takes one value per month"):
        times([day(2003, 1, d) for d in (1, 2, 3)], series=False)


def test_a_single_point_in_clm_or_lat_lon_form_is_a_site_series():
    """A land model's single-point output: ``(time, lndgrid=1)`` (CLM), ``(time, lat=1, lon=1)``
    with its coordinates: the same series as ``(member, time)``; two points are an error naming
    the dimensions."""
    days = np.arange(np.datetime64("2004-01-01"), np.datetime64("2004-01-06")).astype("datetime64[ns]")
    x = np.arange(10.0).reshape(2, 5)
    plain = conform_output({"nee": x, "time": days}, 2, ["nee"])
    clm = xr.Dataset({"nee": (("member", "time", "lndgrid"), x[..., None])}, coords={"time": days})
    point = xr.Dataset({"nee": (("time", "lat", "member", "lon"), x.T[:, None, :, None])},
                       coords={"time": days, "lat": [51.08], "lon": [10.45]})
    for ds in (clm, point):
        out = conform_output(ds, 2, ["nee"])
        np.testing.assert_array_equal(out["nee"].values, plain["nee"].values)
        assert out["nee"].dims == ("member", "time")
    two = xr.Dataset({"nee": (("member", "time", "lndgrid"), np.repeat(x[..., None], 2, -1))},
                     coords={"time": days})
    with pytest.raises(ModelOutputError, match=r"'nee' has dimensions \{'member': 2, 'time': 5, 'lndgrid': "
                       r"2\}; the site route takes \(member, time\), or a single point"):
        conform_output(two, 2, ["nee"])


def test_daily_values_stamped_at_noon_are_their_days_and_two_on_a_day_are_an_error():
    days = np.arange(np.datetime64("2004-01-01"), np.datetime64("2004-01-11")).astype("datetime64[ns]")
    x = np.arange(10.0)[None]
    ds = conform_output({"nee": x, "time": days + np.timedelta64(12, "h")}, 1, ["nee"])
    np.testing.assert_array_equal(ds["time"].values, days)
    np.testing.assert_array_equal(ds["nee"].values, x)
    hourly = days[0] + np.arange(10) * np.timedelta64(6, "h")
    with pytest.raises(ModelOutputError, match=r"'time' has 4 stamps on 2004-01-01.*one value per day"):
        conform_output({"nee": x, "time": hourly}, 1, ["nee"])
    with pytest.raises(ModelOutputError, match="'time' holds int64 values"):
        conform_output({"nee": x, "time": np.arange(10)}, 1, ["nee"])
    repeated = days.copy()  # midnight stamps, one day twice (a model's leap-day bug): named, not a traceback
    repeated[6] = repeated[5]
    with pytest.raises(ModelOutputError, match=r"'time' has 2 stamps on 2004-01-06 \(10 stamps on 9 days\)"):
        conform_output({"nee": x, "time": repeated}, 1, ["nee"])


def test_site_check_and_run_take_a_noleap_model_and_count_the_days_left_out(tmp_path, capsys):
    cfg = _setup(tmp_path, _python("noleap"))
    with pytest.warns(UserWarning, match=r"nee .*nee.csv\): 1 observed day\(s\).*calendar 'noleap'"):
        assert main(["check", str(cfg)]) == 0
    assert main(["run", str(cfg), "--until", "optimize", "--quiet"]) == 0
    stage = json.loads((tmp_path / "run" / "optimize" / "stage.json").read_text())
    assert any("1 observed day(s)" in w for w in stage["warnings"]), stage["warnings"]


@pytest.mark.parametrize("form, code, match", [
    ("noon", 0, "follows the contract"),
    ("360_day", 2, r"model \(python\): the model output's 'time' is in the '360_day' calendar"),
])
def test_site_check_of_noon_stamps_and_a_360_day_calendar(tmp_path, capsys, form, code, match):
    cfg = _setup(tmp_path, _python(form))
    assert main(["check", str(cfg)]) == code
    out = capsys.readouterr()
    assert re.search(match, out.out + out.err), out.err
    assert "Traceback" not in out.err


def test_external_noleap_and_noon_outputs_pass_the_check(tmp_path, capsys):
    for mode in ("noleap", "noon"):
        cfg = _setup(tmp_path, _external(f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", '
                                         f'"{mode}"]'))
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            assert main(["check", str(cfg)]) == 0, capsys.readouterr().err
        assert "follows the contract" in capsys.readouterr().out
        left_out = [str(w.message) for w in said if "left out" in str(w.message)]
        assert len(left_out) == (1 if mode == "noleap" else 0)
        assert all("1 observed day(s)" in w and "'noleap'" in w for w in left_out)


def test_a_daily_noleap_program_runs_through_the_store(tmp_path, capsys):
    """A program's noleap days go into the runner's store (netCDF's own ``calendar`` attribute is
    the encoding's: the model's calendar is kept as ``model_calendar``): the emulator route's
    design, and :func:`run_ensemble` called on the program directly (not the global route's months)."""
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    cfg = _setup(tmp_path, _external(f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", '
                                     '"noleap"]'))
    cfg.write_text(cfg.read_text().replace("[posterior]\n", '[posterior]\nroute = "emulator"\n')
                   + "[design]\nn_runs = 10\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(cfg), "--until", "optimize", "--quiet"]) == 0, capsys.readouterr().err
    design = EnsembleStore(tmp_path / "run" / "optimize" / "design").load()
    assert (design["status"].values == "done").all() and design.sizes["member"] == 10
    assert design["time"].attrs["model_calendar"] == "noleap" and design.sizes["time"] == 3 * 365
    model = _program_model(tmp_path, "noleap")
    summary = run_ensemble(model, np.array([[2.0, 0.0], [3.0, 1.0]]), tmp_path / "own", progress=False)
    assert summary.failed == 0, summary
    ens = EnsembleStore(tmp_path / "own").load()
    np.testing.assert_allclose(ens["nee"].values[1] - ens["nee"].values[0],
                               np.sin(2 * np.pi * (ens["time"].values.astype("datetime64[D]").astype(int)
                                                   % 365.25) / 365.25) + 1.0, atol=1e-12)


@pytest.mark.parametrize("route, match", [
    ("emulator", r"only 0 of 10 design runs in \S+optimize/design are usable .* 10 x exit code 1: FATAL: "
                 r"soil respiration solver diverged\. .*finished runs are kept"),
    ("direct", r"the maximum-likelihood search cannot go on \(cma_es: every member of a population "
               r"failed\): \d+ x exit code 1: FATAL: soil respiration solver diverged"),
])
def test_a_model_that_fails_everywhere_but_its_defaults_stops_the_stage_with_its_reason(
        tmp_path, capsys, route, match):
    """``check`` passes (the defaults run); ``run`` stops with the model's own reason, exit 1, no
    traceback: every design run failed (emulator route) or a whole CMA-ES generation (direct)."""
    cfg = _setup(tmp_path, _external(f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", '
                                     '"fail"]'))
    cfg.write_text(cfg.read_text().replace("[posterior]\n", f'[posterior]\nroute = "{route}"\n')
                   + "[design]\nn_runs = 10\n" * (route == "emulator"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["run", str(cfg), "--until", "optimize", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert re.search(match, err), err
    assert "Traceback" not in err


def test_a_free_value_the_template_never_gives_the_program_is_refused(tmp_path, capsys):
    """A value of the parameters file without a placeholder would be calibrated to its prior
    unseen: ``check`` refuses it by name before any run (the API warns)."""
    command = f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", "ok"]'
    cfg = _setup(tmp_path, _external(command))
    (tmp_path / "space.toml").write_text(SPACE + "[parameters.soil_depth]\ndefault = 1.0\nlower = 0.5\n"
                                                 "upper = 2.0\n")
    assert main(["check", "--no-model-run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "'model.template'" in err and "no placeholder for 1 free parameter value(s)" in err
    assert "'soil_depth'" in err and "space.toml" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()
    space = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0), Parameter("b", 0.0, -2.0, 2.0)])
    with pytest.warns(UserWarning, match=r"no placeholder for 1 free .* 'b'"):
        model = ExternalModel(["prog"], "a = {{ a }}\n", space, tmp_path / "work")
    assert model.unused_labels == ["b"]
    # a fixed value needs no placeholder
    fixed = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0), Parameter("b", 0.0, -2.0, 2.0)], fixed={"b": None})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ExternalModel(["prog"], "a = {{ a }}\n", fixed, tmp_path / "work").unused_labels == []


# ----------------------------------------------------------------------------- units
def _program_model(tmp_path, mode: str, variables=None) -> ExternalModel:
    (tmp_path / "prog.py").write_text(PROGRAM)
    space = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0), Parameter("b", 0.0, -2.0, 2.0)])
    return ExternalModel([sys.executable, str(tmp_path / "prog.py"), "{param_file}", "{output}", mode],
                         "a = {{ a }}\nb = {{ b }}\n", space, tmp_path / "work", timeout=60,
                         variables=variables)


def test_external_members_in_other_units_are_converted_or_failed(tmp_path):
    """The program writes kgC m-2 s-1 for a > 3 and W m-2 for a > 4.5: the second member is
    converted to the first member's gC m-2 d-1; the third fails naming the variable and both units."""
    model = _program_model(tmp_path, "units")
    ds = model.simulate(np.array([[2.0, 0.0], [4.0, 0.5], [4.8, 0.0]]))
    assert ds["status"].values.tolist() == ["done", "done", "failed"]
    assert ds["nee"].attrs["units"] == "gC m-2 d-1"
    t = ds["time"].values
    np.testing.assert_allclose(ds["nee"].values[1], toy_site_series(np.array([4.0]), np.array([0.5]), t)[0],
                               rtol=1e-9, atol=1e-9)
    reason = str(ds["reason"].values[2])
    assert "'nee' in [W m-2]" in reason and "[gC m-2 d-1]" in reason
    again = model.simulate(np.array([[4.0, 0.5]]))  # a later call: the first run's units still
    np.testing.assert_allclose(again["nee"].values, ds["nee"].values[1:2], rtol=1e-9)


def test_a_python_model_whose_units_change_between_calls_is_converted(tmp_path):
    space = ParameterSpace([Parameter("a", 1.0, 0.0, 2.0)])
    t = pd.date_range("2004-01-01", periods=3).values

    class Model:
        def __init__(self):
            self.space, self.units = space, "gC m-2 d-1"

        def __call__(self, theta):
            x = np.repeat(theta[:, :1], 3, axis=1)
            ds = xr.Dataset({"nee": (("member", "time"), x * (1e-3 / 86400 if self.units[0] == "k" else 1.0),
                                     {"units": self.units})}, coords={"time": t})
            return ds

    inner = Model()
    model = ConformingModel(inner, variables=["nee"])
    first = model(np.array([[1.0]]))
    assert first["nee"].attrs["units"] == "gC m-2 d-1"
    inner.units = "kgC m-2 s-1"
    later = model(np.array([[1.5], [0.5]]))
    np.testing.assert_allclose(later["nee"].values, [[1.5] * 3, [0.5] * 3], rtol=1e-12)
    assert later["nee"].attrs["units"] == "gC m-2 d-1"
    inner.units = "W m-2"
    bad = model(np.array([[1.5]]))
    assert bad["status"].values.tolist() == ["failed"]
    assert "output 'nee' in [W m-2] cannot be converted to [gC m-2 d-1]" in str(bad["reason"].values[0])


# ----------------------------------------------------------------------------- external route
def test_relative_command_runs_from_the_config_folder(tmp_path, capsys):
    """``./prog.py`` and ``python prog.py``: resolved against the config file's folder (each member
    runs in its own run directory); a program that cannot start names the folder it ran in."""
    for command in ('["./prog.py", "{param_file}", "{output}", "ok"]',
                    f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", "ok"]'):
        cfg = _setup(tmp_path, _external(command))
        m = load_config(cfg)["model"]
        assert str(tmp_path / "prog.py") in m["command"] and "{param_file}" in m["command"]
        (tmp_path / "params.txt").write_text("a = 1\n")  # beside the config: a run's own name stays
        literal = _setup(tmp_path, _external(command.replace("{param_file}", "params.txt")))
        assert "params.txt" in load_config(literal)["model"]["command"]
        (tmp_path / "params.txt").unlink()
        assert main(["check", str(cfg)]) == 0, capsys.readouterr().err
        capsys.readouterr()
    cfg = _setup(tmp_path, _external('["./prgo.py", "{param_file}", "{output}"]'))
    for run_model in ([], ["--no-model-run"]):  # named before any run: no such file, or not executable
        assert main(["check", *run_model, str(cfg)]) == 2
        err = capsys.readouterr().err
        assert f"the program {tmp_path / 'prgo.py'} does not exist; did you mean 'prog.py'?" in err, err
    cfg = _setup(tmp_path, _external(f'["{sys.executable}", "prgo.py", "{{param_file}}", "{{output}}"]'))
    assert main(["check", "--no-model-run", str(cfg)]) == 2  # a script the interpreter would not find
    err = capsys.readouterr().err
    said = f"runs {sys.executable} on 'prgo.py', which is not a file beside the config ({tmp_path}/prgo.py)"
    assert said in err, err
    from bayescal.workflows.own_model import resolve_command

    # code, modules and programs on PATH are not scripts beside the config

    for command in (["bash", "-lc", "module load R && Rscript model.R"], ["python", "-m", "pkg.run"],
                    ["python", "-c", "print(1)"], ["sh", "ls"]):
        assert resolve_command(command, tmp_path)[1:] == command[1:]
    (tmp_path / "prog.py").chmod(0o644)
    cfg = _setup(tmp_path, _external('["./prog.py", "{param_file}", "{output}"]'))
    (tmp_path / "prog.py").chmod(0o644)
    assert main(["check", "--no-model-run", str(cfg)]) == 2
    assert f"the program {tmp_path / 'prog.py'} is not executable" in capsys.readouterr().err
    (tmp_path / "prog.py").write_text("#!/no/such/python\n" + PROGRAM)
    (tmp_path / "prog.py").chmod(0o755)
    assert main(["check", str(cfg)]) == 2  # a program that cannot start: its #! line named
    err = capsys.readouterr().err
    assert f"cannot start '{tmp_path / 'prog.py'}' (run in " in err and "Traceback" not in err
    assert "its first line '#!/no/such/python' names an interpreter that is not there" in err
    # the failed check's run folder is kept for you to look into, and named
    import shutil
    from pathlib import Path

    kept = Path(re.search(r"the check's run of your program is kept in (\S+) \(", err).group(1))
    assert kept.is_dir() and kept.name.startswith("bayescal-check-")
    shutil.rmtree(kept)


def test_units_of_the_model_that_cannot_be_read_are_the_models_not_the_products(tmp_path, capsys):
    """The program's own units string is named as the model's (not "the product's units do not
    match"), and the check's run folder is not kept: the run itself went well."""
    cfg = _setup(tmp_path, _external(f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", '
                                     '"badunits"]'))
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "the model output 'nee' has units 'kg C m-2 s-1 (PFT-weighted)' that cannot be read" in err, err
    assert "product's units" not in err and "kept in" not in err and "Traceback" not in err


def test_the_model_failing_at_the_emulators_best_point_is_a_warning(tmp_path, capsys, monkeypatch):
    """The emulator route runs the model at the emulator's maximum-likelihood point; where the
    emulator is wrong the model may fail there: a warning naming the reason, and the refinement
    goes on from the design's runs (it was a traceback). The design's failed runs are kept
    (design.nc) and given to the refinement: no posterior mass where they are the nearest runs."""
    import xarray as xr

    from bayescal.posterior import refinement
    from bayescal.workflows.context import Context

    cfg = _setup(tmp_path, _python("fails_high"))
    route = '[posterior]\nroute = "emulator"\nrefine_rounds = 1\nn_new = 4\nn_particles = 200\n'
    cfg.write_text(cfg.read_text().replace("[posterior]\n", route) + "[design]\nn_runs = 12\n")
    monkeypatch.setattr(Context, "optimum_u", lambda self: np.array([0.99, 0.5]))  # a = 4.95: fails
    given = []
    refine = refinement.refine
    monkeypatch.setattr(refinement, "refine", lambda *a, **k: given.append(k["failed"]) or refine(*a, **k))
    with pytest.warns(UserWarning, match=r"the model fails at the emulator's maximum-likelihood point "
                                         r"\(non-finite output.*the refinement's runs go on"):
        assert main(["run", str(cfg), "--until", "posterior", "--quiet"]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "posterior" / "posterior.nc").exists()
    design = xr.load_dataset(tmp_path / "run" / "optimize" / "design.nc")
    a = 5.0 * np.vstack([design["X"].values, design["X_failed"].values])[:, 0]  # a in [0, 5]
    assert design.sizes["member"] + design.sizes["failed_member"] == 12
    np.testing.assert_array_equal(a > 4.5, np.r_[np.zeros(design.sizes["member"], bool),
                                                 np.ones(design.sizes["failed_member"], bool)])
    assert design.sizes["failed_member"] >= 1
    np.testing.assert_array_equal(given[0], design["X_failed"].values)


def test_a_member_missing_an_observed_variable_names_it(tmp_path):
    """The site route reads the observed variables: a member whose output lacks ``nee`` fails with
    that reason (not "non-finite output in nee")."""
    from bayescal.workflows.site.model import site_model

    cfg = load_config(_setup(tmp_path, _external(
        f'["{sys.executable}", "prog.py", "{{param_file}}", "{{output}}", "missing"]')))
    model = site_model(cfg, workdir=tmp_path / "work")
    assert model.model.variables == ["nee"]
    ds = model(np.array([[2.0, 0.0], [4.0, 0.0]]))
    assert ds["status"].values.tolist() == ["done", "failed"]
    assert str(ds["reason"].values[1]) == "output 'output.nc' lacks variables ['nee'] (it has ['gpp'])"


# ----------------------------------------------------------------------------- Python API, shapes, docs
def test_make_context_wraps_a_given_site_model_and_contexts_refuse_the_other_workflow(tmp_path):
    from bayescal.workflows import GlobalContext

    cfg = load_config(_setup(tmp_path, _python("ok")))
    sys.path.insert(0, str(tmp_path))
    try:
        from newcomer_model import Model  # noqa: PLC0415
    finally:
        sys.path.remove(str(tmp_path))
    ctx = make_context(cfg, tmp_path / "api", model=Model("noon"), progress=False)
    assert isinstance(ctx.model, ConformingModel)
    check = ctx.model_check(validation=True)
    assert pd.Timestamp(check["time"][0]) == pd.Timestamp("2003-01-01")  # noon stamps: their days
    ds = ctx.model(np.array([[2.0, 0.0]]))
    assert ds["status"].values.tolist() == ["done"] and ds["nee"].dims == ("member", "time")
    with pytest.raises(ConfigError, match=r"GlobalContext runs the global workflow.*'python' belongs to "
                                          r"the site workflow.*make_context"):
        GlobalContext(cfg, tmp_path / "global", model=Model())
    assert not (tmp_path / "global").exists() and not (tmp_path / "api").exists()


@pytest.mark.parametrize("out, match", [
    ({"nee": np.zeros((5, 2)), "time": np.arange(5)},
     r"'nee' has shape \(5, 2\); expected \(member, time\) = \(2, 5\): a \(time, member\) array"),
    ({"nee": np.zeros((2, 5)), "time": np.arange(4)},
     r"'nee' has shape \(2, 5\).*= \(2, 4\): it has 5 values on time but 'time' has 4 dates"),
    ({"nee": np.zeros((3, 5)), "time": np.arange(5)}, r"'nee'.*returned 3 members for 2 parameter vectors"),
    ({"nee": np.zeros((2, 5)), "gpp": np.zeros(5), "time": np.arange(5)},  # one member's series, 1-D
     r"'gpp' has shape \(5,\); expected \(member, time\) = \(2, 5\): a series of 5 values: give it as "
     r"\(member, time\)"),
])
def test_a_dict_output_of_the_wrong_shape_names_the_variable_and_the_shape(out, match):
    with pytest.raises(ModelOutputError, match=match):
        conform_output(out, 2, ["nee"])


def test_the_docs_config_snippet_names_shipped_files():
    import re

    doc = (resources.files("bayescal").parent / "docs" / "own-model.md").read_text()
    toml = "\n".join(re.findall(r"```toml\n(.*?)```", doc, re.S))  # the config snippets to copy
    files = [line.split('"')[1] for line in toml.splitlines() if line.startswith("file = ")]
    assert files
    for f in files:
        assert f.startswith("bayescal:") and (resources.files("bayescal") / f.split(":", 1)[1]).is_file()
    assert "make_context(load_config(" in doc and "noleap" in doc and "12:00" in doc


def test_a_model_class_without_a_source_file_gets_an_identity_from_its_code(tmp_path):
    """A model class defined where there is no source file (a notebook's cell, ``python -c``):
    ``plan()`` works (``inspect`` raised OSError), and its identity follows its methods' code: the
    same code the same (in another process too, with a lambda inside), an edited method -- a
    constant, or only a name called (``np.sin`` for ``np.cos``) -- another."""
    import subprocess

    cfg = load_config(_setup(tmp_path, _python("ok")))
    cell = ("import numpy as np\n"
            "from bayescal.testing import ToySiteModel\n"
            "class Model(ToySiteModel):\n"
            "    def __call__(self, theta):\n"
            "        shift = (lambda x: 0.0 * np.{}(x))(1.0)\n"
            "        return super().__call__(theta) {}\n")
    identities = []
    for edit in (("sin", ""), ("sin", ""), ("sin", "* 1.0"), ("cos", "")):
        ns: dict = {"__name__": "notebook_cell"}  # a module Python has no file of
        exec(cell.format(*edit), ns)  # noqa: S102 - a notebook's cell, as a newcomer's
        ctx = make_context(cfg, tmp_path / "nb", model=ns["Model"](start="2001-01-01", end="2003-12-31"),
                           progress=False)
        assert [p.status for p in ctx.plan()][0] == "run"
        identities.append(ctx.model_identity())
    assert identities[0] == identities[1] and len(set(identities[1:])) == 3
    script = ("import sys; from bayescal.workflows import load_config, make_context\n"
              f"ns = {{'__name__': 'notebook_cell'}}; exec({cell.format('sin', '')!r}, ns)\n"
              f"ctx = make_context(load_config({str(tmp_path / 'site.toml')!r}), {str(tmp_path / 'nb')!r}, "
              "model=ns['Model'](start='2001-01-01', end='2003-12-31'), progress=False)\n"
              "print(ctx.model_identity())\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == identities[0]  # the same in another session
