"""GP and SVD emulators: published example, exact LOO, gradients, ARD, the embedded model, I/O."""

import numpy as np
import pytest
import xarray as xr
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_score
from sklearn.utils.estimator_checks import parametrize_with_checks

from bayescal.emulators import (
    EmulatorError,
    GPEmulator,
    SVDEmulator,
    kfold,
    load_emulator,
    partial_dependence,
    permutation_importance,
)
from bayescal.operators.scores import residuals
from bayescal.parameters.design import latin_hypercube


def _data(n=60, d=4, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    X = rng.random((n, d))
    y = np.sin(3 * X[:, 0]) + X[:, 1] ** 2 + noise * rng.normal(size=n)
    return X, y


def test_classic_appendix_example():
    gp = GPEmulator(kernel="rbf", mean="zero", normalize_y=False, length_scale=1.0, signal_variance=1.0,
                    noise=1e-6, optimizer=None)
    gp.fit(np.array([[0.0], [1.0]]), np.array([3.0, 5.0]))
    mean, sd = gp.predict(np.array([[0.75]]), return_std=True)
    assert mean[0] == pytest.approx(4.837537, abs=5e-7)
    assert sd[0] ** 2 == pytest.approx(0.0164838, abs=5e-8)
    _, cov = gp.predict(np.array([[0.75], [0.2]]), return_cov=True)
    assert cov[0, 0] == pytest.approx(sd[0] ** 2, rel=1e-10)


@pytest.mark.parametrize("mean", ["zero", "constant", "linear"])
@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_closed_form_loo_equals_refits(kernel, mean):
    X, y = _data(40, 3)
    fixed = dict(kernel=kernel, mean=mean, normalize_y=False, length_scale=[0.4, 0.7, 1.5],
                 signal_variance=0.8, noise=1e-3, optimizer=None)
    loo = GPEmulator(**fixed).fit(X, y).loo()
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        m, s = GPEmulator(**fixed).fit(X[keep], y[keep]).predict(X[i:i + 1], return_std=True, noisy=True)
        assert abs(m[0] - loo["mean"].values[i]) < 1e-8
        assert abs(s[0] - loo["sd"].values[i]) < 1e-8


@pytest.mark.parametrize("mean", ["zero", "constant", "linear"])
@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_analytic_gradient_matches_finite_differences(kernel, mean):
    X, y = _data(50, 5)
    gp = GPEmulator(kernel=kernel, mean=mean, length_scale=[0.5, 1, 2, 0.3, 3], noise=1e-2,
                    optimizer=None).fit(X, y)
    theta = gp.theta_
    _, grad = gp.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-5
    lml = gp.log_marginal_likelihood
    fd = np.array([(lml(theta + e * h) - lml(theta - e * h)) / (2 * h) for e in np.eye(theta.size)])
    np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def _extended_precision_sd(gp, Xs):
    """Kriging sd of a fitted constant-mean GP by a Cholesky solve in extended precision."""
    ld = np.longdouble
    X, Xs = gp.X_train_.astype(ld), np.asarray(Xs, dtype=ld)
    ls, s2, sn2 = np.exp(gp.theta_[1:-1].astype(ld)), np.exp(ld(gp.theta_[0])), np.exp(ld(gp.theta_[-1]))

    def k(A, B):
        r = np.sqrt(np.maximum((((A[:, None, :] - B[None, :, :]) / ls) ** 2).sum(-1), 0)) * np.sqrt(ld(5))
        return s2 * (1 + r + r * r / 3) * np.exp(-r)

    K = k(X, X) + sn2 * np.eye(X.shape[0], dtype=ld)
    n = K.shape[0]
    L = np.zeros_like(K)
    for j in range(n):
        L[j, j] = np.sqrt(K[j, j] - L[j, :j] @ L[j, :j])
        L[j + 1:, j] = (K[j + 1:, j] - L[j + 1:, :j] @ L[j, :j]) / L[j, j]

    def fsolve(B):
        out = np.zeros_like(B)
        for i in range(n):
            out[i] = (B[i] - L[i, :i] @ out[:i]) / L[i, i]
        return out

    V = fsolve(k(X, Xs))  # (n, m)
    W = fsolve(np.ones((n, 1), dtype=ld))[:, 0]
    u = 1 - V.T @ W
    var = s2 - (V * V).sum(0) + u * u / (W @ W)
    return np.sqrt(np.maximum(var, 0)).astype(float) * gp.y_std_


def test_predictive_sd_accurate_on_an_ill_conditioned_fit():
    """At the hyper-parameter bounds (cond(K) ~ 1e14) the sd equals an extended-precision solve.

    An explicit inverse of K returned sd = 0 at extrapolation points (issue 15); the Cholesky
    route must agree with the reference to 1e-4 relative where the sd is not itself round-off.
    """
    rng = np.random.default_rng(1)
    X = rng.random((200, 2)) * 0.5
    gp = GPEmulator(random_state=0).fit(X, np.sin(4 * X[:, 0]) + X[:, 1])
    Xs = np.vstack([0.6 + rng.random((40, 2)) * 0.4, rng.random((40, 2)) * 0.5])
    s = np.linalg.svd(gp._L, compute_uv=False)
    assert (s[0] / s[-1]) ** 2 > 1e10  # really ill-conditioned
    ref = _extended_precision_sd(gp, Xs)
    _, sd = gp.predict(Xs, return_std=True)
    far = ref > 1e-4 * gp.y_std_
    assert far[:40].all()  # the extrapolation points are uncertain ...
    np.testing.assert_allclose(sd[far], ref[far], rtol=1e-4)
    np.testing.assert_allclose(sd[~far], ref[~far], atol=1e-5 * gp.y_std_)
    # ... and the closed-form LOO variance is a sum of squares, so it agrees with refits
    loo = gp.loo()
    assert np.all(loo["sd"].values > 0)
    keep = np.arange(200) != 7
    fixed = GPEmulator(**{**gp.get_params(), "optimizer": None, "normalize_y": False,
                          "length_scale": gp.length_scale_, "signal_variance": gp.signal_variance_,
                          "noise": gp.noise_})
    _, s7 = fixed.fit(X[keep], gp._y[keep]).predict(X[7:8], return_std=True, noisy=True)
    s7 = s7 * gp.y_std_
    assert s7[0] == pytest.approx(loo["sd"].values[7], rel=1e-3)


def test_likelihood_at_least_sklearns():
    X, y = _data(80, 4, seed=2)
    kernel = (ConstantKernel(1.0, (1e-3, 1e3)) * Matern(np.ones(4), (1e-2, 1e3), nu=2.5)
              + WhiteKernel(1e-4, (1e-9, 1)))
    sk = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0).fit(X, y)
    ours = GPEmulator(mean="zero", random_state=0).fit(X, y)
    # same model: standardised targets, zero mean, scaled ARD Matern 5/2 plus white noise
    assert ours.log_marginal_likelihood_value_ >= sk.log_marginal_likelihood_value_ - 1e-6
    np.testing.assert_allclose(ours.predict(X[:5]), sk.predict(X[:5]), rtol=1e-2, atol=1e-3)


