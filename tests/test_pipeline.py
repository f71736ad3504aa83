"""The one-command pipeline: config validation, end to end, resume after a kill, report in Chromium."""

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.workflows import STAGES, ConfigError, GlobalContext, load_config, validate_config

TINY = Path(__file__).parent / "data" / "tiny.toml"
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cli):
    """The tiny config run end to end once, by the ``bayescal run`` command in a child process."""
    run_dir = tmp_path_factory.mktemp("tiny") / "run"
    t0 = time.perf_counter()
    proc = cli("run", str(TINY), "--run-dir", str(run_dir))
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    return run_dir, time.perf_counter() - t0, out


# ------------------------------------------------------------------------------ config
def _write(tmp_path, text: str) -> Path:
    p = tmp_path / "c.toml"
    p.write_text(TINY.read_text() + "\n" + text)
    return p


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("[bogus]\nx = 1", "[bogus]"),
        ("[emulator]\nkernel = 'rbf'", "emulator.kernel"),
        ("[report]\ntitle = 3", "report.title"),
        ("[emulator]\nvariance_threshold = 1.5", "emulator.variance_threshold"),
    ],
)
def test_invalid_config_named_before_any_run(tmp_path, capsys, extra, key):
    cfg = _write(tmp_path, extra)
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        load_config(cfg)
    run_dir = tmp_path / "never"
    assert main(["run", str(cfg), "--run-dir", str(run_dir), "--quiet"]) == 2
    assert key in capsys.readouterr().err
    assert not run_dir.exists()


def test_config_errors_each_kind(tmp_path):
    base = load_config(TINY)
    raw = {s: {k: v for k, v in sec.items() if v is not None} for s, sec in base.items()}

    def bad(section, key, value, match):
        r = json.loads(json.dumps(raw))
        r[section][key] = value
        with pytest.raises(ConfigError, match=match):
            validate_config(r, base=tmp_path)

    bad("design", "n_runs", 3, "design.n_runs")  # bounds
    bad("model", "start", 1950, "model.start")
    bad("model", "end", 1995, "model.start")  # end before start
    bad("observations", "truth", {"gamma_w": 1.4}, "observations.truth.gamma_w")
    bad("parameters", "free", ["vmax[GRASS-C3]", "not_a_parameter"], "not_a_parameter")
    bad("model", "parameters_file", "missing_space.toml", "model.parameters_file.*missing_space.toml")
    bad("optimize", "method", "simplex", "optimize.method")
    bad("optimize", "misfit", "chi2", "optimize.misfit")
    bad("observations", "gcb_errors", "partly", "observations.gcb_errors")
    bad("model", "n_cells", True, "model.n_cells")  # a bool is not an integer
    bad("propagate", "table_years", [2003, 2030], "propagate.table_years")
    bad("observations", "variables", ["gpp", "albedo"], "albedo")
    bad("posterior", "n_walkers", 3, "posterior.n_walkers.*>= 8")  # 4 calibrated values
    bad("posterior", "n_walkers", 9, "posterior.n_walkers.*even")
    bad("model", "n_cells", 5, "model.n_cells.*>= 18")
    bad("parameters", "free", ["vmax", "vmax[GRASS-C3]"], r"'parameters.free' names 'vmax\[GRASS-C3\]' as")
    bad("parameters", "candidates", ["gamma_w", "gamma_w"], "'parameters.candidates' names 'gamma_w' twice")
    bad("posterior", "hm_cutoff", float("nan"), "'posterior.hm_cutoff' must be a finite number")
    bad("model", "grid_seed", -1, "'model.grid_seed' must be >= 0")
    bad("model", "n_cells", 10**12, "'model.n_cells' must be <= 100,000")
    bad("observations", "variables", ["gpp", "gpp"], r"'observations.variables' names \['gpp'\] more than")
    bad("model", "ramp_start", 1800, "model.ramp_start.*>= 1850")
    bad("run", "seed", -1, "run.seed")
    bad("observations", "variables", [], "observations.variables")
    bad("observations", "sigma_floor", -1.0, "observations.sigma_floor")
    bad("posterior", "left_out", "ignore", "posterior.left_out")
    bad("posterior", "left_out_runs", 4, "posterior.left_out_runs")
    bad("posterior", "max_steps", 100, "posterior.max_steps")
    (tmp_path / "spaces").mkdir()
    bad("model", "parameters_file", "spaces", r"'model.parameters_file': .*spaces is a folder, not a file")
    products = [{"variable": "GPP", "format": "netcdf", "file": str(tmp_path / "spaces"),
                 "relative_sigma": 0.1}]
    r = json.loads(json.dumps(raw))
    r["observations"].update(twin=False, products=products, variables=["gpp"])
    r["observations"].pop("truth", None)
    with pytest.raises(ConfigError, match=r"'observations.products\[0\].file': .*spaces is a folder"):
        validate_config(r, base=tmp_path)
    (tmp_path / "gpp.nc").write_text("")
    products[0]["file"] = str(tmp_path / "gpp.nc")
    r["observations"].update(products=products, variables=["GPP"])
    with pytest.raises(ConfigError, match=r"products\[0\].variable': the embedded model has no variable "
                                          r"'GPP' \(with units\); did you mean 'gpp'\?; it has \["):
        validate_config(r, base=tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "broken.toml").write_text("[run\nname = 1")
    with pytest.raises(ConfigError, match="broken.toml.*invalid TOML"):
        load_config(tmp_path / "broken.toml")


