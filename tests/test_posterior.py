"""Posterior sampling: analytic posteriors, calibration (SBC), ridges, checkpoints, errors."""

import numpy as np
import pytest
from scipy import stats

from bayescal.emulators import GPEmulator
from bayescal.equifinality import correlation, identifiability, pca, strongest_pairs
from bayescal.parameters import Parameter, ParameterSpace
from bayescal.posterior import (
    GaussianLikelihood,
    PosteriorError,
    PosteriorSampler,
    PosteriorWarning,
    Priors,
    ScoreLikelihood,
    diagnose,
    emulator_trust,
    unit_samples,
)


def _space(n, lower=0.0, upper=1.0, names=None):
    names = names or [f"p{i}" for i in range(n)]
    return ParameterSpace([Parameter(nm, (lower + upper) / 2, lower, upper, units="1") for nm in names])


def test_linear_gaussian_posterior_is_recovered():
    rng = np.random.default_rng(0)
    space = _space(3)
    A = rng.normal(size=(6, 3))
    sigma = 0.03
    truth = np.array([0.4, 0.5, 0.6])
    y = A @ truth + sigma * rng.normal(size=6)
    like = GaussianLikelihood(lambda u: u @ A.T, y, sigma)
    ps = PosteriorSampler(like, space, seed=1).run(4000)
    idata = ps.to_inference_data()
    u = unit_samples(idata, space).values
    cov = sigma**2 * np.linalg.inv(A.T @ A)
    mean = cov @ A.T @ y / sigma**2
    ess = float(diagnose(idata, ess_min=0).ess_bulk.min())
    se = np.sqrt(np.diag(cov) / ess)
    np.testing.assert_array_less(np.abs(u.mean(0) - mean), 4 * se)
    np.testing.assert_allclose(
        np.cov(u, rowvar=False), cov, rtol=0.15, atol=0.1 * np.sqrt(cov.diagonal()).min() ** 2
    )
    assert set(idata.groups()) >= {"posterior", "sample_stats", "prior", "observed_data", "constant_data"}
    assert idata.posterior.attrs["burn"] > 0
    np.testing.assert_allclose(
        idata.sample_stats.lp, idata.sample_stats.loglik + idata.sample_stats.log_prior
    )


