"""A global model written from docs/own-model.md alone, unlike the embedded one in everything the
docs leave to the user: its own parameters (a per-PFT vector), cells and regions, a ``noleap``
calendar, GPP in g m-2 d-1 and no budget terms beyond ``gpp_global``/``nbp_global``; observed by a
CF file on a descending-latitude, 0-360 longitude grid in kg m-2 s-1. The route must read the
products in the model's units on its cells, check the config against its space, and run every
stage to the report."""

from __future__ import annotations

import inspect
import json
import re
import textwrap

import cftime
import numpy as np
import pytest
import xarray as xr

from bayescal.cli import main
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.workflows import ConfigError, GlobalContext, load_config, make_context

YEARS = np.arange(2001, 2007)
RES = 10.0


def _cells():
    lat, lon = np.meshgrid(np.arange(-55, 80, RES), np.arange(-175, 180, RES), indexing="ij")
    land = ((np.abs(lat) < 60) & (np.cos(np.deg2rad(lon) * 2) > 0.2)) | (lat > 45)
    lat, lon = lat[land], lon[land]
    area = 1.2e12 * np.cos(np.deg2rad(lat))
    biome = np.where(np.abs(lat) < 20, "tropics", np.where(np.abs(lat) < 45, "mid", "north"))
    frac = np.clip(0.5 + 0.4 * np.sin(np.deg2rad(lon)), 0.05, 0.95)  # share of PFT "tree"
    return lat, lon, area, biome, frac


class ToyGlobal:
    """``model(theta)`` and ``model.space``, nothing else (docs/own-model.md)."""

    def __init__(self, years=YEARS):
        self.years = years
        self.space = ParameterSpace([
            Parameter("vcmax", [50.0, 35.0], [20.0, 15.0], [100.0, 70.0], groups=["tree", "grass"],
                      units="umol m-2 s-1"),
            Parameter("t_opt", 22.0, 10.0, 32.0, units="degC"),
            Parameter("q10", 2.0, 1.2, 3.0),
        ])
        self.lat, self.lon, self.area, self.biome, self.frac = _cells()
        month = np.tile(np.arange(12), self.years.size)
        years = np.repeat(self.years, 12)
        self.time = [cftime.DatetimeNoLeap(int(y), int(m) + 1, 15) for y, m in zip(years, month, strict=True)]
        season = np.cos(2 * np.pi * (month - 6.5) / 12)[None] * np.sign(self.lat)[:, None]
        self.temp = 26 - 0.4 * np.abs(self.lat)[:, None] + 10 * season * np.abs(self.lat)[:, None] / 60

    def __call__(self, theta):
        theta = np.atleast_2d(theta)
        k = theta.shape[0]
        vcell = theta[:, 0:1] * self.frac + theta[:, 1:2] * (1 - self.frac)  # (k, cell)
        f_t = np.exp(-((self.temp[None] - theta[:, 2, None, None]) / 12.0) ** 2)
        gpp = 0.06 * vcell[:, :, None] * f_t  # g m-2 d-1
        reco = 0.5 * gpp.mean(-1, keepdims=True) * theta[:, 3, None, None] ** ((self.temp[None] - 15) / 10)
        per_year = (self.area[None, :, None] * (gpp - reco)).reshape(k, -1, self.years.size, 12).sum((1, 3))
        gpp_year = (self.area[None, :, None] * gpp).reshape(k, -1, self.years.size, 12).sum((1, 3))
        scale = 365.0 / 12 / 1e15  # g per month-day sums -> PgC yr-1
        return xr.Dataset(
            {"gpp": (("member", "cell", "time"), gpp, {"units": "g m-2 d-1"}),
             "gpp_global": (("member", "year"), gpp_year * scale, {"units": "PgC yr-1"}),
             "nbp_global": (("member", "year"), per_year * scale, {"units": "PgC yr-1"})},
            coords={"member": np.arange(k), "time": self.time, "year": self.years,
                    "area": ("cell", self.area), "biome": ("cell", self.biome),
                    "lat": ("cell", self.lat), "lon": ("cell", self.lon)})


