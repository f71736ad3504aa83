"""The own-model contract (docs/own-model.md) on the site route, as a newcomer writes a model:
a module beside the config, dict drivers, a dict or gridded (member, cell=1, time) output, the
older failure names, members that raise. ``bayescal check`` runs it once and names what breaks."""

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.models.contract import ConformingModel, ModelOutputError, conform_output
from bayescal.testing import write_toy_site_csv

MODEL = '''
import numpy as np
import pandas as pd
from bayescal.parameters import Parameter, ParameterSpace


def _series(a, b, time):
    doy = np.asarray(time, dtype="datetime64[D]").astype(int) % 365.25  # bayescal.testing's toy
    return a[:, None] * np.sin(2 * np.pi * doy / 365.25)[None, :] + b[:, None]


class Model:
    """A user's model: dict drivers, dict output on (member, cell=1, time), failed/failure, raises."""

    def __init__(self, start="2001-01-01", end="2003-12-31", form="dict", raise_above=None, days=None,
                 si=False, sleep=0.0):
        self.si = si  # NEE in kg m-2 s-1 (an SI model) rather than gC m-2 d-1
        self.sleep = sleep  # seconds a call takes (a slow model)
        self.space = ParameterSpace([Parameter("a", 2.0, 0.0, 5.0), Parameter("b", 0.0, -2.0, 2.0)])
        time = pd.date_range(start, end, freq="D")
        self.drivers = {"tair": np.zeros(time.size), "dates": time.values}  # not an xarray Dataset
        self.form, self.raise_above = form, raise_above
        self.time = time.values[:days] if days else time.values
        if form != "no_units":
            self.units = {"nee": "kg m-2 s-1" if si else "gC m-2 d-1", "gpp": "gC m-2 d-1"}  # a dict has none

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        if self.sleep:
            import time
            time.sleep(self.sleep)
        if self.raise_above is not None and (theta[:, 0] > self.raise_above).any():
            raise FloatingPointError(f"a = {theta[:, 0].max():.3f} blows the model up")
        nee = _series(theta[:, 0], theta[:, 1], self.time) / (8.64e7 if self.si else 1.0)
        k = theta.shape[0]
        if self.form == "no_time":
            return {"nee": nee.mean(1)}
        if self.form == "wrong_variable":
            return {"gpp": nee, "time": self.time}
        failed = theta[:, 1] > 1.9
        return {"nee": nee[:, None, :], "time": self.time,  # (member, cell = 1, time)
                "failed": failed, "failure": np.where(failed, "offset out of range", "")}
'''


def _setup(tmp_path, options: str = "", a=2.5, b=-0.4, sigma=0.3, extra: str = ""):
    (tmp_path / "mymodel.py").write_text(MODEL)
    # observed: the calibration years only
    write_toy_site_csv(tmp_path / "nee.csv", end="2002-12-31", a=a, b=b, sigma=sigma)
    cfg = tmp_path / "site.toml"
    cfg.write_text(textwrap.dedent(f"""
        [run]
        output = "run"
        seed = 3
        [model]
        kind = "python"
        entry_point = "mymodel:Model"
        options = {{ {options} }}
        [site]
        calibration_years = [2001, 2002]
        validation_years = [2003, 2003]
        discrepancy = "none"
        autocorrelation = false
        ml_evaluations = 150
        [[observations.products]]
        variable = "nee"
        format = "csv"
        file = "nee.csv"
        units = "gC m-2 d-1"
        [posterior]
        n_steps = 300
        max_steps = 300
        n_walkers = 8
        n_particles = 300
        {extra}
        [propagate]
        n_draws = 10
        """))
    return cfg


