"""Seiler's figures that the default report adds when their inputs are in the run directory:
the GA's parameters (Fig. 5), the top-10 % PCA (Fig. 6d), the AMBER scores of the default and the
optimum with AMBER's significance test (Fig. 7), of the ensemble of the optimum and the
emulator-chosen alternatives (Fig. 8), and global GPP against every GPP product with NBP as a
running mean against GCB 2024 (Fig. 10). Each figure's data come from a function of its own
(``*_data``, ``top_fraction_variance``, ``score_changes``), so a test can check what is drawn."""

from __future__ import annotations

import numpy as np
import xarray as xr

from .figures import plt

__all__ = ["plot_ga_parameters", "top_fraction_variance", "plot_top_fraction_pca", "cell_scores",
           "score_changes", "plot_set_scores", "plot_ensemble_scores", "running_mean",
           "product_global_gpp", "gpp_nbp_data", "plot_gpp_nbp", "gpp_nbp_caption"]

#: the sets of Seiler's Fig. 10, the order and style they are drawn in (the paper's colours)
_SETS = (("default", "k", "default"), ("optimised", "C3", "optimised"),
         ("seiler_alternative", "orange", "Seiler's alternatives (emulator)"))


def plot_ga_parameters(history: xr.Dataset, default_u: np.ndarray):
    """(a) Default against optimised values, (b) the best chromosome so far after each generation
    (Fig. 5; elitism keeps it, so each line steps only when a better chromosome appears)."""
    labels = history["parameter"].values
    done = history["status"].values == "done"
    mis = np.where(done, history["misfit"].values, np.inf)
    gen = history["batch"].values
    gens = np.unique(gen)
    best = np.array([history["u"].values[np.argmin(np.where(gen <= g, mis, np.inf))] for g in gens])
    opt = history["u"].values[np.argmin(mis)]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    a.plot([0, 1], [0, 1], color="0.6", lw=0.8)
    for j, lab in enumerate(labels):
        a.plot(default_u[j], opt[j], "o", label=lab)
        b.plot(gens, best[:, j], "-o", ms=3, label=lab)
    a.set(xlabel="default (unit cube)", ylabel="optimised (unit cube)", xlim=(0, 1), ylim=(0, 1),
          title="(a) default vs optimised")
    b.set(xlabel="generation", ylabel="best chromosome's value (unit cube)", ylim=(0, 1),
          title="(b) best chromosome so far")
    if len(labels) <= 20:
        b.legend(fontsize=6, ncol=2)
    else:  # a legend of a hundred values would cover the panel and be unreadable
        b.set_title(f"(b) best chromosome so far ({len(labels)} values, one line each)")
    fig.tight_layout()
    return fig


def top_fraction_variance(top: xr.Dataset) -> xr.Dataset:
    """Fig. 6d's data, from ``equifinality/top_fraction_pca.nc``: the cumulative fraction of the
    variance that the principal components of Seiler's top 10 % of emulated sets explain
    (``cumulative``), beside the same curve for a uniform sample of the box those sets were drawn
    from (``box``: variance width²/12 along each axis, largest first), i.e. before the selection."""
    k = top["component"].values
    width2 = np.sort((top["box_upper"] - top["box_lower"]).values ** 2)[::-1]
    return xr.Dataset(
        {"cumulative": ("component", np.cumsum(top["explained_variance_ratio"].values)),
         "box": ("component", (np.cumsum(width2) / width2.sum())[: k.size])},
        coords={"component": k},
        attrs={"n_sets": int(top.sizes["sample"]), "n_parameters": int(top.sizes["parameter"]),
               "n_components": int(top.attrs["n_components"]),
               "variance": float(top.attrs.get("variance", 0.9))})


def plot_top_fraction_pca(top: xr.Dataset):
    """Cumulative fraction of variance against the number of principal components of the top
    10 % of the emulated sets (Seiler Fig. 6d), with the box's uniform sample for reference."""
    d = top_fraction_variance(top)
    k, a = d["component"].values, d.attrs
    fig, ax = plt.subplots(figsize=(5, 3.4))
    ax.plot(k, d["cumulative"], "o-", ms=3, color="C0", label=f"top 10 %: {a['n_sets']} emulated sets")
    ax.plot(k, d["box"], "--", color="0.5", label="uniform in their box (before the selection)")
    ax.axhline(a["variance"], color="k", lw=0.6, ls=":")
    ax.axvline(a["n_components"], color="C0", lw=0.6, ls=":")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="number of principal components", ylabel="cumulative fraction of variance", ylim=(0, 1.02),
           title=f"(d) {a['n_components']} of {a['n_parameters']} components hold {a['variance']:.0%}")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def _grid(scores: xr.Dataset, member: int) -> np.ndarray:
    return scores["scores"].isel(member=member).sel(score="overall").values  # (variable, product)


