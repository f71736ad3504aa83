"""Seiler's report figures carry the paper's content under the paper's numbers: each test builds
the figure's data from small synthetic inputs, checks them against a hand computation, and checks
that the figure draws exactly those data (Figs. 6d, 7, 9 and 10)."""

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.stats import mannwhitneyu

from bayescal.analysis.equifinality import top_fraction_pca
from bayescal.observations.products import Product
from bayescal.operators.scores import product_scores
from bayescal.report.figures import bias_change, plot_bias_change, plt
from bayescal.report.seiler import (
    cell_scores,
    gpp_nbp_caption,
    gpp_nbp_data,
    plot_gpp_nbp,
    plot_set_scores,
    plot_top_fraction_pca,
    product_global_gpp,
    running_mean,
    score_changes,
    top_fraction_variance,
)

TO_GC_DAY = 86400e3  # kg m-2 s-1 -> gC m-2 d-1


class _Quadratic:
    """A stand-in emulator: a misfit with a trade-off between the first two values."""

    def predict(self, u, return_std=False):
        m = (u[:, 0] - u[:, 1]) ** 2 + 0.05 * u[:, 2]
        return (m, np.zeros_like(m)) if return_std else m


def _fields(n_cells=6, years=3, seed=0):
    """The default's and the optimum's GPP and LAI fields (member, cell, time), lon/lat, area."""
    rng = np.random.default_rng(seed)
    time = pd.date_range("2001-01-01", periods=12 * years, freq="MS")
    season = 1 + 0.5 * np.sin(2 * np.pi * np.arange(time.size) / 12)
    gpp = 1e-8 * season * rng.uniform(1, 3, (2, n_cells, 1)) * rng.uniform(0.9, 1.1, (2, n_cells, time.size))
    lai = 2 + season * rng.uniform(0.5, 2, (2, n_cells, 1))
    return xr.Dataset(
        {"gpp": (("member", "cell", "time"), gpp, {"units": "kg m-2 s-1"}),
         "lai": (("member", "cell", "time"), lai, {"units": "m2 m-2"})},
        coords={"member": [7, 9], "set": ("member", ["default", "optimised"]), "cell": np.arange(n_cells),
                "time": time, "lon": ("cell", np.linspace(-150, 150, n_cells)),
                "lat": ("cell", np.linspace(-40, 60, n_cells)),
                "area": ("cell", rng.uniform(1, 3, n_cells) * 1e12)})


def _product(name, variable, fields, scale, seed, gaps=0.1, cells=None):
    rng = np.random.default_rng(seed)
    truth = fields[variable].isel(member=0).values
    data = truth * scale * rng.uniform(0.8, 1.2, truth.shape)
    data[rng.random(truth.shape) < gaps] = np.nan
    da = xr.DataArray(data, dims=("cell", "time"), coords={"cell": fields["cell"].values,
                                                          "time": fields["time"].values},
                      attrs={"units": fields[variable].attrs["units"]})
    return Product(name, variable, da if cells is None else da.isel(cell=cells))


# ------------------------------------------------------------------------------ Fig. 6d
def test_fig6d_plots_the_cumulative_variance_of_the_top_fraction_ensemble():
    """The equifinality stage's top_fraction_pca.nc is what Fig. 6d draws: the cumulative fraction
    of the variance of the top 10 % of the emulated sets, by component."""
    rng = np.random.default_rng(3)
    u = rng.random((200, 4))
    top = top_fraction_pca(_Quadratic(), u, _Quadratic().predict(u), fraction=0.1, n=3000, seed=1)
    d = top_fraction_variance(top)
    x = top["u_top"].values
    eig = np.sort(np.linalg.eigvalsh(np.cov(x, rowvar=False)))[::-1]
    np.testing.assert_allclose(d["cumulative"].values, np.cumsum(eig) / eig.sum(), rtol=1e-10)
    w2 = np.sort((top["box_upper"] - top["box_lower"]).values ** 2)[::-1]
    np.testing.assert_allclose(d["box"].values, np.cumsum(w2) / w2.sum())
    assert d.attrs["n_sets"] == 300 and d.attrs["n_components"] == top.attrs["n_components"]
    fig = plot_top_fraction_pca(top)
    ax = fig.axes[0]
    curve = [ln for ln in ax.lines if ln.get_label().startswith("top 10 %")][0]
    np.testing.assert_allclose(curve.get_xdata(), [1, 2, 3, 4])
    np.testing.assert_allclose(curve.get_ydata(), d["cumulative"].values)
    assert ax.get_title().startswith(f"(d) {top.attrs['n_components']} of 4 components")
    plt.close(fig)


