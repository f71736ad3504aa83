"""Dagon et al.'s figures and tables from small datasets: Fig. 1 and Tables S3-S5 (the
one-at-a-time ranking), Figs. 3, 5, 6, 9, 10 and 11, and the optimum against the default (the
end-to-end workflow test in tests/test_dagon.py draws them from a real run)."""

import numpy as np
import pytest
import xarray as xr

from bayescal.operators.eof import EOFBasis


# ------------------------------------------------- Fig. 1, Tables S3-S5, Figs. 9 and 10, optimum
def _ranking():
    rng = np.random.default_rng(2)
    return xr.Dataset(
        {"pe_map": (("parameter", "output", "cell"), rng.random((3, 2, 5))),
         "pe_rank": ("parameter", [2, 1, 3]),
         "pe_rank_by_output": (("parameter", "output"), [[2, 1], [1, 2], [3, 3]]),
         "pe_mean_rank": ("parameter", [1.5, 1.5, 3.0]), "pc": ("parameter", [0.4, 0.9, 0.2]),
         "pc_rank": ("parameter", [2, 3, 1]), "combined_rank": ("parameter", [1, 2, 3])},
        coords={"parameter": ["a", "b", "c"], "output": ["gpp", "hfls"],
                "output_units": ("output", ["kg m-2 s-1", "W m-2"]),
                "lon": ("cell", np.linspace(-100, 100, 5)), "lat": ("cell", np.linspace(-30, 50, 5))})


def test_fig1_pe_maps_and_the_rank_tables():
    from bayescal.report.dagon import pe_maps, plot_pe_maps, plt, rank_table

    r = _ranking()
    maps = pe_maps(r, ["c", "a", "not screened"], "gpp")
    assert list(maps["parameter"].values) == ["a", "c"]  # by effect rank
    np.testing.assert_allclose(maps.values, r["pe_map"].values[[0, 2], 0] * 86400e3)  # to g m-2 d-1
    assert maps.attrs["units"] == "g m-2 d-1"
    assert pe_maps(r, ["b"], "hfls").attrs["units"] == "W m-2"
    fig = plot_pe_maps(maps)
    for k in range(2):
        sc = fig.axes[k].collections[0]  # the panels, then their colour bars
        np.testing.assert_allclose(sc.get_offsets(), np.c_[r["lon"].values, r["lat"].values])
        np.testing.assert_allclose(sc.get_array(), maps.values[k])
    plt.close(fig)
    t = rank_table(r, ["a", "c"])
    assert list(t.index) == ["b", "a", "c"] and list(t["calibrated"]) == [False, True, True]
    assert list(t["PE rank hfls"]) == [2, 1, 3] and list(t["PC rank"]) == [3, 2, 1]


def test_fig9_pair_plot_draws_the_best_points_and_their_histograms():
    from bayescal.report.dagon import pair_data, plot_pair, plt

    u = np.array([[0.05, 0.9], [0.5, 0.15], [0.55, 0.95], [0.99, 0.4], [0.12, 0.13]])
    screen = xr.Dataset({"u": (("best", "parameter"), u), "cost": ("best", [3.0, 1.0, 5.0, 2.0, 4.0])},
                        coords={"parameter": ["kmax", "fff"]})
    d = pair_data(screen, bins=4)
    np.testing.assert_array_equal(d["u"].values, u[[1, 3, 0, 4, 2]])  # best first
    np.testing.assert_array_equal(d["count"].values, [[2, 0, 2, 1], [2, 1, 0, 2]])  # by hand, quarters
    fig = plot_pair(d, optimum_u=[0.3, 0.6])
    axes = np.array(fig.axes).reshape(2, 2)
    np.testing.assert_allclose(axes[1, 0].collections[0].get_offsets(), d["u"].values)  # (kmax, fff)
    np.testing.assert_allclose(axes[1, 0].collections[1].get_offsets(), [[0.3, 0.6]])
    for i in range(2):
        np.testing.assert_allclose([b.get_height() for b in axes[i, i].patches], d["count"].values[i])
    assert not axes[0, 1].axison
    plt.close(fig)


