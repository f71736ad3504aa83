"""Dagon et al.'s workflow on observation files of one's own, one step off the twin: a product
that leaves a model cell unobserved, one without the northern winters (optical products), a
verification run that fails (a newcomer trial found each of them ending in a traceback, or the
model's mean over all months compared with a product's mean over the months it has)."""

import warnings

import numpy as np
import pytest
import xarray as xr

from bayescal.observations.products import Product
from bayescal.readers import write_gridded_products
from bayescal.workflows import make_context, validate_config

CONFIG = {
    "run": {"seed": 3, "workflow": "dagon"},
    "model": {"n_cells": 24, "start": 2000, "end": 2004, "ramp_start": 1997},
    "parameters": {"candidates": ["vmax", "kn", "sn", "gamma_w"]},
    "oat": {"top_k": 2},
    "design": {"n_runs": 20, "batch_size": 20},
    "emulator_screen": {"n_points": 1000, "keep": 20, "refine_rounds": 0},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The model at its defaults written as gpp and hfls products: gpp without cell 0 and
    without November-March north of 30 N, hfls whole. Returns (folder, the run, its config)."""
    tmp = tmp_path_factory.mktemp("dagon_files")
    twin = make_context(validate_config({**CONFIG, "run": {**CONFIG["run"], "output": str(tmp / "twin")},
                                         "observations": {"variables": ["gpp", "hfls"]}}), progress=False)
    m = twin.model
    run = m.simulate(m.space.all_default[None, :])
    grid = m.grid
    gpp = run["gpp"].isel(member=0, drop=True).transpose("cell", "time")
    winter = (grid["lat"] > 30) & gpp["time"].dt.month.isin([11, 12, 1, 2, 3])
    gpp = gpp.where(~winter & (gpp["cell"] != 0))
    hfls = run["hfls"].isel(member=0, drop=True).transpose("cell", "time")
    prods = [Product("mine", v, d.assign_attrs(units=run[v].attrs["units"]), 0.1 * abs(d) + 1e-9)
             for v, d in (("gpp", gpp), ("hfls", hfls))]
    write_gridded_products(prods, grid, tmp / "products", resolution=2.0)
    obs = {"twin": False, "variables": ["gpp", "hfls"],
           "products": [{"variable": v, "format": "netcdf", "file": str(tmp / "products" / f"{v}_mine.nc"),
                         "sigma_variable": f"{v}_sigma"} for v in ("gpp", "hfls")]}
    cfg = validate_config({**CONFIG, "run": {**CONFIG["run"], "output": str(tmp / "run")},
                           "observations": obs})
    return tmp, run, cfg


def test_the_models_maps_take_the_months_and_cells_the_products_observe(files):
    """The model's own run as observations: its period-mean maps over the months each product
    observes equal the observed maps to the files' float32 rounding (northern winters missing
    included); the mean over every month, compared before, is tens of percent off at most of them. The
    cell no product observes is NaN on both sides."""
    tmp, run, cfg = files
    ctx = make_context(cfg, progress=False)
    observed, _ = ctx.observed_maps()
    maps = ctx.mean_maps(run)
    for v in ("gpp", "hfls"):
        np.testing.assert_allclose(maps[v][0], observed[v], rtol=2e-6, equal_nan=True)
    assert np.isnan(observed["gpp"][0]) and np.isnan(maps["gpp"][0, 0])
    assert np.isfinite(observed["hfls"]).all()
    north = ctx.model.grid["lat"].values > 30
    assert north.sum() >= 3
    every_month = run["gpp"].isel(member=0).mean("time").values
    off = np.abs(every_month / observed["gpp"] - 1)[north & np.isfinite(observed["gpp"])]
    assert np.median(off) > 0.2  # most northern cells: a desert or evergreen one differs less
    np.testing.assert_allclose(maps["hfls"][0], run["hfls"].isel(member=0).mean("time").values, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:no verified optimum beats the defaults")  # the defaults are the truth
def test_the_workflow_runs_on_a_product_with_a_cell_unobserved_and_a_failed_verification(files, monkeypatch):
    """The whole route on the files: the EOFs of gpp on its 23 observed cells (eof.nc keeps each
    variable's cells on a dimension of its own), Fig. 11 over the observed months. Then every
    verification run failing (the model raising): the stage records the failures, warns, and the
    report is written."""
    import json

    from bayescal.report.dagon import bias_map_data, verified_runs
    from bayescal.workflows.dagon import stages

    tmp, run, cfg = files
    pipe = make_context(cfg, progress=False)
    pipe.run(pipe.stage_names)
    eof = xr.load_dataset(tmp / "run" / "emulate" / "eof.nc")
    assert eof.sizes["gpp_cell"] == 23 and eof.sizes["hfls_cell"] == 24 and eof.sizes["cell"] == 24
    assert not eof["gpp_cells"].values[0] and eof["gpp_cells"].values[1:].all()
    rmse = xr.load_dataset(tmp / "run" / "emulate" / "rmse.nc")
    opt = json.loads((tmp / "run" / "emulator_screen" / "optimum.json").read_text())
    runs = verified_runs(tmp / "run" / "emulator_screen", opt)
    assert runs is not None
    for v in ("gpp", "hfls"):  # the default run is the observations: no bias on any observed cell
        d = bias_map_data(runs, rmse, v)
        assert d.sizes["cell"] == (23 if v == "gpp" else 24)
        # (in g m-2 d-1 and W m-2: float32 files; a map over every month is ~1 g m-2 d-1 off up north)
        np.testing.assert_allclose(d["bias"].sel(case="default").values, 0.0, atol=1e-4)

    def raising(theta):
        raise RuntimeError("spin-up did not converge")

    monkeypatch.setattr(type(pipe), "simulator", property(lambda self: raising))
    (tmp / "run" / "emulator_screen" / "verify").rename(tmp / "run" / "verify_done")
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        stages.run_emulator_screen(pipe)
    opt = json.loads((tmp / "run" / "emulator_screen" / "optimum.json").read_text())
    assert [r["status"] for r in opt["rounds"]] == ["failed"] and np.isnan(opt["model_cost"]["default"])
    assert any("every verified optimum failed" in str(w.message) for w in said)
    stages.run_dagon_report(pipe)  # no Fig. 11 without a finished verified run; the rest is drawn
    assert "Dagon Fig. 11" not in (tmp / "run" / "report.html").read_text()