def _product(model: ToyGlobal, path):
    """GPP of the model at other values, in kg m-2 s-1 on the 10-degree grid, latitude descending,
    longitude 0-360, noleap, a fill value and gaps, sigma 10 %."""
    theta = model.space.all_default.copy()
    theta[[0, 2]] = [70.0, 18.0]
    gpp = model(theta[None])["gpp"].values[0] / 86400e3  # (cell, time) kg m-2 s-1
    lat, lon = np.arange(85, -90, -RES), np.arange(5, 360, RES)
    grid = np.full((len(model.time), lat.size, lon.size), np.nan)
    i = np.searchsorted(-lat, -model.lat)
    j = np.searchsorted(lon, np.mod(model.lon, 360))
    grid[:, i, j] = gpp.T
    grid[::7, i[:3], j[:3]] = np.nan
    ds = xr.Dataset({"GPP": (("time", "lat", "lon"), grid, {"units": "kg m-2 s-1"}),
                     "GPP_sd": (("time", "lat", "lon"), 0.1 * grid, {"units": "kg m-2 s-1"})},
                    coords={"time": model.time, "lat": ("lat", lat, {"units": "degrees_north"}),
                            "lon": ("lon", lon, {"units": "degrees_east"})})
    ds.to_netcdf(path, encoding={"GPP": {"_FillValue": -9999.0}, "GPP_sd": {"_FillValue": -9999.0}})
    return theta


CONFIG = """
[run]
output = "run"
seed = 3
[model]
start = 2001
end = 2006
[parameters]
free = ["vcmax[tree]", "t_opt", "q10"]
[observations]
variables = ["gpp"]
gcb_nbp = false
[[observations.products]]
variable = "gpp"
format = "netcdf"
file = "gpp.nc"
nc_variable = "GPP"
sigma_variable = "GPP_sd"
[screen]
enabled = false
[optimize]
method = "dfols"
max_evaluations = 10
[design]
n_runs = 24
[posterior]
n_steps = 200
max_steps = 200
left_out_runs = 8
refine_rounds = 1
n_new = 6
[equifinality]
n_alternatives = 2
cloud_points = 500
[propagate]
n_draws = 8
"""


@pytest.fixture
def setup(tmp_path):
    model = ToyGlobal()
    truth = _product(model, tmp_path / "gpp.nc")
    (tmp_path / "c.toml").write_text(textwrap.dedent(CONFIG))
    return model, truth, tmp_path / "c.toml"


def test_a_config_of_your_own_model_is_checked_against_its_space_not_the_embedded_one(setup):
    model, _, path = setup
    with pytest.raises(ConfigError, match=r"3 unknown parameters: .vcmax\[tree\].*load_config\(path, model="):
        load_config(path)
    cfg = load_config(path, model=model)
    # table_years / gcb_years left out: their defaults within the model's years
    assert cfg["propagate"]["table_years"] == [2003, 2006]
    assert cfg["observations"]["gcb_years"] == [2001, 2006]
    path.write_text(path.read_text().replace('"q10"]', '"q10", "kmax"]'))
    msg = r"'parameters.free': unknown parameter 'kmax'; did you mean 'vcmax'\?$"
    with pytest.raises(ConfigError, match=msg):
        load_config(path, model=model)
    text = path.read_text()
    path.write_text(text.replace("[model]\nstart = 2001\nend = 2006", "[model]\nstart = 1901\nend = 1906")
                    .replace("gcb_nbp = false", "gcb_nbp = true\ngcb_years = [1901, 1906]")
                    .replace('"kmax"]', ']'))
    with pytest.raises(ConfigError, match=r"'observations.gcb_years' \[1901, 1906\] must lie within GCB"):
        load_config(path, model=model)
    path.write_text(text.replace('"kmax"]', '"q_10"]'))
    with pytest.raises(ConfigError, match="unknown parameter 'q_10'; did you mean 'q10'\\?$"):
        load_config(path, model=model)
    path.write_text(text.replace('"kmax"]', '"q_10", "zzz", "topt"]'))  # every unknown one named
    with pytest.raises(ConfigError, match="3 unknown parameters: 'q_10': did you mean 'q10'\\?; 'zzz'; "
                                          "'topt': did you mean 't_opt'\\?$"):
        load_config(path, model=model)


def test_your_models_products_are_read_in_its_units_on_its_cells_and_every_stage_runs(setup):
    model, truth, path = setup
    ctx = GlobalContext(load_config(path, model=model), model=model, progress=False)
    obs, _ = ctx.twin()
    (p,) = obs["gpp"]
    assert p.data.attrs["units"] == "g m-2 d-1"
    exact = model(truth[None])["gpp"].values[0]  # what the product holds, in the model's units
    got = p.data.transpose("cell", "time").values
    ok = np.isfinite(got)
    assert ok.mean() > 0.9
    np.testing.assert_allclose(got[ok], exact[ok], rtol=1e-5)
    records = ctx.run()
    assert [r.status for r in records] == ["ran"] * len(records)
    run = path.parent / "run"
    assert (run / "report.html").exists()
    table = xr.load_dataset(run / "propagate" / "table3.nc")
    assert list(table["variable"].values) == ["nbp_global", "gpp_global"]
    summary = json.loads((run / "propagate" / "summary.json").read_text())
    assert summary["gcb_reason"] is None and summary["gcb_coverage_band"] is not None  # 234 Mkm2: compared
    # the posterior moves t_opt towards the product's 18 degC from the prior's 10-32
    post = ctx.posterior_u().sel(parameter="t_opt").values
    assert abs(np.median(post) * 22 + 10 - 18.0) < 2.5 and np.std(post) * 22 < 3.0


