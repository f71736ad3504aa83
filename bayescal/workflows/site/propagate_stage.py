"""The site route's propagate stage: posterior draws through the runner's store over the whole
period, the posterior-predictive bands and REFLEX's metrics on the validation years."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from bayescal.workflow.rundir import write_json_atomic

if TYPE_CHECKING:
    from .context import SiteContext

__all__ = ["run_site_propagate"]


def _observed_full(ctx: SiteContext) -> dict[str, xr.DataArray]:
    """Each variable's first daily product with every day the file has (no QC mask): the annual sums.

    FLUXNET NEE/GPP are gap-filled, so every day has a value; the twin uses its truth run. The
    values are in the model output's units, as :meth:`SiteContext.products` are (the file read
    again here is converted by the same factor). A variable observed only by products of weeks,
    months or years is not validated day by day: it gets no observed day (the bands are drawn,
    the coverage is not computed). Each series names its product (``attrs["product"]``).
    """
    from bayescal.readers import conversion_factor, read_fluxnet_product

    out: dict[str, xr.DataArray] = {}
    for spec, p in zip(ctx.config["observations"]["products"], ctx.products(), strict=True):
        daily = p.attrs.get("period", "day") == "day"
        if p.variable in out and ("product" in out[p.variable].attrs or not daily):
            continue  # a daily product of the variable was taken (or this one has no days either)
        if ctx.config["observations"]["twin"]:
            data = ctx.truth_run()[p.variable].isel(member=0)
        elif not daily:  # a placeholder without observed days, until a daily product of the variable
            data = p.data * np.nan
        elif spec["format"] == "fluxnet":  # in the file's units, converted to the product's
            opts = {k: spec[k] for k in ("partitioning",) if k in spec}
            data = read_fluxnet_product(spec["file"], p.variable, qc_min=0.0, **opts).data
            f = conversion_factor(data.attrs["units"], p.units, p.variable)
            data = (data * f).assign_attrs({**data.attrs, "units": p.units})
        else:
            data = p.data
        attrs = {k: v for k, v in {**data.attrs, "units": p.units}.items() if k != "product"}
        out[p.variable] = data.assign_attrs(attrs) if not daily else data.assign_attrs(attrs, product=p.name)
    return out


def _observed_periods(ctx: SiteContext) -> dict[str, dict[str, xr.DataArray]]:
    """Each variable's first product of months and of years (``period``), in the model output's
    units: the validation's observed months and years where the variable's days give none."""
    out: dict[str, dict[str, xr.DataArray]] = {}
    if ctx.config["observations"]["twin"]:  # the truth run has every day
        return out
    for p in ctx.products():
        period = p.attrs.get("period", "day")
        if period in ("month", "year"):
            out.setdefault(p.variable, {}).setdefault(period, p.data)
    return out


def run_site_propagate(ctx: SiteContext) -> None:
    from bayescal.posterior.site_calibration import period_aggregation, period_units, validation
    from bayescal.run.ensemble import EnsembleStore

    space, n = ctx.space(), ctx.config["propagate"]["n_draws"]
    if ctx.config["model"]["kind"] != "dalec":  # the model's days cover the validation years
        ctx.model_check(validation=True)
    post = ctx.rundir.posterior_u(space).values
    rng = np.random.default_rng(ctx.seed)
    if post.shape[0] < n:
        ctx.say(f"  the posterior kept {post.shape[0]} draws, fewer than propagate.n_draws = {n}: all of "
                "them run (a longer chain keeps more)")
        n = post.shape[0]
    u = np.vstack([post[rng.choice(post.shape[0], size=n, replace=False)], ctx.optimum_u()[None]])
    theta = np.vstack([space.expand(space.from_unit(u)), ctx.full_space.all_default[None]])
    observed = _observed_full(ctx)
    store = ctx.run_dir / "propagate" / "ensemble"
    ctx.run_members(ctx.simulator, space.to_dataarray(theta, full=True), store, executor=ctx.executor,
                    batch_size=ctx.config["design"]["batch_size"], keep=sorted(observed))
    ens = EnsembleStore(store).load()
    draws = ens.isel(member=[m for m in range(n) if ens["status"].values[m] == "done"])
    defaults = ens.isel(member=[n + 1])
    # each variable's error model: its validated product's (the first of the variable's otherwise)
    models = ctx.error_model()
    err = {v: next((e for e in models if e["product"] == o.attrs.get("product")),
                   next(e for e in models if e["variable"] == v)) for v, o in observed.items()}
    sd = {v: float(np.hypot(err[v]["sigma_median"], err[v]["discrepancy"])) for v in observed}
    rho = {v: float(err[v]["rho"]) for v in observed}
    shown = _validation_units(ctx, observed)
    for v, (f, units) in shown.items():  # a model in kg m-2 s-1 is validated in gC m-2 d-1, as REFLEX's
        draws[v] = (draws[v] * f).assign_attrs(units=units)
        defaults[v] = (defaults[v] * f).assign_attrs(units=units)
        observed[v], sd[v] = (observed[v] * f).assign_attrs({**observed[v].attrs, "units": units}), sd[v] * f
    periods = {v: {k: x * shown[v][0] for k, x in of.items()} for v, of in _observed_periods(ctx).items()
               if v in shown}
    bands, summary = validation(draws, defaults, observed, sd, rho, ctx.years("validation"), rng, periods)
    bands.to_netcdf(ctx.run_dir / "propagate" / "bands.nc")
    for v in observed:  # REFLEX's interval: the model's annual flux (parameters only, no noise)
        how = period_aggregation(shown[v][1])  # a flux's annual sum, a state's (LAI) annual mean
        ann = getattr(draws[v].sel(time=slice(*map(str, ctx.years("validation")))).resample(time="YS"), how)()
        q = ann.quantile([0.05, 0.95], dim="member")
        summary[v]["annual_interval_width_parameters"] = float((q[1] - q[0]).mean())
        summary[v].update(units=shown[v][1], annual_units=period_units(shown[v][1], "annual"),
                          annual_aggregation=how)
    summary["n_draws_done"] = int(draws.sizes["member"])
    if ctx.config["observations"]["twin"]:
        summary["parameter_coverage"] = _parameter_coverage(ctx, post)
    write_json_atomic(ctx.run_dir / "propagate" / "summary.json", summary)
    for v in observed:
        s = summary[v]
        if s["validation_observed_days"] == 0 and s["validation_complete_years"] == 0:
            ctx.say(f"  {v}: no observed day or year in the validation years; predictive interval "
                    f"{s['annual_interval_width_mean']:.3g} (parameters only "
                    f"{s['annual_interval_width_parameters']:.3g})")
            continue
        cov = s["annual_coverage_90"]
        cov = "n/a (no complete year)" if cov is None else f"{cov:.0%}"
        rmse = (f", daily RMSE {s['rmse_daily_defaults']:.3g} -> {s['rmse_daily_posterior_mean']:.3g}"
                if s["validation_observed_days"] else " (its products are of months or years)")
        ctx.say(f"  {v}: annual 90 % coverage {cov}, interval "
                f"{s['annual_interval_width_mean']:.3g} "
                f"(parameters only {s['annual_interval_width_parameters']:.3g}){rmse}")


def _validation_units(ctx: SiteContext, observed: dict) -> dict[str, tuple[float, str]]:
    """Each variable's factor from the model's units and the units it is validated in: a carbon
    flux in gC m-2 d-1 (its annual sums in gC m-2 yr-1, REFLEX's), whatever the model's units
    (kg m-2 s-1 gave sums of 1e-5); any other variable in the model's units."""
    from bayescal.readers import conversion_factor
    from bayescal.readers.units import UnitError

    out = {}
    for v in observed:
        units = next(p.units for p in ctx.products() if p.variable == v)
        try:
            out[v] = (conversion_factor(units, "gC m-2 d-1", v), "gC m-2 d-1")
        except UnitError:
            out[v] = (1.0, units)
    return out


def _parameter_coverage(ctx: SiteContext, post: np.ndarray) -> dict:
    """Twin: is each true value inside its 90 % interval, and how much did the data narrow it."""
    space = ctx.space()
    truth = space.to_unit(space.reduce(ctx.truth_theta()))
    q05, q95 = np.quantile(post, [0.05, 0.95], axis=0)
    ratio = post.std(axis=0) / np.sqrt(1.0 / 12.0)
    return {lab: {"truth_u": float(truth[j]), "q05": float(q05[j]), "q95": float(q95[j]),
                  "inside_90": bool(q05[j] <= truth[j] <= q95[j]), "sd_ratio": float(ratio[j]),
                  "identifiable": bool(ratio[j] < 0.5)} for j, lab in enumerate(space.labels)}