def test_a_model_written_from_the_docs_runs_and_recovers_the_truth(tmp_path, capsys):
    """Module beside the config (not on PYTHONPATH), dict drivers, dict output on (member, cell=1,
    time), failed/failure, members that raise above a = 4.5: the run goes on, the raising and
    failing members are recorded, the truth is recovered, and a year without observations is
    predicted (its bands alone). The model's NEE is in kg m-2 s-1: the observations are converted
    to it, and the validation is in gC m-2 d-1 (its annual sums came out as 1e-5 of a kg)."""
    cfg = _setup(tmp_path, 'raise_above = 4.5, si = true')
    assert main(["check", str(cfg)]) == 0
    assert "follows the contract" in capsys.readouterr().out
    assert main(["run", str(cfg), "--quiet"]) == 0
    import arviz as az

    post = az.from_netcdf(str(tmp_path / "run" / "posterior" / "posterior.nc")).posterior
    draws = np.stack([post["a"].values.ravel(), post["b"].values.ravel()], axis=1)
    # 730 days with sigma 0.3: sd ~ 0.3 / sqrt(365) ~ 0.016; the truth within a few sd
    assert np.all(np.abs(draws.mean(0) - [2.5, -0.4]) < 4 * draws.std(0) + 1e-3)
    assert draws.std(0).max() < 0.05
    bands = xr.open_dataset(tmp_path / "run" / "propagate" / "bands.nc")
    year3 = bands.sel(time=slice("2003-01-01", "2003-12-31"))
    assert year3.sizes["time"] == 365 and np.isfinite(year3["nee_daily"].values).all()
    assert year3["nee_observed_daily"].isnull().all()
    summary = json.loads((tmp_path / "run" / "propagate" / "summary.json").read_text())
    assert summary["nee"]["validation_observed_days"] == 0
    # the year's NEE, b * 365 with b's sd ~0.016 and the daily noise: a band of tens of gC m-2 yr-1
    assert (summary["nee"]["units"], summary["nee"]["annual_units"]) == ("gC m-2 d-1", "gC m-2 yr-1")
    assert 2.0 < summary["nee"]["annual_interval_width_parameters"] < 100.0
    assert 1.5 < float(abs(year3["nee_daily"]).max()) < 6.0  # a = 2.5 gC m-2 d-1, not 3e-8
    # the report's error model in the validation's units: sigma 0.3 gC m-2 d-1, not 3.5e-9 kg m-2 s-1
    table = (tmp_path / "run" / "report.html").read_text().split("Error model")[1].split("</table>")[0]
    assert "kg m-2 s-1" not in table and "<td>0.3</td>" in table and "gC m-2 d-1" in table


def test_raising_members_fail_alone_with_their_reason(tmp_path):
    (tmp_path / "mymodel.py").write_text(MODEL)
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        from mymodel import Model  # noqa: PLC0415
    finally:
        sys.path.remove(str(tmp_path))
    model = ConformingModel(Model(raise_above=4.5), variables=["nee"])
    theta = np.array([[2.0, 0.0], [4.9, 0.0], [3.0, 1.95], [1.0, -1.0]])
    ds = model(theta)
    assert ds["nee"].dims == ("member", "time") and ds.sizes["member"] == 4
    assert ds["status"].values.tolist() == ["done", "failed", "failed", "done"]
    assert "FloatingPointError: a = 4.900" in str(ds["reason"].values[1])
    assert str(ds["reason"].values[2]) == "offset out of range"
    assert np.isnan(ds["nee"].values[1]).all()
    want = Model()(theta[[0, 3]])["nee"][:, 0, :]  # the finished members: as the model gives them
    np.testing.assert_array_equal(ds["nee"].values[[0, 3]], want)


def test_a_batch_with_raising_members_is_halved_not_run_member_by_member(tmp_path):
    """Two raising members among 64 (the first two, before any member finished): found by halving,
    in fewer calls than 64 single ones; every other member as the model gives it in one batch."""
    (tmp_path / "mymodel.py").write_text(MODEL)
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        from mymodel import Model  # noqa: PLC0415
    finally:
        sys.path.remove(str(tmp_path))
    inner, calls = Model(raise_above=4.5), []

    def counted(theta):
        calls.append(len(theta))
        return inner(theta)

    counted.space = inner.space
    theta = np.column_stack([np.linspace(0.5, 4.0, 64), np.zeros(64)])
    theta[[0, 1], 0] = [4.8, 4.9]
    ds = ConformingModel(counted, variables=["nee"])(theta)
    assert ds["status"].values.tolist() == ["failed"] * 2 + ["done"] * 62
    assert len(calls) <= 2 * 2 * 6 + 1, calls  # 2 k log2(n) + the first call
    np.testing.assert_array_equal(ds["nee"].values[2:], inner(theta[2:])["nee"][:, 0, :])
    assert np.isnan(ds["nee"].values[:2]).all() and ds["nee"].sizes["time"] == len(inner.time)