class _FailingGlobal(ToyGlobal):
    """Fails where q10 > 2.6 (its spin-up, say) and, as a loaded machine would, times out where
    t_opt > 28 degC."""

    def __call__(self, theta):
        ds = super().__call__(theta)
        theta = np.atleast_2d(theta)
        reason = np.where(theta[:, 3] > 2.6, "spin-up diverged", "")
        reason = np.where((theta[:, 2] > 28.0) & (reason == ""), "timeout after 60.0 s", reason)
        return ds.assign(status=("member", np.where(reason == "", "done", "failed")),
                         reason=("member", reason.astype(object)))


def test_the_posterior_is_kept_from_where_the_model_fails_not_where_it_timed_out(setup, monkeypatch):
    """The design's runs the model failed are given to the refinement (no posterior mass where
    they are the nearest runs); those that timed out are not: they may run another time."""
    from bayescal.posterior import refinement

    _, _, path = setup
    model = _FailingGlobal()
    given = []
    refine = refinement.refine
    monkeypatch.setattr(refinement, "refine", lambda *a, **k: given.append(k["failed"]) or refine(*a, **k))
    ctx = GlobalContext(load_config(path, model=model), model=model, progress=False)
    ctx.run(ctx.stage_names[: ctx.stage_names.index("posterior") + 1])
    tr = xr.load_dataset(path.parent / "run" / "design" / "training.nc")
    theta = ctx.space().from_unit(tr["u"].values)  # vcmax[tree], t_opt, q10
    spun_out = theta[:, 2] > 2.6
    assert spun_out.any() and ((theta[:, 1] > 28.0) & ~spun_out).any()  # both kinds in the design
    np.testing.assert_array_equal(given[0], tr["u"].values[spun_out])


def test_your_models_output_is_checked_before_the_runs(setup, tmp_path):
    model, _, path = setup
    cfg = load_config(path, model=model)
    cfg["model"]["end"] = 2008  # the model simulates 2001-2006
    cfg["propagate"]["table_years"] = [2003, 2006]
    ctx = GlobalContext(cfg, tmp_path / "late", model=model, progress=False)
    with pytest.raises(ConfigError, match=r"'model.start'-'model.end' \(2001-2008\).* no year \[2007, 20"):
        ctx.run(("screen",))
    assert not (tmp_path / "late" / "design").exists()


def test_the_model_given_is_part_of_every_stages_key(setup, tmp_path):
    """A run directory of one model never serves another: the same class and space give the same
    keys; other bounds (or another class, or its source edited) change every stage's key."""
    model, _, path = setup
    cfg = load_config(path, model=model)

    def keys(m):
        return {n: k for n, (k, _) in GlobalContext(cfg, tmp_path / "k", model=m).engine.keys().items()}

    same, other = keys(ToyGlobal()), ToyGlobal()
    assert keys(model) == same
    other.space = ParameterSpace([Parameter("vcmax", [50.0, 35.0], [20.0, 15.0], [110.0, 70.0],
                                            groups=["tree", "grass"]),
                                  Parameter("t_opt", 22.0, 10.0, 32.0), Parameter("q10", 2.0, 1.2, 3.0)])
    changed = keys(other)
    assert all(changed[n] != same[n] for n in same)


class ToyGlobalDict(ToyGlobal):
    """The same model returning plain arrays (a dict), the cells' position among them, with a
    ``units`` mapping (a dict carries no attributes)."""

    units = {"gpp": "g m-2 d-1", "gpp_global": "PgC yr-1", "nbp_global": "PgC yr-1"}

    def __call__(self, theta):
        ds = super().__call__(theta)
        out = {v: ds[v].values for v in ds.data_vars}
        out.update(time=self.time, year=self.years, area=self.area, biome=self.biome, lat=self.lat,
                   lon=self.lon)
        return out


def test_a_dict_output_and_the_config_years_set_the_products_months(setup, tmp_path):
    """Products are read on the months of model.start..model.end (not every month the model
    has), and a dict output with the cells' lat/lon reads them as the Dataset output does."""
    model, _, path = setup
    cfg = load_config(path, model=model)
    cfg["model"]["end"] = 2005
    ctx = GlobalContext(cfg, tmp_path / "ds", model=model)
    (p,) = ctx.twin()[0]["gpp"]
    assert str(p.data["time"].values.max())[:7] == "2005-12" and p.data.sizes["time"] == 60
    as_dict = ToyGlobalDict()
    (q,) = GlobalContext(cfg, tmp_path / "dict", model=as_dict).twin()[0]["gpp"]
    xr.testing.assert_identical(p.data.reset_coords(drop=True), q.data.reset_coords(drop=True))


