"""The report of a site run directory: the validation panel (REFLEX metrics), posteriors, error model.

Reads only the run directory (``bayescal report RUN_DIR`` runs no model).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib.dates as mdates
import numpy as np
import xarray as xr

from .figures import plot_convergence, plot_posterior_vs_prior, plt
from .page import diagnostics_section, png, posterior_diagnostics, runs_behind, trace_labels, write_page

__all__ = ["plot_validation", "write_site_report"]

GOALS = ("REFLEX (Fox et al. 2009): 90 % band covers >= 80 % of annual sums; "
         "annual-NEE interval < 110 gC m-2 y-1")


def plot_validation(bands: xr.Dataset, variables: list[str], units_of: dict[str, str] | None = None):
    """Validation years: daily, monthly and annual posterior-predictive 90 % bands against
    observations (``units_of``: each variable's daily units, when the bands do not carry them)."""
    units_of = units_of or {}
    fig, axes = plt.subplots(len(variables), 3, figsize=(13, 3.0 * len(variables)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1.4, 1]})
    for i, v in enumerate(variables):
        for j, scale in enumerate(("daily", "monthly", "annual")):
            ax, q, obs = axes[i, j], bands[f"{v}_{scale}"], bands[f"{v}_observed_{scale}"]
            dim = "time" if scale == "daily" else f"time_{scale}"
            t = q[dim].values
            if scale == "annual":  # a few years: bars, visible for one year too
                med, lo, hi = (q.sel(quantile=p).values for p in (0.5, 0.05, 0.95))
                ax.errorbar(t, med, yerr=[med - lo, hi - med], fmt="o", color="C0", capsize=4,
                            label="posterior predictive 90 %")
            else:
                ax.fill_between(t, q.sel(quantile=0.05), q.sel(quantile=0.95), color="C0", alpha=0.3, lw=0,
                                label="posterior predictive 90 %")
                ax.plot(t, q.sel(quantile=0.5), color="C0", lw=0.8 if scale == "daily" else 1.5,
                        label="median")
            style = {"daily": dict(s=2, color="k"), "monthly": dict(s=10, color="k"),
                     "annual": dict(s=30, color="k", marker="D")}[scale]
            ax.scatter(obs[dim].values, obs.values, label="observed", zorder=3, **style)
            units = bands[f"{v}_observed_daily"].attrs.get("units") or units_of.get(v, "?")
            how = {"time: mean": "means", "time: sum": "sums"}.get(q.attrs.get("cell_methods"), "sums")
            total = obs.attrs.get("units") if how == "means" or obs.attrs.get("units") != units else None
            total = total if total is not None else f"{units} x d"
            ax.set_title(f"{v.upper()} {scale} ({units})" if scale == "daily" else
                         f"{v.upper()} {scale} {how}" + (f" ({total})" if total else ""), fontsize=9)
            ax.tick_params(labelsize=7)
            if scale == "annual":
                ax.set_xticks(t, [str(x)[:4] for x in t])
            else:  # readable dates: a few ticks, concise labels
                loc = mdates.AutoDateLocator(minticks=3, maxticks=6)
                ax.xaxis.set_major_locator(loc)
                ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
            if i == 0 and j == 0:
                ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _f(x: float | None, spec: str) -> str:
    """A number for a table cell; "--" where nothing was observed (None)."""
    return "&ndash;" if x is None else format(x, spec)


def _g(x: float | None) -> str:
    """An annual value: whole numbers for sums of hundreds (NEE in gC m-2 yr-1), three figures for
    a mean (LAI 3.47)."""
    return _f(x, ".0f" if x is not None and abs(x) >= 100 else ".3g")


def _metrics_table(summary: dict, variables: list[str]) -> str:
    rows = []
    for v in variables:
        s = summary[v]
        annual = html.escape(f"{s.get('annual_aggregation', 'sum')}, {s.get('annual_units', '?')}")
        rows.append(
            f"<tr><td>{v.upper()}</td><td>{html.escape(s.get('units', '?'))}</td><td>{annual}</td>"
            f"<td>{_f(s['annual_coverage_90'], '.0%')}</td>"
            f"<td>{_g(s['annual_interval_width_mean'])}</td><td>{_g(s['annual_interval_width_parameters'])}</td>"
            f"<td>{_f(s['rmse_daily_defaults'], '.3f')}</td>"
            f"<td>{_f(s['rmse_daily_posterior_mean'], '.3f')}</td>"
            f"<td>{_f(s['rmse_reduction'], '.0%')}</td>"
            f"<td>{', '.join(_g(x) for x in s['observed_annual'])}</td>"
            f"<td>{', '.join(_g(x) for x in s['predicted_annual_median'])}</td></tr>")
    head = ("<tr><th>variable</th><th>daily units</th><th>annual value (a flux's sum, a state's mean), "
            "units</th><th>annual values inside 90 % band</th>"
            "<th>90 % width of annual values, predictive</th>"
            "<th>90 % width of annual values, parameters only</th><th>daily RMSE defaults (daily units)</th>"
            "<th>daily RMSE posterior mean (daily units)</th>"
            "<th>RMSE reduction</th><th>observed annual (complete years)</th>"
            "<th>predicted annual (median)</th></tr>")
    note = ("<p>The validation years are compared with every day the files give (FLUXNET: the gap-filled "
            "values whatever their quality flag, qc_min = 0), the calibration with the days of each "
            "product's qc_min; an annual value is observed only in a year without a missing day.</p>")
    return f"<table class='t'>{head}{''.join(rows)}</table>{note}"