def test_check_times_a_fast_model_in_a_batch_and_a_slow_one_once():
    """``bayescal check``'s estimates: a fast model is called once more to warm up, then on 32
    copies of the defaults in one call (a chain's walkers are one call); a slow one not again."""
    from bayescal.models.timing import seconds_per_member

    calls = []

    def model(theta):
        calls.append(np.array(theta))

    default = np.array([[0.1, 2.0, 3.0]])
    per = seconds_per_member(model, default, one=0.01)
    assert [c.shape for c in calls] == [(1, 3), (32, 3)] and (calls[1] == default).all()
    assert 0 <= per <= 0.01
    calls.clear()
    assert seconds_per_member(model, default, one=3.0) == 3.0 and calls == []


@pytest.mark.parametrize("bad", [32, 3])
def test_check_names_a_model_whose_batch_fails_where_its_single_run_finished(bad):
    """A batch of copies of the defaults must give the defaults' run: a model whose batch comes in
    units that do not convert to its single run's fails every copy (ModelOutputError, the reason
    named, before any stage); some copies failing is a warning."""
    from bayescal.models.timing import seconds_per_member

    t = pd.date_range("2001-01-01", periods=4).values

    class Model:
        space = None

        def __call__(self, theta):
            k = theta.shape[0]
            status = np.where(np.arange(k) < (bad if k > 1 else 0), "failed", "done")
            units = "W m-2" if k > 1 and bad == 32 else "gC m-2 d-1"
            return xr.Dataset({"nee": (("member", "time"), np.ones((k, 4)), {"units": units}),
                               "status": ("member", status if bad != 32 else np.full(k, "done")),
                               "reason": ("member", np.where(status == "failed", "too hot", ""))},
                              coords={"time": t})

    model = ConformingModel(Model(), variables=["nee"], space=object())
    default = np.array([[0.1, 2.0]])
    model(default)  # the single run at the defaults: its units are the run's
    if bad == 32:
        with pytest.raises(ModelOutputError, match=r"32 of its 32 members failed, though each is the run at "
                           r"the defaults that finished alone \(member 0: output 'nee' in \[W m-2\] cannot"):
            seconds_per_member(model, default, one=0.01)
    else:
        with pytest.warns(UserWarning, match=r"3 of its 32 members failed.*\(member 0: too hot\)"):
            assert 0 <= seconds_per_member(model, default, one=0.01) <= 0.01


def test_conform_output_forms_give_one_shape():
    t = pd.date_range("2001-01-01", periods=5).values
    x = np.arange(10.0).reshape(2, 5)
    forms = [
        {"nee": x, "time": t},
        {"nee": x[:, None, :], "time": t},
        xr.Dataset({"nee": (("time", "member"), x.T)}, coords={"time": t}),
        xr.Dataset({"nee": (("cell", "time", "member"), x.T[None])}, coords={"time": t}),
    ]
    for out in forms:
        ds = conform_output(out, 2, ["nee"])
        np.testing.assert_array_equal(ds["nee"].transpose("member", "time").values, x)
        assert ds["status"].values.tolist() == ["done", "done"]
    nan = conform_output({"nee": np.where(x > 7, np.nan, x), "time": t}, 2, ["nee"])
    assert nan["status"].values.tolist() == ["done", "failed"]
    # x[1] is 5..9: 8 and 9 (2001-01-04 and -05) are NaN
    assert str(nan["reason"].values[1]) == "non-finite output in nee (2 of 5 days, the first 2001-01-04)"
    with pytest.raises(ModelOutputError, match="members"):
        conform_output({"nee": x, "time": t}, 3, ["nee"])
    with pytest.raises(ModelOutputError, match="or a single point"):
        conform_output({"nee": np.zeros((2, 3, 5)), "time": t}, 2, ["nee"])
    with pytest.raises(ModelOutputError, match="no variable 'gpp'"):
        conform_output({"nee": x, "time": t}, 2, ["gpp"])


