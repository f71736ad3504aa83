"""Tempered SMC against exact answers: a two-arm target's masses and evidence, a conjugate posterior."""

import numpy as np
import pytest
import xarray as xr
from scipy import special, stats

from bayescal.parameters import Parameter, ParameterSpace
from bayescal.posterior import Priors
from bayescal.posterior.smc import tempered_smc

D, S = 6, 0.03


def _space(d: int) -> ParameterSpace:
    return ParameterSpace([Parameter(f"x{i}", 0.5, 0.0, 1.0) for i in range(d)])


def _two_arms(u: np.ndarray) -> np.ndarray:
    """A normalised mixture: 0.3 N(0.3, S^2 I) + 0.7 N(0.7, S^2 I) in D dimensions (evidence 1 on
    the cube to 1e-20), its arms 13 sd apart: no MCMC move crosses between them."""
    a = -0.5 * ((u - 0.3) ** 2).sum(1) / S**2 + np.log(0.3)
    b = -0.5 * ((u - 0.7) ** 2).sum(1) / S**2 + np.log(0.7)
    return np.logaddexp(a, b) - D * np.log(S * np.sqrt(2 * np.pi))


def test_two_arms_get_their_mass_their_width_and_the_evidence():
    runs = [tempered_smc(_two_arms, _space(D), n_particles=2000, seed=s) for s in range(4)]
    w = np.array([np.mean(r.particles[:, 0] < 0.5) for r in runs])
    # one run's arm fraction: binomial sd 0.010 at 2000 particles, inflated by resampling
    assert np.all(np.abs(w - 0.3) < 0.06), w
    assert abs(w.mean() - 0.3) < 0.03, w
    logz = np.array([r.log_evidence for r in runs])
    assert np.all(np.abs(logz) < 0.3) and abs(logz.mean()) < 0.15, logz
    for r in runs:
        for centre, arm in ((0.3, r.particles[:, 0] < 0.5), (0.7, r.particles[:, 0] >= 0.5)):
            x = r.particles[arm]
            assert np.all(np.abs(x.mean(0) - centre) < 0.01)
            assert np.all(np.abs(x.std(0) / S - 1) < 0.15), x.std(0) / S
        assert r.betas[0] == 0 and r.betas[-1] == 1 and np.all(np.diff(r.betas) > 0)


def test_a_mode_chain_would_miss_is_found_from_the_prior():
    """Both arms are reached although no particle starts near either (the prior is flat)."""
    r = tempered_smc(_two_arms, _space(D), n_particles=1000, seed=11)
    assert 0.15 < np.mean(r.particles[:, 0] < 0.5) < 0.45


def test_conjugate_beta_posterior_and_evidence_with_a_beta_prior():
    """Prior Beta(2, 3), likelihood u^7 (1 - u)^3: posterior Beta(9, 6), evidence B(9, 6) / B(2, 3)."""
    space = _space(1)
    priors = Priors(space, {"x0": {"dist": "beta", "a": 2.0, "b": 3.0}})

    def loglik(u):
        return 7 * np.log(u[:, 0]) + 3 * np.log1p(-u[:, 0])

    exact = special.betaln(9, 6) - special.betaln(2, 3)
    post = stats.beta(9, 6)
    ks, logz = [], []
    for s in range(3):
        r = tempered_smc(loglik, priors, n_particles=2000, seed=s)
        ks.append(stats.kstest(r.particles[:, 0], post.cdf).statistic)
        logz.append(r.log_evidence)
    # KS statistic of 2000 exact independent draws: 0.030 at p = 0.99; resampled particles repeat
    assert np.median(ks) < 0.05, ks
    assert np.all(np.abs(np.array(logz) - exact) < 0.1), (logz, exact)


def test_failed_runs_are_dropped_and_reproducible():
    def loglik(u):
        out = _two_arms(u)
        out[u[:, 1] > 0.9] = np.nan  # a model that fails in a corner
        return out

    a = tempered_smc(loglik, _space(D), n_particles=500, seed=3)
    b = tempered_smc(loglik, _space(D), n_particles=500, seed=3)
    assert np.array_equal(a.particles, b.particles) and a.n_evaluations == b.n_evaluations
    assert np.all(np.isfinite(a.log_likelihood)) and np.all(a.particles[:, 1] <= 0.9)