def test_inert_inputs_get_upper_bound_length_scales():
    rng = np.random.default_rng(4)
    X = rng.random((120, 6))
    y = np.sin(4 * X[:, 0]) * np.cos(3 * X[:, 1]) + 0.5 * np.sin(5 * X[:, 2])
    gp = GPEmulator(random_state=0).fit(X, y)
    upper = gp.length_scale_bounds[1]
    np.testing.assert_allclose(gp.length_scale_[3:], upper, rtol=1e-3)
    assert np.all(gp.length_scale_[:3] < 0.01 * upper)
    assert gp.loo().attrs["r2"] > 0.99


def test_predictive_sd_is_calibrated_on_noisy_function():
    X, y = _data(150, 3, seed=5, noise=0.05)
    gp = GPEmulator(random_state=0).fit(X, y)
    assert gp.noise_ * gp.y_std_**2 == pytest.approx(0.05**2, rel=0.5)
    loo = gp.loo()
    assert 0.9 <= loo.attrs["coverage_95"] <= 0.99
    assert abs(loo.attrs["z_sd"] - 1) < 0.15


def test_bad_inputs_give_clear_errors():
    X, y = _data(20, 2)
    gp = GPEmulator()
    with pytest.raises(EmulatorError, match="outside the unit cube"):
        gp.fit(X * 2, y)
    yn = y.copy()
    yn[3] = np.nan
    with pytest.raises(EmulatorError, match="NaN/inf.*point 3"):
        gp.fit(X, yn)
    with pytest.raises(EmulatorError, match="at least 5 training points"):
        GPEmulator(mean="linear").fit(X[:3], y[:3])
    with pytest.raises(EmulatorError, match="not fitted"):
        GPEmulator().predict(X)
    fitted = GPEmulator(optimizer=None).fit(X, y)
    with pytest.raises(EmulatorError, match="fitted on 2"):
        fitted.predict(np.zeros((2, 3)))
    with pytest.raises(EmulatorError, match="kernel must be"):
        GPEmulator(kernel="cubic").fit(X, y)


