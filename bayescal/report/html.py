"""The report of a global (Seiler) run directory: its sections and figures on the one page
(:mod:`.page`); reads the run directory only."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import xarray as xr

from .figures import (
    log_scaled,
    plot_bands,
    plot_bias_change,
    plot_clouds,
    plot_convergence,
    plot_loo,
    plot_pair,
    plot_posterior_vs_prior,
    plot_ranking,
    plot_scree,
    plot_trace,
)
from .page import diagnostics_section, png, posterior_diagnostics, runs_behind, trace_labels, write_page

__all__ = ["write_global_report"]


def _truth_coverage_item(cov: dict | None) -> str:
    if not cov:
        return "<li>observations: real products from files (no twin truth)</li>"
    return (f"<li>twin truth inside the 5-95 % posterior band: GPP {cov['gpp_global']:.0%}, "
            f"NBP {cov['nbp_global']:.0%} of years</li>")


def _band_width_item(widths: dict | None) -> str:
    """One list item: the posterior's 90 % band of global GPP and NBP against the prior predictive's."""
    if not widths:
        return ""
    parts = [f"{v.replace('_global', '').upper()} {w['posterior']:.2f} of {w['prior']:.2f} {w['units']} "
             f"(ratio {w['ratio']:.2f})" for v, w in widths.items()]
    return ("<li>median width of the 90 % band, posterior of prior predictive (the same model with "
            f"values drawn from the prior): {'; '.join(parts)}</li>")


def _parameter_coverage_item(pc: dict | None) -> str:
    """One list item: twin-truth values inside their 90 % interval, and those left out."""
    if not pc:
        return ""
    n = len(pc["inside_90"])
    out = ", ".join(pc["outside_90"]) or "none"
    left = ", ".join(pc["truth_moved_left_out"]) or "none"
    k = round(pc["fraction_inside_90"] * n)
    why = ("the truth is drawn from the prior, so a calibrated posterior covers about 90 % (goal 80-97 %)"
           if pc.get("truth_from_prior") else
           "the truth is the defaults, central in their priors, but for the moved values: a value the data "
           "leave free keeps the prior's interval, which covers a central truth, so near 100 % is expected; "
           "observations.truth_from_prior = true makes this a coverage check")
    return (f"<li>twin truth inside the 90 % posterior interval: {k} of {n} calibrated values "
            f"(outside: {html.escape(out)}; {why}); values the truth moves that were left out of the "
            f"calibration (held at their defaults, so others compensate): {html.escape(left)}</li>")


def _left_out_item(path) -> str:
    """One list item: how the values left out of the calibration enter the likelihood."""
    if not path.exists():
        return ""
    lo = xr.load_dataset(path)
    n = int(lo.attrs.get("n_left_out", 0))
    if lo.attrs.get("left_out") == "fix":
        return (f"<li>{n} values left out of the calibration are held at their defaults "
                "(posterior.left_out = 'fix'): the posterior is conditional on them</li>")
    r = (lo["left_out_sd"] / lo["sigma"]).values
    return (f"<li>{n} values left out of the calibration are marginalised over their prior: their spread "
            f"(median {np.median(r):.2f} σ, largest {r.max():.2f} σ of the observations) is in the "
            "likelihood as discrepancy</li>")


def write_global_report(rd) -> Path:
    """Figures and ``report.html`` of a global (Seiler) run directory (see :func:`.write_report`)."""
    twin = rd.twin()
    if twin is None:
        raise FileNotFoundError(f"{rd.twin_dir}: the twin products and truth run are missing; "
                                "run 'bayescal run' on this config first")
    rd.figures.mkdir(parents=True, exist_ok=True)
    cfg = rd.config()
    return write_page(rd, cfg["report"]["title"], _summary_sections(rd, cfg), _figures(rd, *twin))


def _figures(rd, obs, truth: xr.Dataset) -> list[tuple[str, str, str]]:
    """Every figure of the report as (name, caption, base64 PNG), each also saved to figures/."""
    from ..observations.gcb import load_gcb2024, load_gcb2024_land_models
    from ..posterior import get_group, load_inference_data, unit_samples

    run, space = rd.path, rd.space()
    theta = rd.truth_theta()  # None: real products, and the model grid stands in truth.nc
    truth_u = None if theta is None else space.to_unit(space.reduce(theta))
    twin_truth = truth if theta is not None else None
    figs: list[tuple[str, str, str]] = []

    def add(name: str, caption: str, fig) -> None:
        figs.append((name, caption, png(fig, rd.figures / f"{name}.png")))

    if (run / "screen" / "indices.nc").exists():
        add("sensitivity", "Morris screening: mu* of the misfit per parameter (top 20).",
            plot_ranking(xr.load_dataset(run / "screen" / "indices.nc"), "misfit", top=20).figure)
    if (run / "optimize" / "history.nc").exists():
        add("convergence", "Optimiser convergence (Seiler Fig. 4).",
            plot_convergence(xr.load_dataset(run / "optimize" / "history.nc")))
    add("emulator_loo", "Misfit emulator, leave-one-out (Seiler Fig. 6a).",
        plot_loo(xr.load_dataset(run / "emulate" / "misfit_loo.nc")))
    eq = run / "equifinality"
    add("distance_clouds", "Distance to the optimum vs emulated misfit (Seiler Fig. 6b, c).",
        plot_clouds(xr.load_dataset(eq / "cloud_global.nc"), xr.load_dataset(eq / "cloud_local.nc")))
    if (eq / "top_fraction_pca.nc").exists():
        from .seiler import plot_top_fraction_pca

        add("top_fraction_pca", "Seiler's procedure: the best 10 % of the emulator's training runs span a "
            "box; a Latin hypercube in it, emulated; the best 10 % of that: the cumulative fraction of their "
            "variance against the number of principal components (unit cube), beside a uniform sample of "
            "the box (Seiler Fig. 6d).", plot_top_fraction_pca(xr.load_dataset(eq / "top_fraction_pca.nc")))
    add("pca_scree", "PCA scree of the posterior samples (bayescal's; not Seiler's Fig. 6d, which is of his "
        "top-10 % ensemble).", plot_scree(xr.load_dataset(eq / "pca.nc")))
    idata = load_inference_data(run / "posterior" / "posterior.nc")
    post = get_group(idata, "posterior")
    add("posterior_vs_prior", "Marginal posteriors in physical units (name [units]) over their uniform "
        "prior range; the optimiser's optimum (red, dashed) minimises the misfit without the prior or "
        "the emulator's uncertainty, so it may sit outside the posterior's bulk. Red titles: "
        "posteriors piled at a bound of the prior.",
        plot_posterior_vs_prior(unit_samples(idata, space), truth_u, rd.optimum_u(), space))
    ident = xr.load_dataset(eq / "identifiability.nc")
    top = [str(t) for t in ident["ratio"].sortby(ident["ratio"])["parameter"].values[:4]]
    add("pair_plot", "Pair plot of the four best-constrained parameters (physical units; pooled walkers).",
        plot_pair(post, top, log=log_scaled(space, top)))
    add("trace", "Traces of the values with the largest R-hat (every walker a line; physical units).",
        plot_trace(post, trace_labels(posterior_diagnostics(run / "posterior", idata))))
    outputs = xr.load_dataset(run / "propagate" / "outputs.nc")
    if _compared_with_gcb(rd):
        add("gpp_nbp_bands", "Global GPP and NBP, annual: posterior predictive bands with the default, the "
            "optimum, the alternatives, GCB 2024 and the DGVMs (bayescal's; Seiler's Fig. 10 is below).",
            plot_bands(outputs, load_gcb2024(), load_gcb2024_land_models(), twin_truth))
    else:
        add("gpp_nbp_bands", "The model's GPP and NBP (its gpp_global, nbp_global), annual: posterior "
            "predictive bands with the default, the optimum and the alternatives (not compared with GCB "
            "2024: see the summary).", plot_bands(outputs, None, None, twin_truth))
    _seiler_figures(rd, space, add)
    _seiler_output_figures(rd, obs, outputs, add)
    return figs


def _seiler_figures(rd, space, add) -> None:
    """Seiler's Fig. 5, where the run directory has its input."""
    from .seiler import plot_ga_parameters

    hist = rd.path / "optimize" / "history.nc"
    if hist.exists() and xr.open_dataset(hist).attrs.get("method") == "genetic_algorithm":
        add("ga_parameters", "GA: default vs optimised values and the best chromosome per generation "
            "(Seiler Fig. 5).", plot_ga_parameters(xr.load_dataset(hist), space.to_unit(space.default)))