def test_bad_settings_and_a_likelihood_that_fails_everywhere_are_refused():
    with pytest.raises(ValueError, match="ess"):
        tempered_smc(_two_arms, _space(D), ess=1.5)
    with pytest.raises(ValueError, match="every particle"):
        tempered_smc(lambda u: np.full(len(u), np.nan), _space(D), n_particles=50, seed=0)


def _counted(kill_at=None):
    calls = {"n": 0}

    def loglik(u):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise KeyboardInterrupt("killed")
        return _two_arms(u)

    return loglik, calls


@pytest.mark.parametrize("seed", [0, 1])
def test_the_tempered_start_gives_each_arm_its_mass_where_the_optimum_start_misses_one(seed):
    """The site route's chain (sample_posterior) on the two-arm target: from the tempered start both
    arms with their masses (0.3 / 0.7); from a ball at the heavier arm's centre, the other is never
    reached (the 13-sd valley), which is why the tempered start is the default."""
    from bayescal.posterior.site_calibration import sample_posterior

    space = _space(D)
    kw = dict(n_walkers=32, n_steps=1500, seed=seed, moves="independence")
    tempered = sample_posterior(_two_arms, space, None, start="tempered", n_particles=1000, **kw)
    u = tempered.sampler.get_chain()[300:].reshape(-1, D)
    assert abs(np.mean(u[:, 0] < 0.5) - 0.3) < 0.06
    assert np.all(np.abs(u.std(0) - np.sqrt(0.3 * 0.7 * 0.4**2 + S**2)) < 0.02)  # the mixture's sd
    ball = sample_posterior(_two_arms, space, np.full(D, 0.7), start="optimum", **kw)
    assert np.mean(ball.sampler.get_chain()[:, :, 0] < 0.5) == 0


@pytest.mark.parametrize("in_chain", [False, True])
def test_a_killed_tempered_start_resumes_bit_for_bit_without_rerunning_the_smc(tmp_path, in_chain):
    """Killed in the SMC (it continues from the last temperature it finished, in
    tempered_progress.nc) or in the chain (the particles are read from tempered.nc: no SMC
    evaluation again); the chain equals an uninterrupted one."""
    from bayescal.posterior.site_calibration import sample_posterior
    from bayescal.posterior.smc import tempered_smc

    def go(loglik, backend=None, tempered=None):
        return sample_posterior(loglik, _space(D), None, n_walkers=16, n_steps=600, seed=4, start="tempered",
                                n_particles=300, backend=backend, tempered=tempered)

    loglik, calls = _counted()
    full = go(loglik)
    n_full = calls["n"]
    loglik, calls = _counted()
    tempered_smc(loglik, _space(D), n_particles=300, seed=4)
    n_smc = calls["n"]  # the SMC's calls of the log-likelihood, the rest are the chain's
    killed, _ = _counted(n_smc + 100 if in_chain else n_smc // 2)
    paths = dict(backend=tmp_path / "chain.h5", tempered=tmp_path / "tempered.nc")
    with pytest.raises(KeyboardInterrupt):
        go(killed, **paths)
    assert (tmp_path / "tempered.nc").exists() == in_chain
    assert (tmp_path / "tempered_progress.nc").exists() != in_chain
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob("*.tmp"))
    loglik, calls = _counted()
    resumed = go(loglik, **paths)
    np.testing.assert_array_equal(resumed.sampler.get_chain(), full.sampler.get_chain())
    assert sorted(f.name for f in tmp_path.iterdir()) == ["chain.h5", "tempered.nc"]
    with xr.open_dataset(tmp_path / "tempered.nc", engine="h5netcdf") as saved:  # labelled, said to be [0, 1]
        assert list(saved["parameter"].values) == list(_space(D).labels)
        assert saved["particles"].attrs["units"] == "1" and "to_unit" in saved["particles"].attrs["long_name"]
    # killed in the chain: fewer calls than the chain alone needs (no SMC again); in the SMC: fewer
    # than all again (the temperatures before the kill are not run again)
    assert calls["n"] < n_full - n_smc if in_chain else n_full - n_smc < calls["n"] < n_full
