"""Posterior sampling: analytic posteriors, calibration (SBC), ridges, checkpoints, errors."""

import tempfile
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pytest
import xarray as xr
from _fast_models import small_land_model
from _seeds import seeds
from scipy import stats
from threadpoolctl import threadpool_limits

from bayescal.analysis.equifinality import correlation, identifiability, pca, strongest_pairs
from bayescal.emulators import GPEmulator
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
    get_group,
    group_names,
    unit_samples,
)
from bayescal.posterior.diagnostics import integrated_time


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """One BLAS thread, as under xdist (``conftest.py``): the matrices here are small, and with
    ``-n 0`` on two busy cores a second thread costs more than it gives (up to 2.5x the CPU)."""
    with threadpool_limits(1, user_api="blas"):
        yield


def _space(n, lower=0.0, upper=1.0, names=None):
    names = names or [f"p{i}" for i in range(n)]
    return ParameterSpace([Parameter(nm, (lower + upper) / 2, lower, upper, units="1") for nm in names])


@pytest.mark.arviz
@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(1))
def test_linear_gaussian_posterior_is_recovered(seed):
    rng = np.random.default_rng(0)
    space = _space(3)
    A = rng.normal(size=(6, 3))
    sigma = 0.03
    truth = np.array([0.4, 0.5, 0.6])
    y = A @ truth + sigma * rng.normal(size=6)
    like = GaussianLikelihood(lambda u: u @ A.T, y, sigma)
    ps = PosteriorSampler(like, space, seed=seed).run(4000)
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
    assert set(group_names(idata)) >= {"posterior", "sample_stats", "prior", "observed_data", "constant_data",
                                       "log_likelihood", "posterior_predictive"}
    assert get_group(idata, "posterior").attrs["burn"] > 0
    stats = get_group(idata, "sample_stats")
    np.testing.assert_allclose(stats.lp, stats.loglik + stats.log_prior)
    # the pointwise log-likelihood sums to the sampled one, draw by draw
    np.testing.assert_allclose(get_group(idata, "log_likelihood")["y"].sum("summary"), stats.loglik,
                               rtol=1e-10, atol=1e-10)


@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(1, 2))
def test_walkers_started_over_a_wide_prior_leave_their_transient_out_of_the_draws(seed):
    """A flat prior 40 units wide around a posterior of sd ~0.1: the walkers start from prior
    draws and take ~90 steps to reach it, longer than emcee's burn-in of 2 tau (~40 steps), whose
    draws then held log posteriors 900 below the bulk and sds 7-46 % too wide (a newcomer's trial).
    The transient (``settled``) is left out: sds within 5 % of the exact ones, means within 4 MC
    errors, and ``run_adaptive``'s chain likewise (seeds 1-8 checked: sd ratios 0.97-1.03)."""
    rng = np.random.default_rng(42)
    space = _space(4, -20.0, 20.0)
    A = rng.normal(size=(25, 4))
    A[:, 1] += 0.8 * A[:, 0]
    y = A @ np.array([1.5, -0.7, 0.3, 2.0]) + 0.5 * rng.normal(size=25)
    cov = 0.25 * np.linalg.inv(A.T @ A)
    mean = cov @ A.T @ y / 0.25
    like = GaussianLikelihood(lambda u: space.from_unit(u) @ A.T, y, 0.5)
    for ps in (PosteriorSampler(like, space, seed=seed).run(4000),
               PosteriorSampler(like, space, seed=seed).run_adaptive(20000)):
        assert ps.settled() > 2 * np.nanmax(integrated_time(ps.sampler.get_chain()))  # a long transient
        idata = ps.to_inference_data(predictive=False)
        theta = space.from_unit(unit_samples(idata, space).values)
        ess = float(diagnose(idata, ess_min=0).ess_bulk.min())
        np.testing.assert_allclose(theta.std(0), np.sqrt(np.diag(cov)), rtol=0.05)
        np.testing.assert_array_less(np.abs(theta.mean(0) - mean), 4 * np.sqrt(np.diag(cov) / ess))
        assert get_group(idata, "posterior").attrs["burn"] >= ps.settled()


def test_a_walker_that_arrives_late_asks_for_more_steps_not_a_two_step_chain():
    """One walker of 32 reaches the posterior 5 steps before the end (the others from the start):
    the draws start after it, and the autocorrelation times are the whole chain's (finite, > 0),
    so 50 of them from there ask for more steps; 2-3 steps after it gave tau 0 (or NaN)."""
    rng = np.random.default_rng(0)
    space = _space(2)
    chain = 0.5 + 0.05 * np.cumsum(rng.normal(size=(1000, 32, 2)), axis=0) / 30
    lp = -0.5 * rng.chisquare(2, size=(1000, 32))
    lp[:995, 7] = -1e3  # the straggler
    chain[995:, 7] = chain[995, 7]  # and it sits still once there

    class Stored:
        iteration = 1000

        def get_chain(self):
            return chain

        def get_log_prob(self):
            return lp

    ps = PosteriorSampler(lambda u: np.zeros(len(u)), space, seed=0)
    ps._sampler = Stored()
    start, tau = ps._start_and_tau()
    assert start == ps.settled() == 995
    assert np.all(np.isfinite(tau)) and np.all(tau > 0) and start + 50 * tau.max() > 1000
    # the draws kept (emcee's steps burn + thin - 1, burn + 2 thin - 1, ...): at least one per walker,
    # where a thin of half tau (> the 3 steps left) kept none and the site's run then crashed
    burn, thin = ps._burn_thin(tau, 1000, None, None, None, start)
    assert 0.5 * tau.min() > 1000 - burn and len(range(burn + thin - 1, 1000, thin)) >= 1