def _set_fields(rd, outputs: xr.Dataset, variables) -> xr.Dataset | None:
    """The default's and the optimum's per-cell fields of the observed variables, on ``member``
    with ``set``: their files in the propagate store (``propagate/ensemble/members/member_NNNNNN.nc``,
    the layout of ``EnsembleStore``), else the per-cell variables ``outputs.nc`` keeps (GPP);
    None when either run failed."""
    sets, done = outputs["set"].values, outputs["status"].values == "done"
    found = [np.flatnonzero((sets == s) & done) for s in ("default", "optimised")]
    if any(f.size == 0 for f in found):
        return None
    idx = [int(f[0]) for f in found]
    members = outputs["member"].values[idx]
    files = [rd.path / "propagate" / "ensemble" / "members" / f"member_{int(m):06d}.nc" for m in members]
    if all(f.exists() for f in files):
        parts = [xr.load_dataset(f).drop_attrs() for f in files]
        keep = [v for v in variables if v in parts[0] and "cell" in parts[0][v].dims]
        ds = xr.concat([p[keep] for p in parts], dim="member").assign_coords(member=members)
    else:
        ds = outputs[[v for v in variables if v in outputs and "cell" in outputs[v].dims]].isel(member=idx)
    return ds.assign_coords(set=("member", ["default", "optimised"]))