def test_fig10_compares_observed_default_emulated_and_verified_pcs():
    from bayescal.report.dagon import PC_CASES, pc_comparison, plot_pcs, plt

    eof = xr.Dataset({"gpp_obs_pc": ("gpp_mode", [0.1, -0.2]), "gpp_obs_sd": ("gpp_mode", [0.05, 0.1])})
    opt = {"optimum_round": 1, "default_pcs": {"model": {"gpp": [0.4, 0.0]}},
           "rounds": [{"round": 0, "emulated_pcs": {"gpp": [9.0, 9.0]}, "model_pcs": {"gpp": [8.0, 8.0]}},
                      {"round": 1, "emulated_pcs": {"gpp": [0.12, -0.1]},
                       "model_pcs": {"gpp": [0.15, -0.05]}}]}
    d = pc_comparison(eof, opt, "gpp")
    np.testing.assert_array_equal(d["pc"].values, [[0.1, -0.2], [0.4, 0.0], [0.12, -0.1], [0.15, -0.05]])
    assert list(d["case"].values) == list(PC_CASES) and list(d["mode"].values) == [1, 2]
    fig = plot_pcs([d])
    bars = fig.axes[0].patches
    np.testing.assert_allclose([b.get_height() for b in bars], d["pc"].values.ravel())
    colours = [plt.matplotlib.colors.to_rgba(c) for c in PC_CASES.values()]
    assert [b.get_facecolor() for b in bars[::2]] == colours
    plt.close(fig)


def test_optimum_against_default_in_physical_units():
    from bayescal.report.dagon import optimum_values, plot_optimum, plt

    opt = {"values": {"labels": ["vmax[A]", "q10"], "default": [60.0, 2.0], "optimum": [75.0, 1.5],
                      "lower": [30.0, 1.0], "upper": [90.0, 3.0], "units": ["umol m-2 s-1", "1"]}}
    v = optimum_values(opt)
    np.testing.assert_allclose(v["default_position"].values, [0.5, 0.5])
    np.testing.assert_allclose(v["optimum_position"].values, [0.75, 0.25])
    fig = plot_optimum(v)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[1].get_offsets()[:, 0], [0.5, 0.5])
    np.testing.assert_allclose(ax.collections[2].get_offsets()[:, 0], [0.75, 0.25])
    assert [t.get_text() for t in ax.texts] == ["60 → 75 umol m-2 s-1", "2 → 1.5 1"]
    plt.close(fig)


# ------------------------------------------------------------------------ Figs. 3 and 5
def test_fig3_ppe_pc_histograms_with_observed_and_default_scores():
    """Fig. 3: each PC's histogram is of the design runs' scores (counts by hand on quarters of
    their range); the observations' and the default's scores are the lines drawn."""
    from bayescal.report.dagon import plot_ppe_pcs, plt, ppe_pc_data

    pc = np.array([[0.0, 1.0], [0.15, -1.0], [0.4, 0.5], [0.35, 0.1], [0.22, 0.3]])  # (member, mode)
    eof = xr.Dataset({"gpp_pc": (("member", "gpp_mode"), pc), "gpp_obs_pc": ("gpp_mode", [0.5, -2.0]),
                      "hfls_pc": (("member", "hfls_mode"), pc[:, :1] * 2),
                      "hfls_obs_pc": ("hfls_mode", [0.1])}, coords={"member": [0, 2, 3, 5, 6]})
    opt = {"default_pcs": {"model": {"gpp": [0.05, 0.3], "hfls": [0.2]}}}
    d = ppe_pc_data(eof, opt, "gpp", bins=4)
    np.testing.assert_array_equal(d["ppe"].values, pc)
    assert list(d["member"].values) == [0, 2, 3, 5, 6] and list(d["pc"].values) == [1, 2]
    np.testing.assert_array_equal(d["count"].values, [[1, 1, 1, 2], [1, 0, 2, 2]])  # by hand, quarters
    np.testing.assert_allclose(d["edge"].values, [[0, 0.1, 0.2, 0.3, 0.4], [-1, -0.5, 0, 0.5, 1]])
    np.testing.assert_array_equal(d["observed"].values, [0.5, -2.0])
    np.testing.assert_array_equal(d["default"].values, [0.05, 0.3])
    assert np.isnan(ppe_pc_data(eof, {}, "gpp")["default"].values).all()  # a run without the default
    h = ppe_pc_data(eof, opt, "hfls", bins=4)
    fig = plot_ppe_pcs([d, h])
    axes = np.array(fig.axes).reshape(2, 2)
    for m in range(2):
        ax = axes[0, m]
        np.testing.assert_allclose([b.get_height() for b in ax.patches], d["count"].values[m])
        np.testing.assert_allclose([b.get_x() for b in ax.patches], d["edge"].values[m, :-1])
        obs, default = ax.get_lines()
        np.testing.assert_allclose(obs.get_xdata(), [d["observed"].values[m]] * 2)
        np.testing.assert_allclose(default.get_xdata(), [d["default"].values[m]] * 2)
    np.testing.assert_allclose([b.get_height() for b in axes[1, 0].patches], h["count"].values[0])
    assert not axes[1, 1].axison  # hfls has one mode
    plt.close(fig)