# ------------------------------------------------------------------------------- Fig. 7
def test_cell_scores_are_the_values_product_scores_averages():
    fields = _fields()
    products = [_product("A", "gpp", fields, 1.05, 1),
                _product("L", "lai", fields, 0.9, 2, cells=[0, 2, 3, 5])]
    cells = cell_scores(fields, products)
    assert list(cells["row"].values) == ["gpp: A", "lai: L"]
    for p in products:
        row = cells.sel(row=f"{p.variable}: {p.name}")
        for c in fields["cell"].values:
            if c not in p.data["cell"].values:
                assert np.isnan(row.sel(cell=c)).all()  # the product has no such cell
                continue
            one = product_scores(fields, Product(p.name, p.variable, p.data.sel(cell=[c])))
            np.testing.assert_allclose(row.sel(cell=c).values, one.sel(score=list(cells["score"].values)),
                                       rtol=1e-12)  # (member, score)
        whole = product_scores(fields, p).sel(score=["bias", "rmse", "phase", "iav"]).values
        area = fields["area"].sel(cell=p.data["cell"]).values
        mean = (row.sel(cell=p.data["cell"]).values * area).sum(-1) / area.sum()
        np.testing.assert_allclose(mean, whole, rtol=1e-12)  # the spatial integration of the same values


def _scores_and_cells():
    """scores.nc of default and optimum (gpp: A, B; lai: B) and per-cell scores, 30 cells, where
    only gpp: A's bias moves."""
    rng = np.random.default_rng(5)
    names = ["bias", "rmse", "phase", "iav", "dist", "overall"]
    grid = rng.uniform(0.4, 0.9, (2, 2, 2, 6))
    grid[:, 1, 0] = np.nan  # lai has no product A
    scores = xr.Dataset({"scores": (("member", "variable", "product", "score"), grid)},
                        coords={"member": [3, 4], "set": ("member", ["default", "optimised"]),
                                "variable": ["gpp", "lai"], "product": ["A", "B"], "score": names})
    base = rng.uniform(0.3, 0.8, (3, 4, 30))
    opt = base + rng.normal(0, 0.02, base.shape)
    opt[0, 0] += 0.3  # gpp: A, bias: a clear shift
    opt[2, 1] = base[2, 1]  # lai: B, rmse: unchanged in every cell
    cells = xr.DataArray(np.stack([base, opt]), dims=("member", "row", "score", "cell"),
                         coords={"member": [3, 4], "set": ("member", ["default", "optimised"]),
                                 "row": ["gpp: A", "gpp: B", "lai: B"], "score": names[:4]})
    return scores, cells


def test_fig7_marks_exactly_the_changes_amber_s_wilcoxon_test_finds():
    scores, cells = _scores_and_cells()
    ch = score_changes(scores, cells)
    assert list(ch["row"].values) == ["gpp: A", "gpp: B", "lai: B"]  # no lai: A (absent product)
    grid = scores["scores"].values
    np.testing.assert_allclose(ch["change"].sel(row="gpp: B").values, grid[1, 0, 1] - grid[0, 0, 1])
    expected = np.zeros((3, 6), bool)
    for r, row in enumerate(ch["row"].values):
        x, y = cells.sel(row=row).values  # (score, cell) of default and optimum
        v, p = row.split(": ")
        for k in range(4):
            pk = mannwhitneyu(x[k], y[k], alternative="two-sided").pvalue if np.ptp([x[k], y[k]]) else 1.0
            assert ch["p_value"].values[r, k] == pytest.approx(pk)
            expected[r, k] = pk <= 0.05
        dist = scores["scores"].sel(variable=v, product=p, score="dist").values
        pooled = mannwhitneyu(np.append(x.ravel(), dist[0]), np.append(y.ravel(), dist[1]),
                              alternative="two-sided").pvalue
        assert ch["p_value"].values[r, 5] == pytest.approx(pooled)
        expected[r, 5] = pooled <= 0.05
    assert np.isnan(ch["p_value"].sel(score="dist")).all()  # one number per map: not tested
    np.testing.assert_array_equal(ch["significant"].values, expected)
    assert expected[0, 0] and not expected[2, 1]  # the shifted bias is significant, the unchanged rmse not
    fig = plot_set_scores(scores, cells)
    bold = np.zeros((3, 6), bool)
    for t in fig.axes[2].texts:  # panel (c): the differences
        j, i = (round(v) for v in t.get_position())
        assert t.get_text() == f"{ch['change'].values[i, j]:.3f}"
        bold[i, j] = t.get_fontweight() == "bold"
    np.testing.assert_array_equal(bold, expected)
    assert "bold: p ≤ 0.05" in fig.axes[2].get_title()
    plt.close(fig)
    untested = score_changes(scores)  # no per-cell scores: nothing marked
    assert not untested["significant"].values.any() and untested.attrs["tested"] == 0