def test_duplicate_points_do_not_break_the_cholesky():
    X, y = _data(30, 2)
    Xd = np.vstack([X, X[:10], X[:10]])
    yd = np.concatenate([y, y[:10] + 0.01, y[:10]])
    gp = GPEmulator(noise_bounds=(1e-12, 1.0), random_state=0).fit(Xd, yd)
    mean, sd = gp.predict(X, return_std=True)
    assert np.all(np.isfinite(mean)) and np.all(np.isfinite(sd))
    assert np.all(np.isfinite(gp.loo()["mean"]))
    # exact duplicates with no noise at all: jitter is added with a warning, not a crash
    with pytest.warns(RuntimeWarning, match="jitter"):
        GPEmulator(noise=0.0, optimizer=None, length_scale=0.5).fit(np.vstack([X, X]), np.concatenate([y, y]))


def test_labelled_inputs_must_match(twin):
    space = twin.space
    d = latin_hypercube(space, 30, seed=1)
    u = xr.DataArray(space.to_unit(d.values), dims=("member", "parameter"),
                     coords={"parameter": space.labels})
    gp = GPEmulator(optimizer=None).fit(u, np.sin(u.values.sum(1)))
    assert gp.parameters_ == space.labels
    gp.predict(u)  # same labels
    with pytest.raises(EmulatorError, match="same parameters in another order"):
        gp.predict(u.isel(parameter=slice(None, None, -1)))
    other = u.assign_coords(parameter=[f"p{i}" for i in range(space.n_free)])
    with pytest.raises(EmulatorError, match="other parameters"):
        gp.predict(other)


