"""History matching and the subspace posterior in many dimensions (issue 25).

The toy: ``d`` values with a uniform prior on the unit cube, ``z = Phi^-1(u)`` (so ``z`` has a
standard normal prior), ``k`` outputs ``f(u) = A z`` with each output driven by a few values,
Gaussian noise. The exact posterior of ``z`` is Gaussian (precision ``I + A^T S^-1 A``), so the
exact marginal quantiles of each ``u_i`` are ``Phi`` of those of ``z_i``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from _seeds import seeds
from scipy.special import ndtr, ndtri

from bayescal.emulators.active import ActiveGPEmulator
from bayescal.posterior.history_matching import (
    NotRuledOut,
    history_match,
    implausibility,
    informed_subspace,
    maximin_subset,
    ranked_max,
    subspace_posterior,
)

D, K, SIGMA = 30, 8, 0.3


def _toy(seed: int):
    rng = np.random.default_rng(seed)
    A = np.zeros((K, D))
    for j in range(K):
        A[j, rng.choice(D, 3, replace=False)] = rng.normal(0, 1.0, 3)
    z_true = rng.standard_normal(D)
    y = z_true @ A.T + SIGMA * rng.standard_normal(K)

    def f(u: np.ndarray) -> np.ndarray:
        return ndtri(np.clip(u, 1e-12, 1 - 1e-12)) @ A.T

    prec = np.eye(D) + A.T @ A / SIGMA**2
    cov = np.linalg.inv(prec)
    mean = cov @ A.T @ y / SIGMA**2
    return f, y, ndtr(z_true), mean, np.sqrt(np.diag(cov)), rng


def _match(f, y, rng, seed: int, n_waves: int = 2):
    X0 = rng.random((80, D))
    return history_match(lambda x, w: f(x), lambda w: ActiveGPEmulator(n_active=6, max_condition=200,
                                                                        random_state=w),
                         X0, f(X0), y, SIGMA, n_waves=n_waves, runs_per_wave=60, n_samples=600,
                         n_prior=5000, seed=seed)


def test_implausibility_and_ranked_max():
    m = np.array([[0.0, 1.0, 4.0], [3.0, 0.0, 0.0]])
    s = np.zeros_like(m)
    imp = implausibility(m, s, np.zeros(3), sigma=1.0, discrepancy=0.0)
    assert np.allclose(imp, np.abs(m))
    # emulator variance and discrepancy add in quadrature to sigma^2
    assert np.allclose(implausibility(np.array([[5.0]]), np.array([[3.0]]), [0.0], 0.0, 4.0), 1.0)
    assert np.allclose(ranked_max(imp, 1), [4.0, 3.0])
    assert np.allclose(ranked_max(imp, 2), [1.0, 0.0])
    assert np.allclose(ranked_max(imp[:, :1], 2), [0.0, 3.0])  # fewer summaries than the rank: the max


def test_contains_with_the_sd_bound_decides_as_the_full_implausibility():
    """``NotRuledOut.contains`` decides each summary on the emulator's cheap mean and sd bound
    where it can and computes the full sd only for the rest; its decisions are those of the full
    implausibility (every wave, rank 2), point for point, for prior draws, the region's sample
    and a walk's proposals around it."""
    f, y, _, _, _, rng = _toy(1)
    hm = _match(f, y, rng, 1)
    region = hm.region
    walk = np.clip(hm.samples + 0.05 * rng.standard_normal(hm.samples.shape), 0, 1)
    pts = np.vstack([rng.random((3000, D)), hm.samples, walk])
    waves = range(len(region.emulators))
    full = np.all([region.implausibility(pts, w) <= region.cutoff for w in waves], axis=0)
    exact = []  # (points, output) pairs given the O(n^2) sd
    for em in region.emulators:
        em.predict_output = (lambda f: lambda X, j: (exact.append(len(X)), f(X, j))[1])(em.predict_output)
    np.testing.assert_array_equal(region.contains(pts), full)
    # both routes taken: some pairs needed the full sd, far fewer than every point's every output
    assert 0 < sum(exact) < 0.2 * len(pts) * K, sum(exact)
    assert 0.05 < full.mean() < 0.95  # both decisions are taken
    # the bound settles most of the prior draws the region rules out
    low = ranked_max(implausibility(*region.emulators[-1].predict_sd_bound(pts[:3000]), y, SIGMA), 2)
    assert np.mean(low > region.cutoff) > 0.5 * np.mean(~full[:3000])