def test_a_product_of_a_variable_not_observed_is_refused_and_the_plan_counts_your_values(setup):
    model, _, path = setup
    text = path.read_text()
    path.write_text(text + '[[observations.products]]\nvariable = "lai"\nformat = "netcdf"\nfile = "gpp.nc"\n'
                           'nc_variable = "GPP"\nrelative_sigma = 0.1\n')
    with pytest.raises(ConfigError, match=r"'observations.products\[1\].variable' 'lai' is not in "
                                          r"'observations.variables' \['gpp'\]"):
        load_config(path, model=model)
    path.write_text(text.replace("[screen]\nenabled = false", "[screen]\nenabled = true\ntrajectories = 3"))
    plan = {p.name: p for p in GlobalContext(load_config(path, model=model), model=model).plan()}
    assert plan["screen"].expected_runs == str(3 * (4 + 1))  # Morris: 3 trajectories of 4 values + 1


# ----------------------------------------------------------- your global model named in the config
PROGRAM = '''"""An external global model: reads its parameter file, writes its output (netCDF)."""
import sys

import numpy as np
from toyglobal import ToyGlobal

values = dict(line.split("=") for line in open(sys.argv[1]) if "=" in line)
theta = np.array([[float(values[k]) for k in ("vcmax_tree ", "vcmax_grass ", "t_opt ", "q10 ")]])
ToyGlobal()(theta).isel(member=0).to_netcdf(sys.argv[2])
'''
TEMPLATE = ("vcmax_tree = {{ vcmax[tree] }}\nvcmax_grass = {{ vcmax[grass] }}\nt_opt = {{ t_opt }}\n"
            "q10 = {{ q10 }}\n")


def _named_in_config(path, model_keys: str, run_keys: str = "") -> None:
    """The config of ``path`` naming the model in [model] (run.workflow = "global"), and the
    model's module ``toyglobal.py`` beside it, as a user would write them from docs/own-model.md."""
    text = ("import cftime\nimport numpy as np\nimport xarray as xr\n\n"
            "from bayescal.parameters import Parameter, ParameterSpace\n\n"
            f"YEARS = np.arange({YEARS[0]}, {YEARS[-1] + 1})\nRES = {RES}\n\n\n"
            + inspect.getsource(_cells) + "\n\n" + inspect.getsource(ToyGlobal)
            + "\n\ndef make_model():\n    return ToyGlobal()\n")
    (path.parent / "toyglobal.py").write_text(text)
    config = path.read_text().replace("[run]\n", f'[run]\nworkflow = "global"\n{run_keys}')
    path.write_text(config.replace("[model]\n", f"[model]\n{model_keys}\n"))


def test_the_command_runs_your_global_model_named_in_the_config(setup, capsys):
    """``bayescal check`` and ``run`` with [model] kind = "python" on the global route: every
    stage to the report, the truth's t_opt recovered; a rerun reuses every stage, and an edit of
    the model's source reruns them."""
    model, _, path = setup
    _named_in_config(path, 'kind = "python"\nentry_point = "toyglobal:make_model"')
    assert main(["check", str(path), "--run-dir", str(path.parent / "run")]) == 0
    out = capsys.readouterr().out
    assert "follows the contract" in out and "workflow: global" in out
    assert "product 'gpp' of gpp: " in out and "in g m-2 d-1 (the file's kg m-2 s-1, converted)" in out
    assert re.search(r"design +run \(new\); model runs: \d+ \(up to ~\S+ (ms|s|min) of model "
                     r"(and runner )?time", out)
    run = path.parent / "run"
    assert not run.exists()  # the check's timed runs went to a folder of their own, and are gone
    capsys.readouterr()
    assert main(["run", str(path), "--quiet"]) == 0
    run = path.parent / "run"
    assert capsys.readouterr().out == f"report: {run / 'report.html'}\n"  # --quiet: only where it is
    assert (run / "report.html").exists()
    post = xr.open_dataset(run / "posterior" / "posterior.nc", group="posterior")["t_opt"].values
    assert abs(np.median(post) - 18.0) < 2.5 and np.std(post) < 3.0
    ctx = make_context(load_config(path), run)
    assert {p.status for p in ctx.plan()} == {"reuse"}
    assert ctx.model_identity() is not None  # the entry point's model keyed as one passed in
    path.write_text(path.read_text().replace("start = 2001", "start = 2001\nn_cells = 99\nramp_start = 1950"))
    assert {p.status for p in make_context(load_config(path), run).plan()} == {"reuse"}  # not its keys
    source = path.parent / "toyglobal.py"
    source.write_text(source.read_text() + "\n# edited\n")  # a comment: its syntax tree is the same
    assert {p.status for p in make_context(load_config(path), run).plan()} == {"reuse"}
    source.write_text(source.read_text() + "\nEDITED = True\n")
    plan = make_context(load_config(path), run).plan()
    assert all(p.status == "rerun" for p in plan if p.name != "report")
    assert any("toyglobal.py" in c for c in plan[0].changed)