def _coverage_table(pc: dict | None) -> str:
    if not pc:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['truth_u']:.3f}</td><td>{v['q05']:.3f}</td><td>{v['q95']:.3f}</td>"
        f"<td>{'yes' if v['inside_90'] else 'NO'}</td><td>{v['sd_ratio']:.2f}</td>"
        f"<td>{'yes' if v['identifiable'] else 'no'}</td></tr>" for k, v in pc.items())
    return ("<h3>Twin: parameter recovery (unit cube)</h3><table class='t'><tr><th>parameter</th>"
            "<th>truth</th>"
            "<th>q05</th><th>q95</th><th>inside 90 %</th><th>posterior sd / prior sd</th>"
            f"<th>identifiable (&lt; 0.5)</th></tr>{rows}</table>")


def _refinement_table(path: Path) -> str:
    """The emulator route's rounds (posterior/refinement.nc): runs, how the posterior moved, and
    how sure the emulator was of the log-likelihood where the posterior is."""
    if not path.is_file():
        return ""
    h = xr.load_dataset(path)
    nan = xr.full_like(h["n_train"], np.nan, dtype=float)
    err, z = h.get("heldout_error", nan), h.get("heldout_z", nan)  # absent in older run directories
    rows = "".join(
        f"<tr><td>{r}</td><td>{int(h['n_train'][r])}</td><td>{float(h['mean_shift'][r]):.3g}</td>"
        f"<td>{float(h['sd_change'][r]):.3g}</td><td>{float(h['sd_loglik_q90'][r]):.3g}</td>"
        f"<td>{float(err[r]):.3g}</td><td>{float(z[r]):.3g}</td>"
        f"<td>{int(h['n_steps'][r])}</td></tr>" for r in range(h.sizes["round"]))
    verdict = "converged" if h.attrs.get("converged") else "stopped at the last round without converging"
    return (f"<h3>Emulator refinement ({verdict}; rule: {html.escape(str(h.attrs.get('criterion', '')))}, "
            f"tol {h.attrs.get('tol')}, {h.attrs.get('sd_loglik_max')} nats)</h3><table class='t'><tr>"
            "<th>round</th><th>model runs in the emulator</th><th>max |mean shift| / sd</th>"
            "<th>max |sd ratio &minus; 1|</th><th>q90 of sd[log L] (nats)</th>"
            "<th>log L error at the round's new runs, before fitting them (rms, nats)</th>"
            "<th>median |error| / sd[log L] (0.67 if the sd is right)</th><th>chain steps</th></tr>"
            f"{rows}</table>" + (f"<p>The posterior: {html.escape(str(h.attrs['final_target']))}.</p>"
                                 if "final_target" in h.attrs else ""))


_TWIN = ("twin (synthetic) observations: the truth run plus noise of each product's sigma in the "
         "calibration years; in the held-out years the 'observed' values are the truth run itself, "
         "without noise (the quantity the bands should cover)")


def describe_model(m: dict) -> str:
    """Words for the model: its kind, and for DALEC its site (from the drivers' FLUXNET
    file name) and the latitude it ran at (south of the equator, phenology counts from 1 July)."""
    if m["kind"] != "dalec":
        return f"{m['kind']} model"
    from ..readers.fluxnet import file_site

    site = file_site(m["drivers"]) if m["drivers"] else None
    lat = m.get("latitude")
    where = "" if lat is None else f", latitude {abs(lat):.2f}\N{DEGREE SIGN} {'S' if lat < 0 else 'N'}"
    south = "; phenology days counted from 1 July" if lat is not None and lat < 0 and \
        m["dalec_type"] == "deciduous" else ""
    return f"DALEC-{m['dalec_type']}{' at ' + site if site else ''}{where}{south}"


def _error_row(e: dict) -> str:
    """One product's error-model row, a carbon flux in gC m-2 d-1 as the validation table is
    (whatever the model's units), any other variable in its own."""
    from ..readers import conversion_factor
    from ..readers.units import UnitError

    try:
        f, units = conversion_factor(e["units"], "gC m-2 d-1", e.get("variable", "")), "gC m-2 d-1"
    except UnitError:
        f, units = 1.0, e["units"]
    from ..operators.timeseries import MIN_RHO_PAIRS

    # a product without consecutive periods (8-day LAI) has no estimable rho: 0 is used, not found
    rho = f"{e['rho']:.2f}" if e.get("rho_pairs", MIN_RHO_PAIRS) >= MIN_RHO_PAIRS else \
        f"0 (not estimable: {e['rho_pairs']} consecutive pairs, {MIN_RHO_PAIRS} needed)"
    return (f"<tr><td>{html.escape(e['product'])}</td><td>{e['n_values']}</td>"
            f"<td>{e['sigma_median'] * f:.3g}</td><td>{e['discrepancy'] * f:.3g}</td>"
            f"<td>{e.get('emulator_sd_median', 0.0) * f:.3g}</td><td>{rho}</td>"
            f"<td>{html.escape(units)}</td></tr>")


