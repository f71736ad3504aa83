"""The site workflow's emulator route against an exact posterior: a model whose output bends with
its parameters (tests/data/bent_site.py), a twin with known sigma, the posterior of
``bayescal run`` (design, refinement rounds, emcee on the emulator) against the exact one on a grid."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _seeds import seeds

from bayescal.cli import main

DATA = Path(__file__).parent / "data"
TRUTH = np.array([2.5, 0.3, -0.4])
LOWER, UPPER = np.array([0.0, 0.0, -1.0]), np.array([5.0, 1.0, 1.0])
SIGMA = 0.3


def _bent():
    import sys

    sys.path.insert(0, str(DATA))
    try:
        from bent_site import BentSiteModel, bent_series
    finally:
        sys.path.remove(str(DATA))
    return BentSiteModel, bent_series


def _twin_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    _, bent_series = _bent()
    t = pd.date_range("2001-01-01", "2002-12-31", freq="D")
    y = bent_series(TRUTH[None], t.values)[0] + np.random.default_rng(7).normal(0, SIGMA, t.size)
    pd.DataFrame({"time": t.strftime("%Y-%m-%d"), "value": y, "sigma": SIGMA}).to_csv(path, index=False)
    return t.values, y


def _exact_quantiles(t: np.ndarray, y: np.ndarray, n: int = 61) -> np.ndarray:
    """Marginal 5/50/95 % quantiles (unit cube) of the exact posterior, uniform prior, on a grid of
    +/- 7 Laplace sd around the truth (the posterior is narrow: the box holds all of it)."""
    _, bent_series = _bent()

    def loglik(theta):
        return -0.5 * (((bent_series(theta, t) - y) / SIGMA) ** 2).sum(axis=1)

    centre = TRUTH.copy()
    for _ in range(5):  # Gauss-Newton to the maximum; its curvature gives the box
        J = np.stack([(bent_series(centre + e, t) - bent_series(centre - e, t))[0] / (2 * e.max())
                      for e in np.diag(1e-5 * (UPPER - LOWER))], axis=1)
        centre = centre + np.linalg.lstsq(J, y - bent_series(centre, t)[0], rcond=None)[0]
    sd = np.sqrt(np.diag(np.linalg.inv(J.T @ J / SIGMA**2)))
    axes = [np.linspace(centre[j] - 7 * sd[j], centre[j] + 7 * sd[j], n) for j in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    ll = np.concatenate([loglik(grid[i:i + 8192]) for i in range(0, grid.shape[0], 8192)])
    p = np.exp(ll - ll.max()).reshape(n, n, n)
    out = np.empty((3, 3))
    for j in range(3):
        m = p.sum(axis=tuple(k for k in range(3) if k != j))
        cdf = np.cumsum(m) / m.sum()
        out[:, j] = (np.interp([0.05, 0.5, 0.95], cdf, axes[j]) - LOWER[j]) / (UPPER[j] - LOWER[j])
    edges = [np.take(p, [0, -1], axis=j).max() for j in range(3)]
    assert max(edges) < 1e-6 * p.max(), edges  # the box holds the posterior
    return out


@pytest.mark.slow
@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(2))
def test_emulator_route_reaches_the_exact_posterior_with_refinement(tmp_path, seed):
    """End to end: design, optimum run, refinement rounds through their stores, the posterior's chain
    on the final emulator's expected log-likelihood (the default emulator_target), the error model
    from model runs. On this smooth three-parameter model
    ten design runs and the optimum's run already emulate it within these bounds (one round of one
    run passed too): what refinement buys on a hard model is measured by
    benchmarks/bench_site_twin.py, not here."""
    t, y = _twin_csv(tmp_path / "obs.csv")
    exact = _exact_quantiles(t[t < np.datetime64("2003-01-01")], y)
    run = tmp_path / "run"
    cfg = tmp_path / "site.toml"
    cfg.write_text(f"""
[run]
output = "{run}"
seed = {seed}
[model]
kind = "python"
entry_point = "bent_site:BentSiteModel"
python_path = ["{DATA}"]
[site]
calibration_years = [2001, 2002]
validation_years = [2003, 2003]
discrepancy = "none"
autocorrelation = false
ml_evaluations = 300
[[observations.products]]
variable = "nee"
format = "csv"
file = "{tmp_path / 'obs.csv'}"
units = "gC m-2 d-1"
[design]
n_runs = 10
[posterior]
route = "emulator"
refine_rounds = 2
n_new = 6
n_steps = 600
max_steps = 3000
n_walkers = 16
n_particles = 200
[propagate]
n_draws = 4
""")
    assert main(["run", str(cfg), "--quiet"]) == 0
    from bayescal.posterior import load_inference_data, unit_samples
    from bayescal.workflow.rundir import RunDir

    u = np.asarray(unit_samples(load_inference_data(run / "posterior" / "posterior.nc"), RunDir(run).space()))
    got = np.quantile(u, [0.05, 0.5, 0.95], axis=0)
    width = exact[2] - exact[0]
    # within 0.05 of the cube (the bound) and, tighter, within 15 % of each exact 90 % width
    assert np.abs(got - exact).max() < 0.05, (got, exact)
    assert np.all(np.abs(got - exact) < 0.15 * width), ((got - exact) / width, exact)
    # model runs: the design, the optimum, the rounds (at most 2 x 6), every one in a store
    h = __import__("xarray").load_dataset(run / "posterior" / "refinement.nc")
    assert int(h["n_train"][-1]) <= 10 + 1 + 2 * 6
    stored = list((run / "posterior" / "refine").glob("round*/members/*.nc"))
    assert len(stored) == 6 * (h.sizes["round"] - 1)  # no batch after the last round's chain
    # the error model is the model's: sigma alone here, and the emulator's sd is reported, not added
    err = json.loads((run / "posterior" / "error_model.json").read_text())
    assert err[0]["discrepancy"] == 0.0 and err[0]["emulator_sd_median"] < 0.2 * SIGMA
    assert "Emulator refinement" in (run / "report.html").read_text()
    assert "Route: emulator (posterior.route" in (run / "report.html").read_text()
    # each round's emulator checked at its new runs before fitting them (the last round has none)
    assert np.isfinite(h["heldout_error"][:-1]).all() and np.isnan(h["heldout_error"][-1])
    assert "before fitting them" in (run / "report.html").read_text()
    assert (run / "posterior" / "chains" / "round_final.h5").is_file()
    assert "expected log-likelihood" in h.attrs["final_target"]
    # a complete InferenceData on this route too: what az.loo and az.plot_ppc read
    from bayescal.posterior import get_group, group_names

    idata = load_inference_data(run / "posterior" / "posterior.nc")
    assert {"posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data", "prior",
            "constant_data"} <= set(group_names(idata))
    obs = get_group(idata, "observed_data")["y"]
    assert obs.dims == ("observation",) and {"time", "variable", "units"} <= set(obs.coords)
    ll = get_group(idata, "log_likelihood")["y"]
    assert ll.sizes["observation"] == obs.sizes["observation"] and np.isfinite(ll.values).all()
