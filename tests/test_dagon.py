"""Dagon et al.'s pieces: EOFs and the cost in EOF space (Eqs. 3, 5, 6), the ReLU-tanh network."""

import numpy as np
import pytest
import xarray as xr

from bayescal.emulators import load_emulator
from bayescal.emulators.nn import DagonNetwork
from bayescal.operators.eof import EOFBasis, eof_cost


def test_eofs_recover_planted_modes_and_project_observations():
    rng = np.random.default_rng(0)
    n_cell = 40
    area = rng.uniform(0.5, 2.0, n_cell)
    w = np.sqrt(area / area.mean())
    # two patterns orthonormal under the area weighting, planted with known amplitudes
    q, _ = np.linalg.qr(rng.standard_normal((n_cell, 2)))
    patterns = q.T / w
    amp = rng.standard_normal((60, 2)) * [3.0, 1.0]
    amp -= amp.mean(axis=0)
    mean = rng.uniform(1, 2, n_cell)
    maps = mean + amp @ patterns
    b = EOFBasis.fit(maps, area, n_modes=None, variance=0.999)
    assert b.n_modes == 2
    np.testing.assert_allclose(b.fraction.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(b.reconstruct(b.project(maps)), maps, rtol=1e-12, atol=1e-12)
    # Eq. 5: an observation's PCs are its anomaly in the ensemble's EOF space
    obs = mean + np.array([1.5, -0.5]) @ patterns
    u_obs = b.project(obs)
    np.testing.assert_allclose(b.reconstruct(u_obs), obs, rtol=1e-12)
    # the ensemble's own PCs have unit norm per mode (U of the SVD)
    np.testing.assert_allclose(np.linalg.norm(b.project(maps), axis=0), 1.0, rtol=1e-12)
    # Eq. 6 by hand
    pred = {"gpp": np.array([[0.1, 0.2], [0.0, 0.0]])}
    cost = eof_cost(pred, {"gpp": np.array([0.1, 0.0])}, {"gpp": np.array([0.5, 2.0])},
                    {"gpp": np.array([0.9, 0.1])})
    np.testing.assert_allclose(cost, [0.1 * (0.2 / 2.0) ** 2, 0.9 * (0.1 / 0.5) ** 2], rtol=1e-14)


@pytest.mark.parametrize(("hidden", "activation"), [((5, 4), "relu-tanh"), ((5, 4, 3), "relu-tanh"),
                                                   ((5, 4), "relu"), ((5, 4, 3), "relu"), ((4,), "tanh")])
def test_network_gradients_are_exact(hidden, activation):
    net = DagonNetwork(hidden=hidden, alpha=1e-2, activation=activation)
    rng = np.random.default_rng(1)
    X, Y = rng.uniform(size=(7, 3)), rng.standard_normal((7, 2))
    widths = [3, *hidden, 2]
    w = {}
    for i in range(1, len(widths)):
        w[f"W{i}"], w[f"b{i}"] = rng.standard_normal(widths[i - 1: i + 1]), rng.standard_normal(widths[i])

    def objective(w):
        pen = net.alpha / 7 * sum((w[k] ** 2).sum() for k in w if k.startswith("W"))
        return net._loss(w, X, Y) + pen

    grads = net._gradients(w, X, Y, 7)
    assert sorted(grads) == sorted(w)
    for name, g in grads.items():
        num = np.zeros_like(g)
        for idx in np.ndindex(g.shape):
            for sign in (1, -1):
                wp = {k: v.copy() for k, v in w.items()}
                wp[name][idx] += sign * 1e-6
                num[idx] += sign * objective(wp) / 2e-6
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-8, err_msg=name)