# ------------------------------------------------------------------------------- Fig. 9
def test_fig9_has_a_panel_per_product_and_dots_where_the_bias_fell():
    fields = _fields(n_cells=8)
    products = [_product("GOSIF-like", "gpp", fields, 1.1, 1),
                _product("FLUXCOM-like", "gpp", fields, 0.9, 2),
                _product("MODIS-like", "lai", fields, 1.0, 3, cells=[1, 2, 4, 6])]
    change = bias_change(fields, products)
    assert list(change["panel"].values) == ["gpp: GOSIF-like", "gpp: FLUXCOM-like", "lai: MODIS-like"]
    for k, p in enumerate(products):
        ref = p.data
        mod = fields[p.variable].sel(cell=ref["cell"])
        bias = [np.abs(np.nanmean(mod.isel(member=m).values - ref.values, axis=1)) for m in (0, 1)]
        factor = TO_GC_DAY if p.variable == "gpp" else 1.0
        np.testing.assert_allclose(change.isel(panel=k).sel(cell=ref["cell"]).values,
                                   (bias[1] - bias[0]) * factor, rtol=1e-10)
    assert np.isnan(change.isel(panel=2).sel(cell=[0, 3, 5, 7])).all()  # cells MODIS lacks
    assert list(change["units"].values) == ["gC m-2 d-1", "gC m-2 d-1", "m2 m-2"]
    fig = plot_bias_change(fields, products)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title()[4:] for ax in panels] == list(change["panel"].values)
    for ax, z in zip(panels, change.values, strict=True):
        dots = [ln for ln in ax.lines if ln.get_label() == "bias reduced"][0]
        np.testing.assert_allclose(dots.get_xdata(), fields["lon"].values[z < 0])
        np.testing.assert_allclose(ax.collections[0].get_array(), z)
    plt.close(fig)


# ------------------------------------------------------------------------------ Fig. 10
def test_running_mean_is_the_mean_of_each_complete_window():
    years = np.arange(1960, 1990)
    x = xr.DataArray(np.random.default_rng(0).normal(size=years.size), dims="year", coords={"year": years})
    rm = running_mean(x, 20)
    np.testing.assert_allclose(rm.values, [x.values[k:k + 20].mean() for k in range(11)])
    np.testing.assert_allclose(rm["centre"].values, years[:11] + 9.5)
    with pytest.raises(ValueError, match="window 31"):
        running_mean(x, 31)


def _outputs(years, cells=4, seed=0):
    """propagate/outputs.nc of the default, the optimum, two of Seiler's alternatives and a
    posterior draw (not in Fig. 10), with the area of each cell."""
    rng = np.random.default_rng(seed)
    sets = ["posterior", "default", "optimised", "seiler_alternative", "seiler_alternative"]
    return xr.Dataset(
        {"gpp_global": (("member", "year"), rng.normal(130, 3, (5, years.size))),
         "nbp_global": (("member", "year"), rng.normal(1, 1, (5, years.size))),
         "status": ("member", ["done"] * 5)},
        coords={"member": np.arange(5), "set": ("member", sets), "year": years, "cell": np.arange(cells),
                "area": ("cell", rng.uniform(1, 5, cells) * 1e12)})


def _gcb(years, seed=1):
    rng = np.random.default_rng(seed)
    return xr.Dataset({"nbp": ("year", rng.normal(1.5, 1, years.size)),
                       "nbp_sigma": ("year", rng.uniform(0.5, 1, years.size))}, coords={"year": years})


def _gpp_product(name, years, cells, seed):
    rng = np.random.default_rng(seed)
    time = pd.date_range(f"{years[0]}-01-01", periods=12 * years.size, freq="MS")
    data = rng.uniform(1e-8, 5e-8, (cells, time.size))
    data[rng.random(data.shape) < 0.1] = np.nan
    da = xr.DataArray(data, dims=("cell", "time"), coords={"cell": np.arange(cells), "time": time},
                      attrs={"units": "kg m-2 s-1"})
    return Product(name, "gpp", da)


