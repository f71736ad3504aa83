"""Dagon et al.'s pieces: EOFs and the cost in EOF space (Eqs. 3, 5, 6), the ReLU-tanh network."""

import re
from pathlib import Path

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


def _period_mean(pipe, ds, v):
    """Maps (member, cell) of ``ds[v]`` over each product's months in each cell, averaged over the
    products (a twin's products leave months out where real ones do)."""
    import xarray as xr

    da = ds[v]
    means = [da.where(p.data.reindex(cell=da["cell"]).notnull()).mean("time") for p in pipe.twin()[0][v]]
    return xr.concat(means, "product").mean("product", skipna=True).transpose("member", "cell").values


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
        by_hand = np.sqrt(((_period_mean(pipe, design, v)[:, cells] - o) ** 2 * a).sum(1) / a.sum())
        np.testing.assert_allclose(err["rmse"].sel(variable=v, estimate="model").values, by_hand, rtol=1e-10)
        by_hand = np.sqrt(((_period_mean(pipe, default, v)[0, cells] - o) ** 2 * a).sum() / a.sum())
        np.testing.assert_allclose(opt["default_rmse"][v]["model"], by_hand, rtol=1e-10)
    np.testing.assert_allclose(err["cost_model"].values, pipe.model_cost(design), rtol=1e-12)
    np.testing.assert_allclose(err["cost_emulator"].values, pipe.cost().predict(eof["u"].values), rtol=1e-12)
    fig6 = error_data(err, opt, threshold)
    assert float(fig6["default_x"].sel(panel="cost")) == opt["model_cost"]["default"]
    runs = verified_runs(run / "emulator_screen", opt)
    for v, scale in (("gpp", 86400e3), ("hfls", 1.0)):
        cells = np.isfinite(observed[v])
        by_hand = (_period_mean(pipe, ver, v)[0, cells] - observed[v][cells]) * scale
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
    })
    pipe = make_context(cfg, progress=False)
    pipe.run(pipe.stage_names)
    run = tmp_path / "run"
    for stage in pipe.workflow.stages:  # every entry declared (a rerun would count it as the user's)
        assert stage.foreign_files(run / stage.name) == [], stage.name
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
        by_hand = {k: ((_period_mean(pipe, ds, v)[0, cells] - eof[f"{v}_mean"].values) * w) @ V.T / s
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
    assert page.count("<img") == 14 and "DE optimum" in page and "Tables S3-S5" in page
    assert all(f"Dagon Fig. {n})" in page for n in (2, 3, 5, 6)) and "Dagon Fig. 11;" in page
    for name in ("pe_maps", "network", "ppe_pcs", "eof_maps", "validation_pcs", "errors", "importance",
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


def test_factors_of_single_values_make_a_design_space():
    """``oat.unit = "value"``: each factor is a value such as ``vmax[BDL-EVG]`` (not an
    identifier); the Latin hypercube's space names them so, and its draws are the factors'."""
    from bayescal.models import default_parameter_space
    from bayescal.parameters.design import latin_hypercube
    from bayescal.workflows.dagon.context import Scaling

    labels = ["vmax[BDL-EVG]", "vmax[CROP-C3]", "gamma_w"]
    space = default_parameter_space().only(labels)
    calib = Scaling(space, {lab: [lab] for lab in labels})
    unit = calib.unit_space()
    assert unit.n_free == 3 and "gamma_w" in unit.names
    u = latin_hypercube(unit, 12, seed=1).values
    assert u.shape == (12, 3) and np.all((u >= 0) & (u <= 1))
    np.testing.assert_allclose(calib.value_unit(u), u)  # one value per factor


def test_a_verified_optimum_worse_than_the_defaults_is_warned_of():
    """The emulator-screen stage warns (into its record) when the model's cost at its best
    verified optimum exceeds the defaults', or every verified optimum failed; not when it is
    better or the defaults failed."""
    import warnings

    from bayescal.workflows.dagon.stages import _warn_if_worse

    worse = {"status": "done", "model_cost": 2.5, "round": 1}
    with pytest.warns(UserWarning, match=r"no verified optimum beats the defaults.*2\.5.*2\b"):
        _warn_if_worse(2.0, worse, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_if_worse(3.0, worse, 3)
        _warn_if_worse(float("nan"), worse, 3)
    with pytest.warns(UserWarning, match=r"every verified optimum failed \(3 emulator optima\)"):
        _warn_if_worse(2.0, {**worse, "status": "failed"}, 3)


@pytest.mark.parametrize("old, new, said", [
    ("eof_modes = 3", "eof_modes = 61",
     r"'emulator.eof_modes' \(61\) must be at most 'model.n_cells' \(60\)"),
    ("twin = true", "twin = true\ngcb_nbp = true",
     r"'observations.gcb_nbp' is not read by the dagon workflow"),
    ("twin = true", "twin = true\nsigma_floor = 0.1",
     r"'observations.sigma_floor' is not read by the dagon workflow"),
    ('variables = ["gpp", "hfls"]', 'variables = ["gpp", "nbp"]',
     r"\['nbp'\] change sign; the Dagon route observes positive fluxes and states"),
    ("[model]", "[screen]\nenabled = false\n[model]", r"'screen.enabled' is not read by the dagon workflow"),
])
def test_a_dagon_config_with_a_key_it_cannot_use_is_named_before_any_run(tmp_path, capsys, old, new, said):
    """Keys of the global route's likelihood (which the Dagon route does not read: they only
    reran its stages), more EOF modes than cells (silently cut), a signed variable: exit 2."""
    from bayescal.cli import main

    text = (Path(__file__).parents[1] / "examples" / "dagon_workflow.toml").read_text()
    assert old in text
    cfg = tmp_path / "dagon.toml"
    cfg.write_text(text.replace(old, new, 1).replace('"../runs/dagon_workflow"', '"run"'))
    assert main(["check", str(cfg), "--no-model-run"]) == 2
    err = capsys.readouterr().err
    assert re.search(said, err) and "Traceback" not in err, err
    assert not (tmp_path / "run").exists()


def test_observing_latent_and_sensible_heat_of_the_embedded_model_is_said_to_count_twice(tmp_path):
    """The embedded model's hfss is 0.7 rsds - hfls: its maps' PCs are hfls's (a newcomer's trial
    found them equal to 1e-15), so both observed weigh latent heat twice."""
    from bayescal.workflows import load_config

    text = (Path(__file__).parents[1] / "examples" / "dagon_workflow.toml").read_text()
    cfg = tmp_path / "dagon.toml"
    cfg.write_text(text.replace('variables = ["gpp", "hfls"]', 'variables = ["gpp", "hfls", "hfss"]'))
    with pytest.warns(UserWarning, match="names hfls and hfss: the embedded model's sensible heat is its net "
                                         r"radiation \(0.7 rsds, fixed by the drivers\) minus latent heat"):
        load_config(cfg)


def test_the_report_says_which_moved_truth_values_the_calibration_left_out():
    """A twin whose truth moves a value the screen did not keep: named in bold with its truth,
    the calibrated ones with the optimum's position beside the truth's, on each value's own scale
    (a log-scaled value recovered exactly sits where its truth does); nothing for real data."""
    from bayescal.parameters import Parameter, ParameterSpace
    from bayescal.report.dagon import optimum_positions, twin_paragraph

    space = ParameterSpace([Parameter("k", 1.0, 0.01, 100.0, scale="log"), Parameter("a", 0.5, 0.0, 1.0),
                            Parameter("gamma_w", 0.5, 0.0, 1.0)])
    truth_k = float(space.from_unit(np.array([0.75, 0.5, 0.5]))[0])  # 10 on the log scale
    vals = xr.Dataset({"optimum": ("value", [truth_k, 0.3])}, coords={"value": ["k", "a"]})
    positions = optimum_positions(vals, space)
    np.testing.assert_allclose([positions["k"], positions["a"]], [0.75, 0.3], rtol=1e-12)
    obs = {"twin": True, "truth": {"k": 0.75, "gamma_w": 0.2}}
    text = twin_paragraph(obs, positions)
    assert "moves 2 values" in text and "calibrated: k 0.75 (optimum 0.75)" in text
    assert "<b>Not calibrated: gamma_w 0.20</b>" in text and " a " not in text
    assert "moves 1 value from" in twin_paragraph({"twin": True, "truth": {"a": 0.4}}, positions)
    assert twin_paragraph({"twin": False, "truth": {"gamma_w": 0.2}}, positions) == ""
    assert twin_paragraph(obs, None) == ""  # no values: nothing said (not "not calibrated")