def _sbc_ranks(likelihood_of, sim, sigma, n_rep, n_draws=19, seed=7):
    """Ranks (replicates, 2) of the true values among ``n_draws`` posterior draws (Talts et al. 2018).

    Each replicate draws the truth from the uniform prior and data from ``sim`` with Gaussian noise
    ``sigma``, and samples ``likelihood_of(y)`` with 32 walkers for 50 steps. On these posteriors
    (2 parameters, 5 outputs) the chain's autocorrelation time is 8-12 steps and it starts at the
    best quarter of 128 prior draws: 30 steps of burn-in and draws 10 steps apart (64 draws,
    ``n_draws`` of them picked) gave uniform ranks over 1,000 replicates with the exact likelihood
    (chi-squared p = 0.77 and 0.63; rank variance 0.98 of the uniform's). Halving ``sigma`` in the
    likelihood (posteriors half as wide) fails every test that uses this (p < 2e-4).
    """
    space = _space(2)
    ranks = np.zeros((n_rep, 2), dtype=int)
    rng = np.random.default_rng(seed)
    for r in range(n_rep):
        theta = rng.random(2)
        y = sim(theta[None])[0]
        y = y + sigma * rng.normal(size=y.size)
        ps = PosteriorSampler(likelihood_of(y), space, n_walkers=32, seed=r).run(50)
        chain = ps.sampler.get_chain(discard=30, thin=10, flat=True)
        draws = chain[rng.choice(chain.shape[0], n_draws, replace=False)]
        ranks[r] = (draws < theta).sum(0)
    return ranks


