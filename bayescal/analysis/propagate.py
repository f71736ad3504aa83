"""From a posterior to the carbon budget: parameter sets through the runner, bands, Table 3, GCB.

:func:`propagate` runs named parameter sets (posterior draws, the defaults, the optimiser's best,
the alternatives) through :func:`bayescal.run.ensemble.run_ensemble` and returns their global annual
series; :func:`bands` gives quantile bands over the posterior draws, :func:`budget_table` the
Seiler Table 3 (period means per set, optimised - default in absolute and %),
:func:`spread_decomposition` parameter against observational spread, :func:`gcb_comparison` the
chi-squared and coverage of simulated NBP against GCB 2024 with its propagated sigma, and
:func:`coverage` the fraction of years a band contains a reference series.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from ..observations.gcb import load_gcb2024, load_gcb2024_land_models
from ..parameters import UNIT_CUBE, ParameterSpace
from ..run.ensemble import EnsembleStore, run_ensemble

__all__ = [
    "table3_frame",
    "BUDGET_VARIABLES",
    "band_widths",
    "bands",
    "budget_table",
    "coverage",
    "gcb_comparison",
    "propagate",
    "spread_decomposition",
]

#: Global annual variables of Seiler's Table 3 (model names).
BUDGET_VARIABLES = (
    "nbp_global",
    "gpp_global",
    "ra_global",
    "rh_global",
    "fire_global",
    "cveg_global",
    "csoil_global",
)


def propagate(
    simulator,
    space: ParameterSpace,
    sets: Mapping[str, np.ndarray],
    store: str | Path,
    variables: Sequence[str] = BUDGET_VARIABLES,
    executor=None,
    batch_size: int = 32,
    progress: bool = False,
    run=run_ensemble,
) -> xr.Dataset:
    """Run named sets of unit-cube points and collect their outputs.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta) -> Dataset`` as for the runner.
    space : ParameterSpace
        Maps unit-cube points of its free parameters to full vectors.
    sets : mapping of name to (k, d) unit-cube points
        E.g. ``{"posterior": draws, "default": u_default[None], "optimised": u_best[None],
        "alternative": alt}``.
    store : path
        The ensemble store (resumable).
    variables : sequence of str
        Outputs to keep.
    run : callable, default :func:`~bayescal.run.ensemble.run_ensemble`
        What runs the members (same arguments): a workflow's, which also takes its earlier runs
        at the same values (:mod:`bayescal.run.reuse`).

    Returns
    -------
    xarray.Dataset
        The outputs on ``member`` with coordinates ``set`` (name) and ``index`` (row within the
        set), plus ``u`` (member, parameter) and ``status``.
    """
    names, idx, rows = [], [], []
    for name, pts in sets.items():
        pts = np.atleast_2d(np.asarray(pts, dtype=float))
        if pts.shape[1] != space.n_free:
            raise ValueError(
                f"propagate: set {name!r} has {pts.shape[1]} values per point, the space "
                f"has {space.n_free} free parameters"
            )
        names += [name] * len(pts)
        idx += list(range(len(pts)))
        rows.append(pts)
    u = np.vstack(rows)
    theta = space.expand(space.from_unit(u))
    design = space.to_dataarray(theta, full=True)
    run(
        simulator,
        design,
        store,
        executor=executor,
        batch_size=batch_size,
        keep=list(variables),
        progress=progress,
    )
    ens = EnsembleStore(store).load()
    ens = ens.assign_coords(set=("member", np.array(names)), index=("member", np.array(idx)))
    ens["u"] = (("member", "parameter_free"), u, UNIT_CUBE)
    ens = ens.assign_coords(parameter_free=space.labels)
    return ens


def _draws(ens: xr.Dataset, variable: str, name: str = "posterior") -> xr.DataArray:
    sel = (ens["set"] == name).values & (ens["status"] == "done").values
    if not sel.any():
        raise ValueError(f"no finished members in set {name!r}")
    return ens[variable].isel(member=np.flatnonzero(sel))


def bands(
    ens: xr.Dataset,
    variables: Sequence[str] = ("gpp_global", "nbp_global"),
    quantiles: Sequence[float] = (0.05, 0.25, 0.5, 0.75, 0.95),
    name: str = "posterior",
) -> xr.Dataset:
    """Quantile bands per year over the finished members of set ``name``."""
    out = {}
    for v in variables:
        da = _draws(ens, v, name)
        out[v] = da.quantile(list(quantiles), dim="member").assign_attrs(da.attrs)
    return xr.Dataset(out, attrs={"n_draws": int(_draws(ens, variables[0], name).sizes["member"])})


def band_widths(posterior: xr.Dataset, prior: xr.Dataset, lower: float = 0.05,
                upper: float = 0.95) -> dict[str, dict[str, float | str]]:
    """Median over years of each variable's band width (``upper`` minus ``lower`` quantile), for
    the posterior and the prior predictive bands (:func:`bands` of each set), and their ratio:
    how much of the prior's spread of the carbon budget the data remove.
    """
    out: dict[str, dict[str, float | str]] = {}
    for v in posterior.data_vars:
        widths = [float((b[v].sel(quantile=upper) - b[v].sel(quantile=lower)).median())
                  for b in (posterior, prior)]
        out[str(v)] = {"posterior": widths[0], "prior": widths[1],
                       "ratio": widths[0] / widths[1] if widths[1] > 0 else float("nan"),
                       "units": str(posterior[v].attrs.get("units", ""))}
    return out


def coverage(band: xr.DataArray, reference: xr.DataArray, lower: float = 0.05, upper: float = 0.95) -> float:
    """Fraction of the shared years in which ``reference`` lies within the band's quantiles."""
    lo, hi, ref = xr.align(band.sel(quantile=lower), band.sel(quantile=upper), reference, join="inner")
    if ref.sizes.get("year", 0) == 0:
        raise ValueError("coverage: band and reference share no year")
    inside = (ref >= lo) & (ref <= hi)
    return float(inside.mean())