def test_adam_steps_follow_kingma_and_ba():
    """Two Adam steps by hand (Algorithm 1 with bias correction): the first moves each weight by
    about the learning rate against its gradient's sign."""
    from bayescal.emulators.nn import adam_step

    w0 = np.array([1.0, -2.0, 0.5])
    g1, g2 = np.array([0.3, -4.0, 1e-3]), np.array([-0.1, -2.0, 2e-3])
    w, state = {"W1": w0.copy()}, {}
    adam_step(w, {"W1": g1}, state, 0.01)
    np.testing.assert_allclose(w["W1"], w0 - 0.01 * g1 / (np.abs(g1) + 1e-7), rtol=1e-12)
    adam_step(w, {"W1": g2}, state, 0.01)
    m, v = 0.9 * 0.1 * g1 + 0.1 * g2, 0.999 * 0.001 * g1**2 + 0.001 * g2**2
    step2 = 0.01 * (m / (1 - 0.9**2)) / (np.sqrt(v / (1 - 0.999**2)) + 1e-7)
    np.testing.assert_allclose(w["W1"], w0 - 0.01 * g1 / (np.abs(g1) + 1e-7) - step2, rtol=1e-12)


def test_network_learns_a_nonlinear_response_and_round_trips(tmp_path):
    rng = np.random.default_rng(2)
    f = lambda x: np.stack([np.sin(2 * np.pi * x[:, 0]) + x[:, 1] ** 2, x[:, 0] * x[:, 2]], axis=1)  # noqa: E731
    X = rng.uniform(size=(300, 3))
    Xt = rng.uniform(size=(200, 3))
    net = DagonNetwork(hidden=(15, 15), random_state=0).fit(X, f(X))
    resid = net.predict(Xt) - f(Xt)
    r2 = 1 - (resid**2).sum(0) / ((f(Xt) - f(Xt).mean(0)) ** 2).sum(0)
    assert np.all(r2 > 0.97), r2
    net.save(tmp_path / "nn.nc")
    back = load_emulator(tmp_path / "nn.nc")
    np.testing.assert_array_equal(back.predict(Xt), net.predict(Xt))
    # single output keeps its shape
    assert DagonNetwork(max_epochs=5).fit(X, f(X)[:, 0]).predict(Xt).shape == (200,)
    with pytest.raises(Exception, match="outside the unit cube"):
        net.predict(Xt + 2)


def _check_figs_6_and_11(pipe, run, eof, opt, threshold, default, ver):
    """Figs. 6 and 11 of the end-to-end run: the stored errors are the runs' -- the design runs' model
    RMSE recomputed from their store against the context's observed maps, the default's from its
    verified run, the costs the context's -- and the optimum-minus-observed map is the best verified
    round's stored run's."""
    from bayescal.report.dagon import bias_map_data, error_data
    from bayescal.report.dagon_maps import verified_runs
    from bayescal.run.ensemble import EnsembleStore

    err = xr.load_dataset(run / "emulate" / "rmse.nc")
    np.testing.assert_array_equal(err["member"].values, eof["member"].values)
    np.testing.assert_array_equal(err["test"].values, eof["gpp_test"].values)
    design = EnsembleStore(run / "design" / "ensemble").load().sel(member=err["member"].values)
    observed, area = pipe.observed_maps()[0], design["area"].values
    for v in ("gpp", "hfls"):
        np.testing.assert_array_equal(err["observed"].sel(variable=v).values, observed[v])
        cells = eof[f"{v}_cells"].values.astype(bool)
        a, o = area[cells], observed[v][cells]
        by_hand = np.sqrt(((design[v].mean("time").values[:, cells] - o) ** 2 * a).sum(1) / a.sum())
        np.testing.assert_allclose(err["rmse"].sel(variable=v, estimate="model").values, by_hand, rtol=1e-10)
        by_hand = np.sqrt(((default[v].mean("time").values[0, cells] - o) ** 2 * a).sum() / a.sum())
        np.testing.assert_allclose(opt["default_rmse"][v]["model"], by_hand, rtol=1e-10)
    np.testing.assert_allclose(err["cost_model"].values, pipe.model_cost(design), rtol=1e-12)
    np.testing.assert_allclose(err["cost_emulator"].values, pipe.cost().predict(eof["u"].values), rtol=1e-12)
    fig6 = error_data(err, opt, threshold)
    assert float(fig6["default_x"].sel(panel="cost")) == opt["model_cost"]["default"]
    runs = verified_runs(run / "emulator_screen", opt)
    for v, scale in (("gpp", 86400e3), ("hfls", 1.0)):
        cells = np.isfinite(observed[v])
        by_hand = (ver[v].mean("time").values[0, cells] - observed[v][cells]) * scale
        np.testing.assert_allclose(bias_map_data(runs, err, v)["bias"].sel(case="optimized").values, by_hand,
                                   rtol=1e-10)