@pytest.mark.parametrize("options, match", [
    ('form = "no_time"', "'time' dimension"),
    ('form = "wrong_variable"', "no variable 'nee'"),
    ('colour = "red"', r"'model.options'.*colour"),
    ('form = "no_units"', r"nee.csv: the model output 'nee' has no units, so the product's "
                          r"\[gC m-2 d-1\] can be neither checked nor converted"),
    ('days = 100', r"'site.calibration_years' \[2001, 2002\]: the model's output covers 100 of their "
                   "730 days"),
])
def test_check_names_what_breaks_the_contract_before_any_run(tmp_path, capsys, options, match):
    cfg = _setup(tmp_path, options)
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert pytest.importorskip("re").search(match, err), err
    assert not (tmp_path / "run").exists()


def test_entry_point_that_raises_on_import_is_a_named_error(tmp_path, capsys):
    cfg = _setup(tmp_path)
    (tmp_path / "broken.py").write_text("import numpy\nraise RuntimeError('no licence server')\n")
    cfg.write_text(cfg.read_text().replace('"mymodel:Model"', '"broken:Model"'))
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert ("'model.entry_point' 'broken:Model': importing 'broken' raised RuntimeError: "
            "no licence server") in err


def test_parameters_file_sets_the_bounds_of_a_python_model(tmp_path, capsys):
    cfg = _setup(tmp_path)
    (tmp_path / "space.toml").write_text('[parameters.a]\ndefault = 2.0\nlower = 1.0\nupper = 3.0\n'
                                         '[parameters.b]\ndefault = 0.0\nlower = -1.0\nupper = 1.0\n')
    text = cfg.read_text().replace('entry_point = "mymodel:Model"',
                                   'entry_point = "mymodel:Model"\nparameters_file = "space.toml"')
    cfg.write_text(text)
    from bayescal.workflows import load_config, make_context

    pipe = make_context(load_config(cfg))
    assert pipe.full_space.upper.tolist() == [3.0, 1.0]
    # a file of what it changes: the model's own keys stay (its units, a log scale: a file that
    # leaves out `scale` once made a log-uniform prior uniform, silently)
    (tmp_path / "mymodel.py").write_text((tmp_path / "mymodel.py").read_text().replace(
        'Parameter("a", 2.0, 0.0, 5.0)', 'Parameter("a", 2.0, 0.5, 5.0, "gC m-2 d-1", scale="log")'))
    (tmp_path / "space.toml").write_text('[parameters.a]\nlower = 1.0\nupper = 3.0\n')  # keys it changes
    assert main(["check", str(cfg)]) == 0  # the model run of check (the site model) takes it too
    ctx = make_context(load_config(cfg))
    space, identity = ctx.full_space, ctx.model_identity()
    assert space["a"].scale == "log" and space["a"].units == "gC m-2 d-1" and space["a"].default == 2.0
    assert (space.lower.tolist(), space.upper.tolist()) == ([1.0, -2.0], [3.0, 2.0])
    (tmp_path / "space.toml").write_text('[parameters.a]\nlower = 1.0\nupper = 3.0\nscale = "linear"\n')
    ctx = make_context(load_config(cfg))  # another prior: another model in every stage's key
    assert ctx.full_space["a"].scale == "linear" and ctx.model_identity() != identity
    for text, says in (('[parameters.c]\ndefault = 0.0\nlower = -1.0\nupper = 1.0\n',
                        "the model 'mymodel:Model' has no values ['c']"),
                       ('[parameters.b]\nupper = 4.0\n',
                        "b's bounds [-2, 4] leave the model's range [-2, 2]")):
        (tmp_path / "space.toml").write_text(text)
        assert main(["check", str(cfg)]) == 2
        assert says in capsys.readouterr().err