def test_save_load_predicts_identically(tmp_path):
    """Bit for bit, also when fitted on (and asked at) inputs in Fortran order (a transposed or
    ``np.load``-ed array): the inputs are made C-contiguous, so BLAS takes the same path."""
    X, y = _data(40, 3)
    X = np.asfortranarray(X)
    gp = GPEmulator(mean="linear", random_state=0).fit(X, y)
    gp.save(tmp_path / "gp.nc")
    again = load_emulator(tmp_path / "gp.nc")
    Xt = np.random.default_rng(9).random((50, 3))
    for a, b in zip(gp.predict(Xt, return_std=True), again.predict(np.asfortranarray(Xt), return_std=True),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    Y = np.stack([np.sin(3 * X[:, 0] + k) * (1 + X[:, 1]) for k in np.linspace(0, 2, 12)], axis=1)
    for est in ("gp", "mlp"):
        em = SVDEmulator(estimator=est, random_state=0).fit(X, Y)
        em.save(tmp_path / f"svd_{est}.nc")
        back = load_emulator(tmp_path / f"svd_{est}.nc")
        np.testing.assert_array_equal(em.predict(Xt), back.predict(Xt))
    from bayescal.emulators.active import ActiveGPEmulator

    X20 = np.random.default_rng(4).random((60, 20))  # rescaled GPs (max_fit < runs) and ridge alike
    Y2 = np.c_[np.sin(3 * X20[:, 0]) + X20[:, 1], X20[:, 2] ** 2 + X20[:, 5]]
    active = ActiveGPEmulator(n_active=4, max_fit=40).fit(X20, Y2)
    active.save(tmp_path / "active.nc")
    back = load_emulator(tmp_path / "active.nc")
    X20t = np.random.default_rng(5).random((30, 20))
    for a, b in zip(active.predict(X20t, return_std=True), back.predict(X20t, return_std=True), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(active.predict(X20t), back.predict(X20t))  # the compiled means too
    with pytest.raises(EmulatorError, match="not a bayescal emulator"):
        xr.Dataset({"a": ("x", [1.0])}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
        load_emulator(tmp_path / "other.nc")


def test_scikit_learn_tools_work():
    X, y = _data(80, 4, seed=3)
    gp = GPEmulator(random_state=0, n_restarts=0)
    scores = cross_val_score(gp, X, y, cv=4, scoring="r2")
    assert scores.min() > 0.95
    gp.fit(X, y)
    imp = permutation_importance(gp, X, y, n_repeats=5)
    assert int(imp.importance.argmax()) == 0
    assert imp.importance.values[2:].max() < 0.01
    pd = partial_dependence(gp, X, 0, grid_resolution=15)
    expected = np.sin(3 * pd["value"].values) + np.mean(X[:, 1] ** 2)
    assert np.corrcoef(pd.values, expected)[0, 1] > 0.99
    cv = kfold(gp, X, y, k=5)
    assert cv.attrs["r2"] > 0.95 and "sd" in cv


def test_svd_emulator_reconstructs_low_rank_fields_with_uncertainty():
    rng = np.random.default_rng(1)
    X = rng.random((60, 3))
    basis = rng.normal(size=(2, 40))
    Y = np.stack([np.sin(3 * X[:, 0]), X[:, 1] * X[:, 2]], axis=1) @ basis + 5.0
    em = SVDEmulator(random_state=0).fit(X, Y)
    assert em.n_components_ == 2
    np.testing.assert_allclose(em.explained_variance_ratio_.sum(), 1.0, atol=1e-9)
    Xt = rng.random((200, 3))
    Yt = np.stack([np.sin(3 * Xt[:, 0]), Xt[:, 1] * Xt[:, 2]], axis=1) @ basis + 5.0
    mean, sd = em.predict(Xt, return_std=True)
    assert r2_score(Yt, mean) > 0.99
    assert np.all(sd > 0)
    with pytest.raises(EmulatorError, match="NaN/inf outputs"):
        Yn = Y.copy()
        Yn[5, 3] = np.nan
        SVDEmulator().fit(X, Yn)


@pytest.mark.slow
def test_misfit_emulator_on_embedded_model(twin):
    """500 runs over 20 screened parameters: least-squares misfit emulated with LOO R2 >= 0.95."""
    space = twin.space
    d = latin_hypercube(space, 500, seed=1)
    ens = twin.model.simulate(space.expand(d.values))
    ok = (ens.status.values == "done")
    assert ok.sum() > 450
    misfit = (residuals(ens, twin.obs) ** 2).sum("residual").values
    u = xr.DataArray(space.to_unit(d.values)[ok], dims=("member", "parameter"),
                     coords={"parameter": space.labels})
    gp = GPEmulator(random_state=0).fit(u, misfit[ok])
    loo = gp.loo()
    assert loo.attrs["r2"] >= 0.95
    assert 0.9 <= loo.attrs["coverage_95"] <= 0.99


GPP_PARAMETERS = ["vmax[BDL-EVG]", "vmax[GRASS-C3]", "vmax[NDL-EVG]", "kn[BDL-EVG]", "alpha_phtsyn[BDL-EVG]",
                  "gamma_w", "beta2", "sn[GRASS-C3]"]


@pytest.mark.slow
def test_svd_emulator_of_annual_gpp_per_cell(twin):
    """Lu & Ricciuto's setting: eight parameters, 20 training runs, 1,000 held-out runs."""
    space = twin.model.space.only(GPP_PARAMETERS)

    def runs(n, seed):
        d = latin_hypercube(space, n, seed=seed)
        ds = twin.model.simulate(space.expand(d.values), variables=["gpp"])
        ok = (ds.status.values == "done")
        annual = ds.gpp.groupby("time.year").mean().transpose("member", "cell", "year").isel(member=ok)
        return space.to_unit(d.values)[ok], annual

    Ut, Yt = runs(1000, 99)
    Yt = Yt.values.reshape(Yt.shape[0], -1)
    r2 = {}
    for n in (10, 20, 40, 80):
        U, Y = runs(n, 7)
        em = SVDEmulator(random_state=0).fit(U, Y)
        r2[n] = r2_score(Yt, em.predict(Ut), multioutput="variance_weighted")
    assert r2[20] >= 0.9
    assert all(r2[a] <= r2[b] for a, b in zip((10, 20, 40), (20, 40, 80), strict=True)), r2
    field = em.predict_field(Ut[:3])
    assert field.dims == ("point", "cell", "year") and field.sizes["cell"] == twin.model.grid.sizes["cell"]


# ------------------------------------------------------------------------ issue 17: hardening
def test_from_dataset_and_load_name_what_is_wrong(tmp_path):
    X, y = _data(20, 2)
    gp = GPEmulator(optimizer=None).fit(X, y)
    ds = gp.to_dataset()
    short = ds.copy()
    short["theta"] = ("hyperparameter", ds["theta"].values[:3])
    with pytest.raises(EmulatorError, match="theta has 3 hyper-parameters; 2 inputs need 4"):
        GPEmulator.from_dataset(short)
    nan = ds.copy(deep=True)
    nan["y_train"].values[4] = np.nan
    with pytest.raises(EmulatorError, match="y_train holds NaN"):
        GPEmulator.from_dataset(nan)
    with pytest.raises(EmulatorError, match="lacks the variable 'X_train'"):
        GPEmulator.from_dataset(ds.drop_vars("X_train"))
    path = tmp_path / "gp.nc"
    gp.save(path)
    data = path.read_bytes()
    (tmp_path / "cut.nc").write_bytes(data[: len(data) // 3])
    for reader in (GPEmulator.load, load_emulator):
        with pytest.raises(EmulatorError, match="cut.nc"):
            reader(tmp_path / "cut.nc")
    short.to_netcdf(tmp_path / "short.nc", engine="h5netcdf")
    with pytest.raises(EmulatorError, match="short.nc.*theta has 3"):
        load_emulator(tmp_path / "short.nc")


def test_network_file_with_nan_weights_is_refused_by_name(tmp_path):
    """A diverged or damaged network file (NaN weights) is named on load, not used for an optimum."""
    from bayescal.emulators import DagonNetwork

    X, _ = _data(40, 3)
    Y = np.stack([np.sin(3 * X[:, 0] + k) for k in np.linspace(0, 2, 6)], axis=1)
    net = DagonNetwork(hidden=(8, 8), max_epochs=50, random_state=0).fit(X, Y)
    ds = net.to_dataset()
    name = next(v for v in ds.data_vars if np.issubdtype(ds[v].dtype, np.floating) and ds[v].size > 1)
    ds[name].values.flat[0] = np.nan
    ds.to_netcdf(tmp_path / "net.nc", engine="h5netcdf")
    with pytest.raises(EmulatorError, match=f"net.nc: variable '{name}' holds NaN"):
        load_emulator(tmp_path / "net.nc")


def test_emulator_protocol_registry_and_fitted_checks(tmp_path):
    from sklearn.exceptions import NotFittedError

    from bayescal.emulators import REGISTRY, ActiveGPEmulator, DagonNetwork

    assert REGISTRY == {"GPEmulator": GPEmulator, "SVDEmulator": SVDEmulator, "DagonNetwork": DagonNetwork,
                        "ActiveGPEmulator": ActiveGPEmulator}
    for em in (GPEmulator(), SVDEmulator(), DagonNetwork(), ActiveGPEmulator()):
        with pytest.raises(NotFittedError):  # scikit-learn's own check, with our message
            em.predict(np.zeros((1, 2)))
        with pytest.raises(EmulatorError, match="not fitted"):
            em.to_dataset()
    assert GPEmulator().supports_uq and SVDEmulator().supports_uq
    assert not SVDEmulator(estimator="mlp").supports_uq
    X, y = _data(20, 2)
    bad = GPEmulator(optimizer=None).fit(X, y).to_dataset()
    bad.attrs["emulator"] = "Kriging"
    bad.to_netcdf(tmp_path / "k.nc", engine="h5netcdf")
    with pytest.raises(EmulatorError, match="known: \\['ActiveGPEmulator', 'DagonNetwork', 'GPEmulator', "
                                            "'SVDEmulator'\\]"):
        load_emulator(tmp_path / "k.nc")


# ------------------------------------------------------------------ scikit-learn's contract
@parametrize_with_checks([GPEmulator(n_restarts=0, input_domain="any")])
def test_gp_meets_scikit_learns_estimator_contract(estimator, check):
    """Every scikit-learn estimator check on the GP as a plain regressor (any finite inputs);
    bayescal's default domain is the unit cube, which the checks' random inputs leave."""
    check(estimator)


def test_emulator_screen_keeps_histogram_and_best_points_and_de_finds_the_optimum():
    from scipy.stats import qmc

    from bayescal.emulators import emulator_optimum, emulator_screen

    X, y = _data(60, 3)
    gp = GPEmulator(random_state=0).fit(X, ((X - 0.3) ** 2).sum(1))
    n = 3 * 2**12 + 17  # several batches, the last one partial
    res = emulator_screen(gp, 3, n=n, batch=2**12, k=10, seed=4)
    assert int(res["count"].sum()) == n
    u = qmc.Sobol(d=3, scramble=True, seed=4).random_base2(14)[:n]
    c = gp.predict(u)
    np.testing.assert_allclose(res["cost"].values, np.sort(c)[:10], rtol=1e-10)
    assert res.attrs["mean"] == pytest.approx(c.mean(), rel=1e-10)
    u_opt, c_opt = emulator_optimum(gp, 3, seed=1)
    assert np.all(np.abs(u_opt - 0.3) < 0.05) and c_opt <= res["cost"].values[0] + 1e-9


def test_active_gp_emulator_in_many_dimensions_is_accurate_and_honest():
    """80 inputs, 3 outputs: a linear effect of every input plus a nonlinear one of a few. The
    ridge + residual-GP emulator beats the ridge alone, and its sd (GP + nugget, fitted on the
    ridge's leave-one-out residuals) is honest on held-out points: rms z in [0.6, 1.6]."""
    from sklearn.linear_model import RidgeCV

    from bayescal.emulators.active import ActiveGPEmulator

    rng = np.random.default_rng(0)
    d, n = 80, 260
    W = rng.normal(0, 0.3, (3, d))
    X = rng.random((n + 200, d))
    Y = X @ W.T + np.column_stack([np.sin(4 * X[:, 0]), X[:, 1] * X[:, 2] * 3, np.exp(X[:, 3])])
    em = ActiveGPEmulator(n_active=6, random_state=0).fit(X[:n], Y[:n])
    m, s = em.predict(X[n:], return_std=True)
    err = Y[n:] - m
    ridge = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X[:n], Y[:n])
    assert np.all(np.sqrt((err**2).mean(0)) < np.sqrt(((Y[n:] - ridge.predict(X[n:])) ** 2).mean(0)))
    z = np.sqrt(((err / s) ** 2).mean(0))
    assert np.all((z > 0.6) & (z < 1.6)), z
    assert set(em.active_[0]) >= {0} and em.nugget_sd().shape == (3,)


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_active_gp_compiled_mean_equals_the_gps_own_prediction(kernel):
    """The compiled all-outputs mean (a sampler's call) is each GP's kriging mean: the same as
    the mean that comes with the sd (the GPs' numpy path), to rounding, on and off the design."""
    from bayescal.emulators.active import ActiveGPEmulator

    rng = np.random.default_rng(1)
    d, n = 30, 150
    X = rng.random((n, d))
    Y = np.column_stack([np.sin(5 * X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3] * 4, np.exp(X[:, 4]) - X[:, 5]])
    em = ActiveGPEmulator(n_active=5, kernel=kernel, random_state=0).fit(X, Y)
    P = np.vstack([X[:7], rng.random((40, d))])
    mean_only = em.predict(P)
    mean_with_sd, _ = em.predict(P, return_std=True)
    np.testing.assert_allclose(mean_only, mean_with_sd, rtol=1e-9, atol=1e-9 * np.abs(Y).max())
    # a point at a training run is (nearly) interpolated: the kernel's weights are the GP's
    assert np.abs(mean_only[:7] - Y[:7]).max() < 0.5 * np.abs(Y - Y.mean(0)).max()


@pytest.mark.parametrize("kernel", ["matern52", "rbf"])
def test_active_gp_sd_bound_is_an_upper_bound_at_the_cost_of_the_mean(kernel):
    """``predict_sd_bound``: the mean is the GP's, and the sd bound (the variance given the most
    correlated run alone) is never below the predictive sd, on the runs, near them and far off;
    at a run it is within sqrt(2) of it (2 tau against tau..2 tau), far off it is ~sqrt(2 s2)."""
    from bayescal.emulators.active import ActiveGPEmulator

    rng = np.random.default_rng(3)
    d, n = 20, 120
    X = rng.random((n, d))
    Y = np.column_stack([np.sin(5 * X[:, 0]) + X[:, 1], X[:, 2] * X[:, 3] * 4, np.exp(2 * X[:, 4])])
    Y += 0.05 * rng.standard_normal(Y.shape)
    # max_fit < n: hyper-parameters from a subset, the GPs refitted on all runs with them fixed
    em = ActiveGPEmulator(n_active=4, kernel=kernel, max_fit=80, random_state=0).fit(X, Y)
    P = np.vstack([X, np.clip(X + 0.03 * rng.standard_normal(X.shape), 0, 1), rng.random((300, d))])
    m, s = em.predict(P, return_std=True)
    mb, sb = em.predict_sd_bound(P)
    np.testing.assert_allclose(mb, m, rtol=1e-9, atol=1e-9 * np.abs(Y).max())
    assert np.all(sb >= s), (sb / s).min()
    for j in range(3):  # one output's exact mean and sd: that column of predict, bit for bit
        np.testing.assert_array_equal(np.stack(em.predict_output(P, j)), np.stack([m[:, j], s[:, j]]))
    assert np.all(sb[:n] <= np.sqrt(2) * s[:n] * (1 + 1e-3)), (sb[:n] / s[:n]).max()
    # not vacuous: near the runs (0.03 away) it is far below its value far from every run
    far = np.sqrt(2 * np.array([g.signal_variance_ + 2 * (g.noise_ + g._jitter) for g in em.gps_]))
    far *= np.array([g.y_std_ for g in em.gps_]) * em.y_sd_
    assert np.all(np.median(sb[n:2 * n], axis=0) < 0.5 * far)


def test_svd_emulator_compiled_mean_equals_the_component_predictions(tmp_path):
    """The sampler's call (means only) runs every GP component in one compiled pass; it gives the
    same means as the per-component prediction, before and after a save and load."""
    from bayescal.emulators import GPEmulator, SVDEmulator, load_emulator

    rng = np.random.default_rng(4)
    X = rng.random((60, 5))
    Y = np.sin(X @ rng.normal(size=(5, 80))) + X[:, :1] ** 2
    for kernel in ("matern52", "rbf"):
        em = SVDEmulator(estimator=GPEmulator(kernel=kernel, n_restarts=0, random_state=0),
                         variance_threshold=0.99999).fit(X, Y)
        assert em._packed() is not None and em.n_components_ > 3
        Xt = rng.random((17, 5))
        slow = em.predict(Xt, return_std=True)[0]
        np.testing.assert_allclose(em.predict(Xt), slow, rtol=1e-9, atol=1e-9)
        em.save(tmp_path / f"{kernel}.nc")
        np.testing.assert_allclose(load_emulator(tmp_path / f"{kernel}.nc").predict(Xt), slow,
                                   rtol=1e-9, atol=1e-9)