@pytest.mark.slow
def test_dagon_workflow_end_to_end(tmp_path):
    """OAT of families on Dagon's outputs -> design of one factor per family -> EOF network, its
    importance and partial dependence -> 10^n cost screen -> DE optimum verified by the model ->
    report with the paper's figures, each drawn from what the stages wrote."""
    import json

    import xarray as xr

    from bayescal.report.dagon import optimum_values, pc_comparison, ppe_pc_data, validation_pc_data
    from bayescal.run.ensemble import EnsembleStore
    from bayescal.workflows import make_context, validate_config

    cfg = validate_config({
        "run": {"output": str(tmp_path / "run"), "seed": 3, "workflow": "dagon"},
        "model": {"n_cells": 24, "start": 2000, "end": 2004, "ramp_start": 1997},
        "parameters": {"candidates": ["vmax", "kn", "sn", "gamma_w"]},
        "observations": {"variables": ["gpp", "hfls"], "gcb_years": [2000, 2004],
                         "truth": {"vmax[BDL-EVG]": 0.3, "kn[BDL-EVG]": 0.6}},
        "oat": {"top_k": 2},
        "design": {"n_runs": 60, "batch_size": 60},
        "emulator_screen": {"n_points": 20000, "keep": 50, "refine_rounds": 1},
        "propagate": {"table_years": [2000, 2004]},
    })
    pipe = make_context(cfg, progress=False)
    pipe.run(pipe.stage_names)
    run = tmp_path / "run"
    rank = xr.load_dataset(run / "oat" / "ranking.nc")
    # four families, each perturbed whole (9 runs), screened on GPP, latent and sensible heat
    assert list(rank["parameter"].values) == ["vmax", "kn", "sn", "gamma_w"]
    assert list(rank["output"].values) == ["gpp", "hfls", "hfss"] and rank.attrs["runs"] == 9
    oat_runs = EnsembleStore(run / "oat" / "ensemble").load()
    np.testing.assert_allclose(  # vmax's row at its lower bounds: every PFT value at once
        oat_runs["theta"].values[1, :9], pipe.full_space.lower[:9])
    sel = json.loads((run / "oat" / "selected.json").read_text())
    best2 = list(rank["parameter"].values[np.argsort(rank["pe_rank"].values)][:2])  # by effect, as Dagon
    assert set(sel["groups"]) == set(best2) and sel["unit"] == "family"
    assert sel["parameters"] == [lab for lab in pipe.full_space.labels if lab.split("[")[0] in best2]
    calib = pipe.calibration()
    tr = xr.load_dataset(run / "design" / "training.nc")
    assert tr.sizes["parameter"] == 2 == calib.n_free  # Dagon's PPE: one scaling factor a family
    eof = xr.load_dataset(run / "emulate" / "eof.nc")
    for v in ("gpp", "hfls"):
        assert eof.sizes[f"{v}_mode"] == 3 and 0.9 < eof[f"{v}_fraction"].values.sum() <= 1 + 1e-12
        assert eof[f"{v}_test_r2"].values[0] > 0.8  # the leading mode is learnt
    interp = xr.load_dataset(run / "emulate" / "interpretation.nc")
    assert interp["gpp_partial_dependence"].shape == (2, 10, 3)
    assert (interp["gpp_mse"] >= 0).all() and (interp["gpp_baseline_mse"] >= 0).all()
    opt = json.loads((run / "emulator_screen" / "optimum.json").read_text())
    screen = xr.load_dataset(run / "emulator_screen" / "screen.nc")
    assert int(screen["count"].sum()) == 20000
    # DE on the emulator does at least as well as the best of the quasi-random screen
    assert opt["rounds"][0]["emulated_cost"] <= float(screen["cost"].min()) + 1e-9
    # the verification is a model run: recomputing the model's cost from its stored run agrees
    ver = EnsembleStore(run / "emulator_screen" / "verify" / f"round{opt['optimum_round']}").load()
    best = opt["rounds"][opt["optimum_round"]]
    np.testing.assert_allclose(pipe.model_cost(ver)[0], best["model_cost"], rtol=1e-12)
    assert opt["model_cost"]["optimum"] == min(r["model_cost"] for r in opt["rounds"])
    # Fig. 10 by hand: the verified run's and the default's mean maps in the ensemble's EOFs (Eq. 5)
    default = EnsembleStore(run / "emulator_screen" / "verify" / "default").load()
    np.testing.assert_allclose(default["theta"].values[0], pipe.full_space.all_default)  # the true defaults
    for v in ("gpp", "hfls"):
        cells = eof[f"{v}_cells"].values
        w, V, s = eof[f"{v}_weight"].values, eof[f"{v}_eof"].values, eof[f"{v}_s"].values
        by_hand = {k: ((ds[v].mean("time").values[0, cells] - eof[f"{v}_mean"].values) * w) @ V.T / s
                   for k, ds in (("default (model)", default), ("optimum (model)", ver))}
        pcs = pc_comparison(eof, opt, v)
        for case, want in by_hand.items():
            np.testing.assert_allclose(pcs["pc"].sel(case=case).values, want, rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(pcs["pc"].sel(case="observed").values, eof[f"{v}_obs_pc"].values)
        # Fig. 3: the histograms are of the design runs' PCs; the default's are those verified above
        ppe = ppe_pc_data(eof, opt, v)
        np.testing.assert_array_equal(ppe["ppe"].values, eof[f"{v}_pc"].values)
        np.testing.assert_array_equal(ppe["member"].values, eof["member"].values)
        assert (ppe["count"].sum("bin") == eof.sizes["member"]).all()
        np.testing.assert_allclose(ppe["default"].values, by_hand["default (model)"], rtol=1e-8, atol=1e-12)
    # Fig. 5: the stored test runs are eof.nc's, the emulator's PCs its network's, R² the stage's
    from bayescal.emulators import load_emulator

    val = xr.load_dataset(run / "emulate" / "validation_pcs.nc")
    test = eof["gpp_test"].values  # one split for every variable
    np.testing.assert_array_equal(val["run"].values, eof["member"].values[test])
    for v in ("gpp", "hfls"):
        d = validation_pc_data(val, v)
        np.testing.assert_array_equal(d["model"].values, eof[f"{v}_pc"].values[test])
        net = load_emulator(run / "emulate" / f"network_{v}.nc")
        np.testing.assert_allclose(d["emulator"].values, net.predict(eof["u"].values[test]), rtol=1e-12)
        np.testing.assert_allclose(d["r2"].values, eof[f"{v}_test_r2"].values, rtol=1e-10)
    _check_figs_6_and_11(pipe, run, eof, opt, float(screen["cost"].max()), default, ver)
    # the optimum in physical units: every value of a family at the family's factor of its range
    vals = optimum_values(opt)
    space = calib.space
    for g, fam in enumerate(calib.labels):
        cols = [space.labels.index(lab) for lab in sel["groups"][fam]]
        want = space.lower[cols] + opt["optimum_u"][g] * (space.upper[cols] - space.lower[cols])
        np.testing.assert_allclose(vals["optimum"].values[cols], want, rtol=1e-12)
    np.testing.assert_allclose(vals["default"].values, space.default)
    page = (run / "report.html").read_text()
    assert page.count("<img") == 13 and "DE optimum" in page and "Tables S3-S5" in page
    assert all(f"Dagon Fig. {n})" in page for n in (3, 5, 6)) and "Dagon Fig. 11;" in page
    for name in ("pe_maps", "ppe_pcs", "eof_maps", "validation_pcs", "errors", "importance",
                 "partial_dependence", "pair_plot", "pcs", "bias_maps", "optimum"):
        assert (run / "figures" / f"{name}.png").exists()


def test_tpe_tuning_is_reproducible_and_reports_what_it_fitted():
    """Lu & Ricciuto's TPE-tuned network: the same seed gives the same network; the reported
    cross-validated error is that of the returned hyper-parameters."""
    pytest.importorskip("optuna")
    from bayescal.emulators.tuning import _cv_error, tune_network

    rng = np.random.default_rng(4)
    X = rng.uniform(size=(20, 3))
    Y = np.stack([np.sin(3 * X[:, 0]) + X[:, 1], X[:, 2] ** 2], axis=1)
    a, info = tune_network(X, Y, n_trials=4, seed=1, max_epochs=60, n_ensemble=2)
    b, _ = tune_network(X, Y, n_trials=4, seed=1, max_epochs=60, n_ensemble=2)
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    p = info["best_params"]
    assert a.hidden == (p["hidden1"], p["hidden2"]) and a.alpha == p["alpha"] and a.n_ensemble == 2
    Z = (Y - Y.mean(0)) / (Y.std(0) + 1e-12)
    folds = np.array_split(np.random.default_rng(1).permutation(20), 5)
    params = {"hidden": a.hidden, "alpha": a.alpha, "learning_rate": a.learning_rate,
              "batch_size": a.batch_size, "max_epochs": 60, "patience": 60}
    assert _cv_error(params, X, Z, folds, 1, np.full(2, 0.5)) == pytest.approx(info["best_cv_mse"], rel=1e-12)


def test_network_keeps_its_learning_curves(tmp_path):
    """Lu & Ricciuto's learning curves: training and validation loss per epoch, saved with the
    network; the kept weights are those of the best validation epoch."""
    rng = np.random.default_rng(4)
    X = rng.uniform(size=(120, 3))
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    net = DagonNetwork(hidden=(8, 8), max_epochs=300, patience=30, random_state=1).fit(X, y)
    n = net.n_epochs_
    assert net.loss_curve_.shape == net.validation_loss_curve_.shape == (n,)
    assert net.loss_curve_[-1] < 0.5 * net.loss_curve_[0]  # it learns
    assert net.validation_loss_ == pytest.approx(net.validation_loss_curve_.min())
    net.save(tmp_path / "net.nc")
    back = load_emulator(tmp_path / "net.nc")
    np.testing.assert_array_equal(back.loss_curve_, net.loss_curve_)
    np.testing.assert_array_equal(back.validation_loss_curve_, net.validation_loss_curve_)


# ------------------------------------------------------ the calibrated coordinates (Sect. 2.4)
def test_scaling_puts_every_value_of_a_family_at_one_position_of_its_own_range():
    from bayescal.parameters import Parameter, ParameterSpace
    from bayescal.workflows.dagon.context import Scaling

    space = ParameterSpace([
        Parameter("v", [1.0, 2.0, 0.5], [0.0, 1.0, 0.2], [2.0, 4.0, 0.6], groups=["A", "B", "C"]),
        Parameter("s", 1.0, 0.5, 1.5), Parameter("w", [1.0, 2.0], 0.0, 4.0, groups=["A", "B"])])
    calib = Scaling(space.only(["v", "s"]), {"v": ["v[A]", "v[B]", "v[C]"], "s": ["s"]})
    assert calib.labels == ["v", "s"] and calib.n_free == 2
    theta = calib.theta(np.array([[0.25, 1.0]]))[0]
    np.testing.assert_allclose(theta, [0.5, 1.75, 0.3, 1.5, 1.0, 2.0])  # w stays at its defaults
    np.testing.assert_allclose(calib.default_u, [np.mean([0.5, 1 / 3, 0.75]), 0.5])
    assert not calib.default_exact  # v's defaults sit at different places of their ranges
    one = Scaling(space.only(["s", "w[A]"]), {"s": ["s"], "w[A]": ["w[A]"]})  # each value its own
    assert one.default_exact and np.allclose(one.theta(one.default_u[None])[0], space.all_default)
    unit = calib.unit_space()
    assert unit.labels == ["v", "s"] and np.all(unit.lower == 0) and np.all(unit.upper == 1)
    with pytest.raises(ValueError, match="exactly one group"):
        Scaling(space.only(["v"]), {"v": ["v[A]", "v[B]"]})


# ------------------------------------------------------------------- Figs. 7 and 8
class _Linear:
    """A stand-in network: PCs linear in the parameters (known importance and dependence)."""

    A = np.array([[1.0, 0.0], [2.0, -1.0], [0.0, 3.0]])  # (parameter, mode)

    def predict(self, u):
        return np.asarray(u) @ self.A


def test_importance_and_partial_dependence_of_a_network_are_dagons_figs_7_and_8():
    """Fig. 7: the MSE of each PC with one parameter shuffled rises by A^2 x twice its variance on
    average (exactly 0 for a parameter the mode ignores); Fig. 8: fixing a parameter at each of
    ten values and averaging over the members gives A x value + the others' mean."""
    from bayescal.report.dagon import (
        importance_data,
        partial_dependence_data,
        plot_importance,
        plot_partial_dependence,
        plt,
    )
    from bayescal.workflows.dagon.stages import PD_GRID, interpret_network

    rng = np.random.default_rng(8)
    u = rng.random((60, 3))
    net = _Linear()
    test = np.arange(40)
    ds = interpret_network(net, u, net.predict(u), test, "gpp", seed=1, n_repeats=200)
    ds = ds.assign_coords(parameter=["a", "b", "c"])
    np.testing.assert_allclose(ds["gpp_baseline_mse"].values, 0.0, atol=1e-24)  # a perfect network
    var = u[test].var(axis=0)
    want = net.A**2 * 2 * var[:, None]
    assert ds["gpp_mse"].values[0, 1] == 0.0 and ds["gpp_mse"].values[2, 0] == 0.0
    np.testing.assert_allclose(ds["gpp_mse"].values, want, rtol=0.15)
    for j in range(3):
        others = u.mean(axis=0) @ net.A - u[:, j].mean() * net.A[j]
        np.testing.assert_allclose(ds["gpp_partial_dependence"].values[j],
                                   PD_GRID[:, None] * net.A[j] + others, rtol=1e-12)
    imp = importance_data(ds, "gpp", mode=1)
    np.testing.assert_array_equal(imp["mse"].values, ds["gpp_mse"].values[:, 1])
    assert float(imp["baseline"]) == ds["gpp_baseline_mse"].values[1] and imp.attrs["mode"] == 2
    fig = plot_importance([imp])
    bars = fig.axes[0].patches
    np.testing.assert_allclose([b.get_width() for b in bars], [float(imp["baseline"]), *imp["mse"].values])
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["no permutation", "a", "b", "c"]
    plt.close(fig)
    twice = _Linear()
    twice.A = 2 * net.A
    both = xr.merge([ds, interpret_network(twice, u, twice.predict(u), test, "hfls", n_repeats=2)])
    pd = partial_dependence_data(both, ["gpp", "hfls"])
    want = 2 * ds["gpp_partial_dependence"].values[..., 0]
    np.testing.assert_allclose(pd.sel(variable="hfls").values, want, rtol=1e-12)
    fig = plot_partial_dependence(pd)
    for k, p in enumerate(["a", "b", "c"]):
        lines = fig.axes[k].get_lines()
        np.testing.assert_allclose(lines[0].get_ydata(), pd.sel(variable="gpp", parameter=p).values)
        np.testing.assert_allclose(lines[1].get_xdata(), PD_GRID)
    plt.close(fig)


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