def _assert_uniform_ranks(ranks):
    for j in range(2):
        counts = np.bincount(ranks[:, j] // 4, minlength=5)  # 20 ranks in 5 bins of 4
        assert stats.chisquare(counts).pvalue > 0.01, counts


_T5 = np.linspace(0, 1, 5)


def _line(u):
    """Intercept and slope at 5 points: the SBC tests' linear model."""
    return u[:, :1] + u[:, 1:] * _T5


@pytest.mark.slow
def test_simulation_based_calibration_ranks_are_uniform():
    """Talts et al. (2018): rank of the truth among posterior draws is uniform over 120 replicates
    (exact likelihood; chain settings in :func:`_sbc_ranks`)."""
    sigma = 0.3
    _assert_uniform_ranks(_sbc_ranks(lambda y: GaussianLikelihood(_line, y, sigma), _line, sigma, n_rep=120))


@pytest.mark.arviz
def test_ridge_of_a_times_b():
    space = ParameterSpace([Parameter("a", 1.0, 0.5, 2.0), Parameter("b", 1.0, 0.5, 2.0)])
    priors = Priors(space, {"a": {"dist": "loguniform"}, "b": {"dist": "loguniform"}})

    def model(u):
        x = space.from_unit(u)
        return (x[:, 0] * x[:, 1])[:, None]

    ps = PosteriorSampler(GaussianLikelihood(model, [1.0], 0.01), priors, seed=3).run(3000)
    idata = ps.to_inference_data()
    post = get_group(idata, "posterior")
    la, lb = np.log(post["a"].values.ravel()), np.log(post["b"].values.ravel())
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


def test_checkpoint_resume_continues_the_chain(tmp_path, capsys):
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
    assert "emcee: Exception" not in capsys.readouterr().out  # no dump of every walker on a Ctrl-C
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


def test_a_finished_chain_is_read_back_from_its_backend(tmp_path):
    """A new sampler on the backend of a finished chain reads it (``iteration``, draws) without a
    step; a sampler without one has 0 steps, as emcee's."""
    space = _space(2)

    def like(u):
        return -0.5 * (((u - 0.3) / 0.1) ** 2).sum(1)

    path = tmp_path / "chain.h5"
    first = PosteriorSampler(like, space, n_walkers=8, seed=5, backend=path).run(300)
    again = PosteriorSampler(like, space, n_walkers=8, seed=5, backend=path)
    assert again.iteration == 300
    np.testing.assert_array_equal(again.sampler.get_chain(), first.sampler.get_chain())
    with pytest.warns(PosteriorWarning):  # 300 steps: short, said so
        u = unit_samples(again.to_inference_data(predictive=False), space).values
    assert u.shape[1] == 2
    assert PosteriorSampler(like, space, n_walkers=8).iteration == 0


def test_a_step_torn_by_a_kill_is_not_there_on_resume(tmp_path):
    """A kill while a step is being written (its chain row, acceptances and random state on disk,
    the iteration count not yet): the resumed chain and its acceptance fractions equal an
    uninterrupted run's. (With emcee's own step the acceptances were counted twice.)"""
    import h5py

    space = _space(2)

    def like(u):
        return -0.5 * (((u - 0.3) / 0.1) ** 2).sum(1)

    full = PosteriorSampler(like, space, n_walkers=8, seed=5).run(200).sampler
    path = tmp_path / "chain.h5"
    PosteriorSampler(like, space, n_walkers=8, seed=5, backend=path).run(120)
    with h5py.File(path, "a") as f:  # step 120 torn: everything written but the iteration count
        g = f["mcmc"]
        it = int(g.attrs["iteration"])
        g["chain"].resize(it + 10, axis=0)
        g["accepted_steps"].resize(it + 10, axis=0)
        g["chain"][it] = 9.0
        g["accepted_steps"][it] = 1
        for k in [k for k in g.attrs if k.startswith(f"rng{it % 2}_")]:
            g.attrs[k] = g.attrs[k] if not isinstance(g.attrs[k], np.ndarray) else g.attrs[k][::-1]
    resumed = PosteriorSampler(like, space, n_walkers=8, seed=5, backend=path).run(200).sampler
    np.testing.assert_array_equal(resumed.get_chain(), full.get_chain())
    np.testing.assert_array_equal(resumed.acceptance_fraction, full.acceptance_fraction)


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
    with pytest.raises(PosteriorError, match=r"sigma has shape \(3,\); give one value, or one per observ"):
        GaussianLikelihood(lambda u: u, np.zeros(5), sigma=np.ones(3))
    with pytest.raises(PosteriorError, match=r"discrepancy has shape \(2,\)"):
        GaussianLikelihood(lambda u: u, np.zeros(5), sigma=1.0, discrepancy=[0.1, 0.2])


def test_the_reports_chain_length_in_tau_counts_only_the_steps_tau_is_of():
    """The report's "the chain is N autocorrelation times long" is of the steps after adaptation
    and the start's transient, as the 50-tau warning's (a report said 15 where the warning said a
    17-step chain of tau 13)."""
    import re

    from bayescal.posterior import diagnose
    from bayescal.report.page import diagnostics_section

    space = ParameterSpace([Parameter("q", 0.5, 0, 1), Parameter("r", 0.5, 0, 1)])
    ps = PosteriorSampler(lambda u: -0.5 * (((u - 0.5) / 0.05) ** 2).sum(1), space, seed=0)
    import emcee

    ps.run(40).adapt([emcee.moves.DEMove()]).run(160)  # the first 40 steps: a pilot, left out
    with pytest.warns(PosteriorWarning):
        idata = ps.to_inference_data()
    start, tau = ps._start_and_tau()
    diag = diagnose(idata)
    n = ps.sampler.iteration
    assert diag.attrs["tau_from"] == start >= 40 and diag.attrs["n_steps"] == n > start
    said = re.search(r"the chain after the first (\d+) \(adaptation[^)]*\) is (\d+) of them long",
                     diagnostics_section(diag))
    assert said and int(said[1]) == start and int(said[2]) == round((n - start) / np.nanmax(tau))


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
#: from well constrained by regional means of GPP, LAI and latent heat (vmax of needleleaf trees,
#: crops and grasses) to hardly at all (alpha_phtsyn, q10_rh)
EIGHT = ["vmax[NDL-EVG]", "vmax[CROP-C3]", "vmax[GRASS-C3]", "vmax[GRASS-C4]", "kn[GRASS-C3]",
         "alpha_phtsyn[BDL-EVG]", "sn[GRASS-C3]", "q10_rh"]


@pytest.mark.slow
@pytest.mark.arviz
@pytest.mark.filterwarnings("ignore:chain of:bayescal.posterior.PosteriorWarning")  # tau ~ 35: kept short
def test_twin_on_embedded_model_with_refinement():
    """8 parameters of the small embedded model (``tests/_fast_models.py``, over 2001-2010 so that
    every default twin product has years in it), GP-SVD emulator of 27 log biome means from 100
    runs, two refinement rounds of 20.

    The truth must lie in the 90 % interval of the parameters the posterior constrains (4 or 5 of
    the 8 for refinement seeds 0-3 and other twin-noise and design seeds), and the posterior mean
    must score better than the defaults. The chains are 600 steps of 96 walkers (~19
    autocorrelation times, ~1,600 effective draws): the emulator is called once per half-step
    whatever the number of walkers.
    """
    from bayescal.emulators import SVDEmulator
    from bayescal.observations.products import make_twin, observed_regional_means, regional_means
    from bayescal.operators.scores import score
    from bayescal.parameters.design import latin_hypercube
    from bayescal.posterior.refinement import refine

    model = small_land_model(start=2001)
    space = model.space.only(EIGHT)
    truth = space.from_unit(np.linspace(0.3, 0.7, space.n_free))
    obs, truth_run = make_twin(model, space.expand(truth), seed=11)
    observed, sigma = observed_regional_means(obs, VARS, truth_run.biome, truth_run.area)
    truth_summary = regional_means(truth_run, VARS)
    assert np.all(np.abs(observed - truth_summary) < 2 * sigma)

    def simulate(u):
        ds = model.simulate(space.expand(space.from_unit(u)), variables=VARS)
        y = regional_means(ds, VARS).values
        y[(ds.status.values != "done")] = np.nan
        return y

    design = space.to_unit(latin_hypercube(space, 100, seed=1).values)
    Y = simulate(design)
    ok = np.isfinite(Y).all(1)
    emulator = SVDEmulator(variance_threshold=0.99, estimator=GPEmulator(n_restarts=0, random_state=0))
    res = refine(
        simulate, emulator, design[ok], Y[ok], lambda e: GaussianLikelihood(e, observed, sigma),
        space, n_new=20, max_rounds=2, n_walkers=96, min_steps=400, max_steps=600, seed=0,
    )
    assert res.history.sizes["round"] >= 2 and res.X.shape[0] > ok.sum()
    u = unit_samples(res.idata, space)
    table = identifiability(u, Priors(space).sd())
    truth_u = space.to_unit(truth)
    inside = (table.q05.values <= truth_u) & (truth_u <= table.q95.values)
    constrained = table.constrained.values
    assert constrained.sum() >= 3
    assert inside[constrained].mean() >= 0.9
    post_mean = space.from_unit(u.values.mean(0))
    ens = model.simulate(np.vstack([space.all_default, space.expand(post_mean)]))
    overall = score(ens, obs).overall.values
    assert overall[1] > overall[0]


# ------------------------------------------------------------------------ issue 15: trustworthy
def _correlated_gaussian(d: int, sd: float = 0.04, rho: float = 0.9):
    """Log-density of a Gaussian at the cube's centre, every sd ``sd``, every correlation ``rho``."""
    P = np.linalg.inv((np.full((d, d), rho) + (1 - rho) * np.eye(d)) * sd**2)

    def like(u):
        r = u - 0.5
        return -0.5 * np.einsum("ij,jk,ik->i", r, P, r)

    return like


@pytest.mark.slow
def test_default_moves_have_the_right_width():
    """Pooled sd ratio on an exact, strongly correlated Gaussian within 0.98-1.02 (4 seeds).

    Chains of 3,000 steps (~190 autocorrelation times): one seed's ratio varies by ~0.7 %, the
    pooled ratio by ~0.4 %; DE + DE-snooker (the old default) gave 0.964 (8 seeds, per-seed 0.95-0.98).
    """
    d = 4
    like = _correlated_gaussian(d)
    ratios = []
    for seed in range(4):
        ch = PosteriorSampler(like, _space(d), seed=seed).run(3000).sampler.get_chain(discard=500, flat=True)
        ratios.append(np.mean(ch.std(0) / 0.04))
    assert 0.98 <= np.mean(ratios) <= 1.02, ratios
    assert all(0.96 <= r <= 1.04 for r in ratios), ratios


@pytest.mark.slow
def test_de_subspace_move_keeps_an_exact_gaussian():
    """DESubspaceMove alone (DREAM's crossover, scale 0.5, jumps on): the pooled sd ratio on a
    strongly correlated 4-D Gaussian within 0.98-1.02 over 4 seeds, every mean within 3 Monte Carlo
    sd. A proposal that moved the masked coordinates asymmetrically or a gamma that depended on
    the walker would bias the width (emcee's DE-snooker mix gave 0.964 on this target)."""
    from bayescal.posterior import DESubspaceMove

    d = 4
    like = _correlated_gaussian(d)
    ratios, means = [], []
    for seed in range(4):
        ps = PosteriorSampler(like, _space(d), seed=seed, moves=[(DESubspaceMove(), 1.0)]).run(4000)
        ch = ps.sampler.get_chain(discard=500, flat=True)
        ratios.append(np.mean(ch.std(0) / 0.04))
        means.append(ch.mean(0))
    assert 0.98 <= np.mean(ratios) <= 1.02, ratios
    # 4 x 3,500 steps x 32 walkers at tau ~ 30: about 15,000 independent draws
    assert np.all(np.abs(np.mean(means, axis=0) - 0.5) < 3 * 0.04 / np.sqrt(15_000 / 4)), means


def _beta_target(a=(2.0, 5.0, 0.7), b=(5.0, 2.0, 0.7)):
    """Independent Beta(a, b) coordinates: skewed, one U-shaped to the faces; exact quantiles."""
    a, b = np.asarray(a), np.asarray(b)

    def like(u):
        return ((a - 1) * np.log(u) + (b - 1) * np.log1p(-u)).sum(1)

    return like, a, b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_independence_move_alone_samples_skewed_betas_exactly(seed):
    """IndependenceMove alone (weight 1), its proposal fitted to *uniform* draws (not the target):
    the chain's 5/50/95 % quantiles of Beta(2, 5), Beta(5, 2) and the U-shaped Beta(0.7, 0.7)
    within 0.012 of the exact ones (Monte Carlo sd ~0.003). The Hastings factor q(u)/q(u') with
    the logit's Jacobian makes this hold whatever the fit: without the Jacobian, or with the
    factor's sign flipped, the quantiles are off by 0.2-0.45 (2 seeds each)."""
    from scipy import stats

    from bayescal.posterior import IndependenceMove

    like, a, b = _beta_target()
    rng = np.random.default_rng(seed)
    q = IndependenceMove(n_components=2, seed=seed).fit(rng.random((4000, 3)))
    ps = PosteriorSampler(like, _space(3), n_walkers=32, seed=seed, moves=[(q, 1.0)]).run(2500)
    ch = ps.sampler.get_chain(discard=100, flat=True)
    exact = stats.beta(a, b).ppf(np.array([0.05, 0.5, 0.95])[:, None])
    np.testing.assert_allclose(np.quantile(ch, [0.05, 0.5, 0.95], axis=0), exact, atol=0.012)


def test_independence_move_density_is_normalised_and_matches_its_draws():
    """q's unit-cube density integrates to 1 (Monte Carlo over the cube) and its draws have the
    moments the density gives (importance-weighted uniform points): a sampler and density that
    disagreed would bias every chain that uses the move."""
    from bayescal.posterior import IndependenceMove

    rng = np.random.default_rng(4)
    pilot = 1 / (1 + np.exp(-rng.multivariate_normal([0.3, -1.0], [[0.5, 0.3], [0.3, 0.4]], size=3000)))
    q = IndependenceMove(seed=1).fit(pilot)
    grid = rng.random((400_000, 2))
    w = np.exp(q.logpdf(grid))
    assert abs(w.mean() - 1) < 0.01
    draws = q.sample(200_000, np.random.RandomState(5))
    assert ((draws > 0) & (draws < 1)).all()
    np.testing.assert_allclose(draws.mean(0), (w[:, None] * grid).mean(0) / w.mean(), atol=0.004)
    np.testing.assert_allclose(draws.std(0), np.sqrt((w[:, None] * (grid - draws.mean(0)) ** 2).mean(0)
                                                     / w.mean()), atol=0.004)
    with pytest.raises(ValueError, match="2 d \\+ 2 draws"):
        IndependenceMove().fit(pilot[:5])


@pytest.mark.slow
def test_pilot_then_independence_keeps_an_exact_gaussian():
    """A DE-subspace pilot, the independence move fitted to its second half, then both 1:1
    (the site route's default): pooled sd ratio on the strongly correlated 4-D Gaussian within
    0.98-1.02 over 4 seeds, means within 3 Monte Carlo sd, and no pilot step among the draws."""
    from bayescal.posterior import DESubspaceMove, IndependenceMove

    d = 4
    like = _correlated_gaussian(d)
    ratios, means = [], []
    for seed in range(4):
        ps = PosteriorSampler(like, _space(d), seed=seed, moves=[(DESubspaceMove(), 1.0)]).run(600)
        q = IndependenceMove(seed=seed).fit(ps.sampler.get_chain()[300:].reshape(-1, d))
        ps.adapt([(q, 0.5), (DESubspaceMove(), 0.5)], at=600).run(3600)
        assert ps.discard == 600 and ps.autocorr_time().max() < 15
        ch = ps.sampler.get_chain(discard=600, flat=True)
        ratios.append(np.mean(ch.std(0) / 0.04))
        means.append(ch.mean(0))
    assert 0.98 <= np.mean(ratios) <= 1.02, ratios
    assert np.all(np.abs(np.mean(means, axis=0) - 0.5) < 3 * 0.04 / np.sqrt(4 * 3000 * 32 / 15)), means


def _linear_gaussian(d=4, m=12, sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(m, d))
    truth = np.linspace(0.35, 0.6, d)
    y = A @ truth + sigma * rng.normal(size=m)
    cov = sigma**2 * np.linalg.inv(A.T @ A)
    return A, y, sigma, cov @ A.T @ y / sigma**2, cov


@pytest.mark.slow
@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(0))
@pytest.mark.parametrize("route", ["output", "misfit"])
@pytest.mark.filterwarnings("ignore:chain of:bayescal.posterior.PosteriorWarning")  # round 0 only
def test_both_emulator_routes_reach_the_exact_posterior(route, seed):
    """Linear-Gaussian, 4 parameters, 12 outputs: mean within 0.1 sd, sd within 5 %, <= 100 runs.

    The output route is a Gaussian likelihood on an SVD-GP emulator of the outputs; the misfit
    route a ScoreLikelihood (T = 1) on a constant-mean GP of the Gaussian negative log-likelihood
    — with the old "expected likelihood" target it was 1-6 sd off at any number of runs.

    256 walkers: a round's chain is as long as 50 autocorrelation times (~15 steps here) and the
    emulator is called once per half-step whatever the number of walkers, so a wide ensemble buys
    ~13,000 effective draws (mean and sd to ~1 %) for 800 steps. The first round's rough posterior
    (tau up to ~40) stops at 1,000 steps.
    """
    from scipy.stats import qmc

    from bayescal.emulators import SVDEmulator
    from bayescal.posterior.refinement import refine

    A, y, sigma, mean, cov = _linear_gaussian()
    space = _space(4)
    X0 = qmc.LatinHypercube(4, seed=seed + 1).random(20)
    if route == "output":
        sim = lambda u: u @ A.T  # noqa: E731
        emulator, make = SVDEmulator(residual_sd=0.1 * sigma), lambda e: GaussianLikelihood(e, y, sigma)
    else:
        sim = lambda u: 0.5 * (((y - u @ A.T) / sigma) ** 2).sum(1)  # noqa: E731
        emulator, make = GPEmulator(), lambda e: ScoreLikelihood(e, 1.0)
    res = refine(sim, emulator, X0, sim(X0), make, space, n_new=10, max_rounds=8, n_walkers=256,
                 min_steps=800, max_steps=1000, seed=seed)
    assert res.converged and res.X.shape[0] <= 100
    u = unit_samples(res.idata, space).values
    sd = np.sqrt(np.diag(cov))
    np.testing.assert_array_less(np.abs(u.mean(0) - mean) / sd, 0.1)
    np.testing.assert_array_less(np.abs(u.std(0) / sd - 1), 0.05)
    # the emulator is sure where the posterior is: its log-likelihood sd there is small
    assert res.history["sd_loglik_q90"].values[-1] < 0.3