@pytest.mark.parametrize(("extra", "said"), [
    ("[posterior]\nroute = 'emulator'", "'posterior.route' is not read by the global workflow (it is for"),
    ("[emulator_screen]\nkeep = 5", "'emulator_screen.keep' is not read by the global workflow"),
])
def test_a_key_its_workflow_does_not_read_is_named_before_any_run(tmp_path, capsys, extra, said):
    """A key set away from its default that no stage of the config's workflow reads, on any of
    its routes, would change nothing: named with the file; a key of another route is accepted."""
    cfg = tmp_path / "c.toml"
    section, line = extra.split("\n")
    text = TINY.read_text()
    cfg.write_text(text.replace(section, extra, 1) if section in text else f"{text}\n{extra}\n")
    assert main(["check", str(cfg), "--no-model-run"]) == 2
    err = capsys.readouterr().err
    assert said in err and str(cfg) in err
    other_route = TINY.read_text().replace("[posterior]", "[posterior]\nhm_waves = 2", 1)
    cfg.write_text(other_route)  # read by posterior.method = "history_matching", not this config's
    assert main(["check", str(cfg), "--no-model-run"]) == 0


def test_unreadable_configs_are_named_errors_not_tracebacks(tmp_path, capsys):
    """A directory, a non-UTF-8 file and a parameters_file that is not TOML: exit 2, key named."""
    (tmp_path / "adir").mkdir()
    (tmp_path / "latin1.toml").write_bytes("[run]\nname = 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "space.toml").write_text("this is [not toml")
    (tmp_path / "uses_space.toml").write_text("[model]\nparameters_file = 'space.toml'\n")
    cases = [("adir", "not a file"), ("latin1.toml", "not UTF-8"),
             ("uses_space.toml", "model.parameters_file.*space.toml")]
    for name, match in cases:
        with pytest.raises(ConfigError, match=match):
            load_config(tmp_path / name)
        assert main(["check", str(tmp_path / name)]) == 2
        err = capsys.readouterr().err
        assert "configuration error" in err and "Traceback" not in err


def test_a_partial_parameters_file_narrows_the_embedded_models_space(tmp_path):
    """As for DALEC and a python model: a file of the values it changes (``[parameters.gamma_w]
    upper = 1.0``) narrows them and keeps every other value of the built-in space; widening is a
    named error; the whole space written out (``to_toml``) may widen, as before."""
    from bayescal.models.landcarbon import default_parameter_space
    from bayescal.parameters import ParameterSpace
    from bayescal.workflows.validate import model_space

    builtin = default_parameter_space()
    (tmp_path / "narrow.toml").write_text("[parameters.gamma_w]\nupper = 1.0\ndefault = 0.5\n")
    (tmp_path / "wide.toml").write_text("[parameters.gamma_w]\nupper = 3.0\n")
    whole = builtin.to_dict()
    whole["parameters"]["gamma_w"]["upper"] = 3.0
    ParameterSpace.from_dict(whole).to_toml(tmp_path / "whole.toml")

    def space(name):
        cfg = {"run": {"output": str(tmp_path / "run")}, "model": {"parameters_file": str(tmp_path / name)}}
        return model_space(validate_config(cfg))

    narrow = space("narrow.toml")
    assert narrow.all_labels == builtin.all_labels
    k = narrow.all_labels.index("gamma_w")
    got = (narrow.all_upper[k], narrow.all_default[k], narrow.all_lower[k])
    assert got == (1.0, 0.5, builtin.all_lower[k])
    others = np.arange(len(builtin.all_labels)) != k
    np.testing.assert_array_equal(narrow.all_upper[others], builtin.all_upper[others])
    with pytest.raises(ConfigError, match=r"wide.toml: gamma_w's bounds \[0, 3\] leave the embedded model's "
                                          r"range \[0, 1.5\] .* can narrow the bounds, not widen them"):
        space("wide.toml")
    assert space("whole.toml").all_upper[k] == 3.0


def test_twin_truth_drawn_from_the_prior_is_uniform_on_the_calibrated_values_only():
    """``observations.truth_from_prior``: each calibrated value's truth is a uniform draw on its
    unit cube (what simulation-based calibration assumes), reproducible from ``twin_seed``; the
    values not calibrated stay at their defaults and ``observations.truth`` still overrides."""
    from scipy import stats

    from bayescal.workflows.config import truth_theta

    base = load_config(TINY)
    space = GlobalContext(base, "unused", progress=False).full_space
    full = space.unfix()
    free = full.only(base["parameters"]["free"]).labels
    idx = [full.all_labels.index(label) for label in free]
    rest = np.setdiff1d(np.arange(len(full.all_labels)), idx)
    default_u = full.to_unit(space.all_default)
    draws = []
    for seed in range(40):
        cfg = json.loads(json.dumps(base))
        cfg["observations"].update(truth_from_prior=True, twin_seed=seed, truth={free[0]: 0.25})
        u = full.to_unit(truth_theta(cfg, space))
        np.testing.assert_array_equal(u, full.to_unit(truth_theta(cfg, space)))  # reproducible
        np.testing.assert_allclose(u[rest], default_u[rest])
        assert u[idx[0]] == pytest.approx(0.25)
        draws.append(u[idx[1:]])
    draws = np.concatenate(draws)
    assert stats.kstest(draws, "uniform").pvalue > 1e-3  # a uniform draw, not the defaults
    assert np.unique(draws).size == draws.size


def test_twin_summary_noise_is_the_likelihoods_gaussian_error(tmp_path):
    """``observations.summary_noise``: the observed summaries are the truth run's plus N(0, sigma^2)
    noise (reproducible from ``twin_seed``); without it they are the products' mean, whose
    symmetric biases leave it within a small fraction of sigma of the truth."""
    from scipy import stats

    base = load_config(TINY)
    z, z_products = [], []
    for seed in range(4):
        cfg = json.loads(json.dumps(base))
        cfg["observations"].update(twin_seed=seed, summary_noise=True)
        ctx = GlobalContext(cfg, tmp_path / f"r{seed}", progress=False)
        y, sigma = ctx.observed()
        truth = np.reshape(ctx.summaries(ctx.twin()[1]), -1)
        z.append((y - truth) / sigma)
        again = GlobalContext(cfg, tmp_path / f"r{seed}", progress=False).observed()[0]
        np.testing.assert_allclose(y, again, rtol=1e-13)  # the second reads the twin back from its files
        cfg["observations"]["summary_noise"] = False
        y0, sigma0 = GlobalContext(cfg, tmp_path / f"p{seed}", progress=False).observed()
        np.testing.assert_array_equal(sigma0, sigma)
        z_products.append((y0 - truth) / sigma)
    z = np.concatenate(z)
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert 0.5 < np.mean(z**2) < 2.0
    assert np.mean(np.concatenate(z_products) ** 2) < 0.1


def test_example_configs_are_valid():
    for name in ("global_twin.toml", "global_gcb.toml"):
        assert main(["check", str(ROOT / "examples" / name)]) == 0


def test_help_explains_every_stage(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for s in STAGES:
        assert s in text


# ------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_tiny_config_end_to_end(tiny_run):
    run_dir, wall, out = tiny_run
    for s in STAGES:
        assert json.loads((run_dir / s / "stage.json").read_text())["key"]
    assert "total" in out and "report.html" in out
    # progress of the long steps: the optimiser's runs against its budget (DFO-LS: a line every
    # 5 s, and the last), the model ensembles
    lines = re.findall(r"optimize: (\d+) of 12 runs, best misfit ([\d.e+-]+)", out)
    assert lines and int(lines[-1][0]) == 12, out[:3000]
    best = [float(b) for _, b in lines]
    assert best == sorted(best, reverse=True)  # the best so far
    idata = az.from_netcdf(str(run_dir / "posterior" / "posterior.nc"))
    from bayescal.posterior import get_group, group_names  # idata.groups(): a method in 0.2x, a tuple in 1.x

    assert {"posterior", "sample_stats", "prior", "log_likelihood", "posterior_predictive", "observed_data",
            "constant_data"} <= set(group_names(idata))
    assert "gpp:" in str(get_group(idata, "observed_data")["summary"].values[0])
    assert (run_dir / "posterior" / "diagnostics.nc").exists()
    assert len(list((run_dir / "figures").glob("*.png"))) >= 9
    # every value the twin truth moves is calibrated here, and each truth is inside its interval
    pc = json.loads((run_dir / "propagate" / "summary.json").read_text())["parameter_coverage"]
    assert pc["truth_moved_left_out"] == []
    assert pc["fraction_inside_90"] == 1.0, pc["outside_90"]
    # the prior predictive ran beside the posterior draws; the data narrow the GPP band
    widths = json.loads((run_dir / "propagate" / "summary.json").read_text())["band_widths"]
    prior = xr.load_dataset(run_dir / "propagate" / "outputs.nc")
    prior = prior.isel(member=np.flatnonzero(prior["set"].values == "prior"))
    assert prior.sizes["member"] == 20 and prior["u"].std("member").min() > 0.15  # uniform draws
    assert widths["gpp_global"]["ratio"] < 0.8, widths
    # the model-run checks of the likelihood's summaries: the posterior draws' own runs, in sigma
    checks = xr.load_dataset(run_dir / "propagate" / "checks.nc")
    assert checks.attrs["n_posterior"] == 20 and checks.attrs["n_prior"] >= 15
    from bayescal.run.ensemble import EnsembleStore

    ctx = GlobalContext(load_config(TINY), run_dir, progress=False)
    ens = EnsembleStore(run_dir / "propagate" / "ensemble").load()
    sets = xr.load_dataset(run_dir / "propagate" / "outputs.nc")["set"].values
    y = ctx.summaries(ens.isel(member=np.flatnonzero(sets == "posterior")))
    obs, sigma = ctx.observed()
    np.testing.assert_allclose(checks["residual"], (y.mean(0) - obs) / sigma, rtol=1e-9)
    q05, q95 = np.quantile(y, [0.05, 0.95], axis=0)
    np.testing.assert_allclose(checks["predictive_ratio"], (q95 - q05) / (2 * 1.6448536 * sigma), rtol=1e-6)
    page = (run_dir / "report.html").read_text()
    assert "posterior of prior predictive" in page and "Checked by model runs" in page
    assert "twin truth inside the 90 % posterior interval: 4 of 4" in page
    assert "Seiler's alternative sets" in page  # Seiler's equifinality procedure beside the posterior's
    assert (run_dir / "equifinality" / "alternatives_seiler.nc").exists()
    top, pc = (xr.load_dataset(run_dir / "equifinality" / f) for f in ("top_fraction_pca.nc", "pca.nc"))
    assert list(top["parameter"].values) == list(pc["parameter"].values)  # the values' labels, both
    # the directions the data fix: their sd ratios are those of the posterior's whitened covariance
    dirs = xr.load_dataset(run_dir / "equifinality" / "directions.nc")
    from bayescal.workflow.rundir import RunDir

    rd = RunDir(run_dir)
    z = rd.posterior_u(rd.space()).transpose("sample", "parameter").values / np.sqrt(1 / 12)
    np.testing.assert_allclose(np.sort(dirs["sd_ratio"].values) ** 2,
                               np.linalg.eigvalsh(np.cov(z, rowvar=False)), rtol=1e-6, atol=1e-12)
    assert f"The data fix {dirs.attrs['n_constrained']} of {dirs.sizes['parameter']} directions" in page
    # Seiler Figs. 7-8: AMBER scores of the default, the optimum and the five alternatives
    scores = xr.load_dataset(run_dir / "propagate" / "scores.nc")
    assert sorted(set(scores["set"].values)) == ["default", "optimised", "seiler_alternative"]
    assert "(Seiler Fig. 7)" in page and "(Seiler Fig. 8)" in page


@pytest.mark.slow
def test_open_run_gives_the_run_as_xarray_and_arviz_objects(tiny_run, tmp_path):
    """The notebook API reads the run directory only: the same posterior, bands and records."""
    import bayescal
    from bayescal.posterior import get_group, load_inference_data
    from bayescal.workflow.rundir import RunDirError

    run_dir, _, _ = tiny_run
    res = bayescal.open_run(run_dir)
    ref = get_group(load_inference_data(run_dir / "posterior" / "posterior.nc"), "posterior")
    xr.testing.assert_identical(get_group(res.posterior, "posterior"), ref)
    assert set(res.diagnostics["r_hat"].dims) == {"parameter"}
    assert res.bands.equals(xr.load_dataset(run_dir / "propagate" / "bands.nc"))
    assert [r.name for r in res.records] == list(STAGES[:-1]) or [r.name for r in res.records] == list(STAGES)
    assert res.space.labels == bayescal.workflow.rundir.RunDir(run_dir).space().labels
    with pytest.raises(RunDirError, match="config.json"):
        bayescal.open_run(tmp_path)


def test_emulator_training_on_optimiser_runs_less_the_worst(tiny_run):
    """Seiler: the misfit emulator learns from the optimiser's runs, less failed and the worst 25 %."""
    from bayescal.workflows.global_.stages import _misfit_training

    run_dir, _, _ = tiny_run
    h = xr.load_dataset(run_dir / "optimize" / "history.nc")
    good = (h["status"].values == "done") & (h["misfit"].values > 0)
    u_h, first = np.unique(h["u"].values[good], axis=0, return_index=True)
    m_h = h["misfit"].values[good][first]
    cfg = load_config(TINY)
    cfg["emulator"] |= {"training": "optimize", "drop_worst": 0.25}
    u, logm = _misfit_training(GlobalContext(cfg, run_dir, progress=False))
    assert len(u) == int(np.ceil(0.75 * len(u_h)))
    np.testing.assert_allclose(np.sort(logm), np.log(np.sort(m_h)[: len(u)]), rtol=1e-14)
    assert all((row == u_h).all(axis=1).any() for row in u)  # only optimiser runs
    cfg["emulator"] |= {"training": "all", "drop_worst": 0.0}
    u_all, _ = _misfit_training(GlobalContext(cfg, run_dir, progress=False))
    n_design = int((xr.load_dataset(run_dir / "design" / "training.nc")["status"] == "done").sum())
    assert len(u_h) < len(u_all) <= len(u_h) + n_design
    # Seiler's five alternatives went through the model in propagate
    sets = xr.load_dataset(run_dir / "propagate" / "outputs.nc")["set"].values
    assert (sets == "seiler_alternative").sum() == 5


@pytest.mark.slow
def test_bands_contain_truth_and_table3_differences(tiny_run):
    run_dir, _, _ = tiny_run
    cfg = load_config(TINY)
    pipe = GlobalContext(cfg, run_dir, progress=False)
    _, truth = pipe.twin()
    bands = xr.load_dataset(run_dir / "propagate" / "bands.nc")
    for v in ("gpp_global", "nbp_global"):
        lo, hi, t = xr.align(bands[v].sel(quantile=0.05), bands[v].sel(quantile=0.95), truth[v])
        inside = float(((t >= lo) & (t <= hi)).mean())
        assert inside >= 0.9, (v, inside)
        assert (hi > lo).all()  # a real band, not a line
    table = xr.load_dataset(run_dir / "propagate" / "table3.nc")
    outputs = xr.load_dataset(run_dir / "propagate" / "outputs.nc")
    y0, y1 = cfg["propagate"]["table_years"]
    sets = outputs["set"].values
    for v in table["variable"].values:
        means = outputs[v].sel(year=slice(y0, y1)).mean("year")
        d = float(means[sets == "default"][0])
        o = float(means[sets == "optimised"][0])
        assert float(table["mean"].sel(row="default", variable=v)) == pytest.approx(d, rel=1e-12)
        assert float(table["difference"].sel(variable=v)) == pytest.approx(o - d, rel=1e-9, abs=1e-12)
        pct = float(table["difference_percent"].sel(variable=v))
        assert pct == pytest.approx(100 * (o - d) / d, rel=1e-9)
    csv = (run_dir / "propagate" / "table3.csv").read_text()
    assert "optimised - default (% of default)" in csv


@pytest.mark.slow
def test_rerun_reuses_and_changed_input_reruns_from_there(tiny_run, tmp_path):
    run_dir, _, _ = tiny_run
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = load_config(TINY)
    recs = GlobalContext(cfg, copy, progress=False).run(STAGES[:-1])
    assert [r.status for r in recs] == ["reused"] * (len(STAGES) - 1)
    cfg["propagate"]["n_draws"] = 12
    recs = GlobalContext(cfg, copy, progress=False).run(STAGES[:-1])
    status = {r.name: r.status for r in recs}
    assert [status[s] for s in STAGES[:6]] == ["reused"] * 6
    assert status["propagate"] == "ran"


def _finished_until(ref_dir: Path, run_dir: Path, stage: str) -> None:
    """``run_dir``: a copy of the uninterrupted run with the stages before ``stage`` finished and
    ``stage`` and every later one not started, as a run stopped just before ``stage`` leaves it."""
    shutil.copytree(ref_dir, run_dir)
    for later in STAGES[STAGES.index(stage):]:
        shutil.rmtree(run_dir / later)
    shutil.rmtree(run_dir / "figures")
    (run_dir / "report.html").unlink()


@pytest.mark.slow
def test_killed_during_posterior_resumes_with_same_result(tiny_run, cli, tmp_path):
    """SIGKILL as the posterior stage starts; the resumed run reuses the finished stages and its
    posterior and Table 3 equal the uninterrupted run's bit for bit."""
    ref_dir, _, _ = tiny_run
    run_dir = tmp_path / "killed"
    _finished_until(ref_dir, run_dir, "posterior")
    before = {s: (run_dir / s / "stage.json").stat().st_mtime_ns for s in STAGES[:4]}
    proc = cli("run", str(TINY), "--run-dir", str(run_dir), "--until", "propagate")
    marker = run_dir / "posterior"
    t0 = time.perf_counter()
    while not marker.exists():
        assert proc.poll() is None, "pipeline finished before the posterior stage could be killed"
        assert time.perf_counter() - t0 < 120
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (run_dir / "posterior" / "stage.json").exists()
    proc = cli("run", str(TINY), "--run-dir", str(run_dir), "--until", "propagate")
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    for s in STAGES[:4]:
        assert f"[{s}] up to date" in out
        assert (run_dir / s / "stage.json").stat().st_mtime_ns == before[s]
    for group in ("posterior", "sample_stats", "observed_data", "log_likelihood"):  # bit for bit
        a, b = (xr.load_dataset(d / "posterior" / "posterior.nc", group=group) for d in (ref_dir, run_dir))
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{group}/{v}")
    ta = xr.load_dataset(ref_dir / "propagate" / "table3.nc")
    tb = xr.load_dataset(run_dir / "propagate" / "table3.nc")
    np.testing.assert_array_equal(ta["mean"].values, tb["mean"].values)


@pytest.mark.slow
def test_killed_during_refinement_repeats_no_finished_run(tiny_run, cli, tmp_path):
    """SIGKILL once refinement runs are stored; the resumed stage runs only what was missing, and
    its record counts all its runs."""
    run_dir = tmp_path / "killed"
    _finished_until(tiny_run[0], run_dir, "posterior")
    proc = cli("run", str(TINY), "--run-dir", str(run_dir), "--until", "posterior")
    stores = run_dir / "posterior"
    t0 = time.perf_counter()
    while not any((stores / "refine").glob("round0/members/member_*.nc")):
        assert proc.poll() is None, "pipeline finished before refinement runs could be seen"
        assert time.perf_counter() - t0 < 240
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (stores / "stage.json").exists()
    finished = {p: p.stat().st_mtime_ns for p in stores.glob("**/members/member_*.nc")}
    cfg = load_config(TINY)
    total = cfg["posterior"]["left_out_runs"] + cfg["posterior"]["n_new"] * cfg["posterior"]["refine_rounds"]
    assert 0 < len(finished) <= total
    proc = cli("run", str(TINY), "--run-dir", str(run_dir), "--until", "posterior")
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    # the finished runs are not made again (their files untouched); the stage's record counts every
    # run it holds, those of the killed invocation included (the report's total is the stores')
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert json.loads((stores / "stage.json").read_text())["runs"] == total
    assert len(list(stores.glob("**/members/member_*.nc"))) == total
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # none written again


def _member_files(run_dir: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in run_dir.glob("**/members/member_*.nc")}


@pytest.mark.slow
def test_sigkill_in_every_stage_then_resume_equals_uninterrupted(tiny_run, cli, tmp_path):
    """Fault injection: SIGKILL at a random moment inside each stage in turn, resume each time.

    The final run directory holds the same results as an uninterrupted run, and no member file
    finished before a kill is ever written again (no finished model run is repeated).
    """
    ref_dir, _, _ = tiny_run
    run_dir = tmp_path / "faults"
    rng = np.random.default_rng(17)
    seen: dict[str, tuple[int, int]] = {}
    hit = []
    for stage in STAGES:
        proc = cli("run", str(TINY), "--run-dir", str(run_dir), "--quiet")
        started = run_dir / stage / "started.json"
        t0 = time.perf_counter()
        while not started.exists() and proc.poll() is None and time.perf_counter() - t0 < 240:
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        hit.append(not (run_dir / stage / "stage.json").exists())
        now = _member_files(run_dir)
        for name, ident in seen.items():
            assert now.get(name) == ident, f"{name} was run again after the kill in {stage}"
        seen = now
    proc = cli("run", str(TINY), "--run-dir", str(run_dir), "--quiet")
    out, _ = proc.communicate()
    assert proc.returncode == 0, out
    for name, ident in seen.items():
        assert _member_files(run_dir).get(name) == ident, f"{name} was run again"
    assert sum(hit) >= 4, dict(zip(STAGES, hit, strict=True))  # most kills land inside their stage
    assert set(_member_files(run_dir)) == set(_member_files(ref_dir))
    for group in ("posterior", "sample_stats", "observed_data", "log_likelihood"):  # bit for bit
        a, b = (xr.load_dataset(d / "posterior" / "posterior.nc", group=group) for d in (ref_dir, run_dir))
        for v in a.data_vars:
            np.testing.assert_array_equal(a[v].values, b[v].values, err_msg=f"{group}/{v}")
    for rel in ("design/training.nc", "optimize/history.nc", "posterior/refinement.nc",
                "equifinality/alternatives.nc", "propagate/table3.nc", "propagate/bands.nc"):
        clock = ["time", "wall_time"]  # wall-clock seconds differ between any two runs
        xr.testing.assert_identical(xr.load_dataset(ref_dir / rel).drop_vars(clock, errors="ignore"),
                                    xr.load_dataset(run_dir / rel).drop_vars(clock, errors="ignore"))
    assert (run_dir / "report.html").exists()


@pytest.mark.slow
def test_report_reads_only_a_copied_run_directory(tiny_run, tmp_path, monkeypatch):
    """``bayescal report`` on a run directory moved elsewhere: same report, no model run."""
    from bayescal.models.landcarbon import LandCarbonModel

    ref_dir, _, _ = tiny_run
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(ref_dir, moved)
    (moved / "report.html").unlink()

    def no_runs(*args, **kwargs):
        raise AssertionError("the report ran the model")

    monkeypatch.setattr(LandCarbonModel, "simulate", no_runs)
    monkeypatch.setattr(LandCarbonModel, "__call__", no_runs)
    assert main(["report", str(moved)]) == 0
    text = (moved / "report.html").read_text()
    assert "twin truth inside the 90 % posterior interval" in text
    assert (moved / "twin" / "products.nc").exists() and (moved / "twin" / "truth.nc").exists()


# --------------------------------------------------------------------------- report
def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None and not os.environ.get("CI_REQUIRE_CHROMIUM"),
                    reason="no Chromium (.ci/run installs Debian's chromium)")
def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    run_dir, _, _ = tiny_run
    chrome = _chromium()
    assert chrome is not None, "CI requires Chromium"
    page = (run_dir / "report.html").resolve()
    text = page.read_text()
    assert "src='data:image/png;base64," in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)  # self-contained: nothing fetched
    common = [chrome, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0",
              f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    n_figs = len(list((run_dir / "figures").glob("*.png")))
    assert f'data-figures="{n_figs}"' in dom.stdout
    assert f'data-figures-loaded="{n_figs}"' in dom.stdout  # every figure decoded by the browser
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert not console, console
    shot = tmp_path / "report.png"
    res = subprocess.run([*common, "--window-size=1200,4000", f"--screenshot={shot}", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and shot.stat().st_size > 50_000


def test_dask_cluster_runs_the_same_members(tiny_run, tmp_path):
    """``run.scheduler``: the runner's members go to a Dask cluster; the design equals the
    in-process one, and the stage records count the runs from the stores."""
    distributed = pytest.importorskip("distributed")
    run_dir, _, _ = tiny_run
    cfg = load_config(TINY)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        cfg["run"]["scheduler"] = cluster.scheduler_address
        pipe = GlobalContext(cfg, tmp_path / "dask", progress=False)
        recs = {r.name: r for r in pipe.run(("screen", "optimize", "design"))}
        pipe.close()
    ours = xr.load_dataset(tmp_path / "dask" / "design" / "training.nc")
    ref = xr.load_dataset(run_dir / "design" / "training.nc")
    np.testing.assert_array_equal(ours["u"], ref["u"])
    np.testing.assert_allclose(ours["summaries"], ref["summaries"], rtol=1e-12)
    np.testing.assert_allclose(ours["misfit"], ref["misfit"], rtol=1e-12)
    assert recs["design"].runs == 30 and recs["optimize"].runs == 12


class _DocsGlobalModel:
    """A global model as docs/own-model.md describes it, written by a user around their own code:
    a Dataset in another dimension order (time, cell, member), the older ``failed``/``failure``
    names, no ``simulate`` method, and a run that raises when ``gamma_w`` is near its upper bound."""

    def __init__(self, cfg):
        from bayescal.models import LandCarbonModel, make_drivers, make_grid

        m = cfg["model"]
        grid = make_grid(n_cells=m["n_cells"], seed=m["grid_seed"])
        drivers = make_drivers(grid, start=m["start"], end=m["end"], ramp_start=m["ramp_start"],
                               seed=m["grid_seed"])
        self._model = LandCarbonModel(grid=grid, drivers=drivers)
        self.space = self._model.space
        self._gamma = self.space.all_labels.index("gamma_w")
        self._limit = self.space.lower[self._gamma] + 0.95 * (self.space.upper[self._gamma]
                                                             - self.space.lower[self._gamma])

    form = "dataset"

    def __call__(self, theta):
        if (np.atleast_2d(theta)[:, self._gamma] > self._limit).any():
            raise RuntimeError("my model diverged")
        ds = self._model(theta)
        failed = ds["status"].values != "done"
        if self.form == "dict":  # plain arrays: (member, cell, time), (member, year), coordinates
            out = {v: ds[v].transpose("member", ...).values for v in ds.data_vars
                   if set(ds[v].dims) in ({"member", "cell", "time"}, {"member", "year"})}
            out.update(time=ds["time"].values, year=ds["year"].values, area=ds["area"].values,
                       biome=ds["biome"].values, failed=failed)
            self.units = {v: ds[v].attrs["units"] for v in out if v in ds and "units" in ds[v].attrs}
            return out
        ds = ds.drop_vars(["status", "reason"]).assign(
            failed=("member", failed), failure=("member", np.where(failed, "spin-up", "")))
        return ds.transpose("time", "cell", "member", ...)


@pytest.mark.parametrize("form", ["dataset", "dict"])
def test_a_global_model_written_from_the_docs_runs_through_the_stages(tmp_path, form):
    """The own-model contract on the global route: the twin, the optimiser and the design run on a
    user's model in any dimension order with the older failure names, or as plain arrays; the
    members that raise fail alone with the exception as their reason, and the others equal the
    embedded model's runs."""
    cfg = load_config(TINY)
    assert "gamma_w" in cfg["parameters"]["free"]
    model = _DocsGlobalModel(cfg)
    model.form = form
    ctx = GlobalContext(cfg, tmp_path / "run", model=model, progress=False)
    recs = ctx.run(("screen", "optimize", "design"))
    assert [r.status for r in recs] == ["ran"] * 3
    tr = xr.load_dataset(tmp_path / "run" / "design" / "training.nc")
    space = ctx.space()
    gamma = space.labels.index("gamma_w")
    raised = tr["u"].values[:, gamma] > 0.95
    assert raised.any() and (~raised).sum() >= 20
    assert set(tr["status"].values[raised]) == {"failed"}
    assert all("my model diverged" in r for r in tr["reason"].values[raised])
    assert (tr["status"].values[~raised] == "done").all()
    # a finished member's summaries equal the embedded model's at the same values
    i = int(np.flatnonzero(~raised)[0])
    embedded = GlobalContext(cfg, tmp_path / "other", progress=False)
    theta = space.expand(space.from_unit(tr["u"].values[i][None]))
    np.testing.assert_allclose(tr["summaries"].values[i], embedded.summaries(embedded.model(theta))[0],
                               rtol=1e-10)


def test_report_of_a_folder_that_is_not_a_run_is_refused_with_exit_2(tmp_path, capsys):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("mine")
    assert main(["report", str(tmp_path / "notes")]) == 2
    err = capsys.readouterr().err
    assert "not a bayescal run directory (no config.json)" in err and "Traceback" not in err
    assert (tmp_path / "notes" / "a.txt").read_text() == "mine"
    # a folder that is not there, and a config given for its run directory: said so
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    (tmp_path / "site.toml").write_text("[run]\n")
    assert main(["report", str(tmp_path / "site.toml")]) == 2
    err = capsys.readouterr().err
    assert "site.toml is a file (a config: 'bayescal run' it, or give its run directory)" in err


@pytest.mark.parametrize("key", ["candidates", "free"])
def test_an_empty_parameter_list_is_named_not_taken_for_all(tmp_path, key):
    """``candidates = []`` or ``free = []`` is refused by name (it used to mean "every value")."""
    text = re.sub(r"\nfree = \[.*\]", "", TINY.read_text(), count=1)
    p = tmp_path / "c.toml"
    p.write_text(text.replace("[parameters]", f"[parameters]\n{key} = []", 1))
    with pytest.raises(ConfigError, match=rf"'parameters.{key}' is an empty list"):
        load_config(p)


def test_out_of_memory_is_a_message_not_a_traceback(monkeypatch, capsys):
    """A MemoryError (a size of the config too large for the machine) ends with one line naming
    the sizes to lower, exit status 1; ``--debug`` raises it."""
    import bayescal.cli as cli_module

    def too_big(args):
        raise MemoryError("Unable to allocate 1016. GiB")

    monkeypatch.setattr(cli_module, "_check", too_big)
    assert main(["check", str(TINY)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bayescal: out of memory") and "design.n_runs" in err and "Traceback" not in err
    with pytest.raises(MemoryError):
        main(["--debug", "check", str(TINY)])


def test_the_twins_observations_are_the_same_in_the_invocation_that_made_them(tmp_path):
    """The observed summaries (truth plus noise) of the invocation that made ``twin/`` equal, bit
    for bit, those of every later invocation, which read it back: a run stopped after its first
    stage and resumed then equals an uninterrupted one (in memory they differed in the last bit,
    and with them the chain's log-likelihoods)."""
    text = TINY.read_text().replace("[observations]\n", "[observations]\nsummary_noise = true\n")
    (tmp_path / "tiny.toml").write_text(text)
    cfg = load_config(tmp_path / "tiny.toml")
    first = GlobalContext(cfg, tmp_path / "run", progress=False).observed()
    again = GlobalContext(cfg, tmp_path / "run", progress=False).observed()
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_twin_drawn_from_the_prior_is_made_again_for_other_free_values(tmp_path):
    """With truth_from_prior the truth depends on which values are free: another parameters.free
    makes the twin again (twin/ of the old free values was reused, silently)."""
    text = TINY.read_text().replace("[observations]\n", "[observations]\ntruth_from_prior = true\n")
    text = re.sub(r"\[observations.truth\]\n(.+\n)+", "", text)  # every free value's truth drawn
    (tmp_path / "tiny.toml").write_text(text)
    first = GlobalContext(load_config(tmp_path / "tiny.toml"), tmp_path / "run", progress=False).twin()[1]
    (tmp_path / "tiny.toml").write_text(text.replace('"kn[BDL-EVG]", ', ""))
    cfg = load_config(tmp_path / "tiny.toml")
    again = GlobalContext(cfg, tmp_path / "run", progress=False)
    np.testing.assert_array_equal(again.twin()[1]["theta"].values.ravel(), again.truth_theta())
    assert not np.array_equal(first["theta"].values, again.twin()[1]["theta"].values)