_FIG7 = ("AMBER scores per product (rows) and score (columns) of (a) the default and (b) the optimum, "
         "(c) their difference (Seiler Fig. 7). {test}")
_FIG7_TEST = ("Bold black numbers in (c): the default's and the optimum's per-cell scores differ at the 5 % "
              "level (two-sided Wilcoxon rank-sum test over the grid cells, as AMBER's scores.compare, the "
              "test behind Seiler's marks; S_overall on the pooled per-cell scores with S_dist, as AMBER "
              "pools them); grey: not significant. S_dist is one number per map and is not tested, nor are "
              "products of variables whose per-cell fields the run directory lacks. "
              "Neighbouring cells are not independent, so the test errs towards significance.")


def _seiler_output_figures(rd, obs, outputs: xr.Dataset, add) -> None:
    """Seiler's Figs. 7-10: the scores of the default, the optimum and Seiler's alternatives, the
    change of the bias per cell, global GPP and NBP; where the run directory has their inputs."""
    from ..observations.gcb import load_gcb2024
    from .seiler import (
        cell_scores,
        gpp_nbp_caption,
        gpp_nbp_data,
        plot_ensemble_scores,
        plot_gpp_nbp,
        plot_set_scores,
    )

    fields = _set_fields(rd, outputs, obs.variables)
    scores = rd.path / "propagate" / "scores.nc"
    if scores.exists():
        cells = None if fields is None else cell_scores(fields, obs)
        test = _FIG7_TEST if cells is not None else "No per-cell fields of these runs: no significance test."
        s = xr.load_dataset(scores)
        add("amber_scores", _FIG7.format(test=test), plot_set_scores(s, cells))
        if (s["set"] == "seiler_alternative").any():
            add("ensemble_scores", "AMBER scores of the optimum and Seiler's alternative sets "
                "(Seiler Fig. 8).", plot_ensemble_scores(s))
    if fields is not None and fields.data_vars:
        products = [p for p in obs if p.variable in fields]
        add("bias_change", "Optimised minus default absolute bias per cell against every product of "
            f"{', '.join(fields.data_vars)} (one panel each); black dots: the bias fell (Seiler Fig. 9).",
            plot_bias_change(fields, products))
    gcb = load_gcb2024()
    if _compared_with_gcb(rd):  # not for another model's era, nor a model of less than the world
        data = gpp_nbp_data(outputs, gcb, obs["gpp"] if "gpp" in obs.variables else [])
        add("gpp_nbp_seiler", gpp_nbp_caption(data), plot_gpp_nbp(data))