#: the posterior's route, said at the top of the report (docs/site.md)
_ROUTES = {
    "direct": "Route: direct (posterior.route = \"direct\"): emcee on the model itself, every step a "
              "batch of model runs; no emulator.",
    "emulator": "Route: emulator (posterior.route = \"emulator\"): an SVD emulator of the calibration "
                "series from design runs, refined by rounds of model runs; the chains run on the emulator "
                "(see the refinement table).",
}


def write_site_report(rd) -> Path:
    """Figures and ``report.html`` of a site run directory (see :func:`bayescal.report.write_report`)."""
    from ..posterior import get_group, load_inference_data, unit_samples
    from .figures import log_scaled, plot_pair, plot_trace

    cfg, run, space = rd.config(), rd.path, rd.space()
    rd.figures.mkdir(parents=True, exist_ok=True)
    bands = xr.load_dataset(run / "propagate" / "bands.nc")
    summary = json.loads((run / "propagate" / "summary.json").read_text())
    # every validated variable (a model of your own may give others than nee, gpp, reco, le, lai)
    variables = [v for v in summary if isinstance(summary[v], dict) and f"{v}_daily" in bands]
    errs = json.loads((run / "posterior" / "error_model.json").read_text())
    idata = load_inference_data(run / "posterior" / "posterior.nc")
    post, post_u = get_group(idata, "posterior"), unit_samples(idata, space)
    diag = posterior_diagnostics(run / "posterior", idata)
    best = [space.labels[j] for j in np.argsort(post_u.std("sample").values, kind="stable")[:4]]
    pc = summary.get("parameter_coverage")
    truth_u = np.array([pc[lab]["truth_u"] for lab in space.labels]) if pc else None
    figs = [
        ("validation", "Validation years: posterior-predictive 90 % bands (model draws plus the error model) "
         "against the observations, daily, monthly and annual.",
         plot_validation(bands, variables, {v: summary[v].get("units", "?") for v in variables})),
        ("posterior_vs_prior", "Marginal posteriors in physical units (name [units], description) over "
         "their uniform prior range. The optimum (red, dashed) maximises the likelihood with the "
         "observation errors alone; the posterior adds the error model (discrepancy, AR(1)), so where "
         "that error is large the two can differ. Red titles: posteriors piled at a bound of the prior.",
         plot_posterior_vs_prior(post_u, truth_u, rd.optimum_u(), space)),
        ("trace", "Traces of the values with the largest R-hat (every walker a line; physical units).",
         plot_trace(post, trace_labels(diag))),
        ("pair_plot", "Pair plot of the four best-constrained values (physical units; pooled walkers).",
         plot_pair(post, best, log=log_scaled(space, best))),
        ("convergence", "Maximum likelihood (CMA-ES): minus the log-likelihood per run.",
         plot_convergence(xr.load_dataset(run / "optimize" / "history.nc"))),
    ]
    imgs = [(n, c, png(f, rd.figures / f"{n}.png")) for n, c, f in figs]
    val, cal = cfg["site"]["validation_years"], cfg["site"]["calibration_years"]
    records = rd.records()
    err_rows = "".join(_error_row(e) for e in errs)
    parts = [
        f"<h1>{html.escape(cfg['report']['title'])}</h1>",
        f"<p>{html.escape(describe_model(cfg['model']))} &middot; calibration {cal[0]}-{cal[1]} &middot; "
        f"validation {val[0]}-{val[1]} &middot; {len(space.labels)} calibrated values &middot; "
        f"{runs_behind(records)} &middot; "
        f"{_TWIN if cfg['observations']['twin'] else 'real observations'}</p>",
        f"<p>{_ROUTES[cfg['posterior']['route']]}</p>",
        f"<h2>Validation on held-out years</h2><p>{html.escape(GOALS)}.</p>",
        _metrics_table(summary, variables),
        "<h3>Error model (per product, calibration years)</h3><table class='t'><tr><th>product</th>"
        "<th>values</th><th>median sigma</th>"
        "<th>discrepancy s (from a model run: the optimum's, or the best run on the emulator route)</th>"
        "<th>emulator sd at the posterior mode (median; emulator route, not in the likelihood)</th>"
        "<th>AR(1) rho</th><th>units</th></tr>"
        f"{err_rows}</table>",
        _refinement_table(run / "posterior" / "refinement.nc"),
        _coverage_table(pc),
        diagnostics_section(diag),
    ]
    return write_page(rd, cfg["report"]["title"], parts, imgs)
