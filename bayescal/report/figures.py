"""The figures of a calibration: each takes xarray objects and returns a matplotlib Figure (or Axes).

Seiler's figures (convergence, LOO, distance clouds, bias change per product; the others are in
:mod:`.seiler`), posterior bands against GCB 2024, posterior against prior, PCA scree of the
posterior, and the sensitivity rankings and heat maps. Kept apart from
the analyses that make their data (as SALib keeps plotting apart from analysis).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mticker  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from ..analysis.sensitivity import DEFAULT_INDEX  # noqa: E402

__all__ = [
    "bias_change",
    "log_scaled",
    "plot_bands",
    "plot_bias_change",
    "plot_clouds",
    "plot_convergence",
    "plot_heatmap",
    "plot_loo",
    "plot_pair",
    "plot_posterior_vs_prior",
    "plot_ranking",
    "plot_scree",
    "plot_trace",
    "posterior_values",
]


def plot_convergence(history: xr.Dataset, baseline: float | None = None, default: float | None = None):
    """Optimiser convergence (Seiler Fig. 4). A genetic algorithm: per generation the median
    misfit of its chromosomes with their 5-95 % spread and the best so far; other optimisers: the
    misfit of every run and the best so far. ``default``: the default parameters' misfit."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    mis = np.where(history["status"].values == "done", history["misfit"].values, np.nan) \
        if "status" in history else history["misfit"].values
    method = history.attrs.get("method", "optimiser")
    if method in ("ga", "genetic_algorithm") and "batch" in history:  # the GA writes the long name
        gen = history["batch"].values
        gens = np.unique(gen)
        q = np.array([np.nanquantile(mis[gen == g], [0.05, 0.5, 0.95]) for g in gens])
        best = np.array([np.nanmin(mis[gen <= g]) for g in gens])
        ax.fill_between(gens, q[:, 0], q[:, 2], color="C0", alpha=0.3, lw=0, label="generation 5-95 %")
        ax.plot(gens, q[:, 1], "-o", color="C0", ms=3, label="generation median")
        ax.plot(gens, best, "-", color="C3", lw=2, label="best so far")
        ax.set_yscale("log")
        xlabel = "generation"
    else:
        ev = history["evaluation"].values
        ax.semilogy(ev, mis, ".", ms=3, alpha=0.5, label="evaluation")
        ax.semilogy(ev, history["best_misfit"].values, "-", lw=2, label="best so far")
        xlabel = "model run"
    if default is not None:
        ax.axhline(default, color="0.3", ls=":", lw=1.2, label="default parameters")
    if baseline is not None:
        ax.axhline(baseline, color="k", ls="--", lw=1, label="baseline (noise)")
    ax.set(xlabel=xlabel, ylabel="misfit", title=f"{method} convergence")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_loo(loo: xr.Dataset):
    """Emulator leave-one-out: predicted vs simulated (Seiler Fig. 6a) with 2-sigma bars."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    y, m, s = loo["y"].values, loo["mean"].values, loo["sd"].values
    ax.errorbar(y, m, yerr=2 * s, fmt="o", ms=3, alpha=0.6, elinewidth=0.5)
    lo, hi = min(y.min(), m.min()), max(y.max(), m.max())
    ax.plot([lo, hi], [lo, hi], "k-", lw=1)
    ax.set(
        xlabel="simulated log misfit",
        ylabel="emulated (LOO)",
        title=f"emulator LOO: R² {loo.attrs['r2']:.2f}, 95 % cov. {loo.attrs['coverage_95']:.2f}",
    )
    fig.tight_layout()
    return fig


def plot_clouds(global_cloud: xr.Dataset, local_cloud: xr.Dataset):
    """Distance vs emulated log misfit, whole cube and +-10 % (Seiler Fig. 6b, c)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), sharey=False)
    for ax, c, t in zip(
        axes, (global_cloud, local_cloud), ("whole range", "±10 % around the optimum"), strict=True
    ):
        ax.hexbin(c["distance"].values, c["mean"].values, gridsize=40, bins="log", cmap="viridis", mincnt=1)
        ax.set(
            xlabel="normalised distance to the optimum (Eq. 18)",
            ylabel="emulated log misfit",
            title=f"{t}: Spearman {c.attrs['spearman']:.2f}",
        )
    fig.tight_layout()
    return fig