#: the refinement table's columns, named with their units
_ROUND_COLUMNS = {
    "n_train": "model runs in the emulator", "nroy_fraction": "not-ruled-out fraction (of the prior)",
    "emulator_sd": "median emulator sd (σ units)", "mean_shift": "max |mean shift| (posterior sd)",
    "sd_change": "max |sd ratio − 1|", "sd_loglik_q90": "q90 of sd[log L] (nats)", "n_steps": "chain steps",
    "heldout_error": "log L error at the new runs before fitting (rms, nats)",
    "heldout_z": "median |log L error| / sd[log L] (0.67 if honest)",
}


def _tab(df, fmt: str = "{:.4g}") -> str:
    return df.to_html(float_format=lambda x: fmt.format(x), border=0, classes="t")


def _compared_with_gcb(rd) -> bool:
    """Whether the propagate stage compared the model with GCB 2024 (its years meet GCB's and it
    covers the world's land; run directories before ``gcb_reason``: by the years alone)."""
    diag = json.loads((rd.path / "propagate" / "summary.json").read_text())
    return diag.get("gcb_coverage_band") is not None


def _gcb_item(diag: dict) -> str:
    """The GCB 2024 comparison's line (none when the model's years and the GCB's do not meet)."""
    if diag.get("gcb_coverage_band") is None:
        why = diag.get("gcb_reason") or "no year in common with the model's years"
        return f"<li>GCB 2024 NBP: not compared ({html.escape(why)})</li>"
    return (f"<li>GCB 2024 NBP inside the band widened by its σ: {diag['gcb_coverage_band']:.0%} of years; "
            f"median χ²/year of the posterior draws {diag['gcb_median_chi2_per_year']:.2f}</li>")