def test_an_external_global_program_runs_as_the_python_model_does(setup):
    """[model] kind = "external" on the global route, on two worker processes: the design's
    misfits and summaries equal those of the same model given from Python."""
    model, _, path = setup
    folder = path.parent
    (folder / "toy_ext.py").write_text(PROGRAM)
    (folder / "params.template").write_text(TEMPLATE)
    model.space.to_toml(folder / "space.toml")
    path.write_text(path.read_text().replace('method = "dfols"', 'method = "none"').replace("n_runs = 24",
                                                                                            "n_runs = 10"))
    stages = ("screen", "optimize", "design")
    GlobalContext(load_config(path, model=model), folder / "py", model=model, progress=False).run(stages)
    keys = ('kind = "external"\ncommand = ["python", "toy_ext.py", "{param_file}", "{output}"]\n'
            'template = "params.template"\nparameters_file = "space.toml"')
    _named_in_config(path, keys, "workers = 2\n")
    ctx = make_context(load_config(path), folder / "ext", progress=False)
    assert ctx.batch_size() == 1  # a program per member: every stage's runs side by side on the workers
    ctx.run(stages)
    assert len(list((folder / "ext" / "external").iterdir())) == 1 + 10  # the defaults (checked), the design
    py, ext = (xr.load_dataset(folder / d / "design" / "training.nc") for d in ("py", "ext"))
    assert (ext["status"] == "done").all()
    for v in ("misfit", "summaries"):
        np.testing.assert_allclose(ext[v].values, py[v].values, rtol=1e-12)


@pytest.mark.parametrize("model_keys, match", [
    ('kind = "dalec"', r"'run.workflow' = 'global' runs the embedded global model or a model of your own"),
    ('kind = "python"\nentry_point = "toyglobal:build"', r"'model.entry_point' 'toyglobal:build': module "
                                                         r"'toyglobal' has no 'build'"),
    ('kind = "python"\nentry_point = "toyglobal:make_model"\nn_cells = 60', None),
    ('kind = "external"\ncommand = ["python", "toy_ext.py", "{param_file}", "{output}"]\n'
     'template = "params.template"', r"'model.parameters_file' is required for model.kind = 'external'"),
])
def test_a_config_naming_your_global_model_is_checked_before_any_run(setup, model_keys, match):
    model, _, path = setup
    (path.parent / "params.template").write_text(TEMPLATE)
    _named_in_config(path, model_keys)
    if match is None:  # the embedded model's grid keys are not its concern
        assert load_config(path)["model"]["kind"] == "python"
        return
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_a_product_without_units_attributes_reads_its_units_from_the_config(setup, tmp_path):
    """The product file's units attributes removed: the config's ``units`` and ``sigma_units``
    keys give them, and the product reads as the file with its attributes does."""
    model, _, path = setup
    ds = xr.load_dataset(path.parent / "gpp.nc")
    for v in ("GPP", "GPP_sd"):
        del ds[v].attrs["units"]
    ds.to_netcdf(path.parent / "bare.nc")
    with_units = load_config(path, model=model)
    (p,) = GlobalContext(with_units, tmp_path / "a", model=model).twin()[0]["gpp"]
    path.write_text(path.read_text().replace('file = "gpp.nc"', 'file = "bare.nc"'))
    with pytest.raises(ConfigError, match=r"bare.nc: variable 'GPP' has no 'units' attribute"):
        GlobalContext(load_config(path, model=model), tmp_path / "b", model=model).twin()
    path.write_text(path.read_text().replace('file = "bare.nc"', 'file = "bare.nc"\nunits = "kg m-2 s-1"\n'
                                             'sigma_units = "kg m-2 s-1"'))
    (q,) = GlobalContext(load_config(path, model=model), tmp_path / "c", model=model).twin()[0]["gpp"]
    xr.testing.assert_allclose(p.data.drop_attrs(), q.data.drop_attrs())
    xr.testing.assert_allclose(p.sigma.drop_attrs(), q.sigma.drop_attrs())


