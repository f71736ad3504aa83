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


def test_timeouts_and_kills_are_not_the_models_failures():
    """A timeout or a process killed by a signal (the OOM killer, a pre-empted job) may not fail
    again at those values: not counted where the model fails; its own failures are."""
    from bayescal.run.ensemble import model_failures

    status = ["done", "failed", "failed", "failed", "failed", "failed"]
    reason = ["", "timeout after 600.0 s", "exit code -9: ", "exit code 1: spin-up diverged",
              "spin-up: runaway LAI 16.2 > 15.0", "exit code -15"]
    np.testing.assert_array_equal(model_failures(status, reason), [False, False, False, True, True, False])
    assert model_failures([], []).shape == (0,)


@pytest.mark.parametrize("seed", [0, 1])
def test_a_rounds_runs_lost_to_the_machine_leave_no_hole_in_the_posterior(seed):
    """The round's runs, where the posterior is, all time out (the machine, not the model); the
    refinement's ``simulate`` says so. The posterior keeps its mass where those runs are the
    nearest ones; counted as the model's failures (``simulate`` silent), none is left there."""
    from scipy.spatial import cKDTree

    from bayescal.emulators import GPEmulator, SVDEmulator
    from bayescal.posterior.refinement import refine

    space = ParameterSpace([Parameter("a", 0.5, 0.0, 1.0), Parameter("b", 0.5, 0.0, 1.0)])
    obs, sigma = np.array([0.85, 0.5]), np.array([0.05, 0.1])
    X0 = np.random.default_rng(seed).random((30, 2))

    def run(say_why: bool):
        lost = []

        def sim(u):
            lost.append(u)  # round 0's runs: lost to timeouts
            y = np.full(u.shape, np.nan)
            return (y, np.zeros(len(u), bool)) if say_why else y

        res = refine(sim, SVDEmulator(estimator=GPEmulator(random_state=None)), X0, X0,
                     lambda e: GaussianLikelihood(e, obs, sigma), space, n_new=8, max_rounds=1,
                     n_walkers=32, min_steps=300, max_steps=500, seed=seed)
        u = unit_samples(res.idata, space).values
        _, nearest = cKDTree(np.vstack([X0, lost[0]])).query(u)
        return u, (nearest >= len(X0)).mean()  # the posterior's share nearest to a lost run

    (told, share_told), (_, share_counted) = run(True), run(False)
    assert 0.7 < (told[:, 0] > 0.8).mean() < 0.95  # 0.84 exactly
    assert share_told > 0.1, share_told
    assert share_counted == 0.0