def _summary_sections(rd, cfg: dict) -> list[str]:
    """Stages, the carbon-budget table, diagnostics, identifiability and refinement rounds."""
    from ..analysis.propagate import table3_frame

    run, space = rd.path, rd.space()
    eq = run / "equifinality"
    table = table3_frame(xr.load_dataset(run / "propagate" / "table3.nc"))
    ident = xr.load_dataset(eq / "identifiability.nc")
    ident_df = ident[["q05", "q50", "q95", "ratio", "constrained"]].to_dataframe()
    theta = rd.truth_theta()
    if theta is not None:
        ident_df["truth"] = space.to_unit(space.reduce(theta))
    diag = json.loads((run / "propagate" / "summary.json").read_text())
    ref = xr.load_dataset(run / "posterior" / "refinement.nc")
    refinement = ref[[v for v in ref.data_vars if ref[v].dims == ("round",)]].to_dataframe()
    refinement = refinement.rename(columns={c: _ROUND_COLUMNS.get(c, c) for c in refinement.columns})
    alt = xr.load_dataset(eq / "alternatives.nc")
    records = rd.records()
    stage_rows = "".join(
        f"<tr><td>{r.name}</td><td>{r.status}</td><td>{r.wall:.1f}</td><td>{r.peak_rss_gib:.2f}</td>"
        f"<td>{r.runs}</td></tr>" for r in records)
    return [
        f"<h1>{html.escape(cfg['report']['title'])}</h1>",
        f"<p>run <code>{html.escape(str(run))}</code> &middot; {len(space.labels)} calibrated parameters "
        f"&middot; {runs_behind(records)}</p>",
        "<h2>Stages</h2><table class='t'><tr><th>stage</th><th>status</th><th>wall s</th>"
        f"<th>peak GiB</th><th>runs</th></tr>{stage_rows}</table>",
        "<h2>Carbon budget (Seiler Table 3)</h2>",
        _tab(table),
        "<h2>Diagnostics</h2><ul>"
        + _truth_coverage_item(diag.get("truth_coverage"))
        + _band_width_item(diag.get("band_widths"))
        + _gcb_item(diag)
        + _parameter_coverage_item(diag.get("parameter_coverage"))
        + _left_out_item(run / "posterior" / "left_out.nc")
        + f"<li>alternative sets: {alt.sizes['alternative']}, smallest pairwise distance "
        f"{alt.attrs['min_distance']:.2f}</li></ul>",
        diagnostics_section(posterior_diagnostics(run / "posterior")),
        "<h3>Identifiability (unit cube; ratio = posterior sd / prior sd)</h3>",
        _tab(ident_df, "{:.3f}"),
        _equifinality_section(eq),
        _history_matching_section(run / "posterior" / "history_matching.nc"),
        _model_checks_section(run / "propagate" / "checks.nc"),
        "<h3>Refinement rounds</h3>",
        f"<p>{int(ref['n_train'].values[-1])} model runs train the final emulator; new runs chosen "
        f"by {html.escape(ref.attrs.get('acquisition', 'posterior draws'))}; stopping rule: "
        f"{html.escape(ref.attrs.get('criterion', ''))} (tol {ref.attrs.get('tol')}, "
        f"sd_loglik_max {ref.attrs.get('sd_loglik_max')}); converged: "
        f"{'yes' if ref.attrs.get('converged') else 'no'}</p>",
        _tab(refinement, "{:.3f}"),
    ]


def _history_matching_section(path: Path) -> str:
    """Waves (runs, not-ruled-out fraction) and, per summary, does the posterior carry the data:
    the parameter-only 90 % predictive interval over the observational one (goal: median <= 1)
    and the standardised residual at the posterior mean (goal: mean square 0.5-2)."""
    if not path.exists():
        return ""
    hm = xr.load_dataset(path)
    waves = hm[["n_new", "n_train", "nroy_fraction"]].to_dataframe()
    ratio, resid = hm["predictive_ratio"].values, hm["residual"].values
    per = hm[["predictive_ratio", "residual", "complement_sd"]].to_dataframe()
    ms, med = float(np.mean(resid**2)), float(np.median(ratio))

    def verdict(ok: bool) -> str:
        return "met" if ok else "<b style='color:#b00'>not met</b>"

    tau, n = float(hm.attrs.get("tau_max", np.nan)), int(hm.attrs.get("n_steps", 0))
    rank = int(hm.attrs.get("subspace_rank", hm.attrs.get("rank", 0)))  # run directories before 0.1.0's
    # subspace_rank wrote the subspace's rank over the implausibility rule's "rank"
    chain = ("reaches 50 autocorrelation times" if hm.attrs.get("converged") else
             f"is {n / max(tau, 1e-9):.0f} autocorrelation times long (tau {tau:.0f}, {n} steps), short of "
             "50: raise posterior.max_steps")
    return ("<h3>History matching: does the posterior carry the data?</h3>"
            f"<p>{len(hm['parameter'])} values calibrated, none left out; the informed subspace has "
            f"{rank} directions; the chain {chain}.</p>"
            f"<p>Median parameter-only 90 % predictive interval over the observational one: {med:.2f} "
            f"(goal &le; 1: {verdict(med <= 1)}); mean square of the standardised residuals at the "
            f"posterior mean: {ms:.2f} (goal 0.5&ndash;2: {verdict(0.5 <= ms <= 2)}).</p>"
            "<p>Waves (runs each; fraction of the prior not ruled out):</p>" + _tab(waves, "{:.4g}")
            + "<p>Per summary (ratio, residual in &sigma;, the complement's spread in &sigma;):</p>"
            + _tab(per, "{:.2f}"))