def test_fig5_emulated_against_model_pcs_on_the_test_runs():
    """Fig. 5: R² is the coefficient of determination about the model's mean (not the squared
    correlation: a biased emulator scores below 1); the points drawn are (model, emulator)."""
    from bayescal.report.dagon import plot_validation_pcs, plt, validation_pc_data

    model = np.array([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0], [4.0, 0.0]])
    emul = model + 0.5  # perfectly correlated, biased
    hfls_model, hfls_emul = [0.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 5.0]
    val = xr.Dataset({"model": (("variable", "run", "pc"), [model, np.c_[hfls_model, [np.nan] * 4]]),
                      "emulator": (("variable", "run", "pc"), [emul, np.c_[hfls_emul, [np.nan] * 4]])},
                     coords={"variable": ["gpp", "hfls"], "run": [4, 9, 17, 30], "pc": [1, 2]})
    d = validation_pc_data(val, "gpp")
    # by hand: 1 - 4 x 0.25 / (2.25 + 0.25 + 0.25 + 2.25) and 1 - 4 x 0.25 / 2
    np.testing.assert_allclose(d["r2"].values, [0.8, 0.5], rtol=1e-12)
    ss_res, ss_tot = ((emul - model) ** 2).sum(0), ((model - model.mean(0)) ** 2).sum(0)
    np.testing.assert_allclose(d["r2"].values, 1 - ss_res / ss_tot, rtol=1e-12)
    h = validation_pc_data(val, "hfls")
    assert list(h["pc"].values) == [1]  # the padding dropped
    np.testing.assert_allclose(h["r2"].values, [1 - 4 / 5], rtol=1e-12)
    fig = plot_validation_pcs([d, h])
    axes = np.array(fig.axes).reshape(2, 2)
    for m in range(2):
        np.testing.assert_allclose(axes[0, m].collections[0].get_offsets(), np.c_[model[:, m], emul[:, m]])
        one = axes[0, m].get_lines()[0]
        np.testing.assert_allclose(one.get_xdata(), one.get_ydata())  # the 1:1 line
    assert axes[0, 0].get_title() == "GPP PC1: R² = 0.80" and axes[0, 1].get_title() == "GPP PC2: R² = 0.50"
    np.testing.assert_allclose(axes[1, 0].collections[0].get_offsets(), np.c_[hfls_model, hfls_emul])
    assert axes[1, 0].get_title() == "HFLS PC1: R² = 0.20" and not axes[1, 1].axison
    plt.close(fig)