def test_maximin_subset_spreads_out():
    rng = np.random.default_rng(0)
    pts = rng.random((500, 2))
    sub = maximin_subset(pts, 20, rng)
    rand = pts[rng.choice(500, 20, replace=False)]

    def min_dist(p):
        d = np.sqrt(((p[:, None] - p[None]) ** 2).sum(-1)) + np.eye(len(p)) * 9
        return d.min()

    assert min_dist(sub) > 2 * min_dist(rand)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_history_matching_keeps_the_truth_and_rules_out_most_of_the_prior(seed):
    """Cutoff 3 on the 2nd-largest of 8 implausibilities: with an honest emulator the truth is ruled
    out with probability < C(8,2) x 0.0027^2 ~ 2e-4 per wave (three-sigma rule for Gaussian noise);
    4 seeds x 3 fits must all keep it. The region shrinks to well under a tenth of the prior."""
    f, y, u_true, *_, rng = _toy(seed)
    hm = _match(f, y, rng, seed)
    assert hm.region.contains(u_true[None])[0]
    frac = hm.waves["nroy_fraction"].values
    assert frac[-1] < 0.05
    assert np.all(np.diff(frac) <= 1e-12)  # nested regions
    assert np.isfinite(hm.Y).all() and hm.X.shape == (80 + 2 * 60, D)
    # the sample is inside the region
    assert hm.region.contains(hm.samples[:200]).all()


@pytest.mark.slow
@pytest.mark.seed_sweep
@pytest.mark.parametrize("seed", seeds(5))
def test_subspace_posterior_matches_the_exact_posterior(seed):
    """30 values, 8 outputs, 260 runs (80 + 3 waves of 60): the 5/50/95 % quantiles (unit cube)
    of 27 of the 30 values within 0.08 of the exact ones and of every value within 0.25, their
    median error below 0.02, and the truth inside 80 % of the 90 % intervals.

    Over seeds 0-9 (``BAYESCAL_TEST_SEEDS=0-9 python -m pytest -m seed_sweep``) the largest error
    was 0.055 (seed 5) to 0.19 (seeds 2 and 9), and at most two values were beyond 0.08: the
    lower tail of a weakly informed value (exact posterior sd 0.8 of the prior's in its normal
    score) whose effect the emulator sees least well -- seed 2's value 6 has exact 5 % quantile
    0.35 and 0.53 here. A posterior that kept the prior in any informed direction misses the
    median bound. (With each wave's emulator fitted only on the runs not ruled out and maximin
    designs, seed 5's largest error was 0.13.)"""
    f, y, u_true, mean, sd, rng = _toy(seed)
    hm = _match(f, y, rng, seed, n_waves=3)
    ll = -0.5 * (((y - hm.emulator.predict(hm.samples)) / SIGMA) ** 2).sum(1)
    sub = informed_subspace(hm.emulator, hm.samples[np.argsort(-ll)[:64]], SIGMA, floor=0.3, max_rank=20)
    post = subspace_posterior(hm.emulator, y, SIGMA, sub, hm.samples, min_steps=1000, max_steps=2500,
                              seed=seed)
    u = post.u.reshape(-1, D)
    err = []
    for q in (0.05, 0.5, 0.95):
        exact = ndtr(mean + sd * ndtri(q))
        err.append(np.abs(np.quantile(u, q, axis=0) - exact))
    err = np.array(err)
    worst = np.sort(err.max(axis=0))
    assert worst[-4] < 0.08 and worst[-1] < 0.25 and np.median(err) < 0.02, err.max(axis=0).round(3)
    q05, q95 = np.quantile(u, [0.05, 0.95], axis=0)
    assert np.mean((q05 <= u_true) & (u_true <= q95)) >= 0.8


