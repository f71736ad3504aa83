"""The stages of the site route (see :mod:`bayescal.workflows.site.context`), one function each."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from bayescal.workflow.rundir import write_json_atomic

if TYPE_CHECKING:
    from .context import SiteContext

__all__ = ["run_site_optimize", "run_site_posterior", "run_site_propagate", "run_site_report"]


def _values(ctx: SiteContext):
    """Unit-cube points -> the calibration series: the model itself (``posterior.route = "direct"``)
    or the SVD emulator the optimize stage trained (``"emulator"``)."""
    from bayescal.emulators import load_emulator
    from bayescal.posterior.site_calibration import emulated_values, model_values

    if ctx.config["posterior"]["route"] == "direct":
        return model_values(ctx.calibration_simulator, ctx.space(), ctx.operator("calibration"))
    return emulated_values(load_emulator(ctx.run_dir / "optimize" / "output_emulator.nc"))


def _train_emulator(ctx: SiteContext) -> None:
    """route = "emulator": an SVD emulator of the calibration series from a design through the store."""
    from bayescal.emulators import SVDEmulator
    from bayescal.parameters.design import latin_hypercube
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    space, op = ctx.space(), ctx.operator("calibration")
    design = latin_hypercube(space, ctx.config["design"]["n_runs"], seed=ctx.seed)
    store = ctx.run_dir / "optimize" / "design"
    theta = space.to_dataarray(space.expand(design.values), full=True)
    run_ensemble(ctx.calibration_simulator, theta, store, batch_size=ctx.config["design"]["batch_size"],
                 keep=sorted(set(op.variables)), progress=False)
    ens = EnsembleStore(store).load()
    done = ens["status"].values == "done"
    Y = op.of_model(ens.isel(member=np.flatnonzero(done)))
    em = SVDEmulator(variance_threshold=ctx.config["emulator"]["variance_threshold"], random_state=ctx.seed)
    em.fit(space.to_unit(design.values)[done], Y)
    em.save(ctx.run_dir / "optimize" / "output_emulator.nc")
    ctx.say(f"  SVD emulator of {Y.shape[1]} values from {int(done.sum())} runs")


def run_site_optimize(ctx: SiteContext) -> None:
    from bayescal.posterior.site_calibration import maximum_likelihood

    space = ctx.space()
    write_json_atomic(ctx.run_dir / "optimize" / "selected.json", {"parameters": space.labels})
    if ctx.config["posterior"]["route"] == "emulator":
        _train_emulator(ctx)
    res = maximum_likelihood(_values(ctx), space, ctx.operator("calibration"), seed=ctx.seed,
                             max_evaluations=ctx.config["site"]["ml_evaluations"])
    res.history.to_netcdf(ctx.run_dir / "optimize" / "history.nc")
    ctx.say(f"  maximum likelihood after {res.n_evaluations} evaluations: -log L = {res.fun:.6g}")


def _error_model(ctx: SiteContext):
    """The AR(1) error model from the *model's* residuals at the optimum (one run), so on the
    emulator route the emulator's own error does not pass for model-data discrepancy; that
    route's likelihood adds the emulator's predictive sd at the optimum as its own term."""
    from bayescal.emulators import load_emulator
    from bayescal.operators.timeseries import SeriesLikelihood, estimate_error_model
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    op, u_opt, space = ctx.operator("calibration"), ctx.optimum_u()[None], ctx.space()
    store = ctx.run_dir / "posterior" / "optimum_run"  # through the runner's store: kept on resume
    theta = space.to_dataarray(space.expand(space.from_unit(u_opt)), full=True)
    run_ensemble(ctx.calibration_simulator, theta, store, keep=sorted(set(op.variables)), progress=False)
    run = EnsembleStore(store).load()
    if str(run["status"].values[0]) != "done":
        raise ValueError(f"the model fails at the maximum-likelihood point: {run['reason'].values[0]}")
    s, rho = estimate_error_model(op, op.of_model(run)[0])
    em_sd = np.zeros(op.y.size)
    if ctx.config["posterior"]["route"] == "emulator":
        em = load_emulator(ctx.run_dir / "optimize" / "output_emulator.nc")
        em_sd = em.predict(u_opt, return_std=True)[1][0]
    c = ctx.config["site"]
    if c["discrepancy"] == "none":
        s = np.zeros_like(s)
    if not c["autocorrelation"]:
        rho = np.zeros_like(rho)
    info = [{"product": p.name, "variable": p.variable, "discrepancy": float(s[k]), "rho": float(rho[k]),
             "sigma_median": float(np.median(op.sigma[op.product_index == k])), "units": p.units,
             "emulator_sd_median": float(np.median(em_sd[op.product_index == k])),
             "n_values": int((op.product_index == k).sum())} for k, p in enumerate(op.products)]
    write_json_atomic(ctx.run_dir / "posterior" / "error_model.json", info)
    ctx.say("  error model: " + "; ".join(f"{i['product']} s={i['discrepancy']:.3g} rho={i['rho']:.2f}"
                                          for i in info))
    return SeriesLikelihood(op, s, rho, emulator_sd=em_sd)


def run_site_posterior(ctx: SiteContext) -> None:
    from bayescal.posterior import diagnose, save_inference_data
    from bayescal.posterior.site_calibration import MAX_DRAWS, sample_posterior, series_log_likelihood

    space, c = ctx.space(), ctx.config["posterior"]
    out = ctx.run_dir / "posterior"
    values = _values(ctx)
    loglik = series_log_likelihood(values, _error_model(ctx))
    n_walkers = c["n_walkers"] or max(2 * space.n_free + 2, 32)
    # every step saved to chain.h5: a killed stage continues its chain where it stopped
    sampler = sample_posterior(loglik, space, ctx.optimum_u(), n_walkers=n_walkers + n_walkers % 2,
                               n_steps=c["n_steps"], max_steps=c["max_steps"], seed=ctx.seed,
                               backend=out / "chain.h5", progress=ctx.progress)
    tau = float(np.nanmax(sampler.autocorr_time()))
    ctx.say(f"  emcee: {n_walkers} walkers x {sampler.iteration} steps, max tau {tau:.0f}; "
            "pointwise log-likelihood and predictive draws at the retained draws")
    idata = sampler.to_inference_data(max_draws=max(MAX_DRAWS, 4 * ctx.config["propagate"]["n_draws"]))
    save_inference_data(idata, out / "posterior.nc")
    diagnose(idata).to_netcdf(out / "diagnostics.nc")


def _observed_full(ctx: SiteContext) -> dict[str, xr.DataArray]:
    """Each variable's first product with every day the file has (no QC mask): the annual sums.

    FLUXNET NEE/GPP are gap-filled, so every day has a value; the twin uses its truth run.
    """
    from bayescal.readers import read_fluxnet_product

    out = {}
    for spec, p in zip(ctx.config["observations"]["products"], ctx.products(), strict=True):
        if p.variable in out:
            continue
        if ctx.config["observations"]["twin"]:
            out[p.variable] = ctx.truth_run()[p.variable].isel(member=0)
        elif spec["format"] == "fluxnet":
            opts = {k: spec[k] for k in ("partitioning", "units") if k in spec}
            out[p.variable] = read_fluxnet_product(spec["file"], p.variable, qc_min=0.0, **opts).data
        else:
            out[p.variable] = p.data
    return out


def run_site_propagate(ctx: SiteContext) -> None:
    from bayescal.posterior.site_calibration import validation
    from bayescal.run.ensemble import EnsembleStore, run_ensemble

    space, n = ctx.space(), ctx.config["propagate"]["n_draws"]
    if ctx.config["model"]["kind"] != "dalec":  # the model's days cover the validation years
        ctx.model_check(validation=True)
    post = ctx.rundir.posterior_u(space).values
    rng = np.random.default_rng(ctx.seed)
    u = np.vstack([post[rng.choice(post.shape[0], size=n, replace=False)], ctx.optimum_u()[None]])
    theta = np.vstack([space.expand(space.from_unit(u)), ctx.full_space.all_default[None]])
    observed = _observed_full(ctx)
    store = ctx.run_dir / "propagate" / "ensemble"
    run_ensemble(ctx.simulator, space.to_dataarray(theta, full=True), store, progress=False,
                 batch_size=ctx.config["design"]["batch_size"], keep=sorted(observed))
    ens = EnsembleStore(store).load()
    draws = ens.isel(member=[m for m in range(n) if ens["status"].values[m] == "done"])
    defaults = ens.isel(member=[n + 1])
    err = {e["variable"]: e for e in ctx.error_model()}
    sd = {v: float(np.hypot(err[v]["sigma_median"], err[v]["discrepancy"])) for v in observed}
    rho = {v: float(err[v]["rho"]) for v in observed}
    bands, summary = validation(draws, defaults, observed, sd, rho, ctx.years("validation"), rng)
    bands.to_netcdf(ctx.run_dir / "propagate" / "bands.nc")
    for v in observed:  # REFLEX's interval: the model's annual flux (parameters only, no noise)
        ann = draws[v].sel(time=slice(*map(str, ctx.years("validation")))).resample(time="YS").sum()
        q = ann.quantile([0.05, 0.95], dim="member")
        summary[v]["annual_interval_width_parameters"] = float((q[1] - q[0]).mean())
    for v in observed:
        summary[v]["units"] = next(p.units for p in ctx.products() if p.variable == v)
    summary["n_draws_done"] = int(draws.sizes["member"])
    if ctx.config["observations"]["twin"]:
        summary["parameter_coverage"] = _parameter_coverage(ctx, post)
    write_json_atomic(ctx.run_dir / "propagate" / "summary.json", summary)
    for v in observed:
        s = summary[v]
        if s["validation_observed_days"] == 0:
            ctx.say(f"  {v}: no observation in the validation years; predictive interval "
                    f"{s['annual_interval_width_mean']:.0f} (parameters only "
                    f"{s['annual_interval_width_parameters']:.0f})")
            continue
        cov = s["annual_coverage_90"]
        cov = "n/a (no complete year)" if cov is None else f"{cov:.0%}"
        ctx.say(f"  {v}: annual 90 % coverage {cov}, interval "
                f"{s['annual_interval_width_mean']:.0f} "
                f"(parameters only {s['annual_interval_width_parameters']:.0f}), "
                f"daily RMSE {s['rmse_daily_defaults']:.3g} -> {s['rmse_daily_posterior_mean']:.3g}")


def _parameter_coverage(ctx: SiteContext, post: np.ndarray) -> dict:
    """Twin: is each true value inside its 90 % interval, and how much did the data narrow it."""
    space = ctx.space()
    truth = space.to_unit(space.reduce(ctx.truth_theta()))
    q05, q95 = np.quantile(post, [0.05, 0.95], axis=0)
    ratio = post.std(axis=0) / np.sqrt(1.0 / 12.0)
    return {lab: {"truth_u": float(truth[j]), "q05": float(q05[j]), "q95": float(q95[j]),
                  "inside_90": bool(q05[j] <= truth[j] <= q95[j]), "sd_ratio": float(ratio[j]),
                  "identifiable": bool(ratio[j] < 0.5)} for j, lab in enumerate(space.labels)}


def run_site_report(ctx: SiteContext) -> None:
    from bayescal.report.site import write_site_report

    write_site_report(ctx.rundir)