def test_a_bad_product_file_of_your_own_models_config_is_named_before_its_first_run(setup, tmp_path):
    """What the file itself gets wrong needs no model: a file that is not netCDF, a product of
    years, a sigma in another quantity, a missing variable -- refused by load_config (so by
    ``bayescal check --no-model-run``), before your model's run at its defaults."""
    model, _, path = setup
    text = path.read_text()
    ds = xr.load_dataset(path.parent / "gpp.nc")
    (path.parent / "text.nc").write_text("time,GPP\n")
    ds.isel(time=slice(0, None, 12)).to_netcdf(path.parent / "annual.nc")
    watts = ds.copy()
    watts["GPP_sd"].attrs["units"] = "W m-2"
    watts.to_netcdf(path.parent / "sd_watts.nc")
    for file, said in (("text.nc", r"text.nc: not a readable netCDF file"),
                       ("annual.nc", r"annual.nc: the time steps of 'GPP' are 12 months apart"),
                       ("sd_watts.nc", r"sd_watts.nc: sigma variable 'GPP_sd' \[W m-2\] is not in units of "
                                       r"'GPP': cannot convert 'W m-2' .*different quantities$")):
        path.write_text(text.replace('file = "gpp.nc"', f'file = "{file}"'))
        with pytest.raises(ConfigError, match=r"observations.products\[0\]: \S+" + said):
            load_config(path, model=model)
    path.write_text(text.replace('nc_variable = "GPP"', 'nc_variable = "gpp"'))
    with pytest.raises(ConfigError, match=r"gpp.nc: no variable 'gpp'; the file has \['GPP', 'GPP_sd'\]"):
        load_config(path, model=model)


def test_every_value_calibrated_and_a_bad_product_named_before_the_design(setup, tmp_path):
    """``parameters.free`` naming every value of the model: nothing is left out (no spread to
    marginalise, not an error); and a product the model's units cannot read stops the first stage
    -- with the screen and optimiser off, before the design's runs."""
    model, _, path = setup
    text = path.read_text().replace('"q10"]', '"q10", "vcmax[grass]"]').replace('method = "dfols"',
                                                                              'method = "none"')
    path.write_text(text)
    ctx = GlobalContext(load_config(path, model=model), tmp_path / "all", model=model, progress=False)
    ctx.run(("screen", "optimize", "design", "emulate", "posterior"))
    left = xr.load_dataset(tmp_path / "all" / "posterior" / "left_out.nc")
    assert left.attrs["n_left_out"] == 0 and (left["left_out_sd"] == 0).all()
    assert ctx.posterior_u().sizes["parameter"] == 4
    ds = xr.load_dataset(path.parent / "gpp.nc")
    for v in ("GPP", "GPP_sd"):  # not a carbon flux: the file itself is consistent, the model's units tell
        ds[v].attrs["units"] = "W m-2"
    ds.to_netcdf(path.parent / "watts.nc")
    path.write_text(text.replace('file = "gpp.nc"', 'file = "watts.nc"'))
    ctx = GlobalContext(load_config(path, model=model), tmp_path / "bad", model=model, progress=False)
    with pytest.raises(ConfigError, match=r"watts.nc: variable 'GPP'"):
        ctx.run()
    assert not list((tmp_path / "bad").rglob("member_*.nc"))  # no model run made


def test_a_global_model_of_your_own_without_run_workflow_global_is_told_to_set_it(setup):
    """Without ``run.workflow = "global"`` a python model is a site model: the gridded products'
    keys are refused with a hint naming the key to set (``run.workers`` is a site model's too)."""
    _, _, path = setup
    _named_in_config(path, 'kind = "python"\nentry_point = "toyglobal:make_model"', "workers = 2\n")
    path.write_text(path.read_text().replace('workflow = "global"\n', ""))
    with pytest.raises(ConfigError, match=r"unknown keys \['nc_variable', 'sigma_variable'\].* set \[run\] "
                                          r"workflow = \"global\""):
        load_config(path)


def test_a_model_of_part_of_the_world_is_not_compared_with_gcbs_global_sink():
    """GCB 2024's land sink is global: your own model's years may meet GCB's, but a model whose
    cells cover less than half the world's land gets no comparison, and says why."""
    from bayescal.observations.gcb import load_gcb2024
    from bayescal.report.html import _gcb_item
    from bayescal.workflows.global_.propagate_stage import _gcb_comparison

    years = np.arange(2001, 2007)
    ens = xr.Dataset({"nbp_global": (("member", "year"), np.ones((3, years.size))),
                      "gpp_global": (("member", "year"), np.full((3, years.size), 120.0))},
                     coords={"year": years, "set": ("member", ["posterior"] * 3)})
    gcb = load_gcb2024()
    europe = _gcb_comparison(ens, gcb, 2001, 2006, land_m2=10e12)
    assert europe.attrs["n_years"] == 0 and "10 million km2" in europe.attrs["reason"]
    item = _gcb_item({"gcb_coverage_band": None, "gcb_reason": europe.attrs["reason"]})
    assert "not compared" in item and "10 million km2" in item
    assert "no year in common" in _gcb_comparison(ens, gcb, 1801, 1850).attrs["reason"]


