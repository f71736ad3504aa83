"""Refinement where the model fails in part of the space (a newcomer's external model that fails
above q10 = 2.8 lost 12 of 12 refinement runs there, and its posterior kept 17 % of its mass
where the model cannot run): the targets are -inf where the nearest run failed."""

import numpy as np
import pytest

from bayescal.parameters import Parameter, ParameterSpace
from bayescal.posterior import GaussianLikelihood, unit_samples
from bayescal.posterior.runnable import Runnable, only_where_runs


def test_runnable_is_the_nearest_runs_outcome():
    """Against brute force on random points: -inf exactly where the nearest run failed, the
    wrapped log-likelihood elsewhere; no failed run: the log-likelihood itself."""
    rng = np.random.default_rng(0)
    done, failed = rng.random((40, 3)), rng.random((15, 3))
    like = Runnable(lambda u: -((u - 0.5) ** 2).sum(1), done, failed)
    u = rng.random((2000, 3))
    d_done = ((u[:, None] - done[None]) ** 2).sum(-1).min(1)
    d_failed = ((u[:, None] - failed[None]) ** 2).sum(-1).min(1)
    want = np.where(d_done <= d_failed, -((u - 0.5) ** 2).sum(1), -np.inf)
    np.testing.assert_array_equal(like(u), want)
    assert 0.1 < np.isinf(want).mean() < 0.5
    f = lambda u: u[:, 0]  # noqa: E731
    assert only_where_runs(f, done, np.zeros((0, 3))) is f


@pytest.mark.parametrize("seed", [0, 1])
def test_refinement_learns_where_the_model_fails(seed):
    """Outputs = inputs, observed (0.85, 0.5): the likelihood peaks where the model fails (u0 >
    0.8). The posterior keeps almost nothing beyond the failing edge (the emulator alone would
    put half its mass above 0.85), and the rounds' runs stay at the edge."""
    from bayescal.emulators import GPEmulator, SVDEmulator
    from bayescal.posterior.refinement import refine

    space = ParameterSpace([Parameter("a", 0.5, 0.0, 1.0), Parameter("b", 0.5, 0.0, 1.0)])
    made = []

    def sim(u):
        y = np.array(u, dtype=float)
        y[u[:, 0] > 0.8] = np.nan  # the model fails there
        made.append(u)
        return y

    X0 = np.random.default_rng(seed).random((30, 2))
    ok = X0[:, 0] <= 0.8
    obs, sigma = np.array([0.85, 0.5]), np.array([0.05, 0.1])
    res = refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0[ok], X0[ok],
                 lambda e: GaussianLikelihood(e, obs, sigma), space, n_new=8, max_rounds=3, n_walkers=32,
                 min_steps=300, max_steps=500, seed=seed, failed=X0[~ok])
    u = unit_samples(res.idata, space).values
    assert (u[:, 0] > 0.85).mean() < 0.05
    assert (u[:, 0] > 0.8).mean() < 0.3  # the edge learnt from the runs on either side of it
    # the rounds probe the edge (runs on either side of it sharpen it), not the failing region: the
    # emulator alone centres its posterior at 0.85, where half of the rounds' runs would fall above
    new = np.vstack(made)[:, 0]
    assert len(made) == 3 and (new > 0.85).mean() < 0.3, [np.round(m[:, 0], 2).tolist() for m in made]