def _model_checks_section(path: Path) -> str:
    """The same two checks by model runs (the propagate stage's posterior and prior draws):
    the draws' 90 % interval over the observational one, and the residual of their mean."""
    if not path.exists():
        return ""
    ck = xr.load_dataset(path)
    ratio, resid, prior = ck["predictive_ratio"].values, ck["residual"].values, ck["prior_ratio"].values
    med, ms = float(np.nanmedian(ratio)), float(np.nanmean(resid**2))
    per = ck[["predictive_ratio", "prior_ratio", "residual"]].to_dataframe()
    per = per[[c for c in per.columns if c in ("predictive_ratio", "prior_ratio", "residual")]]
    return ("<h3>Checked by model runs</h3>"
            f"<p>{int(ck.attrs['n_posterior'])} posterior and {int(ck.attrs['n_prior'])} prior draws through "
            f"the model: median 90 % interval over the observational one {med:.2f} (prior draws "
            f"{float(np.nanmedian(prior)):.2f}; goal &le; 1); mean square of the standardised residuals "
            f"of the posterior-mean prediction (the draws' mean) {ms:.2f} (goal 0.5&ndash;2).</p>"
            + _tab(per, "{:.2f}"))


def _directions_paragraph(eq: Path, shown: int = 5, terms: int = 5) -> str:
    """How many directions the data fix, and the combinations of the most constrained ones."""
    if not (eq / "directions.nc").exists():
        return ""
    d = xr.load_dataset(eq / "directions.nc")
    k, n = d.attrs["n_constrained"], d.sizes["parameter"]
    rows = []
    for i in range(min(shown, d.sizes["direction"])):
        w = d["loadings"].values[i]
        top = np.argsort(-np.abs(w))[:terms]
        combo = " ".join(f"{w[j]:+.2f} {html.escape(str(d['parameter'].values[j]))}" for j in top)
        rows.append(f"<tr><td>{i + 1}</td><td>{d['sd_ratio'].values[i]:.2f}</td><td>{combo}</td></tr>")
    return (f"<p>The data fix {k} of {n} directions of the posterior (sd along them below "
            f"{d.attrs['threshold']:g} of the prior's, in prior-sd units); every marginal can stay near "
            "its prior while such a combination of many values is pinned. The most constrained "
            f"(sd ratio; the {terms} largest loadings):</p><table><tr><th>direction</th><th>sd / prior sd"
            "</th><th>combination</th></tr>" + "".join(rows) + "</table>")


def _equifinality_section(eq: Path) -> str:
    """Seiler's procedure beside the posterior's: PCA dimensions and both sets of alternatives."""
    if not (eq / "top_fraction_pca.nc").exists():
        return ""
    top = xr.load_dataset(eq / "top_fraction_pca.nc")
    post = xr.load_dataset(eq / "pca.nc")
    seiler = xr.load_dataset(eq / "alternatives_seiler.nc")
    alt = xr.load_dataset(eq / "alternatives.nc")

    def table(ds: xr.Dataset) -> str:
        df = ds["u"].to_pandas()
        df.insert(0, "emulated log misfit", ds["score"].values)
        return _tab(df, "{:.3f}")

    return ("<h3>Equifinality: the posterior and Seiler's procedure</h3>"
            f"<p>Components for 90 % of the variance: posterior samples {post.attrs['n_components']}; "
            f"Seiler's top 10 % of {int(top.sizes['sample'] / 0.1)} emulated sets in the box of the best "
            f"10 % of the runs {top.attrs['n_components']} (of {top.sizes['parameter']}).</p>"
            + _directions_paragraph(eq) +
            "<p>Alternative sets from the posterior (mutually distant, near-optimal; values on the unit "
            "cube):</p>" + table(alt)
            + "<p>Seiler's alternative sets (the five best of that ensemble; unit cube):</p>" + table(seiler))