def plot_scree(pca: xr.Dataset):
    """PCA scree of the posterior (unit cube; Seiler's top-10 % PCA, Fig. 6d, is in :mod:`.seiler`)."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    var = pca["explained_variance_ratio"].values
    k = np.arange(1, var.size + 1)
    ax.bar(k, var, label="component")
    ax.plot(k, np.cumsum(var), "k.-", label="cumulative")
    ax.set(xlabel="principal component", ylabel="variance fraction", title="posterior PCA")
    ax.legend()
    fig.tight_layout()
    return fig


def at_bound(post_u: np.ndarray, width: float = 0.02, share: float = 0.2) -> np.ndarray:
    """Per value (columns of unit-cube samples): "lower", "upper" or "" -- a posterior piled at
    a bound (more than ``share`` of its samples within ``width`` of it): the data push the value
    past its prior range, or the model compensates something there."""
    lo, hi = (post_u < width).mean(0), (post_u > 1 - width).mean(0)
    return np.where(lo > share, "lower", np.where(hi > share, "upper", ""))


def plot_posterior_vs_prior(post_u: xr.DataArray, truth_u: np.ndarray | None = None, optimum_u=None,
                            space=None):
    """Marginal posteriors over the uniform prior (physical units with ``space``: the value's
    name, units and description; a log axis for log-scaled values), with the twin truth (only
    when given) and the optimum; a posterior piled at a bound is titled in red."""
    labels = [str(x) for x in post_u["parameter"].values]
    n, u = len(labels), post_u.transpose(..., "parameter").values
    cols = min(4, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.3 * rows), squeeze=False)
    info = _label_info(space, labels)
    piled = at_bound(u)
    for j, ax in enumerate(axes.flat):
        if j >= n:
            ax.axis("off")
            continue
        to_x, title, log = info[j]
        lo, hi = np.quantile(u[:, j], [0.0, 1.0])  # bins over the samples, the axis over the prior
        edges = np.linspace(lo, hi, 26) if hi - lo > 1e-9 else np.linspace(lo - 0.01, hi + 0.01, 3)
        edges = np.unique(np.clip(edges, 0, 1))
        # density per unit of the cube, drawn over the edges in physical units: the uniform prior is
        # flat at 1 on every panel, a log-scaled one's on its log axis too
        dens, _ = np.histogram(u[:, j], bins=edges, density=True)
        ax.stairs(dens, to_x(edges), fill=True, color="C0", alpha=0.7)  # one artist, not one bar per bin
        if log:  # three labelled ticks: a narrow panel's log axis labels its minor ticks over each other
            ax.set_xscale("log")
            ticks = to_x(np.array([0.1, 0.5, 0.9]))
            ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
            ax.xaxis.set_minor_formatter(mticker.NullFormatter())
        ax.set_xlim(*to_x(np.array([0.0, 1.0])))
        for val, style in ((truth_u, dict(color="k", lw=1.5)), (optimum_u, dict(color="C3", lw=1, ls="--"))):
            if val is not None:
                ax.axvline(to_x(np.asarray(val)[j]), **style)
        bound = f" -- at {piled[j]} bound" if piled[j] else ""
        ax.set_title(title + bound, fontsize=7, color="#b00" if piled[j] else "k")
        ax.set_yticks([])
        ax.tick_params(labelsize=6)
    what = "truth black, " if truth_u is not None else ""
    # fixed margins (inches: two-line titles above, tick labels below): tight_layout measures every
    # text of every panel and took half the main job's report time at 122 panels
    h, w = 2.3 * rows, 2.8 * cols
    sep = "\n" if cols <= 2 else " "  # one or two panels: too narrow for one line
    fig.suptitle(f"posterior (blue) over its uniform prior range;{sep}{what}optimum red dashed"
                 + ("; red titles: piled at a bound" if piled.any() else ""), fontsize=9, y=1 - 0.08 / h,
                 va="top")
    fig.subplots_adjust(left=0.2 / w, right=1 - 0.3 / w, bottom=0.35 / h, top=1 - 0.8 / h,
                        hspace=0.75 / (2.3 - 0.75), wspace=0.25 / (2.8 - 0.25))
    return fig


def _label_info(space, labels: list[str]) -> list[tuple]:
    """Per label: unit cube -> value, the panel's title, log axis (unit cube without ``space``)."""
    if space is None:
        return [(lambda x: x, lab, False) for lab in labels]
    params = {p.name: p for p in space}
    out = []
    for lab in labels:
        j = space.labels.index(lab)
        fam = lab.split("[")[0]
        p = params.get(fam)

        def to_x(x, j=j):
            x = np.atleast_1d(np.asarray(x, float))
            pts = np.full((x.size, space.n_free), 0.5)
            pts[:, j] = x
            return space.from_unit(pts)[:, j]

        units = getattr(p, "units", "") or "-"
        desc = getattr(p, "description", "") or ""
        desc = desc if len(desc) <= 38 else desc[:37].rstrip() + "…"  # a panel's width
        out.append((to_x, f"{lab} [{units}]" + (f"\n{desc}" if desc else ""),
                    getattr(p, "scale", "linear") == "log"))
    return out