def test_a_model_of_part_of_the_world_is_not_calibrated_against_gcbs_global_nbp(setup):
    model, _, path = setup
    model.area = model.area / 10  # 23 million km2
    text = path.read_text().replace("gcb_nbp = false", "gcb_nbp = true")
    path.write_text(text)
    ctx = GlobalContext(load_config(path, model=model), model=model, progress=False)
    assert ctx.land_area() == pytest.approx(23.4e12, rel=0.01)
    with pytest.raises(ConfigError, match=r"'observations.gcb_nbp' = true: .* cover 23.4 million km2"):
        ctx.check_own_model()


@pytest.mark.parametrize("first", [2001, 1901])
def test_a_twin_of_your_own_model_runs_in_its_years(tmp_path, first):
    """``observations.twin`` with your own model (cells without a coordinate, by position): the
    twin's products are made on its cells, over its years where no default product's meet them
    (a model of 1901-1906), and every stage runs; the truth's t_opt is recovered."""
    model = ToyGlobal(np.arange(first, first + 6))
    text = CONFIG.replace("start = 2001", f"start = {first}").replace("end = 2006", f"end = {first + 5}")
    text = (text[:text.index("[[observations.products]]")] + "twin = true\ntruth = { t_opt = 0.36 }\n"
            + text[text.index("[screen]"):])
    (tmp_path / "c.toml").write_text(text)
    ctx = GlobalContext(load_config(tmp_path / "c.toml", model=model), model=model, progress=False)
    obs, _ = ctx.twin()
    assert [p.name for p in obs["gpp"]] == ["GOSIF-like", "FLUXCOM-like"]
    assert all(int(p.data["time"].dt.year.min()) == first for p in obs["gpp"] if first == 1901)
    records = ctx.run()
    assert [r.status for r in records] == ["ran"] * len(records)
    assert not [s.name for s in ctx.workflow.stages if s.foreign_files(ctx.run_dir / s.name)]
    post = ctx.posterior_u().sel(parameter="t_opt").values  # truth 0.36 of 10-32 degC: 17.9
    assert abs(np.median(post) - 0.36) < 0.12 and np.std(post) < 0.15


class _Transposed(ToyGlobal):
    """Its Dataset's dimensions in another order (the contract allows any)."""

    def __call__(self, theta):
        return super().__call__(theta).transpose("time", "cell", "member", "year")


class _IsoTime(ToyGlobal):
    """Its months as ISO date strings (the contract allows them)."""

    def __call__(self, theta):
        ds = super().__call__(theta)
        return ds.assign_coords(time=[f"{t.year:04d}-{t.month:02d}-15" for t in self.time])


class _WithSimulate(ToyGlobal):
    """A ``simulate`` of the user's own (not bayescal's contract): never called by bayescal."""

    def simulate(self, theta, years=None):
        raise AssertionError("bayescal called the model's own simulate")


def test_a_twin_is_made_from_the_conformed_output_of_any_form_and_route(tmp_path):
    """The twin's products of your own model are the same numbers whatever form its output takes
    (dimensions in another order, ISO date strings), whatever other methods it has (a ``simulate``
    of its own), and
    as an external program -- whose ``simulate`` is not the embedded model's either."""
    text = CONFIG[:CONFIG.index("[[observations.products]]")] + "twin = true\ntruth = { t_opt = 0.36 }\n" \
        + CONFIG[CONFIG.index("[screen]"):]
    made = {}
    for name, model in (("plain", ToyGlobal()), ("transposed", _Transposed()), ("simulate", _WithSimulate()),
                        ("iso", _IsoTime())):
        (tmp_path / name).mkdir()
        (tmp_path / name / "c.toml").write_text(text)
        ctx = GlobalContext(load_config(tmp_path / name / "c.toml", model=model), model=model, progress=False)
        made[name] = ctx.twin()[0]
    folder = tmp_path / "ext"
    folder.mkdir()
    (folder / "toy_ext.py").write_text(PROGRAM)
    (folder / "params.template").write_text(TEMPLATE)
    ToyGlobal().space.to_toml(folder / "space.toml")
    (folder / "c.toml").write_text(text)
    _named_in_config(folder / "c.toml", 'kind = "external"\ncommand = ["python", "toy_ext.py", '
                     '"{param_file}", "{output}"]\ntemplate = "params.template"\n'
                     'parameters_file = "space.toml"')
    made["external"] = make_context(load_config(folder / "c.toml"), folder / "run", progress=False).twin()[0]
    plain = made.pop("plain")
    assert [p.name for p in plain["gpp"]] == ["GOSIF-like", "FLUXCOM-like"]
    for name, obs in made.items():
        for p, q in zip(plain["gpp"], obs["gpp"], strict=True):
            assert q.data.dims == p.data.dims, name
            np.testing.assert_allclose(q.data.values, p.data.values, rtol=1e-12, err_msg=name)
            np.testing.assert_allclose(q.sigma.values, p.sigma.values, rtol=1e-12, err_msg=name)