def test_external_program_that_is_missing_or_writes_nothing_is_named_by_check(tmp_path, capsys):
    cfg = _setup(tmp_path)
    (tmp_path / "params.template").write_text("a = {{ a }}\nb = {{ b }}\n")
    (tmp_path / "space.toml").write_text('[parameters.a]\ndefault = 2.0\nlower = 0.0\nupper = 5.0\n'
                                         '[parameters.b]\ndefault = 0.0\nlower = -2.0\nupper = 2.0\n')
    text = cfg.read_text()
    (tmp_path / "no_start").write_text("#!/no/such/interpreter\n")
    (tmp_path / "no_start").chmod(0o755)
    for command, reason in ((f'["{tmp_path / "no_start"}", "{{param_file}}"]', "no_start"),
                            ('["true"]', "output")):
        model = (f'kind = "external"\ncommand = {command}\ntemplate = "params.template"\n'
                 'parameters_file = "space.toml"\ntimeout = 30.0')
        cfg.write_text(text.replace('kind = "python"\nentry_point = "mymodel:Model"\noptions = {  }', model))
        assert main(["check", str(cfg)]) == 2
        err = capsys.readouterr().err
        assert "model (external) fails at its defaults" in err and reason in err and "Traceback" not in err


def test_the_runner_takes_every_form_of_the_contract(tmp_path):
    """The global route's runner: a dict output, the older failure names and raising members give
    the same store as the Dataset form."""
    from bayescal.parameters import Parameter, ParameterSpace
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    space = ParameterSpace([Parameter("a", 1.0, 0.0, 2.0), Parameter("b", 0.0, -1.0, 1.0)])
    t = pd.date_range("2001-01-01", periods=4).values

    def as_dict(theta):
        if (theta[:, 0] > 1.8).any():
            raise ValueError("a too large")
        x = theta[:, :1] * np.arange(4) + theta[:, 1:]
        return {"gpp": x[:, None, :], "time": t, "failed": theta[:, 1] > 0.9,
                "failure": np.where(theta[:, 1] > 0.9, "b too large", "")}

    theta = np.array([[0.5, 0.0], [1.9, 0.0], [1.0, 0.95], [1.5, -0.5]])
    run_ensemble(as_dict, space.to_dataarray(theta, full=True), tmp_path / "s", batch_size=4, progress=False)
    ens = EnsembleStore(tmp_path / "s").load()
    assert ens["status"].values.tolist() == ["done", "failed", "failed", "done"]
    assert "ValueError: a too large" in str(ens["reason"].values[1])
    assert "b too large" in str(ens["reason"].values[2])
    np.testing.assert_array_equal(ens["gpp"].sel(member=3).values.ravel(), 1.5 * np.arange(4) - 0.5)


def test_product_units_are_checked_against_a_python_models_output_units(tmp_path, capsys):
    cfg = _setup(tmp_path)
    text = cfg.read_text().replace('entry_point = "mymodel:Model"\noptions = {  }',
                                   'entry_point = "bayescal.testing:ToySiteModel"\n'
                                   'options = {start = "2001-01-01", end = "2003-12-31"}')
    cfg.write_text(text.replace('units = "gC m-2 d-1"', 'units = "W m-2"'))
    assert main(["check", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "do not match the model output 'nee' [gC m-2 d-1]" in err and "W m-2" in err
    cfg.write_text(text.replace('units = "gC m-2 d-1"', 'units = "gC m-2 yr-1"'))  # same quantity
    assert main(["check", str(cfg)]) == 0


def test_ctrl_c_inside_an_import_is_an_interrupt_not_a_traceback(monkeypatch, capsys):
    """Ctrl-C while a C extension initialises (matplotlib's ft2font under ``import arviz``, seen in
    CI) raises ``ImportError: initialization failed`` from the KeyboardInterrupt: exit 130 with the
    interrupt's message; an ImportError of its own is still raised."""
    import bayescal.cli as cli

    def interrupted_import(args):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as k:
            raise ImportError("initialization failed") from k

    monkeypatch.setattr(cli, "_run", interrupted_import)
    assert cli.main(["run", "any.toml"]) == 130
    assert "interrupted; every finished model run" in capsys.readouterr().err

    def broken_import(args):
        raise ImportError("no module named nothing")

    monkeypatch.setattr(cli, "_run", broken_import)
    with pytest.raises(ImportError):
        cli.main(["run", "any.toml"])


def _signal_mid_run(tmp_path, sig) -> tuple[int, str]:
    """A long site run (its optimiser's 100,000 runs) sent ``sig`` once its optimize stage has
    started; its exit status and stderr. Started as ``python -c`` with Python's Ctrl-C handler
    installed: a shell starts background jobs with SIGINT ignored, and Python then never raises
    KeyboardInterrupt."""
    import os
    import subprocess
    import sys
    import time

    cfg = _setup(tmp_path)
    cfg.write_text(cfg.read_text().replace("ml_evaluations = 150", "ml_evaluations = 100000"))
    boot = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "runpy.run_module('bayescal', run_name='__main__', alter_sys=True)")
    proc = subprocess.Popen([sys.executable, "-c", boot, "run", str(cfg), "--quiet"],
                            stderr=subprocess.PIPE, text=True)
    started = tmp_path / "run" / "optimize" / "started.json"
    deadline = time.monotonic() + 120
    while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), proc.stderr.read() if proc.poll() is not None else "no start in 120 s"
    os.kill(proc.pid, sig)
    err = proc.communicate(timeout=120)[1]
    return proc.returncode, err