def test_score_likelihood_does_not_reward_emulator_uncertainty():
    rng = np.random.default_rng(2)
    X = rng.random((40, 2)) * 0.5
    gp = GPEmulator().fit(X, ((X - 0.25) ** 2).sum(1) * 100)
    far, near = np.array([[0.95, 0.95]]), np.array([[0.25, 0.25]])
    m_far, s_far = gp.predict(far, return_std=True)
    assert s_far[0] > 1.0  # the emulator knows it does not know
    mean_target = ScoreLikelihood(gp, 1.0)
    np.testing.assert_allclose(mean_target(far), -m_far / 1.0)
    pessimistic = ScoreLikelihood(gp, 1.0, emulator_variance=True)
    assert pessimistic(far)[0] < mean_target(far)[0]
    assert pessimistic(near)[0] == pytest.approx(mean_target(near)[0], abs=0.05)
    np.testing.assert_allclose(mean_target.loglik_sd(far), s_far)


def test_gaussian_loglik_sd_matches_monte_carlo():
    """Var log L over independent Gaussian emulator errors, against 200,000 draws."""
    rng = np.random.default_rng(3)
    y, sigma = np.array([1.0, 2.0, 0.5]), np.array([0.3, 0.5, 0.2])
    m, s = np.array([[1.2, 1.7, 0.55]]), np.array([[0.1, 0.4, 0.05]])

    class Em:
        def predict(self, u, return_std=False):
            return (m, s) if return_std else m

    like = GaussianLikelihood(Em(), y, sigma)
    f = m + s * rng.normal(size=(200000, 3))
    ll = -0.5 * (((y - f) / sigma) ** 2).sum(1)
    assert like.loglik_sd(np.zeros((1, 1)))[0] == pytest.approx(ll.std(), rel=0.01)


