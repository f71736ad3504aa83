"""The propagate stage of the default route: posterior draws, the default, the optimum and the
alternative sets through the runner's store; bands, Table 3, GCB 2024 comparison, AMBER scores."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayescal.workflow.rundir import write_json_atomic
from bayescal.workflows.global_.context import GLOBAL_LAND_M2

if TYPE_CHECKING:
    from bayescal.workflows.global_.context import GlobalContext

__all__ = ["run_propagate"]




def _gcb_comparison(ens: xr.Dataset, gcb: xr.Dataset, start: int, end: int,
                    land_m2: float = np.inf) -> xr.Dataset:
    """:func:`~bayescal.analysis.propagate.gcb_comparison` over the model's years that GCB 2024
    has; none (an empty comparison with ``n_years = 0`` and its ``reason``) for your own model of
    another era, or of less than half the world's land (``land_m2``: its cells' area; GCB's land
    sink is global)."""
    from bayescal.analysis.propagate import gcb_comparison

    first, last = max(1960, start), min(int(gcb["year"].max()), end)
    if first <= last and land_m2 >= GLOBAL_LAND_M2:
        return gcb_comparison(ens, years=(first, last), gcb=gcb)
    reason = ("no year in common with GCB 2024" if first > last else
              f"the model's cells cover {land_m2 / 1e12:.3g} million km2 of land, less than half the "
              "embedded grid's 110 million km2: GCB 2024's land sink is global")
    return xr.Dataset(attrs={"years": "", "n_years": 0, "coverage_band": float("nan"),
                             "median_chi2_per_year_posterior": float("nan"), "reason": reason})


def run_propagate(ctx: GlobalContext) -> None:
    from bayescal.analysis.propagate import (
        BUDGET_VARIABLES,
        band_widths,
        bands,
        budget_table,
        coverage,
        propagate,
        table3_frame,
    )
    from bayescal.analysis.propagate import spread_decomposition as spread
    from bayescal.observations.gcb import load_gcb2024

    c = ctx.config["propagate"]
    out = ctx.run_dir / "propagate"
    space = ctx.space()
    post = ctx.posterior_u().values
    sets = _draw_sets(ctx, space, post, c["n_draws"])
    # your own model (docs/own-model.md) gives gpp_global and nbp_global; other budget terms if it has them
    budget = [v for v in BUDGET_VARIABLES if v in ("gpp_global", "nbp_global") or ctx.has_output(v)]
    ens = propagate(
        ctx.simulator,
        space,
        sets,
        out / "ensemble",
        variables=sorted({*budget, "gpp", *ctx.config["observations"]["variables"]}),
        batch_size=ctx.batch_size(),
        executor=ctx.executor,
        progress=ctx.progress,
        run=ctx.run_members,  # its runs at unchanged values (the defaults, ...) taken from .stale/
    )
    _require_finished(ens, out / "ensemble")
    b = bands(ens)
    b.to_netcdf(out / "bands.nc")
    prior_b = bands(ens, name="prior")
    prior_b.to_netcdf(out / "prior_bands.nc")
    y0, y1 = c["table_years"]
    table = budget_table(ens, (y0, y1), variables=budget)
    table.to_netcdf(out / "table3.nc")
    table3_frame(table).to_csv(out / "table3.csv")
    obs, truth = ctx.twin()
    twin = ctx.config["observations"]["twin"]  # else: real products, and the grid in the truth's place
    cov = {v: coverage(b[v], truth[v]) for v in ("gpp_global", "nbp_global")} if twin else None
    gcb = load_gcb2024()
    m = ctx.config["model"]
    land = ctx.land_area() if ctx.own_model else np.inf
    comp = _gcb_comparison(ens, gcb, m["start"], m["end"], land)
    comp.to_netcdf(out / "gcb_comparison.nc")
    gpp_sd = _product_spread_global(obs, truth)
    sd = spread(ens, {"nbp_global": gcb["nbp_sigma"], "gpp_global": gpp_sd})
    sd.to_netcdf(out / "spread.nc")
    keep = ["gpp", *budget]
    ens[keep + ["u", "status"]].drop_vars("theta", errors="ignore").to_netcdf(out / "outputs.nc")
    _set_scores(ctx, ens, obs).to_netcdf(out / "scores.nc")
    _model_checks(ctx, ens).to_netcdf(out / "checks.nc")
    met = comp.attrs["n_years"] > 0  # the model's years and the GCB's meet
    write_json_atomic(out / "summary.json", {
        "truth_coverage": cov,
        "parameter_coverage": _parameter_coverage(ctx, post) if twin else None,
        "gcb_coverage_band": comp.attrs["coverage_band"] if met else None,
        "gcb_median_chi2_per_year": comp.attrs["median_chi2_per_year_posterior"] if met else None,
        "gcb_reason": None if met else comp.attrs["reason"],
        "n_draws": int(b.attrs["n_draws"]),
        "band_widths": band_widths(b, prior_b),
    })
    ctx.say((f"  truth inside the 90 % band: GPP {cov['gpp_global']:.0%}, NBP {cov['nbp_global']:.0%} "
             "of years; " if cov else "  ") + (f"GCB NBP inside band+sigma: {comp.attrs['coverage_band']:.0%}"
                                                if met else f"no GCB comparison: {comp.attrs['reason']}"))
    _say_widths(ctx, band_widths(b, prior_b))


def _draw_sets(ctx: GlobalContext, space, post: np.ndarray, n_draws: int) -> dict[str, np.ndarray]:
    """The parameter sets run through the model (unit cube): draws of the posterior samples
    ``post``, the defaults, the optimum, the alternatives (bayescal's and Seiler's) and prior draws."""
    rng = np.random.default_rng(ctx.seed)
    eq = ctx.run_dir / "equifinality"
    return {
        "posterior": post[rng.choice(len(post), size=min(n_draws, len(post)), replace=False)],
        "default": space.to_unit(space.default)[None],
        "optimised": ctx.optimum_u()[None],
        "alternative": xr.load_dataset(eq / "alternatives.nc")["u"].values,
        # Seiler's five emulator-chosen distant sets, through the model as he ran them
        "seiler_alternative": xr.load_dataset(eq / "alternatives_seiler.nc")["u"].values,
        # the prior predictive (uniform on the calibrated cube, the route's prior), from its own
        # random stream so the posterior draws do not depend on it
        "prior": np.random.default_rng([ctx.seed, 17]).random((n_draws, space.n_free)),
    }


def _require_finished(ens: xr.Dataset, store, names=("posterior", "prior")) -> None:
    """A :class:`StageError` naming the store and the failures' reasons when not one run of a set
    of draws of ``names`` finished (the bands need some); every finished run is kept."""
    from bayescal.run.ensemble import count_reasons, describe_failures
    from bayescal.workflows.context import StageError

    done = ens["status"].values == "done"
    name = next((n for n in names if not done[(ens["set"] == n).values].any()), None)
    if name is None:
        return
    mine = (ens["set"] == name).values
    why = describe_failures(count_reasons(str(r) for r in ens["reason"].values[mine]), most=3)
    raise StageError(f"none of the {int(mine.sum())} {name} draws run through the model in {store} finished"
                     f"{': ' + why if why else ''}; the GPP and NBP bands need some. Make the model run "
                     "there (the failed runs' reasons are in the store; narrow the parameters' bounds "
                     "where it fails), then run again: finished runs are kept")


def _say_widths(ctx: GlobalContext, w: dict) -> None:
    ctx.say("  90 % band width, posterior / prior predictive: "
            + ", ".join(f"{v} {w[v]['posterior']:.2f} / {w[v]['prior']:.2f} {w[v]['units']}" for v in w))


def _model_checks(ctx: GlobalContext, ens: xr.Dataset) -> xr.Dataset:
    """Does the posterior carry the data, by the model itself: per likelihood summary, the
    posterior draws' 90 % interval (model runs) over the observational 90 % interval, the
    standardised residual of their mean (the posterior-mean prediction), and the same interval of
    the prior draws."""
    from .stages import _summary_coords

    observed, sigma = (np.asarray(a, float) for a in ctx.observed())
    sets, done = ens["set"].values, ens["status"].values == "done"

    def summaries(name: str) -> np.ndarray:
        y = ctx.summaries(ens.isel(member=np.flatnonzero((sets == name) & done)))
        return y[np.isfinite(y).all(1)]

    width = 2 * 1.6448536 * sigma
    post, prior = summaries("posterior"), summaries("prior")
    def interval(y: np.ndarray) -> np.ndarray:
        return np.subtract(*np.quantile(y, [0.95, 0.05], axis=0)) / width if len(y) > 1 else width * np.nan

    coords = _summary_coords(ctx) or {"summary": np.arange(observed.size)}
    long_name = "posterior draws' 90 % interval (model runs) / observational 90 % interval"
    return xr.Dataset(
        {"predictive_ratio": ("summary", interval(post), {"long_name": long_name}),
         "prior_ratio": ("summary", interval(prior), {"long_name": "the same for the prior draws"}),
         "residual": ("summary", (post.mean(0) - observed) / sigma,
                      {"long_name": "(mean of the posterior draws' summaries - observed) / sigma"})},
        coords={k: ("summary", np.asarray(v)) for k, v in coords.items()},
        attrs={"n_posterior": len(post), "n_prior": len(prior)})


def _set_scores(ctx: GlobalContext, ens: xr.Dataset, obs) -> xr.Dataset:
    """AMBER scores of the default, the optimum and Seiler's alternatives against every product
    (Seiler Figs. 7-8), with the optimiser's weighting of datasets."""
    from bayescal.operators.scores import score

    sets = ens["set"].values
    pick = np.flatnonzero(np.isin(sets, ["default", "optimised", "seiler_alternative"])
                          & (ens["status"].values == "done"))
    weighting = "datasets" if ctx.config["optimize"]["misfit"] == "seiler" else "variables"
    s = score(ens.isel(member=pick), obs, weighting=weighting)
    return s.assign_coords(set=("member", sets[pick]), index=("member", ens["index"].values[pick]))