def test_ctrl_c_stops_with_a_message_not_a_traceback(tmp_path):
    """SIGINT during a run: exit 130 and one line on what is kept, no traceback."""
    import signal

    code, err = _signal_mid_run(tmp_path, signal.SIGINT)
    assert code == 130, err
    assert "interrupted; every finished model run and chain step is kept" in err
    assert "Traceback" not in err


def test_ctrl_c_on_worker_processes_leaves_no_traceback_and_no_leak_report(tmp_path):
    """Ctrl-C at a terminal reaches the whole process group: with ``run.workers = 2`` the pool's
    workers (some perhaps still starting) get it too. One line, exit 130 -- no worker's traceback,
    no "leaked semaphore" report from multiprocessing -- and the run resumes to its end."""
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = _setup(tmp_path, 'form = "dict", sleep = 0.3',
                 extra='route = "emulator"\nrefine_rounds = 1\nn_new = 2\n'
                       '[design]\nn_runs = 16\nbatch_size = 1')
    cfg.write_text(cfg.read_text().replace('seed = 3', 'seed = 3\nworkers = 2'))
    boot = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "runpy.run_module('bayescal', run_name='__main__', alter_sys=True)")
    argv = [sys.executable, "-c", boot, "run", str(cfg), "--quiet"]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, start_new_session=True)
    members = tmp_path / "run" / "optimize" / "design" / "members"
    deadline = time.monotonic() + 120
    while not any(members.glob("member_*.nc")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    err = proc.communicate(timeout=120)[1]
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "leaked" not in err, err
    assert err.strip().startswith("bayescal: interrupted") and len(err.strip().splitlines()) == 1, err
    done = len(list(members.glob("member_*.nc")))
    assert 0 < done < 16
    assert main(["run", str(cfg), "--quiet", "--until", "optimize"]) == 0
    assert len(list(members.glob("member_*.nc"))) == 16


def test_sigterm_unwinds_like_ctrl_c_and_the_run_resumes(tmp_path):
    """SIGTERM (``scancel``, a SLURM time limit) during a run: exit 143 and the same one line on
    what is kept, no traceback; the run directory then plans a resume. ``main`` called in a
    process restores the SIGTERM handler it found."""
    import signal

    from bayescal.workflows import load_config, make_context

    code, err = _signal_mid_run(tmp_path, signal.SIGTERM)
    assert code == 143, err
    assert "terminated (SIGTERM); every finished model run and chain step is kept" in err
    assert "Traceback" not in err
    cfg = tmp_path / "site.toml"
    plan = {p.name: p.status for p in make_context(load_config(cfg), tmp_path / "run", progress=False).plan()}
    assert plan["optimize"] == "resume"
    before = signal.getsignal(signal.SIGTERM)
    assert main(["check", str(cfg)]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


def test_emulator_route_keeps_emulator_error_apart_from_discrepancy(tmp_path):
    """A twin without model error: the discrepancy estimated from the model run at the optimum is
    ~0 (not the emulator's error), the emulator's sd is reported beside it (not added to the
    likelihood: refinement runs the model where the posterior is), and the posterior still holds
    the truth."""
    cfg = _setup(tmp_path, 'form = "dict"', extra='route = "emulator"\nrefine_rounds = 1\nn_new = 4\n'
                 '[design]\nn_runs = 12\nbatch_size = 4')
    cfg.write_text(cfg.read_text().replace('discrepancy = "none"', 'discrepancy = "estimate"'))
    assert main(["run", str(cfg), "--quiet", "--until", "posterior"]) == 0
    err = json.loads((tmp_path / "run" / "posterior" / "error_model.json").read_text())[0]
    assert err["discrepancy"] < 0.1 * err["sigma_median"]  # sigma 0.3; the model has no error
    assert err["emulator_sd_median"] > 0
    assert len(list((tmp_path / "run" / "posterior" / "optimum_run" / "members").glob("*.nc"))) == 1
    import arviz as az

    post = az.from_netcdf(str(tmp_path / "run" / "posterior" / "posterior.nc")).posterior
    draws = np.stack([post["a"].values.ravel(), post["b"].values.ravel()], axis=1)
    assert np.all(np.abs(draws.mean(0) - [2.5, -0.4]) < 4 * draws.std(0) + 0.02)


def test_an_edited_external_program_or_data_file_it_names_changes_the_stages_keys(tmp_path):
    """Files an external model's command names (its script, a data file) are inputs of the stages
    that run it, as a python model's source file is: editing one reruns them."""
    from bayescal.workflows import load_config, make_context

    cfg = _setup(tmp_path)
    (tmp_path / "params.template").write_text("a = {{ a }}\nb = {{ b }}\n")
    (tmp_path / "space.toml").write_text('[parameters.a]\ndefault = 2.0\nlower = 0.0\nupper = 5.0\n'
                                         '[parameters.b]\ndefault = 0.0\nlower = -2.0\nupper = 2.0\n')
    (tmp_path / "prog.py").write_text("print('v1')\n")
    (tmp_path / "forcing.csv").write_text("1,2\n")
    model = ('kind = "external"\n'
             'command = ["python3", "prog.py", "forcing.csv", "{param_file}", "{output}"]\n'
             'template = "params.template"\nparameters_file = "space.toml"\ntimeout = 30.0')
    cfg.write_text(cfg.read_text().replace('kind = "python"\nentry_point = "mymodel:Model"\noptions = {  }',
                                           model))

    def keys():
        return {k: v[0] for k, v in make_context(load_config(cfg), tmp_path / "run").engine.keys().items()}

    before = keys()
    (tmp_path / "prog.py").write_text("print('v2')\n")
    after_program = keys()
    (tmp_path / "forcing.csv").write_text("1,3\n")
    after_data = keys()
    for name in ("optimize", "posterior", "propagate"):
        assert len({before[name], after_program[name], after_data[name]}) == 3, name


def test_an_entry_point_is_the_file_the_config_names_as_it_is_now(tmp_path):
    """In one session (a notebook, a test run) two configs' ``mymodel.py`` in two folders are two
    models, and an edited one is imported afresh: the stage keys hash the file on disk, so the
    code that runs must be that file's. An installed module is left alone."""
    from bayescal.workflows.own_model import import_entry_point, model_source_files

    def folder(name: str, value: int):
        d = tmp_path / name
        d.mkdir(exist_ok=True)
        (d / "bcal_entry_mod.py").write_text(f"def make():\n    return {value}\n")
        return {"kind": "python", "entry_point": "bcal_entry_mod:make", "python_path": [str(d)],
                "command": []}

    a, b = folder("a", 1), folder("b", 2)
    try:
        assert import_entry_point(a)() == 1
        assert import_entry_point(b)() == 2
        assert model_source_files({"model": b}) == [str(tmp_path / "b" / "bcal_entry_mod.py")]
        assert model_source_files({"model": a}) == [str(tmp_path / "a" / "bcal_entry_mod.py")]
        (tmp_path / "a" / "bcal_entry_mod.py").write_text("def make():\n    return 'edited, longer'\n")
        assert import_entry_point(a)() == "edited, longer"
        assert import_entry_point(a) is import_entry_point(a)  # unchanged: not imported again
        json_loads = import_entry_point({"kind": "python", "entry_point": "json:loads",
                                         "python_path": [str(tmp_path / "a")], "command": []})
        assert json_loads is json.loads
    finally:
        sys.modules.pop("bcal_entry_mod", None)
        for d in ("a", "b"):
            while str(tmp_path / d) in sys.path:
                sys.path.remove(str(tmp_path / d))