@pytest.mark.arviz
@pytest.mark.filterwarnings("ignore:chain of:bayescal.posterior.PosteriorWarning")  # short: not accuracy
def test_refinement_is_reproducible_and_keeps_every_round():
    from bayescal.emulators import SVDEmulator
    from bayescal.posterior.refinement import refine

    A, y, sigma, _, _ = _linear_gaussian(d=2, m=5, sigma=0.2, seed=4)
    space = _space(2)
    X0 = np.random.default_rng(0).random((12, 2))
    sim = lambda u: u @ A.T  # noqa: E731

    def go():
        return refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0),
                      lambda e: GaussianLikelihood(e, y, sigma), space, n_new=4, max_rounds=2, tol=0.0,
                      min_steps=100, max_steps=200, seed=5)

    a, b = go(), go()
    assert a.history.sizes["round"] == 3 and a.history["mean"].dims == ("round", "parameter")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.history["mean"].values, b.history["mean"].values)
    assert list(a.history["n_train"].values) == [12, 16, 20]


class _BiasedEmulator:
    """An emulator of ``u @ A.T`` off by ``bias`` everywhere, with sd ``sd``; fitting changes nothing."""

    def __init__(self, A, bias, sd):
        self.A, self.bias, self.sd = A, bias, sd

    def fit(self, X, Y):
        return self

    def predict(self, u, return_std=False):
        m = np.atleast_2d(u) @ self.A.T + self.bias
        return (m, np.full_like(m, self.sd)) if return_std else m