def plot_bands(outputs: xr.Dataset, gcb: xr.Dataset | None, models: xr.Dataset | None,
               truth: xr.Dataset | None = None):
    """Global GPP and NBP, annual: posterior bands, default, optimum, alternatives, GCB 2024 and the
    DGVMs (bayescal's, beside Seiler Fig. 10, which is :func:`.seiler.plot_gpp_nbp`); without
    ``gcb`` (a model not compared with it) neither GCB nor the DGVMs are drawn."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    sets = outputs["set"].values
    done = outputs["status"].values == "done"
    for ax, v, name in zip(axes, ("gpp_global", "nbp_global"), ("GPP", "NBP"), strict=True):
        da = outputs[v]
        post = da.isel(member=np.flatnonzero((sets == "posterior") & done))
        q = post.quantile([0.05, 0.25, 0.5, 0.75, 0.95], dim="member")
        yr = q["year"].values
        ax.fill_between(
            yr, q.sel(quantile=0.05), q.sel(quantile=0.95), color="C0", alpha=0.2, label="posterior 5-95 %"
        )
        ax.fill_between(
            yr, q.sel(quantile=0.25), q.sel(quantile=0.75), color="C0", alpha=0.35, label="25-75 %"
        )
        for s, style in (("default", dict(color="0.3", ls="--")), ("optimised", dict(color="C3"))):
            m = np.flatnonzero((sets == s) & done)
            if m.size:
                ax.plot(yr, da.isel(member=m[0]), lw=1.5, label=s, **style)
        for which, color, label in (("alternative", "C2", "alternatives"),
                                    ("seiler_alternative", "C4", "Seiler's alternatives")):
            for i, m in enumerate(np.flatnonzero((sets == which) & done)):
                ax.plot(yr, da.isel(member=m), color=color, lw=0.8, alpha=0.8,
                        label=label if i == 0 else None)
        if truth is not None and v in truth:
            ax.plot(truth["year"], truth[v], "k:", lw=1.5, label="twin truth")
        if v == "nbp_global" and gcb is not None and models is not None:
            g = gcb.sel(year=slice(yr.min(), yr.max()))
            ax.errorbar(
                g["year"],
                g["nbp"],
                yerr=g["nbp_sigma"],
                fmt="o",
                ms=2.5,
                color="k",
                elinewidth=0.6,
                label="GCB 2024 NBP ± σ",
            )
            # like with like: the DGVMs' NBP is their land sink (S2) minus GCB's E_LUC
            mm = models.sel(year=slice(yr.min(), yr.max()))
            dgvm_nbp = mm["mean"] - g["luc"].sel(year=mm["year"])
            ax.fill_between(
                mm["year"],
                dgvm_nbp - mm["sd"],
                dgvm_nbp + mm["sd"],
                color="0.5",
                alpha=0.15,
                label="20 DGVMs S_LAND − E_LUC ± sd",
            )
        where = "global " if gcb is not None else ""
        ax.set(xlabel="year", ylabel=f"{name} (PgC yr⁻¹)", title=f"{where}{name}")
        ax.xaxis.set_major_locator(mticker.MaxNLocator(integer=True))  # a few years: no 2000.5
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def bias_change(fields: xr.Dataset, products) -> xr.DataArray:
    """Seiler Fig. 9's data: per product (``panel``, ``"variable: product"``) and cell, the
    optimum's minus the default's absolute bias ``|mean_t(opt - ref)| - |mean_t(def - ref)|`` over
    the months the product has (negative: the optimisation reduced the bias). ``fields``: the two
    runs on (member, cell, time) with ``set`` naming them; GPP in gC m⁻² d⁻¹, others in their units."""
    sets = fields["set"].values
    d, o = int(np.flatnonzero(sets == "default")[0]), int(np.flatnonzero(sets == "optimised")[0])
    cells = fields["cell"].values
    rows, names, units = [], [], []
    for p in products:
        if p.variable not in fields:
            continue
        mod, ref = xr.align(fields[p.variable].reset_coords(drop=True), p.data.reset_coords(drop=True),
                            join="inner")
        bias = np.abs((mod - ref).where(ref.notnull()).mean("time").transpose("member", "cell").values)
        gpp = ref.attrs.get("units") == "kg m-2 s-1"
        row = xr.DataArray((bias[o] - bias[d]) * (86400e3 if gpp else 1.0), dims="cell",
                           coords={"cell": ref["cell"].values})
        rows.append(row.reindex(cell=cells).values)
        names.append(f"{p.variable}: {p.name}")
        units.append("gC m-2 d-1" if gpp else str(ref.attrs.get("units", "")))
    return xr.DataArray(np.array(rows).reshape(len(rows), cells.size), dims=("panel", "cell"),
                        coords={"panel": names, "units": ("panel", units), "cell": cells,
                                "lon": ("cell", fields["lon"].values), "lat": ("cell", fields["lat"].values)},
                        name="abs_bias_change")


def plot_bias_change(fields: xr.Dataset, products):
    """Optimised minus default absolute bias per cell, one panel per product, black dots where
    it fell (Seiler Fig. 9; :func:`bias_change`)."""
    change = bias_change(fields, products)
    n = change.sizes["panel"]
    cols = min(2, n)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 3.2 * rows), squeeze=False)
    lon, lat = (change["lon"].values + 180.0) % 360.0 - 180.0, change["lat"].values  # 0..360 cells too
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.axis("off")
            continue
        z = change.isel(panel=k).values
        lim = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        sc = ax.scatter(lon, lat, c=z, cmap="RdBu_r", vmin=-(lim or 1.0), vmax=lim or 1.0, s=40,
                        edgecolor="0.3", linewidth=0.3)
        down = z < 0
        ax.plot(lon[down], lat[down], "k.", ms=3, label="bias reduced")
        fig.colorbar(sc, ax=ax, label=f"|bias| optimised − default ({change['units'].values[k]})")
        ax.set(xlabel="longitude", ylabel="latitude", xlim=(-180, 180), ylim=(-60, 85),
               title=f"({'abcdefghijklmnop'[k % 16]}) {change['panel'].values[k]}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------- html


def plot_ranking(indices: xr.Dataset, target: str, index: str | None = None, top: int = 20, ax=None):
    """Bar chart of the ranked indices of one target with their confidence intervals."""
    method = indices.attrs.get("method", "sobol")
    index = index or DEFAULT_INDEX[method]
    ind = indices["indices"].sel(target=target)
    values = ind.sel(index=index).values
    conf = ind.sel(index=f"{index}_conf").values if f"{index}_conf" in ind["index"].values else None
    order = np.argsort(-values)[:top]
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 0.3 * len(order) + 1.2))
    labels = [str(indices["parameter"].values[i]) for i in order]
    ax.barh(np.arange(len(order)), values[order], xerr=None if conf is None else conf[order],
            color="tab:blue", alpha=0.8, capsize=2)
    if method == "sobol" and index == "ST":
        ax.barh(np.arange(len(order)), ind.sel(index="S1").values[order], color="tab:orange",
                alpha=0.8, height=0.4, label="S1")
        ax.legend(["ST", "S1"], loc="lower right")
    ax.set_yticks(np.arange(len(order)), labels)
    ax.invert_yaxis()
    ax.set_xlabel(f"{index} ({method})")
    ax.set_title(f"sensitivity of {target}")
    ax.figure.tight_layout()
    return ax


def plot_heatmap(indices: xr.Dataset, index: str | None = None, top: int = 30, ax=None):
    """Parameter x target heat map of an index (rows: the most influential parameters)."""
    method = indices.attrs.get("method", "sobol")
    index = index or DEFAULT_INDEX[method]
    values = indices["indices"].sel(index=index)
    if method in ("morris", "oat"):
        values = values / values.max("parameter")
    order = np.argsort(-values.max("target").values)[:top]
    sub = values.isel(parameter=order)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.9 * sub.sizes["target"] + 3, 0.28 * len(order) + 1.5))
    im = ax.imshow(sub.values, aspect="auto", cmap="viridis", vmin=0)
    ax.set_yticks(np.arange(len(order)), [str(p) for p in sub["parameter"].values])
    ax.set_xticks(np.arange(sub.sizes["target"]), [str(t) for t in sub["target"].values], rotation=45,
                  ha="right")
    ax.figure.colorbar(im, ax=ax, label=index)
    ax.set_title(f"{index} ({method})")
    ax.figure.tight_layout()
    return ax


def posterior_values(posterior: xr.Dataset) -> dict[str, tuple[np.ndarray, str]]:
    """Every value of a posterior Dataset (chain, draw[, its groups' dimension: pft, ...]) as
    ``{"family[group]": ((chain, draw) array, units)}`` (ArviZ-version agnostic: plain xarray)."""
    out: dict[str, tuple[np.ndarray, str]] = {}
    for name, da in posterior.data_vars.items():
        units = str(da.attrs.get("units", ""))
        da = da.transpose("chain", "draw", ...)
        if da.ndim == 2:
            out[str(name)] = (da.values, units)
            continue
        extra = [d for d in da.dims if d not in ("chain", "draw")]
        flat = da.stack(__value__=extra)
        for k in range(flat.sizes["__value__"]):
            idx = flat["__value__"].values[k]
            idx = idx if isinstance(idx, tuple) else (idx,)
            out[f"{name}[{','.join(map(str, idx))}]"] = (flat.isel(__value__=k).values, units)
    return out


def _label(name: str, units: str) -> str:
    return f"{name} ({units})" if units and units != "1" else name


def plot_trace(posterior: xr.Dataset, labels: list[str] | None = None, max_chains: int = 64):
    """Traces (every walker a line, after burn-in and thinning) and pooled marginals per value."""
    vals = posterior_values(posterior)
    labels = list(vals) if labels is None else [lab for lab in labels if lab in vals]
    fig, axes = plt.subplots(len(labels), 2, figsize=(9, 0.5 + 1.7 * len(labels)), squeeze=False,
                             gridspec_kw={"width_ratios": [3, 1]})
    for i, lab in enumerate(labels):
        x, units = vals[lab]
        ax, axh = axes[i, 0], axes[i, 1]
        for c in range(min(x.shape[0], max_chains)):
            ax.plot(x[c], lw=0.5, alpha=0.4)
        ax.set_title(lab, fontsize=8, loc="left")
        ax.set_ylabel(units if units and units != "1" else "", fontsize=7)
        ax.tick_params(labelsize=7)
        axh.hist(x.ravel(), bins=40, density=True, color="C0", alpha=0.7, orientation="horizontal")
        axh.set_ylim(ax.get_ylim())
        axh.tick_params(labelsize=7, labelleft=False)
    axes[-1, 0].set_xlabel("draw (after burn-in and thinning)", fontsize=8)
    axes[0, 1].set_title("marginal", fontsize=8)
    fig.suptitle("every walker a line", fontsize=9)
    fig.tight_layout()
    return fig


def log_scaled(space, labels: list[str]) -> set[str]:
    """The labels whose parameter is log-scaled (``Parameter(scale="log")``) in ``space``."""
    params = {p.name: p for p in space} if space is not None else {}
    return {lab for lab in labels if getattr(params.get(lab.split("[")[0]), "scale", "linear") == "log"}


def plot_pair(posterior: xr.Dataset, labels: list[str], max_points: int = 4000, seed: int = 0,
              log: set[str] | frozenset[str] = frozenset()):
    """Pair plot: histograms on the diagonal, joint samples below (pooled walkers), ``log`` on log axes.

    The values in ``log`` (see :func:`log_scaled`) get log axes and log-spaced bins."""
    vals = posterior_values(posterior)
    labels = [lab for lab in labels if lab in vals]
    k = len(labels)
    cols = np.column_stack([vals[lab][0].ravel() for lab in labels])
    logs = [lab in log and bool(np.all(cols[:, i] > 0)) for i, lab in enumerate(labels)]
    rng = np.random.default_rng(seed)
    pick = rng.choice(cols.shape[0], size=min(max_points, cols.shape[0]), replace=False)
    fig, axes = plt.subplots(k, k, figsize=(1.9 * k + 1, 1.9 * k + 1), squeeze=False)
    for i in range(k):
        for j in range(k):
            ax = axes[i, j]
            if j > i:
                ax.set_visible(False)
                continue
            if i == j:
                lo, hi = cols[:, i].min(), cols[:, i].max()
                bins = np.geomspace(lo, hi, 41) if logs[i] and hi > lo else 40
                ax.hist(cols[:, i], bins=bins, color="C0", alpha=0.7)
                ax.set_yticks([])
            else:
                ax.scatter(cols[pick, j], cols[pick, i], s=2, alpha=0.25, color="C0", lw=0)
                if logs[i]:
                    ax.set_yscale("log")
            if logs[j]:
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(plt.NullFormatter())  # side by side they would overlap
            ax.tick_params(which="both", labelsize=6)  # "both": a log axis within a decade labels minor ticks
            if i == k - 1:
                ax.set_xlabel(_label(labels[j], vals[labels[j]][1]), fontsize=7)
            else:
                ax.tick_params(which="both", labelbottom=False)
            if j == 0 and i > 0:
                ax.set_ylabel(_label(labels[i], vals[labels[i]][1]), fontsize=7)
            elif j > 0:
                ax.tick_params(which="both", labelleft=False)
    fig.tight_layout()
    return fig