def test_subspace_rank_and_complement_floor():
    """A linear model with r informed directions: the subspace finds them and the complement adds
    nothing; with a cap below r the complement's noise floor is stated."""
    rng = np.random.default_rng(0)
    B = rng.normal(size=(3, 10))

    class Lin:
        n_features_in_ = 10

        def predict(self, u, return_std=False):
            m = ndtri(np.clip(u, 1e-12, 1 - 1e-12)) @ B.T
            return (m, np.zeros_like(m)) if return_std else m

    pts = rng.random((16, 10))
    sub = informed_subspace(Lin(), pts, 0.1)
    assert sub.rank == 3 and np.all(sub.complement_sd < 0.01)  # finite differences
    small = informed_subspace(Lin(), pts, 0.1, max_rank=1)
    assert small.rank == 1 and small.complement_sd.max() > 0.3
    region = NotRuledOut([Lin()], np.zeros(3), np.full(3, 0.1))
    assert region.contains(np.full((1, 10), 0.5))[0]


def test_subspace_chain_resumes_from_its_backend_bit_for_bit(tmp_path):
    """A chain killed mid-run resumes from its HDF5 backend: same samples, no step made twice."""
    rng = np.random.default_rng(1)
    B = rng.normal(size=(3, 10))
    calls = {"n": 0, "kill": None}

    class Lin:
        n_features_in_ = 10

        def predict(self, u, return_std=False):
            calls["n"] += 1
            if calls["kill"] is not None and calls["n"] >= calls["kill"]:
                raise KeyboardInterrupt
            m = ndtri(np.clip(u, 1e-12, 1 - 1e-12)) @ B.T
            return (m, np.full_like(m, 0.05)) if return_std else m

    y, pts = np.array([0.3, -0.2, 0.5]), rng.random((40, 10))
    sub = informed_subspace(Lin(), pts, 0.2)

    def go(path=None):
        calls["n"] = 0
        return subspace_posterior(Lin(), y, 0.2, sub, pts, min_steps=300, max_steps=3000, seed=2,
                                  backend_path=path)

    full = go()
    n_full = calls["n"]
    calls["kill"] = n_full // 2
    with pytest.raises(KeyboardInterrupt):
        go(tmp_path / "chain.h5")
    calls["kill"] = None
    resumed = go(tmp_path / "chain.h5")
    assert calls["n"] < 0.6 * n_full  # the finished half was read back, not sampled again
    np.testing.assert_array_equal(resumed.u, full.u)
    assert resumed.n_steps == full.n_steps > 300  # the length decisions were the same