@pytest.mark.filterwarnings("ignore:chain of:bayescal.posterior.PosteriorWarning")  # short: not accuracy
def test_rounds_record_the_emulators_log_likelihood_error_at_their_new_runs_before_fitting_them():
    """history's heldout_error / heldout_z per round: rms of emulated minus exact log L at the runs
    the round chose, and the median of its size over sd[log L]. An emulator off by a known bias c
    errs there by sum(c (y - A u) / sigma^2) - sum(c^2) / (2 sigma^2), exactly; a GP, once it has
    fitted a round's runs, errs there by far less than the round said it would."""
    from bayescal.emulators import SVDEmulator
    from bayescal.posterior.refinement import refine

    A, y, sigma, _, _ = _linear_gaussian(d=2, m=5, sigma=0.2, seed=4)
    space, bias, sd = _space(2), np.linspace(-0.05, 0.08, 5), 0.03
    X0 = np.random.default_rng(0).random((12, 2))
    sim = lambda u: u @ A.T  # noqa: E731
    kw = dict(n_new=4, max_rounds=2, tol=0.0, min_steps=100, max_steps=200, seed=5)
    like = lambda e: GaussianLikelihood(e, y, sigma, emulator_variance=False)  # noqa: E731
    res = refine(sim, _BiasedEmulator(A, bias, sd), X0, sim(X0), like, space, **kw)
    h = res.history
    for r in range(2):
        u = res.X[12 + 4 * r:16 + 4 * r]
        err = ((bias * (y - u @ A.T)).sum(1) - 0.5 * (bias**2).sum()) / sigma**2
        resid = y - u @ A.T - bias
        sd_ll = np.sqrt((((resid * sd) ** 2 + 0.5 * sd**4) / sigma**4).sum(1))
        np.testing.assert_allclose(h["heldout_error"][r], np.sqrt(np.mean(err**2)), rtol=1e-10)
        np.testing.assert_allclose(h["heldout_z"][r], np.median(np.abs(err) / sd_ll), rtol=1e-10)
    assert np.isnan(h["heldout_error"][-1]) and h["heldout_error"].attrs["units"] == "nats"
    # a GP learns each round's runs: afterwards it errs there far less than before
    sim2 = lambda u: np.sin(3 * u) @ A.T  # noqa: E731
    gp = refine(sim2, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim2(X0), like, space, **kw)
    u = gp.X[12:16]
    after = np.sqrt(np.mean((like(gp.emulator)(u) - like(gp.emulator).of_outputs(sim2(u))) ** 2))
    assert float(gp.history["heldout_error"][0]) > 10 * after, (gp.history["heldout_error"].values, after)
    assert np.isfinite(gp.history["heldout_z"][:2]).all()


@pytest.mark.arviz
@pytest.mark.filterwarnings("ignore:chain of:bayescal.posterior.PosteriorWarning")  # short: not accuracy
def test_killed_refinement_resumes_its_chains_bit_for_bit(tmp_path):
    """Each round's chain in its HDF5 backend: killed in round 1's sampling, run again, the same
    rounds, runs and posterior as an uninterrupted refinement (the pipeline's posterior stage)."""
    from bayescal.emulators import SVDEmulator
    from bayescal.posterior.refinement import refine

    A, y, sigma, _, _ = _linear_gaussian(d=2, m=5, sigma=0.2, seed=4)
    space = _space(2)
    X0 = np.random.default_rng(0).random((12, 2))
    sim = lambda u: u @ A.T  # noqa: E731
    calls = {"n": 0, "kill": None}

    class Killable(GaussianLikelihood):
        def __call__(self, u):
            calls["n"] += 1
            if calls["n"] == calls["kill"]:
                raise KeyboardInterrupt("killed")
            return super().__call__(u)

    def go(backend_dir=None):
        calls["n"] = 0
        return refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0),
                      lambda e: Killable(e, y, sigma), space, n_new=4, max_rounds=1, tol=0.0,
                      min_steps=100, max_steps=200, seed=5, backend_dir=backend_dir)

    full = go()
    n_calls = calls["n"]
    calls["kill"] = int(0.75 * n_calls)  # inside round 1's chain
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "chains")
    assert (tmp_path / "chains" / "round0.h5").exists() and (tmp_path / "chains" / "round1.h5").exists()
    calls["kill"] = None
    resumed = go(tmp_path / "chains")
    assert calls["n"] < 0.5 * n_calls  # round 0 read back, round 1 continued: not sampled again
    np.testing.assert_array_equal(resumed.X, full.X)
    np.testing.assert_array_equal(unit_samples(resumed.idata, space).values,
                                  unit_samples(full.idata, space).values)
    np.testing.assert_array_equal(resumed.history["mean"].values, full.history["mean"].values)


def test_run_adaptive_sizes_the_chain_from_tau():
    space = _space(3)
    ps = PosteriorSampler(lambda u: -0.5 * (((u - 0.5) / 0.05) ** 2).sum(1), space, seed=0)
    ps.run_adaptive(max_steps=20000, min_steps=200)
    assert ps.iteration >= 50 * np.max(ps.autocorr_time())
    with pytest.raises(PosteriorError, match="min_steps"):
        ps.run_adaptive(max_steps=10, min_steps=100)


@pytest.mark.slow
@pytest.mark.parametrize("route", ["output", "misfit"])
def test_simulation_based_calibration_of_the_emulator_routes(route):
    """SBC (Talts et al. 2018) through the emulators: ranks of the truth are uniform.

    Linear model with 2 parameters and 5 outputs; one design of 25 runs; 100 replicates, chain
    settings in :func:`_sbc_ranks`. Output route: one SVD-GP emulator serves every replicate.
    Misfit route: a GP of each replicate's negative log-likelihood with a quadratic mean.
    """
    from bayescal.emulators import SVDEmulator

    sigma = 0.3
    X = np.random.default_rng(0).random((25, 2))
    if route == "output":
        svd = SVDEmulator().fit(X, _line(X))

        def likelihood_of(y):
            return GaussianLikelihood(svd, y, sigma)
    else:
        def likelihood_of(y):
            nll = 0.5 * (((y - _line(X)) / sigma) ** 2).sum(1)
            return ScoreLikelihood(GPEmulator(mean="quadratic", n_restarts=0).fit(X, nll), 1.0)

    _assert_uniform_ranks(_sbc_ranks(likelihood_of, _line, sigma, n_rep=100))


@pytest.mark.parametrize("shape", [(2000, 32, 3), (777, 10, 5), (64, 8, 1)])
def test_integrated_time_is_emcees_estimate(shape):
    """bayescal's blocked autocorrelation time equals emcee's, series by series, on AR(1) chains
    with a trend in one parameter (tau from a few to hundreds of steps)."""
    import emcee

    from bayescal.posterior.diagnostics import integrated_time

    rng = np.random.default_rng(sum(shape))
    e = rng.standard_normal(shape)
    x = np.empty(shape)
    x[0] = e[0]
    for t in range(1, shape[0]):
        x[t] = 0.9 * x[t - 1] + e[t]
    x[:, :, 0] += np.linspace(0.0, 3.0, shape[0])[:, None]
    np.testing.assert_allclose(integrated_time(x, max_bytes=1e5), emcee.autocorr.integrated_time(x, tol=0),
                               rtol=1e-12)