def test_product_global_gpp_sums_day_weighted_annual_means_over_the_area():
    years = np.arange(2001, 2004)
    p, area = _gpp_product("P", years, 3, 2), xr.DataArray([1e12, 2e12, 3e12], dims="cell")
    g = product_global_gpp(p, area.assign_coords(cell=np.arange(3)))
    for k, y in enumerate(years):
        block = p.data.sel(time=str(y)).values
        days = p.data["time"].sel(time=str(y)).dt.days_in_month.values
        ok = np.isfinite(block)
        annual = np.nansum(block * days, axis=1) / (ok * days).sum(axis=1)
        assert g.values[k] == pytest.approx((annual * area.values).sum() * 86400 * 365.25 / 1e12)


def test_fig10_running_mean_nbp_gcb_and_every_gpp_product():
    years = np.arange(1990, 2020)  # 30 years: the paper's 20-year window fits
    outputs, gcb = _outputs(years), _gcb(np.arange(1959, 2024))
    products = [_gpp_product("GOSIF-like", years[10:], 4, 3), _gpp_product("FLUXCOM-like", years, 4, 4)]
    data = gpp_nbp_data(outputs, gcb, products)
    assert data.attrs["window"] == 20 and list(data["set"].values) == [
        "default", "optimised", "seiler_alternative", "seiler_alternative"]  # no posterior draw
    nbp = outputs["nbp_global"].values
    for i, m in enumerate([1, 2, 3, 4]):
        hand = [nbp[m, k:k + 20].mean() for k in range(11)]
        np.testing.assert_allclose(data["nbp_running"].values[i], hand)
    g = gcb["nbp"].sel(year=years).values
    np.testing.assert_allclose(data["gcb_nbp_running"].values, [g[k:k + 20].mean() for k in range(11)])
    np.testing.assert_allclose(data["centre"].values, years[:11] + 9.5)
    gosif = product_global_gpp(products[0], outputs["area"])
    np.testing.assert_allclose(data["product_gpp"].sel(product="GOSIF-like", year=years[10:]), gosif.values)
    assert np.isnan(data["product_gpp"].sel(product="GOSIF-like", year=years[:10])).all()  # its period only
    fig = plot_gpp_nbp(data)
    a, b = fig.axes
    labels = [t.get_text() for t in a.get_legend().get_texts()]
    assert {"GOSIF-like", "FLUXCOM-like", "default", "optimised"} <= set(labels)
    gcb_line = [ln for ln in b.lines if ln.get_label() == "GCB 2024 NBP"][0]
    np.testing.assert_allclose(gcb_line.get_ydata(), data["gcb_nbp_running"].values)
    opt = [ln for ln in b.lines if ln.get_label() == "optimised"][0]
    np.testing.assert_allclose(opt.get_ydata(), data["nbp_running"].values[1])
    assert "20-year running mean" in b.get_title()
    assert "fewer than" not in gpp_nbp_caption(data)
    plt.close(fig)


def test_fig10_with_fewer_years_than_20_uses_them_all_and_says_so():
    years = np.arange(2000, 2009)
    data = gpp_nbp_data(_outputs(years), _gcb(np.arange(1959, 2024)), [])
    assert data.attrs["window"] == 9 and data.sizes["centre"] == 1
    hand = _outputs(years)["nbp_global"].values[1:].mean(axis=1)  # every year, every set but the draw
    np.testing.assert_allclose(data["nbp_running"].values[:, 0], hand)
    caption = gpp_nbp_caption(data)
    assert "9-year running mean" in caption and "fewer than 20" in caption
    fig = plot_gpp_nbp(data)
    assert "9-year running mean" in fig.axes[1].get_title()
    plt.close(fig)


# ------------------------------------------------------------------------------- Fig. 4
def test_fig4_reads_the_history_the_ga_writes_per_generation():
    """The GA's history is marked 'genetic_algorithm': its convergence is drawn per generation."""
    from bayescal.report.figures import plot_convergence

    gen = np.repeat(np.arange(3), 4)
    mis = np.array([5, 6, 7, 8, 3, 9, 9, 9, 4, 1, 8, 8], float)
    hist = xr.Dataset({"misfit": ("member", mis), "batch": ("member", gen),
                       "status": ("member", np.full(12, "done")), "evaluation": ("member", np.arange(1, 13)),
                       "best_misfit": ("member", np.minimum.accumulate(mis))},
                      attrs={"method": "genetic_algorithm"})
    fig = plot_convergence(hist)
    best = [ln for ln in fig.axes[0].lines if ln.get_label() == "best so far"][0]
    np.testing.assert_array_equal(best.get_ydata(), [5, 3, 1])
    assert fig.axes[0].get_xlabel() == "generation"
    plt.close(fig)