#: the scores AMBER has per grid cell (S_dist is one number per map)
_CELL_SCORES = ("bias", "rmse", "phase", "iav")


def _pair(sets) -> tuple[int, int]:
    """Positions of the default and the optimum among ``sets``."""
    sets = np.asarray(sets)
    return int(np.flatnonzero(sets == "default")[0]), int(np.flatnonzero(sets == "optimised")[0])


def _per_cell(mod: np.ndarray, ref: np.ndarray, month: np.ndarray) -> np.ndarray:
    """Per-cell bias, rmse, phase and iav scores, (member, score, cell), of ``mod`` (member, cell,
    time) against ``ref`` (cell, time; NaN: no value): the per-cell step of
    :mod:`bayescal.operators.scores` before its spatial integration (a test holds the two equal)."""
    mask = np.isfinite(ref)
    n = np.maximum(mask.sum(axis=1), 1)
    refm, modm = np.where(mask, ref, 0.0), np.where(mask, mod, 0.0)
    mr, mm = refm.sum(axis=1) / n, modm.sum(axis=-1) / n
    dref, dmod = np.where(mask, ref - mr[:, None], 0.0), np.where(mask, mod - mm[..., None], 0.0)
    crms = np.sqrt((dref**2).sum(axis=1) / n)
    tiny = 1e-12 * (np.abs(mr) + crms) + 1e-300  # per cell: each cell is its own map here
    sd = np.maximum(crms, tiny)
    onehot = np.eye(12)[month]
    counts = mask.astype(float) @ onehot
    cyc_r, cyc_m = (x @ onehot / np.maximum(counts, 1) for x in (refm, modm))
    d = np.abs(np.argmax(np.where(counts > 0, cyc_m, -np.inf), axis=-1)
               - np.argmax(np.where(counts > 0, cyc_r, -np.inf), axis=-1)) % 12
    iav_r = np.sqrt((np.where(mask, ref - cyc_r[:, month], 0.0) ** 2).sum(axis=1) / n)
    iav_m = np.sqrt((np.where(mask, mod - cyc_m[..., month], 0.0) ** 2).sum(axis=-1) / n)
    crmse = np.sqrt(((dmod - dref) ** 2).sum(axis=-1) / n)
    out = np.stack([np.exp(-np.abs(mm - mr) / sd), np.exp(-crmse / sd),
                    0.5 * (1.0 + np.cos(2.0 * np.pi * np.minimum(d, 12 - d) / 12.0)),
                    np.exp(-np.abs(iav_m - iav_r) / np.maximum(iav_r, tiny))], axis=1)
    return np.where(mask.sum(axis=1) >= 2, out, np.nan)


def cell_scores(fields: xr.Dataset, products) -> xr.DataArray:
    """Per-cell AMBER scores (bias, rmse, phase, iav) of every member of ``fields`` (member, cell,
    time) against every product, on (member, row, score, cell) with row ``"variable: product"``:
    the values :func:`bayescal.operators.scores.product_scores` averages over the cells (S_dist
    is one number per map and has none); NaN where a product has no cell or fewer than two values."""
    cells = fields["cell"].values
    rows, out = [], []
    for p in products:
        if p.variable not in fields:
            continue
        mod, ref = xr.align(fields[p.variable].reset_coords(drop=True), p.data.reset_coords(drop=True),
                            join="inner")
        mod, ref = mod.transpose("member", "cell", "time"), ref.transpose("cell", "time")
        per = _per_cell(mod.values.astype(float), ref.values.astype(float), ref["time"].dt.month.values - 1)
        da = xr.DataArray(per, dims=("member", "score", "cell"), coords={"cell": ref["cell"].values})
        rows.append(f"{p.variable}: {p.name}")
        out.append(da.reindex(cell=cells).values)
    coords = {"member": fields["member"].values, "row": rows, "score": list(_CELL_SCORES), "cell": cells}
    if "set" in fields.coords:
        coords["set"] = ("member", fields["set"].values)
    empty = np.empty((fields.sizes["member"], 0, len(_CELL_SCORES), cells.size))
    arr = np.stack(out, axis=1) if out else empty
    return xr.DataArray(arr, dims=("member", "row", "score", "cell"), coords=coords)