def test_a_walker_that_never_moves_lengthens_tau_instead_of_making_it_nan():
    """emcee's estimate is NaN for a value when one walker stayed put (its autocorrelation 0/0),
    and a NaN tau was left out of the 50-tau rule and crashed the burn-in (a site emulator route's
    last chain): that walker now counts as fully correlated, so tau is finite and longer."""
    from bayescal.posterior.diagnostics import integrated_time

    rng = np.random.default_rng(3)
    x = np.cumsum(rng.standard_normal((300, 16, 3)), axis=0) * 0.1 + rng.standard_normal((300, 16, 3))
    free = integrated_time(x)
    x[:, 5, :2] = 0.3  # walker 5 stuck in values 0 and 1
    stuck = integrated_time(x)
    assert np.isfinite(stuck).all() and (stuck[:2] > free[:2]).all() and stuck[2] == free[2]
    x[:, :, 0] = 0.3  # no walker moved: tau as long as the window allows, far past n / 50
    assert integrated_time(x)[0] >= 300


def test_local_runs_keep_those_near_the_best_and_never_a_failed_one():
    from bayescal.posterior.refinement import local_runs

    ll = np.array([-10.0, -12.0, -50.0, np.nan, -np.inf, -11.0, -40.0])
    np.testing.assert_array_equal(local_runs(ll, d=2, within=5.0, n_min=1),
                                  [True, True, False, False, False, True, False])
    # at least the n_min best (the failed ones never)
    np.testing.assert_array_equal(local_runs(ll, d=2, within=5.0, n_min=5),
                                  [True, True, True, False, False, True, True])
    # the default width: twice the 99.9 % drop of a d-dimensional Gaussian posterior
    from scipy.stats import chi2
    w = chi2.ppf(0.999, 3)
    ll = np.array([0.0, -w + 0.01, -w - 0.01])
    np.testing.assert_array_equal(local_runs(ll, d=3, n_min=1), [True, True, False])


def test_the_local_emulators_posterior_is_sampled_inside_the_box_of_its_runs():
    """refine(run_loglik=...): the posterior's emulator is fitted on the runs near the best run only,
    its chain stays inside their box, and on a linear-Gaussian problem it is the exact posterior."""
    from bayescal.emulators import SVDEmulator
    from bayescal.posterior.refinement import InBox, local_runs, refine

    A, y, sigma, mean, cov = _linear_gaussian(d=2, m=5, sigma=0.05, seed=4)
    space = _space(2)
    X0 = np.random.default_rng(0).random((30, 2))
    sim = lambda u: u @ A.T  # noqa: E731
    exact_ll = lambda Y: -0.5 * (((np.atleast_2d(Y) - y) / sigma) ** 2).sum(1)  # noqa: E731
    res = refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0),
                 lambda e: GaussianLikelihood(e, y, sigma), space, n_new=6, max_rounds=2, tol=0.0,
                 n_walkers=8, min_steps=400, max_steps=800, seed=5, run_loglik=exact_ll, within=20.0,
                 local_min=8)
    keep = local_runs(exact_ll(res.Y), 2, 20.0, 8)
    assert 8 <= keep.sum() < res.X.shape[0]  # some runs are far: left out
    assert res.history.attrs["local_runs"] == keep.sum()
    assert res.emulator.n_features_in_ == 2
    lo, hi = res.X[keep].min(0), res.X[keep].max(0)
    lo, hi = lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)
    u = unit_samples(res.idata, space).values
    assert np.all((u >= lo - 1e-12) & (u <= hi + 1e-12))
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(u.mean(0) - mean) < 0.25 * sd), (u.mean(0) - mean) / sd
    assert np.all(np.abs(u.std(0) / sd - 1) < 0.2), u.std(0) / sd
    # InBox: -inf outside, the wrapped values inside, the wrapped object's other attributes
    like = GaussianLikelihood(res.emulator, y, sigma)
    box = InBox(like, lo, hi)
    assert box(np.array([hi + 0.01]))[0] == -np.inf and box.observed is like.observed
    np.testing.assert_allclose(box(res.X[keep]), like(res.X[keep]))


def test_the_final_target_is_sampled_after_the_rounds_and_is_exact_where_the_emulator_is():
    """refine(final_likelihood=...): after the rounds the posterior is sampled on another target of
    the last emulator (chain round_final.h5): here the expected log-likelihood (averaged over the
    emulator's predictive sd), which with runs around the posterior of a linear-Gaussian problem is
    the exact posterior (mean within 0.25 sd, sd within 20 %); the rounds' chains are untouched, and a
    kill inside the final chain resumes to the same draws."""
    from bayescal.emulators import SVDEmulator
    from bayescal.posterior.refinement import refine

    A, y, sigma, mean, cov = _linear_gaussian(d=2, m=5, sigma=0.02, seed=4)
    space = _space(2)
    X0 = mean + 0.4 * (np.random.default_rng(0).random((40, 2)) - 0.5)
    sim = lambda u: u @ A.T  # noqa: E731

    calls = {"n": 0, "kill": None}

    def expected(em):
        def f(u):
            calls["n"] += 1
            if calls["n"] == calls["kill"]:
                raise KeyboardInterrupt("killed")
            m, sd = em.predict(np.atleast_2d(u), return_std=True)
            return -0.5 * ((((m - y) / sigma) ** 2).sum(1) + ((sd / sigma) ** 2).sum(1))
        return f

    kw = dict(n_new=4, max_rounds=1, tol=0.0, n_walkers=16, min_steps=600, max_steps=1200, seed=5)
    like = lambda e: GaussianLikelihood(e, y, sigma, emulator_variance=False)  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        plain = refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0), like, space,
                       backend_dir=Path(tmp) / "a", **kw)
        res = refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0), like, space,
                     final_likelihood=expected, backend_dir=Path(tmp) / "b", **kw)
        assert (Path(tmp) / "b" / "round_final.h5").exists() and "final_target" in res.history.attrs
        assert not (Path(tmp) / "a" / "round_final.h5").exists()
        # killed inside the final chain, run again: it continues to the same draws
        calls.update(kill=calls["n"] // 2, n=0)
        with pytest.raises(KeyboardInterrupt):
            refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0), like, space,
                   final_likelihood=expected, backend_dir=Path(tmp) / "c", **kw)
        calls.update(kill=None)
        again = refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, sim(X0), like, space,
                       final_likelihood=expected, backend_dir=Path(tmp) / "c", **kw)
    np.testing.assert_array_equal(unit_samples(again.idata, space).values,
                                  unit_samples(res.idata, space).values)
    np.testing.assert_array_equal(res.X, plain.X)  # the same rounds
    xr.testing.assert_equal(res.history.drop_attrs(), plain.history.drop_attrs())
    u, sd = unit_samples(res.idata, space).values, np.sqrt(np.diag(cov))
    assert np.all(np.abs(u.mean(0) - mean) < 0.25 * sd), (u.mean(0) - mean) / sd
    assert np.all(np.abs(u.std(0) / sd - 1) < 0.2), u.std(0) / sd
    with pytest.raises(ValueError, match="not both"):
        refine(sim, SVDEmulator(), X0, sim(X0), like, space, run_loglik=lambda Y: Y[:, 0],
               final_likelihood=expected, **kw)