@pytest.mark.slow
def test_simulation_based_calibration_ranks_are_uniform():
    """Talts et al. (2018): rank of the truth among posterior draws is uniform over replicates."""
    space = _space(2)
    t = np.linspace(0, 1, 5)
    sigma = 0.3
    n_rep, n_draws = 120, 19
    ranks = np.zeros((n_rep, 2), dtype=int)
    rng = np.random.default_rng(7)
    for r in range(n_rep):
        theta = rng.random(2)
        y = theta[0] + theta[1] * t + sigma * rng.normal(size=t.size)
        like = GaussianLikelihood(lambda u: u[:, :1] + u[:, 1:] * t, y, sigma)
        ps = PosteriorSampler(like, space, n_walkers=16, seed=r).run(600)
        chain = ps.sampler.get_chain(discard=200, thin=20, flat=True)
        draws = chain[rng.choice(chain.shape[0], n_draws, replace=False)]
        ranks[r] = (draws < theta).sum(0)
    for j in range(2):
        counts = np.bincount(ranks[:, j] // 4, minlength=5)  # 20 ranks in 5 bins of 4
        assert stats.chisquare(counts).pvalue > 0.01, counts


def test_ridge_of_a_times_b():
    space = ParameterSpace([Parameter("a", 1.0, 0.5, 2.0), Parameter("b", 1.0, 0.5, 2.0)])
    priors = Priors(space, {"a": {"dist": "loguniform"}, "b": {"dist": "loguniform"}})

    def model(u):
        x = space.from_unit(u)
        return (x[:, 0] * x[:, 1])[:, None]

    ps = PosteriorSampler(GaussianLikelihood(model, [1.0], 0.01), priors, seed=3).run(3000)
    idata = ps.to_inference_data()
    la, lb = np.log(idata.posterior["a"].values.ravel()), np.log(idata.posterior["b"].values.ravel())
    assert np.corrcoef(la, lb)[0, 1] <= -0.9
    u = unit_samples(idata, space)
    p = pca(u)
    assert p.attrs["n_components"] == 1
    load = p.loadings.sel(component=1).values
    assert load[0] * load[1] < 0  # a up, b down along the ridge
    pairs = strongest_pairs(correlation(u), k=1)
    assert pairs[0][:2] == ("a", "b") and pairs[0][2] < -0.9
    table = identifiability(u, priors.sd())
    assert not table.constrained.any()  # each alone is free along the ridge


def test_priors_match_their_distributions():
    space = ParameterSpace(
        [Parameter("x", 5.0, 0.0, 10.0), Parameter("y", 1.0, 0.1, 10.0), Parameter("z", 0.5, 0.0, 1.0)]
    )
    pr = Priors(
        space,
        {
            "x": {"dist": "truncnorm", "mean": 3.0, "sd": 1.0},
            "y": {"dist": "loguniform"},
            "z": {"dist": "beta", "a": 2.0, "b": 5.0},
        },
    )
    u = pr.sample(20000, seed=0)
    x = space.from_unit(u)
    assert abs(x[:, 0].mean() - stats.truncnorm(-3, 7, loc=3, scale=1).mean()) < 0.03
    assert abs(np.log(x[:, 1]).mean() - (np.log(0.1) + np.log(10)) / 2) < 0.05
    assert abs(x[:, 2].mean() - 2 / 7) < 0.01
    # densities integrate to one over the unit cube (per dimension)
    grid = np.linspace(0, 1, 20001)
    for j in range(3):
        pts = np.full((grid.size, 3), 0.5)
        pts[:, j] = grid
        others = pr.logpdf(np.full((1, 3), 0.5))[0] - pr._dists[j].logpdf(np.array([0.5]))[0]
        dens = np.exp(pr.logpdf(pts) - others)
        assert np.trapezoid(dens, grid) == pytest.approx(1.0, rel=2e-3)
    assert np.isneginf(pr.logpdf(np.array([[1.2, 0.5, 0.5]]))[0])
    with pytest.raises(PosteriorError, match="no free parameter"):
        Priors(space, {"q": {"dist": "uniform"}})
    with pytest.raises(PosteriorError, match="missing keys"):
        Priors(space, {"x": {"dist": "truncnorm", "mean": 1.0}})


def test_checkpoint_resume_continues_the_chain(tmp_path):
    space = _space(2)
    calls = {"n": 0}

    def like(u, crash_at=None):
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise KeyboardInterrupt("killed")
        return -0.5 * (((u - 0.3) / 0.1) ** 2).sum(1)

    full = PosteriorSampler(like, space, n_walkers=8, seed=5).run(300).sampler.get_chain()
    path = tmp_path / "chain.h5"
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        PosteriorSampler(lambda u: like(u, crash_at=400), space, n_walkers=8, seed=5, backend=path).run(300)
    resumed = PosteriorSampler(like, space, n_walkers=8, seed=5, backend=path)
    import emcee

    done = emcee.backends.HDFBackend(str(path), read_only=True).iteration
    assert 100 < done < 300
    resumed.run(300)
    chain = resumed.sampler.get_chain()
    assert chain.shape == full.shape
    np.testing.assert_array_equal(chain, full)  # same steps as if never interrupted
    with pytest.raises(PosteriorError, match="holds 8 walkers"):
        PosteriorSampler(like, space, n_walkers=10, backend=path).run(400)


def test_clear_errors_and_warnings():
    space = _space(2)
    with pytest.raises(PosteriorError, match="not finite"):
        PosteriorSampler(lambda u: np.full(u.shape[0], np.nan), space, seed=0).run(10)
    with pytest.raises(PosteriorError, match="outside the prior"):
        PosteriorSampler(lambda u: -(u**2).sum(1), space, seed=0).run(10, initial=np.array([[0.5, 1.5]]))
    with pytest.raises(PosteriorError, match="at least 2 x 2"):
        PosteriorSampler(lambda u: -(u**2).sum(1), space, n_walkers=3)
    rng = np.random.default_rng(0)
    X = rng.random((30, 2))
    import xarray as xr

    gp = GPEmulator(optimizer=None).fit(
        xr.DataArray(X, dims=("member", "parameter"), coords={"parameter": ["q", "r"]}), X.sum(1)
    )
    with pytest.raises(PosteriorError, match="other parameters"):
        ScoreLikelihood(gp, 1.0, space=space)
    ps = PosteriorSampler(lambda u: -0.5 * (((u - 0.5) / 0.2) ** 2).sum(1), space, seed=0).run(30)
    with pytest.warns(PosteriorWarning, match="shorter than 50 autocorrelation"):
        ps.to_inference_data()


def test_emulator_trust_flags_extrapolation():
    rng = np.random.default_rng(1)
    X = rng.random((200, 2)) * 0.5  # training data only in the lower-left quarter
    gp = GPEmulator(random_state=0).fit(X, np.sin(4 * X[:, 0]) + X[:, 1])
    like = ScoreLikelihood(gp, 0.01)
    inside = rng.random((500, 2)) * 0.5
    outside = 0.6 + rng.random((500, 2)) * 0.4
    assert emulator_trust(inside, X, like)["far_from_training"] < 0.1
    with pytest.warns(PosteriorWarning, match="not trustworthy"):
        r = emulator_trust(outside, X, like)
    assert r["outside_box"] == 1.0 and r["emulator_uncertain"] > 0.5


VARS = ["gpp", "lai", "hfls"]


@pytest.mark.slow
def test_twin_on_embedded_model_with_refinement(twin):
    """20 parameters, GP-SVD emulator of 27 log biome means from 300 runs, two refinement rounds."""
    from bayescal.design import latin_hypercube
    from bayescal.emulators import SVDEmulator
    from bayescal.observations import observed_regional_means, regional_means
    from bayescal.posterior import refine
    from bayescal.scores import score

    space, model = twin.space, twin.model
    observed, sigma = observed_regional_means(twin.obs, VARS, twin.truth_run.biome, twin.truth_run.area)
    truth_summary = regional_means(twin.truth_run, VARS)
    assert np.all(np.abs(observed - truth_summary) < 2 * sigma)

    def simulate(u):
        ds = model.simulate(space.expand(space.from_unit(u)), variables=VARS)
        y = regional_means(ds, VARS).values
        y[ds.failed.values] = np.nan
        return y

    design = space.to_unit(latin_hypercube(space, 300, seed=1).values)
    Y = simulate(design)
    ok = np.isfinite(Y).all(1)
    emulator = SVDEmulator(variance_threshold=0.999, estimator=GPEmulator(n_restarts=0, random_state=0))
    res = refine(
        simulate, emulator, design[ok], Y[ok], lambda e: GaussianLikelihood(e, observed, sigma),
        space, n_new=40, max_rounds=2, n_steps=1000, seed=0,
    )
    assert res.history.sizes["round"] >= 2 and res.X.shape[0] > ok.sum()
    u = unit_samples(res.idata, space)
    table = identifiability(u, Priors(space).sd())
    truth = space.to_unit(twin.truth)
    inside = (table.q05.values <= truth) & (truth <= table.q95.values)
    constrained = table.constrained.values
    assert constrained.sum() >= 3
    assert inside[constrained].mean() >= 0.9
    post_mean = space.from_unit(u.values.mean(0))
    ens = model.simulate(np.vstack([space.all_default, space.expand(post_mean)]))
    overall = score(ens, twin.obs).overall.values
    assert overall[1] > overall[0]