class _NoUnits(ToyGlobal):
    def __call__(self, theta):
        ds = super().__call__(theta)
        ds["gpp"].attrs.pop("units")
        return ds


def test_an_observed_output_without_units_is_named_before_any_stage(setup):
    """Its products (a file's, or a twin's) could be in any units: the check names the variable
    and the two ways to give its units, before any stage runs."""
    _, _, path = setup
    model = _NoUnits()
    ctx = GlobalContext(load_config(path, model=model), path.parent / "run", model=model, progress=False)
    with pytest.raises(ConfigError, match=r"'observations.variables': the model's output 'gpp' has no units; "
                       r"give it a 'units' attribute \(a Dataset\) or your model a 'units' mapping"):
        ctx.check_own_model()
    model.units = {"gpp": "g m-2 d-1"}  # the mapping a dict output needs
    ctx = GlobalContext(load_config(path, model=model), path.parent / "run2", model=model, progress=False)
    ctx.check_own_model()


class _Teragrams(ToyGlobal):
    def __call__(self, theta):
        ds = super().__call__(theta)
        for v in ("gpp_global", "nbp_global"):
            ds[v] = (ds[v] * 1e3).assign_attrs(units="TgC yr-1")
        return ds


def test_global_series_in_other_units_or_a_fixed_value_named_free_are_refused(setup, tmp_path):
    """gpp_global in TgC yr-1 (the bands, Table 3 and the GCB comparison read PgC yr-1: it ran to
    the end and failed there, or compared TgC with GCB's PgC) is named with its factor before any
    stage; a value the parameters file fixes named in parameters.free (it was calibrated all the
    same) is refused when the config is read."""
    _, _, path = setup
    model = _Teragrams()
    ctx = GlobalContext(load_config(path, model=model), tmp_path / "run", model=model, progress=False)
    with pytest.raises(ConfigError, match=r"the model's output 'gpp_global' is in 'TgC yr-1'; the global "
                                          r"route reads it in PgC yr-1 .* \(its values x 0.001\)"):
        ctx.check_own_model()
    (path.parent / "fixed.toml").write_text("[parameters.t_opt]\ndefault = 22.0\nlower = 10.0\nupper = 32.0\n"
                                            "fixed = true\n")
    _named_in_config(path, 'kind = "python"\nentry_point = "toyglobal:make_model"\n'
                           'parameters_file = "fixed.toml"')
    with pytest.raises(ConfigError, match=r"'parameters.free' names 't_opt', but the parameter space holds "
                                          r"\['t_opt'\] fixed \(fixed = true in model.parameters_file"):
        load_config(path)
    path.write_text(path.read_text().replace('"t_opt", "q10"]', '"q10"]'))
    assert load_config(path)["parameters"]["free"] == ["vcmax[tree]", "q10"]


def test_propagate_with_no_finished_posterior_draw_stops_with_the_failures_reasons(tmp_path):
    """Every posterior draw failed in the model (a model that fails where the posterior lies):
    a StageError naming the store and the reasons, not a traceback; a set with one finished
    draw goes on."""
    from bayescal.workflows.context import StageError
    from bayescal.workflows.global_.propagate_stage import _require_finished

    ens = xr.Dataset({"status": ("member", ["failed", "failed", "failed", "done"]),
                      "reason": ("member", ["exit code 3: too hot"] * 2 + ["timeout after 20 s", ""])},
                     coords={"set": ("member", ["posterior"] * 3 + ["prior"])})
    with pytest.raises(StageError, match=r"none of the 3 posterior draws run through the model in .*ensemble "
                       r"finished: 2 x exit code 3: too hot; 1 x timeout after 20 s; the GPP and NBP bands"):
        _require_finished(ens, tmp_path / "ensemble")
    _require_finished(ens, tmp_path / "ensemble", names=("prior",))