def budget_table(
    ens: xr.Dataset,
    years: tuple[int, int] = (2003, 2022),
    variables: Sequence[str] = BUDGET_VARIABLES,
    reference: str = "default",
    optimised: str = "optimised",
) -> xr.Dataset:
    """Seiler Table 3: period means of each variable for every single-member set and the posterior.

    Rows (``row``) are the single-member sets in order (``default``, ``optimised``, then each
    alternative as ``alternative 1``..) and ``posterior mean``; ``difference`` is optimised -
    default and ``difference_percent`` is 100 x difference / default.
    """
    y0, y1 = years
    sub = ens.sel(year=slice(y0, y1))
    if sub.sizes.get("year", 0) == 0:
        raise ValueError(f"budget_table: the simulation covers no year in {y0}-{y1}")
    rows, values = [], []
    for name in dict.fromkeys(ens["set"].values.tolist()):
        members = np.flatnonzero((ens["set"] == name).values)
        if name in ("posterior", "prior"):  # draws: the posterior's mean is its own row
            continue
        for k, m in enumerate(members):
            rows.append(name if members.size == 1 else f"{name} {k + 1}")
            values.append([float(sub[v].isel(member=m).mean("year")) for v in variables])
    if (ens["set"] == "posterior").any():
        post = [float(_draws(sub, v).mean("year").mean("member")) for v in variables]
        rows.append("posterior mean")
        values.append(post)
    table = xr.Dataset(
        {"mean": (("row", "variable"), np.array(values))},
        coords={
            "row": rows,
            "variable": list(variables),
            "units": ("variable", [ens[v].attrs.get("units", "") for v in variables]),
        },
        attrs={"period": f"{y0}-{y1}", "reference": "Seiler (2025) Table 3"},
    )
    if reference in rows and optimised in rows:
        d = table["mean"].sel(row=optimised) - table["mean"].sel(row=reference)
        table["difference"] = d
        table["difference_percent"] = 100.0 * d / table["mean"].sel(row=reference)
    return table