def _wilcoxon(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Wilcoxon rank-sum (Mann-Whitney U) p-value of two samples (NaN dropped), as R's
    ``wilcox.test`` that AMBER calls; 1 when both are one and the same constant, NaN when empty."""
    from scipy.stats import mannwhitneyu

    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    if not (x.size and y.size):
        return float("nan")
    if np.ptp(np.concatenate([x, y])) == 0:
        return 1.0
    return float(mannwhitneyu(x, y, alternative="two-sided").pvalue)


def score_changes(scores: xr.Dataset, cells: xr.DataArray | None = None, alpha: float = 0.05) -> xr.Dataset:
    """Fig. 7's data: per row (``"variable: product"``) and score (bias ... overall) the default's
    and the optimum's AMBER score (``propagate/scores.nc``), ``change`` = optimum − default, and
    AMBER's test of it (``scores.compare``, which Seiler's Fig. 7 marks at the 5 % level): the
    two-sided Wilcoxon rank-sum test of the default's per-cell scores against the optimum's
    (``cells``, :func:`cell_scores`), ``significant`` where p <= ``alpha``. The overall score is
    tested on the pooled per-cell bias, rmse, phase and iav scores with the map's S_dist, as AMBER
    pools them; S_dist (one number per map) and rows without per-cell scores are not tested (p NaN)."""
    d, o = _pair(scores["set"].values)
    names = [str(s) for s in scores["score"].values]
    grid = scores["scores"].transpose("member", "variable", "product", "score").values
    keys = [(i, j) for i in range(scores.sizes["variable"]) for j in range(scores.sizes["product"])
            if np.isfinite(grid[d, i, j]).any()]
    rows = [f"{scores['variable'].values[i]}: {scores['product'].values[j]}" for i, j in keys]
    a = np.array([grid[d, i, j] for i, j in keys]).reshape(len(keys), len(names))
    b = np.array([grid[o, i, j] for i, j in keys]).reshape(len(keys), len(names))
    p = np.full(a.shape, np.nan)
    if cells is not None:
        cd, co = _pair(cells["set"].values)
        for r, row in enumerate(rows):
            if row not in cells["row"].values:
                continue
            x, y = (cells.sel(row=row).isel(member=m).transpose("score", "cell").values for m in (cd, co))
            for k, name in enumerate(names):
                if name in _CELL_SCORES:
                    p[r, k] = _wilcoxon(x[_CELL_SCORES.index(name)], y[_CELL_SCORES.index(name)])
                elif name == "overall" and "dist" in names:
                    dist = names.index("dist")
                    p[r, k] = _wilcoxon(np.append(x.ravel(), a[r, dist]), np.append(y.ravel(), b[r, dist]))
    dims = ("row", "score")
    return xr.Dataset(
        {"default": (dims, a), "optimised": (dims, b), "change": (dims, b - a), "p_value": (dims, p),
         "significant": (dims, np.nan_to_num(p, nan=1.0) <= alpha)},
        coords={"row": rows, "score": names},
        attrs={"alpha": alpha, "test": "two-sided Wilcoxon rank-sum of the per-cell scores (AMBER)",
               "tested": int(np.isfinite(p).sum())})


def plot_set_scores(scores: xr.Dataset, cells: xr.DataArray | None = None, alpha: float = 0.05):
    """AMBER scores per product (rows) and score (columns): (a) default, (b) optimised, (c) their
    difference with the significant ones in bold black, the others grey (Seiler Fig. 7;
    :func:`score_changes`)."""
    ch = score_changes(scores, cells, alpha)
    sig = ch["significant"].values
    fig, axes = plt.subplots(1, 3, figsize=(14, 0.45 * ch.sizes["row"] + 2.4))
    for ax, (title, z, cmap) in zip(axes, (("(a) default", ch["default"].values, "viridis"),
                                           ("(b) optimised", ch["optimised"].values, "viridis"),
                                           (f"(c) optimised − default (bold: p ≤ {alpha:g})",
                                            ch["change"].values, "RdBu")), strict=True):
        lim = (np.nanmax(np.abs(z)) or 1.0) if cmap == "RdBu" else None
        im = ax.imshow(z, cmap=cmap, vmin=-lim if lim else 0, vmax=lim if lim else 1, aspect="auto")
        for (i, j), v in np.ndenumerate(z):
            if not np.isfinite(v):
                continue
            bold = lim is not None and sig[i, j]
            style = dict(color="k", fontweight="bold") if bold else {} if lim is None else dict(color="0.45")
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6, **style)
        ax.set_xticks(range(ch.sizes["score"]), [f"S_{s}" for s in ch["score"].values], rotation=45,
                      fontsize=7)
        ax.set_yticks(range(ch.sizes["row"]), ch["row"].values if ax is axes[0] else [], fontsize=7)
        ax.set_title(title, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def plot_ensemble_scores(scores: xr.Dataset):
    """Optimum (ID 1) and Seiler's alternatives (ID 2...): mean, range and best ID per variable and
    product (Fig. 8)."""
    sets = scores["set"].values
    members = np.concatenate([np.flatnonzero(sets == name) for name in ("optimised", "seiler_alternative")])
    z = np.stack([_grid(scores, m) for m in members])  # (id, variable, product); NaN: no such product
    present = np.isfinite(z).all(axis=0)
    zz = np.where(present, z, 0.0)
    best = np.where(present, np.argmax(zz, axis=0) + 1.0, np.nan)
    panels = (("(a) mean score", zz.mean(axis=0)), ("(b) max - min", zz.max(0) - zz.min(0)),
              ("(c) ID of the best", best))
    fig, axes = plt.subplots(1, 3, figsize=(13, 0.5 * scores.sizes["variable"] + 2.2))
    for ax, (title, v) in zip(axes, panels, strict=True):
        im = ax.imshow(np.where(present, v, np.nan), cmap="viridis", aspect="auto")
        ax.set_xticks(range(scores.sizes["product"]), scores["product"].values, rotation=45, fontsize=6,
                      ha="right")
        ax.set_yticks(range(scores.sizes["variable"]), scores["variable"].values, fontsize=7)
        ax.set_title(title + f" (IDs 1-{len(members)})", fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


def running_mean(series: xr.DataArray, window: int) -> xr.DataArray:
    """The ``window``-year running mean of a series on ``year``: one value per complete window
    (NaN if the window holds a NaN), on ``centre``, the window's middle year (a half year for an
    even window)."""
    n = series.sizes["year"]
    if not 1 <= window <= n:
        raise ValueError(f"running mean: window {window} for {n} years")
    rm = series.rolling(year=window).mean().isel(year=slice(window - 1, None))
    centre = series["year"].values[window - 1:] - (window - 1) / 2
    return rm.rename(year="centre").assign_coords(centre=centre)


def product_global_gpp(product, area: xr.DataArray) -> xr.DataArray:
    """A GPP product's global annual GPP (PgC yr⁻¹) over the cells it covers: per cell and year
    the day-weighted mean of the months it has, times the cell's area, summed; years the
    product's time axis does not cover in full (12 months) are NaN, as are years where a cell has
    no month at all. ``cells`` (attribute): how many cells it covers."""
    from bayescal.readers import UnitError, conversion_factor

    x = product.data
    try:  # a model's own units (docs/own-model.md): the flux per second, as the sum below assumes
        x = x * conversion_factor(str(x.attrs.get("units")), "kg m-2 s-1", "gpp")
    except UnitError as err:
        raise ValueError(f"product {product.name!r}: GPP in {x.attrs.get('units')!r}: {err}") from None
    days = x["time"].dt.days_in_month.astype(float)
    w = days.where(x.notnull())
    annual = (x * days).groupby("time.year").sum(skipna=True) / w.groupby("time.year").sum()
    annual = annual.where(w.groupby("time.year").sum() > 0)
    full = x["time"].groupby("time.year").count() == 12
    total = (annual * area.sel(cell=x["cell"])).sum("cell", skipna=False) * 86400 * 365.25 / 1e12
    return total.where(full).rename(product.name).assign_attrs(units="PgC yr-1", cells=int(x.sizes["cell"]))


def gpp_nbp_data(outputs: xr.Dataset, gcb: xr.Dataset, gpp_products=(), window: int = 20) -> xr.Dataset:
    """Fig. 10's data: the global annual GPP of the default, the optimum and Seiler's alternatives
    (``gpp_global``), every GPP product's (``product_gpp``, :func:`product_global_gpp`), and their
    NBP and GCB 2024's as ``window``-year running means over the years both cover
    (``nbp_running``, ``gcb_nbp_running``, ``gcb_sigma_running``: the mean σ, as if the years'
    errors were fully correlated). With fewer years than ``window`` the window is all of them
    (attributes ``window``, ``requested_window``, ``first_year``, ``last_year``)."""
    sets, done = outputs["set"].values, outputs["status"].values == "done"
    pick = np.concatenate([np.flatnonzero((sets == s) & done) for s, *_ in _SETS])
    ens = outputs.isel(member=pick)
    years = np.intersect1d(ens["year"].values, gcb["year"].values)
    w = min(window, years.size)
    g = gcb.sel(year=years)
    ds = xr.Dataset({"gpp_global": ens["gpp_global"],
                     "nbp_running": running_mean(ens["nbp_global"].sel(year=years), w),
                     "gcb_nbp_running": running_mean(g["nbp"], w),
                     "gcb_sigma_running": running_mean(g["nbp_sigma"], w)})
    prods = [product_global_gpp(p, outputs["area"]) for p in gpp_products]
    if prods:
        names = [str(p.name) for p in prods]
        pg = xr.concat(prods, dim="product", join="outer").assign_coords(
            product=names, product_cells=("product", [p.attrs["cells"] for p in prods]))
        ds["product_gpp"] = pg.drop_attrs()
    return ds.assign_attrs(window=w, requested_window=window, first_year=int(years[0]),
                           last_year=int(years[-1]), n_cells=int(outputs.sizes["cell"]))


def plot_gpp_nbp(data: xr.Dataset):
    """(a) Global GPP of the default (black), the optimum (red) and Seiler's alternatives
    (orange) with every GPP product, each labelled; (b) their NBP as a running mean with GCB
    2024's (grey, ± its σ) (Seiler Fig. 10; :func:`gpp_nbp_data`)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.9))
    sets, cen = data["set"].values, data["centre"].values
    mark = "o" if cen.size < 3 else None
    for s, color, label in _SETS:
        for i, m in enumerate(np.flatnonzero(sets == s)):
            lw = 0.9 if s == "seiler_alternative" else 1.6
            a.plot(data["year"], data["gpp_global"][m], color=color, lw=lw, label=label if i == 0 else None)
            b.plot(cen, data["nbp_running"][m], color=color, lw=lw, marker=mark, ms=4,
                   label=label if i == 0 else None)
    if "product_gpp" in data:
        for j, name in enumerate(data["product"].values):
            cells = int(data["product_cells"].values[j])
            extra = "" if cells == data.attrs["n_cells"] else f" ({cells} of {data.attrs['n_cells']} cells)"
            a.plot(data["year"], data["product_gpp"][j], ls="--", marker="os^vDP"[j % 6], ms=3,
                   color=("C0", "C2", "C4", "C5", "C6", "C9")[j % 6], label=f"{name}{extra}")
    g, sd = data["gcb_nbp_running"], data["gcb_sigma_running"]
    if cen.size > 1:
        b.fill_between(cen, g - sd, g + sd, color="0.6", alpha=0.3, lw=0, label="GCB 2024 ± σ")
        b.plot(cen, g, color="0.4", lw=2, label="GCB 2024 NBP")
    else:  # one window: a point with its error bar
        b.errorbar(cen, g, yerr=sd, fmt="s", color="0.4", capsize=4, label="GCB 2024 NBP ± σ")
    w = data.attrs["window"]
    b.set_xlim(data.attrs["first_year"] - 0.5, data.attrs["last_year"] + 0.5)
    a.set(xlabel="year", ylabel="global GPP (PgC yr⁻¹)", title="(a) global GPP")
    b.set(xlabel=f"centre of the {w}-year window", ylabel="NBP (PgC yr⁻¹)",
          title=f"(b) NBP, {w}-year running mean")
    a.legend(fontsize=6, ncol=2)
    b.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return fig


def gpp_nbp_caption(data: xr.Dataset) -> str:
    """Fig. 10's caption, with the window actually used."""
    a = data.attrs
    n = a["last_year"] - a["first_year"] + 1
    short = "" if a["window"] >= a["requested_window"] else (
        f" The run's {n} years ({a['first_year']}–{a['last_year']}) are fewer than {a['requested_window']}: "
        f"the longest window that fits, {a['window']} years, is used.")
    products = ", ".join(str(p) for p in data["product"].values) if "product_gpp" in data else "none"
    return ("(a) Global GPP of the default (black), the optimum (red) and Seiler's alternative sets (orange) "
            f"with every GPP product of the observations ({products}); (b) their NBP as the "
            f"{a['window']}-year running mean (at each window's centre) with GCB 2024's NBP (grey, ± the "
            f"window's mean σ) (Seiler Fig. 10).{short}")