# ------------------------------------------------------------------------ Figs. 6 and 11
def test_fig6_rmse_of_the_eof_reconstruction_and_the_network_against_the_models():
    """Fig. 6: each run's RMSE is area-weighted over the cells (an unweighted one differs here), the
    EOF reconstruction keeps the basis's modes only, r² is that of the least-squares line; the
    points, the default's x, the 1:1 line, the threshold and r² are what the figure draws."""
    from bayescal.report.dagon import error_data, plot_errors, plt
    from bayescal.workflows.dagon.stages import map_rmse

    rng = np.random.default_rng(5)
    area = np.array([1.0, 3.0, 0.5, 2.0])
    maps = rng.uniform(1, 2, (6, 4))
    obs = np.array([1.4, 1.6, 1.2, 1.5])
    basis = EOFBasis.fit(maps, area, n_modes=1)
    emulated = basis.project(maps) + 0.1 * rng.standard_normal((6, 1))
    got = map_rmse(maps, obs, area, basis, emulated)
    # by hand: the weighted anomalies' projection on the leading EOF, back to the maps; the mean
    # squared error over the cells with the cells' area shares as weights
    w, V, s = np.sqrt(area / area.mean()), basis.V[0], basis.s[0]
    rec = basis.mean + np.outer(((maps - basis.mean) * w) @ V, V) / w
    net = basis.mean + np.outer(emulated[:, 0] * s, V) / w
    for k, x in enumerate((maps, rec, net)):
        want = [np.sqrt(np.sum(area * (x[i] - obs) ** 2) / area.sum()) for i in range(6)]
        np.testing.assert_allclose(got[k], want, rtol=1e-12)
    assert not np.allclose(got[0], np.sqrt(((maps - obs) ** 2).mean(axis=1)))  # the weights matter
    assert np.all(got[1] != got[0])  # one mode of six runs' maps is not the map

    members = [3, 5, 8, 9, 12, 20]
    rmse = xr.Dataset(
        {"rmse": (("variable", "estimate", "member"), np.stack([got * 1e-8, got * 10])),
         "cost_model": ("member", [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
         "cost_emulator": ("member", [1.5, 1.5, 3.5, 3.0, 6.0, 5.5]),
         "test": ("member", [False, True, False, False, True, False])},
        coords={"variable": ["gpp", "hfls"], "estimate": ["model", "eof", "emulator"], "member": members,
                "units": ("variable", ["kg m-2 s-1", "W m-2"])})
    opt = {"default_rmse": {"gpp": {"model": 2e-8, "eof": 3e-8, "emulator": 4e-8},
                            "hfls": {"model": 5.0, "eof": 6.0, "emulator": 7.0}},
           "model_cost": {"default": 2.5}, "emulated_cost": {"default": 2.0}}
    d = error_data(rmse, opt, threshold=3.2)
    assert list(d["panel"].values) == ["gpp/eof", "hfls/eof", "gpp/emulator", "hfls/emulator", "cost"]
    np.testing.assert_allclose(d["x"].sel(panel="gpp/eof").values, got[0] * 1e-8 * 86400e3)  # g m-2 d-1
    np.testing.assert_allclose(d["y"].sel(panel="hfls/emulator").values, got[2] * 10)
    np.testing.assert_allclose(d["y"].sel(panel="cost").values, rmse["cost_emulator"].values)
    np.testing.assert_allclose(d["default_x"].values, [2e-8 * 86400e3, 5.0, 2e-8 * 86400e3, 5.0, 2.5])
    np.testing.assert_allclose(d["default_y"].values, [3e-8 * 86400e3, 6.0, 4e-8 * 86400e3, 7.0, 2.0])
    assert list(d["units"].values) == ["g m-2 d-1", "W m-2", "g m-2 d-1", "W m-2", "1"]
    # r² of the least-squares line by hand, in every panel (the cost's from the stored costs)
    pairs = [(d["x"].values[k], d["y"].values[k]) for k in range(4)]
    for k, (x, y) in enumerate([*pairs, (rmse["cost_model"].values, rmse["cost_emulator"].values)]):
        fit = np.polyval(np.polyfit(x, y, 1), x)
        r2 = 1 - ((y - fit) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        np.testing.assert_allclose(d["r2"].values[k], r2, rtol=1e-9)
    assert np.isnan(error_data(rmse)["default_x"].values).all()  # a run without the default's errors
    fig = plot_errors(d)
    axes = np.array(fig.axes).reshape(3, 2)
    test = rmse["test"].values
    for k, ax in enumerate([axes[0, 0], axes[0, 1], axes[1, 0], axes[1, 1], axes[2, 0]]):
        xk, yk = d["x"].values[k], d["y"].values[k]
        train, held, default = ax.collections
        np.testing.assert_allclose(train.get_offsets(), np.c_[xk[~test], yk[~test]])
        np.testing.assert_allclose(held.get_offsets(), np.c_[xk[test], yk[test]])
        np.testing.assert_allclose(default.get_offsets(), [[d["default_x"][k], d["default_y"][k]]])
        one = ax.get_lines()[0]
        np.testing.assert_allclose(one.get_xdata(), one.get_ydata())  # the 1:1 line
        assert ax.get_title().endswith(f"r² = {d['r2'].values[k]:.2f}")
    assert axes[0, 1].get_title().startswith("(b) HFLS EOF reconstruction")
    assert axes[1, 0].get_title().startswith("(c) GPP network")
    np.testing.assert_allclose(axes[2, 0].get_lines()[1].get_xdata(), [3.2, 3.2])  # the threshold
    assert not axes[2, 1].axison
    plt.close(fig)


def test_fig11_bias_maps_of_the_optimum_and_the_default_against_the_observations():
    """Fig. 11: each run's mean over time minus the observed map on the observed cells (in
    g m-2 d-1 for GPP), its area-weighted global mean in the title, a colour range symmetric
    about 0 shared by the row; drawn on the observed cells' longitude and latitude."""
    from bayescal.report.dagon import bias_map_data, plot_bias_maps, plt

    gpp_opt = np.array([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 6.0]]).T[None] * 1e-8  # (member, cell, time)
    gpp_def = np.full((1, 4, 2), 2e-8)
    obs = np.array([1.5e-8, np.nan, 2.5e-8, 4e-8])
    area = np.array([1.0, 5.0, 2.0, 1.0])

    def run(g, h):
        return xr.Dataset({"gpp": (("member", "cell", "time"), g), "hfls": (("member", "cell", "time"), h)})

    runs = {"optimized": run(gpp_opt, np.full((1, 4, 2), 50.0)),
            "default": run(gpp_def, np.full((1, 4, 2), 40.0))}
    rmse = xr.Dataset({"observed": (("variable", "cell"), [obs, [45.0, 30.0, 60.0, np.nan]])},
                      coords={"variable": ["gpp", "hfls"], "units": ("variable", ["kg m-2 s-1", "W m-2"]),
                              "area": ("cell", area), "lon": ("cell", [-120.0, -10.0, 40.0, 150.0]),
                              "lat": ("cell", [-20.0, 0.0, 30.0, 60.0])})
    d = bias_map_data(runs, rmse, "gpp")
    # by hand (1e-8 kg m-2 s-1 = 0.864 g m-2 d-1): the observed cells 0, 2, 3
    want = np.array([[2.0 - 1.5, 2.0 - 2.5, 5.0 - 4.0], [2.0 - 1.5, 2.0 - 2.5, 2.0 - 4.0]]) * 0.864
    np.testing.assert_allclose(d["bias"].values, want, rtol=1e-12)
    want = np.array([0.5 * 1 - 0.5 * 2 + 1.0 * 1, 0.5 * 1 - 0.5 * 2 - 2.0 * 1]) / 4 * 0.864  # area 1, 2, 1
    np.testing.assert_allclose(d["mean_bias"].values, want, rtol=1e-12)
    assert d.attrs["units"] == "g m-2 d-1" and list(d["lon"].values) == [-120.0, 40.0, 150.0]
    h = bias_map_data(runs, rmse, "hfls")
    np.testing.assert_allclose(h["bias"].values, [[5.0, 20.0, -10.0], [-5.0, 10.0, -20.0]])
    np.testing.assert_allclose(h["mean_bias"].values, [(5 * 1 + 20 * 5 - 10 * 2) / 8, (-5 + 50 - 40) / 8])
    fig = plot_bias_maps([d, h])
    panels = [ax for ax in fig.axes if ax.collections]  # the maps, then their colour bars
    for k, (data, case) in enumerate([(d, "optimized"), (d, "default"), (h, "optimized"), (h, "default")]):
        sc = panels[k].collections[0]
        np.testing.assert_allclose(sc.get_offsets(), np.c_[data["lon"].values, data["lat"].values])
        np.testing.assert_allclose(sc.get_array(), data["bias"].sel(case=case).values)
        lim = np.abs(data["bias"].values).max()
        np.testing.assert_allclose(sc.get_clim(), (-lim, lim))
        assert f"global mean {float(data['mean_bias'].sel(case=case)):.3g} {data.attrs['units']}" in \
            panels[k].get_title()
    assert panels[0].get_title().startswith("GPP bias, best verified optimum")
    assert panels[1].get_title().startswith("GPP bias, defaults")
    plt.close(fig)


# ------------------------------------------------------------------------------ Fig. 2
def test_fig2_network_diagram_draws_every_connection_with_its_mean_weight():
    from bayescal.emulators.nn import DagonNetwork
    from bayescal.report.dagon_network import network_diagram_data, plot_network

    rng = np.random.default_rng(0)
    X = rng.random((40, 3))
    net = DagonNetwork(hidden=(4, 2), n_ensemble=3, max_epochs=20, random_state=0).fit(X, X[:, :2] ** 2)
    d = network_diagram_data(net, ["a", "b", "c"], "gpp")
    assert d.attrs["activations"] == ["input", "relu", "tanh", "linear"]
    assert list(d["layer0"].values) == ["a", "b", "c"] and list(d["layer3"].values) == ["gpp PC1", "gpp PC2"]
    for i, shape in ((1, (3, 4)), (2, (4, 2)), (3, (2, 2))):
        want = np.mean([np.abs(w[f"W{i}"]) for w in net.weights_], axis=0)
        assert d[f"weight_{i}"].shape == shape
        np.testing.assert_allclose(d[f"weight_{i}"].values, want)
    fig = plot_network([d, d])
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 3 * 4 + 4 * 2 + 2 * 2  # every connection
    w1 = d["weight_1"].values / d["weight_1"].values.max()
    np.testing.assert_allclose([ln.get_linewidth() for ln in lines[:12]], 0.2 + 2.3 * w1.ravel())
    assert sum(len(c.get_offsets()) for c in ax.collections) == 3 + 4 + 2 + 2  # every node
    with pytest.raises(ValueError, match="3 inputs, 2 names"):
        network_diagram_data(net, ["a", "b"], "gpp")