def _ar1_walkers(seed: int, tau: float, n: int, m: int = 32) -> np.ndarray:
    """``m`` stationary AR(1) walkers with integrated autocorrelation time ``tau``."""
    rng = np.random.default_rng(seed)
    rho = (tau - 1) / (tau + 1)
    x = np.empty((m, n))
    x[:, 0] = rng.normal(size=m)
    e = rng.normal(size=(m, n)) * np.sqrt(1 - rho**2)
    for t in range(1, n):
        x[:, t] = rho * x[:, t - 1] + e[:, t]
    return x


@pytest.mark.parametrize("seed", seeds(3))
def test_r_hat_bound_follows_the_chain_length_and_still_catches_stuck_walkers(seed):
    """Converged chains of 50 tau have split R-hat near sqrt(1 + 2 tau / N) = 1.02, above 1.01:
    the bound allows that (no warning) but not walkers stuck 0.8 sd apart."""
    tau, n = 20.0, 1000
    attrs = {"n_steps": n, "burn": 0, "tau_max": tau, "n_walkers": 32, "thin": 1}
    x = _ar1_walkers(seed, tau, n)
    post = xr.Dataset({"a": (("chain", "draw"), x)}, attrs=attrs)
    assert 1.005 < float(az.rhat(post)["a"]) < np.sqrt(1 + 4 * tau / n)  # the premise, on these chains
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        diag = diagnose(post, ess_min=0)
    assert diag.attrs["rhat_max"] == pytest.approx(np.sqrt(1.08))
    stuck = x.copy()
    stuck[:8] += 0.8  # a quarter of the walkers in another part
    with pytest.warns(PosteriorWarning, match="R-hat >"):
        diagnose(xr.Dataset({"a": (("chain", "draw"), stuck)}, attrs=attrs), ess_min=0)
    short = {**attrs, "n_steps": 8 * tau}  # a chain of 8 tau is not given a looser bound
    with pytest.warns(PosteriorWarning, match="R-hat > 1.039"):
        diag = diagnose(xr.Dataset({"a": (("chain", "draw"), stuck[:, : int(8 * tau)])}, attrs=short),
                        ess_min=0)
    assert diag.attrs["rhat_max"] == pytest.approx(np.sqrt(1.08))
    with warnings.catch_warnings():  # without the chain's attributes: the bound is 1.01
        warnings.simplefilter("ignore")
        assert diagnose(xr.Dataset({"a": (("chain", "draw"), x)}), ess_min=0).attrs["rhat_max"] == 1.01


def test_a_posterior_of_too_few_draws_says_so_not_r_hat_above_its_bound(caplog):
    """Two draws per walker: ArviZ cannot compute R-hat or ESS (NaN); the warning says why,
    and ArviZ's own "shape validation failed" log lines are held back."""
    post = xr.Dataset({"a": (("chain", "draw"), np.random.default_rng(0).normal(size=(32, 2)))})
    with pytest.warns(PosteriorWarning, match=r"not computable: 2 draw\(s\) kept per walker"):
        diagnose(post)
    assert "Shape validation" not in caplog.text


def test_walkers_started_where_the_model_fails_move_next_to_walkers_that_run():
    """A ball of starting points around an optimum near a region where the model fails (its
    log-likelihood -inf there): those walkers start next to the others instead of stopping the
    chain; every start then has a finite posterior, and with no finite start the error says why."""
    space = ParameterSpace([Parameter("a", 0.5, 0.0, 1.0), Parameter("b", 0.5, 0.0, 1.0)])

    def like(u):
        u = np.atleast_2d(u)
        return np.where(u[:, 0] > 0.5, -np.inf, -0.5 * np.sum(((u - 0.45) / 0.05) ** 2, axis=1))

    ps = PosteriorSampler(like, space, n_walkers=16, seed=3)
    ball = 0.5 + 0.02 * np.random.default_rng(1).standard_normal((16, 2))
    assert (ball[:, 0] > 0.5).sum() >= 4  # a quarter or more of the ball fails
    start = ps.initial_state(np.clip(ball, 0, 1), np.random.default_rng(2))
    assert np.isfinite(like(start)).all() and np.unique(start, axis=0).shape[0] == 16
    ps.run(200, initial=np.clip(ball, 0, 1))
    assert np.isfinite(ps.sampler.get_log_prob()).all()
    failing = 0.9 + 0.01 * np.random.default_rng(0).random((16, 2))
    with pytest.raises(PosteriorError, match=r"16 of the 16 initial walkers have zero posterior probability "
                       r"\(the model fails"):
        PosteriorSampler(like, space, n_walkers=16, seed=3).initial_state(failing)