@pytest.mark.slow
@pytest.mark.arviz
def test_history_matching_stage_keeps_the_truth_and_writes_complete_inference_data(tmp_path):
    """The main job's route, small: every value free, waves through the store, the subspace
    chain; posterior.nc has pointwise log-likelihood and predictive draws on the named summaries
    (az.loo runs on it), and the not-ruled-out region keeps the truth."""
    import arviz as az

    from bayescal.posterior import get_group, group_names, load_inference_data
    from bayescal.workflows import make_context, validate_config

    truth = {"vmax[GRASS-C3]": 0.6, "vmax[NDL-EVG]": 0.35, "kn[BDL-EVG]": 0.45, "gamma_w": 0.55}
    cfg = validate_config({
        "run": {"output": str(tmp_path / "run"), "seed": 4},
        "model": {"n_cells": 18, "start": 2000, "end": 2006, "ramp_start": 1997, "chunk_size": 64},
        "parameters": {"free": [*truth, "kn[GRASS-C3]", "beta2"]},
        "observations": {"variables": ["gpp", "lai"], "gcb_years": [2000, 2006], "truth": truth},
        "screen": {"enabled": False},
        "design": {"n_runs": 40, "batch_size": 64},
        "posterior": {"method": "history_matching", "hm_waves": 2, "hm_runs": 30, "hm_active": 4,
                      "n_steps": 300, "max_steps": 600},
        "propagate": {"table_years": [2002, 2006]},
    })
    pipe = make_context(cfg, progress=False)
    pipe.run(("screen", "optimize", "design", "emulate", "posterior"))
    out = tmp_path / "run" / "posterior"
    assert pipe.workflow.stage("posterior").foreign_files(out) == []  # every file it writes declared
    idata = load_inference_data(out / "posterior.nc")
    for g in ("posterior", "sample_stats", "log_likelihood", "posterior_predictive", "observed_data",
              "prior", "constant_data"):
        assert g in group_names(idata), g
    ll = get_group(idata, "log_likelihood")["y"]
    assert ll.dims == ("chain", "draw", "summary")
    assert {"variable", "region", "units"} <= set(ll.coords)
    assert np.isfinite(ll.values).all()
    loo = az.loo(idata)
    assert np.isfinite(float(getattr(loo, "elpd_loo", getattr(loo, "elpd", np.nan))))
    hm = xr.load_dataset(out / "history_matching.nc")
    assert np.all(np.diff(hm["nroy_fraction"].values) <= 0) and hm["nroy_fraction"].values[-1] < 0.5
    from bayescal.report.html import _history_matching_section

    section = _history_matching_section(out / "history_matching.nc")  # the report's per-summary checks
    assert "Median parameter-only 90 % predictive interval" in section
    # two ranks, two names: the implausibility rule's and the informed subspace's
    assert hm.attrs["rank"] == 2 and f"{hm.attrs['subspace_rank']} directions" in section
    assert str(hm["summary"].values[0]) in section and ":" in str(hm["summary"].values[0])
    space = pipe.space()
    post_u = _unit_draws(idata, space)
    truth_u = space.to_unit(space.reduce(pipe.truth_theta()))
    q05, q95 = np.quantile(post_u, [0.02, 0.98], axis=0)
    inside = (truth_u >= q05) & (truth_u <= q95)
    assert inside.sum() >= len(truth_u) - 1, dict(zip(space.labels, inside, strict=True))
    # keys only the default method reads change nothing here
    for key, value in (("left_out_runs", 16), ("refine_rounds", 2), ("n_new", 3), ("left_out", "fix")):
        other = {**cfg, "posterior": {**cfg["posterior"], key: value}}
        assert make_context(other, progress=False).plan()[4].status == "reuse", key
    # a longer chain (or another subspace floor) reruns the stage but no wave's model run
    cfg["posterior"]["max_steps"], cfg["posterior"]["hm_floor"] = 700, 0.2
    pipe = make_context(cfg, progress=False)
    assert pipe.plan()[4].status == "rerun" and "waves" in pipe.plan()[4].kept
    rec = pipe.run(("screen", "optimize", "design", "emulate", "posterior"))[4]
    assert (rec.status, rec.kept_runs) == ("ran", 2 * 30) and rec.runs <= 1  # the run at the posterior mean


def _unit_draws(idata, space) -> np.ndarray:
    from bayescal.posterior import unit_samples

    return unit_samples(idata, space).transpose("sample", "parameter").values


def test_a_posterior_that_does_not_carry_the_data_is_warned_of():
    """Issue 25 item 3's checks warn (into the stage's record) when they fail, and only then."""
    from bayescal.workflows.global_.history_matching_stage import _warn_checks

    good = {"predictive_ratio": np.array([0.4, 0.9, 1.5]), "residual": np.array([1.0, -1.0, 1.2])}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _warn_checks(good)
    wide = dict(good, predictive_ratio=np.array([1.1, 2.0, 0.5]))
    with pytest.warns(UserWarning, match="1.10 times the observational"):
        _warn_checks(wide)
    for resid, shown in ((np.array([3.0, -2.0, 1.0]), "4.67"), (np.array([0.3, 0.2, -0.1]), "0.05")):
        with pytest.warns(UserWarning, match=f"mean square {shown}"):
            _warn_checks(dict(good, residual=resid))
    with pytest.warns(UserWarning, match="the model run at the posterior mean failed"):
        _warn_checks(dict(good, residual=np.full(3, np.nan)))