def spread_decomposition(
    ens: xr.Dataset,
    observation_sigma: Mapping[str, xr.DataArray | float],
    name: str = "posterior",
) -> xr.Dataset:
    """Parameter spread (sd over posterior draws) against observational sigma, per variable.

    ``observation_sigma`` maps a variable to its observational 1-sigma per year or overall (e.g.
    GCB 2024 ``nbp_sigma`` for NBP, the spread between GPP products for GPP). Returns the
    period-mean ``parameter_sd``, ``observation_sd``, ``total_sd`` (in quadrature) and
    ``parameter_fraction`` (share of the variance from the parameters).
    """
    out = {"parameter_sd": [], "observation_sd": []}
    names = list(observation_sigma)
    for v in names:
        draws = _draws(ens, v, name)
        psd = draws.std("member")
        osd = observation_sigma[v]
        if isinstance(osd, xr.DataArray):
            psd, osd = xr.align(psd, osd, join="inner")
            osd = float(osd.mean())
        out["parameter_sd"].append(float(psd.mean()))
        out["observation_sd"].append(float(osd))
    p, o = np.array(out["parameter_sd"]), np.array(out["observation_sd"])
    return xr.Dataset(
        {
            "parameter_sd": ("variable", p),
            "observation_sd": ("variable", o),
            "total_sd": ("variable", np.hypot(p, o)),
            "parameter_fraction": ("variable", p**2 / (p**2 + o**2)),
        },
        coords={"variable": names},
    )


def gcb_comparison(
    ens: xr.Dataset,
    years: tuple[int, int] = (1960, 2023),
    gcb: xr.Dataset | None = None,
    name: str = "posterior",
) -> xr.Dataset:
    """Simulated NBP against GCB 2024: chi-squared per member and band coverage.

    Returns ``chi2`` (member), ``chi2_per_year`` and attributes ``coverage_band`` (fraction of
    years the GCB NBP lies in the 5-95 % posterior band widened by the GCB sigma in
    quadrature), ``median_chi2_per_year`` and the 20-model spread's period mean.
    """
    from ..operators.scores import chi2_nbp

    gcb = load_gcb2024() if gcb is None else gcb
    sl = slice(*years)
    chi2 = chi2_nbp(ens, gcb, years=sl)
    n = chi2.attrs["n_years"]
    draws = _draws(ens, "nbp_global", name).sel(year=sl)
    q = draws.quantile([0.05, 0.5, 0.95], dim="member")
    ref, sig = gcb["nbp"].sel(year=sl), gcb["nbp_sigma"].sel(year=sl)
    q, ref, sig = xr.align(q, ref, sig, join="inner")
    half_lo = np.hypot(q.sel(quantile=0.5) - q.sel(quantile=0.05), 1.645 * sig)
    half_hi = np.hypot(q.sel(quantile=0.95) - q.sel(quantile=0.5), 1.645 * sig)
    inside = (ref >= q.sel(quantile=0.5) - half_lo) & (ref <= q.sel(quantile=0.5) + half_hi)
    models = load_gcb2024_land_models()
    out = xr.Dataset({"chi2": chi2, "chi2_per_year": chi2 / n})
    sets = ens["set"].values
    done = ens["status"].values == "done"
    post = (sets == name) & done
    out.attrs = {
        "years": f"{years[0]}-{years[1]}",
        "n_years": int(n),
        "coverage_band": float(inside.mean()),
        "median_chi2_per_year_posterior": float(np.median(out["chi2_per_year"].values[post]))
        if post.any()
        else float("nan"),
        "dgvm_spread_sd": float(models["sd"].sel(year=sl).mean()),
    }
    return out


def table3_frame(table: xr.Dataset):
    """Seiler's Table 3 as a pandas frame: set means and optimised - default (absolute and %)."""
    df = table["mean"].to_pandas()
    if "difference" in table:
        df.loc["optimised - default"] = table["difference"].to_pandas()
        df.loc["optimised - default (% of default)"] = table["difference_percent"].to_pandas()
    df.columns = [f"{v} ({u})" for v, u in zip(table["variable"].values, table["units"].values, strict=True)]
    return df