def _parameter_coverage(ctx: GlobalContext, post_u: np.ndarray) -> dict[str, Any]:
    """Twin truth against the 90 % posterior interval of each calibrated value.

    Also lists the values the twin truth moves that are not calibrated: held at their
    defaults they make the calibrated values compensate, which the coverage then shows.
    """
    space = ctx.space()
    truth_u = space.to_unit(space.reduce(ctx.truth_theta()))
    q05, q95 = np.quantile(post_u, [0.05, 0.95], axis=0)
    inside = (q05 <= truth_u) & (truth_u <= q95)
    moved = list(ctx.config["observations"]["truth"])
    return {
        "inside_90": {lab: bool(v) for lab, v in zip(space.labels, inside, strict=True)},
        "fraction_inside_90": float(inside.mean()),
        "outside_90": [lab for lab, v in zip(space.labels, inside, strict=True) if not v],
        "truth_moved_left_out": [lab for lab in moved if lab not in space.labels],
        "truth_from_prior": bool(ctx.config["observations"]["truth_from_prior"]),
    }


def _product_spread_global(obs, truth: xr.Dataset) -> float:
    """Observational sigma of global GPP: sd of the global means of the GPP products (PgC yr-1)."""
    from bayescal.readers import conversion_factor

    area = truth["area"]
    vals = []
    for p in obs["gpp"]:
        f = conversion_factor(str(p.data.attrs.get("units")), "kg m-2 s-1", "gpp")  # your model's units
        flux = (f * p.data * area.sel(cell=p.data["cell"])).sum("cell", skipna=True)  # kg s-1
        vals.append(float(flux.mean("time")) * 86400 * 365.25 / 1e12)
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan")
