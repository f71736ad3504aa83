"""Sequential refinement of an emulated posterior: new model runs chosen by acquisition.

An emulator is only trusted where it has seen model runs. :func:`refine` alternates

1. fit the emulator to every run so far (seeded from ``seed``);
2. sample the posterior of the emulator's *mean* prediction with emcee, the chain sized from
   its autocorrelation time (:meth:`~bayescal.posterior.PosteriorSampler.run_adaptive`);
3. score the posterior's samples with the acquisition
   ``a(u) = p(u) x sd[log L(u)]`` — posterior density times the standard deviation of the
   log-likelihood that the emulator's own uncertainty causes (``loglik_sd`` of the likelihood).
   It is large where posterior mass and emulator uncertainty overlap, as in BAPE (Kandasamy et
   al. 2017) and VBMC (Acerbi 2018): runs go where they most change the posterior;
4. pick a batch of ``n_new`` points greedily, each time damping the acquisition of the
   candidates near the chosen point (local penalisation, radius ``spacing`` posterior sds), and
   run the model there — one batch per round, so a runner can run it in parallel.

The emulator's uncertainty is therefore spent on choosing runs, not on the sampled target:
where runs are dense its variance vanishes and the emulated posterior tends to the exact one.

Stopping rule (stated in ``history.attrs["criterion"]``): the posterior has stopped moving —
every parameter's mean moved by less than ``tol`` posterior sd and its sd by less than ``tol``
relative since the previous round — and the emulator is sure of the log-likelihood where the
posterior is — the 90th percentile of ``sd[log L]`` over posterior samples is below
``sd_loglik_max`` nats. Otherwise it stops after ``max_rounds``.

Every round's posterior summary is kept in ``history`` (per round and parameter: mean, sd,
5 % and 95 % quantiles in the unit cube) so error-against-runs curves need no re-running.

**The local emulator** (``run_loglik``). The rounds' runs gather where the posterior is, but an
emulator fitted on every run must also span the runs far from it, whose outputs differ by many
sigma: where the posterior is, it errs by tens of nats. Given the exact log-likelihood of each
run, the posterior is finally sampled on an emulator refitted on the runs within ``within`` nats
of the best run (``chi2.ppf(0.999, d)`` by default: twice the 99.9 % drop of a d-dimensional
Gaussian posterior; at least ``local_min`` runs), inside the box of those runs padded by 10 % of
its sides, where that emulator has seen runs. On the REFLEX-shaped DALEC twin (docs/site-studies.md,
``benchmarks/bench_site_zoom.py``) it errs there by about a nat where an emulator of every run errs
by hundreds, but the box is larger than the posterior's ridge, and in its empty corners the local
emulator reverts to the mean of good fits; even fitted on runs at exact posterior draws, most of
its posterior's mass lies where the model does not fit (``bench_site_zoom.py --strategy ceiling``).
The site route does not use it.

**Another target for the posterior** (``final_likelihood``). The rounds sample the emulator's
mean; given ``final_likelihood`` (emulator -> log-likelihood), the posterior returned is a last
chain on that target of the final emulator (``round_final.h5``). The site route passes the
expected log-likelihood (averaged over the emulator's predictive sd:
:meth:`~bayescal.operators.timeseries.SeriesLikelihood.expected`), which falls where the emulator
has no runs instead of reverting to the runs' average fit (docs/site.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..parameters import ParameterSpace
from . import PosteriorSampler, PosteriorWarning, Priors, get_group, unit_samples
from .runnable import only_where_runs

__all__ = ["InBox", "Refinement", "local_runs", "refine", "select_batch"]

CRITERION = (
    "max |d mean| / sd < tol and max |sd ratio - 1| < tol between rounds, "
    "and q90 of sd[log L] over the posterior < sd_loglik_max"
)


@dataclass
class Refinement:
    """Result of :func:`refine`: the final posterior, emulator, training data and every round."""

    idata: Any  # arviz.InferenceData (ArviZ 0.2x) or xarray.DataTree (1.x)
    emulator: Any
    X: np.ndarray
    Y: np.ndarray
    history: xr.Dataset
    converged: bool


def _seed_emulator(emulator: Any, seed: int) -> None:
    """Give a scikit-learn style emulator (and its component estimator) this round's seed."""
    if hasattr(emulator, "get_params") and "random_state" in emulator.get_params(deep=False):
        emulator.set_params(random_state=seed)


def select_batch(
    u: np.ndarray, score: np.ndarray, n: int, spacing: float = 0.5
) -> np.ndarray:
    """Greedy batch of ``n`` distinct rows of ``u`` with the largest (penalised) ``score``.

    After each pick the scores of the other candidates are multiplied by
    ``1 - exp(-d^2 / (2 spacing^2))``, with ``d`` the distance in posterior-whitened
    coordinates (Cholesky of the sample covariance), so a batch spreads over the region where
    the acquisition is high instead of stacking at its maximum.
    """
    u, idx = np.unique(np.asarray(u, dtype=float), axis=0, return_index=True)
    score = np.asarray(score, dtype=float)[idx].copy()
    score[~np.isfinite(score)] = 0.0
    n = min(int(n), u.shape[0])
    cov = np.atleast_2d(np.cov(u, rowvar=False)) + 1e-12 * np.eye(u.shape[1])
    z = np.linalg.solve(np.linalg.cholesky(cov), (u - u.mean(0)).T).T
    picks = []
    for _ in range(n):
        i = int(np.argmax(score))
        picks.append(i)
        score *= -np.expm1(-((z - z[i]) ** 2).sum(1) / (2 * spacing**2))
        score[i] = -np.inf
    return u[picks]


def _acquisition(like: Any, u: np.ndarray, lp: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(score, sd_loglik)`` at posterior samples ``u`` with their stored log posterior ``lp``;
    without ``loglik_sd`` the score is flat."""
    if not hasattr(like, "loglik_sd"):
        return np.ones(u.shape[0]), np.full(u.shape[0], np.nan)
    # in blocks of samples: an emulator of long series predicts (samples, outputs) arrays, and a
    # chain's tens of thousands of samples at once took gigabytes (5.3 GiB for 4 years x 2 series)
    sd = np.concatenate([np.asarray(like.loglik_sd(u[i:i + _BLOCK]), dtype=float).reshape(-1)
                         for i in range(0, u.shape[0], _BLOCK)]) if u.shape[0] else np.zeros(0)
    return np.exp(lp - lp.max()) * sd, sd


#: samples per call of a likelihood's ``loglik_sd`` in :func:`_acquisition`
_BLOCK = 1024


def refine(
    simulate: Callable[[np.ndarray], np.ndarray],
    emulator: Any,
    X: np.ndarray,
    Y: np.ndarray,
    make_likelihood: Callable[[Any], Callable[[np.ndarray], np.ndarray]],
    priors: Priors | ParameterSpace,
    n_new: int = 10,
    max_rounds: int = 8,
    tol: float = 0.05,
    sd_loglik_max: float = 0.3,
    max_steps: int = 20000,
    min_steps: int = 1000,
    n_walkers: int | None = None,
    spacing: float = 0.5,
    seed: int | np.random.Generator | None = None,
    progress: bool = False,
    backend_dir: str | Path | None = None,
    max_draws: int | None = None,
    moves: str = "de_stretch",
    run_loglik: Callable[[np.ndarray], np.ndarray] | None = None,
    within: float | None = None,
    local_min: int = 40,
    n_particles: int = 0,
    final_likelihood: Callable[[Any], Callable[[np.ndarray], np.ndarray]] | None = None,
    failed: np.ndarray | None = None,
) -> Refinement:
    """Refine an emulated posterior with model runs chosen by acquisition (module docstring).

    Parameters
    ----------
    simulate : callable
        Unit-cube points (n, d) -> emulated quantity (n, ...) from the model; rows with NaN are
        failed runs and are dropped. Route it through the runner's store so a killed refinement
        loses no finished run. It may return ``(quantity, model_failed)``, ``model_failed`` (n,)
        bool: which failed runs are the model failing at those values (given to ``failed``'s
        rule); others (a timeout, a process killed by a signal: :func:`~bayescal.run.ensemble.
        model_failures`) are only dropped. Without it every failed run is the model's.
    emulator : estimator
        Refitted every round on all runs (``fit(X, Y)``); its ``random_state`` is set from
        ``seed`` each round.
    X, Y : arrays
        Initial design (unit cube) and its emulated quantity.
    make_likelihood : callable
        Emulator -> log-likelihood of unit-cube points; a likelihood with ``loglik_sd`` (both of
        bayescal's) drives the acquisition, any other gets posterior draws at random.
    priors : Priors or ParameterSpace
    n_new : int
        Model runs per round (one batch).
    max_rounds : int
        Rounds of new runs at most (the posterior is sampled ``max_rounds + 1`` times).
    tol, sd_loglik_max : float
        The stopping rule (module docstring).
    max_steps, min_steps : int
        Chain length bounds; in between the chain runs to 50 autocorrelation times.
    n_walkers : int, optional
    spacing : float
        Batch spread (:func:`select_batch`).
    seed : int or numpy.random.Generator
        Seeds the emulator fits, the chains and the batch choice: the same seed gives the same
        rounds bit for bit.
    progress : bool
        emcee's progress bar (steps, rate, ETA) for each round's chain.
    backend_dir : path, optional
        Each round's chain is saved step by step to ``round<r>.h5`` (emcee's HDF5 backend) in
        this directory; run again after a kill, with the same inputs and seed, a round continues
        its chain from the last saved step and the result equals an uninterrupted run.
    max_draws : int, optional
        The final round's InferenceData keeps at most this many draws (thinned further).
    moves : {"de_stretch", "de_subspace", "independence"}
        Each round's emcee moves, as :func:`~bayescal.posterior.site_calibration.sample_posterior`
        names them; ``"independence"`` adapts over the first half of ``min_steps`` (left out of
        the chain's draws and autocorrelation times) and then runs on to 50 tau.
    run_loglik : callable, optional
        The exact log-likelihood of runs' outputs (rows of ``Y``; -inf or NaN: failed). Given,
        the posterior returned is the local emulator's (module docstring; its chain
        ``round_local.h5``), sampled after the rounds.
    within : float, optional
        The local emulator's runs: within this many nats of the best run (default
        ``chi2.ppf(0.999, d)``).
    local_min : int
        The local emulator's runs at least (the best ones).
    n_particles : int
        With ``n_particles > 0`` each round's chain starts at particles of a tempered SMC on the
        emulated posterior (:func:`~bayescal.posterior.smc.tempered_smc`; separated parts each
        with its mass), not at the best training runs.
    final_likelihood : callable, optional
        Emulator -> log-likelihood: given, the posterior returned is sampled on it with the final
        emulator after the rounds (chain ``round_final.h5``), e.g. the expected log-likelihood of
        :class:`~bayescal.posterior.site_calibration.EmulatedSeriesLikelihood`; the rounds and
        their acquisition use ``make_likelihood``. Not with ``run_loglik``.
    failed : ndarray (n, d), optional
        Unit-cube points where the model failed (the design's failed runs, those
        :func:`~bayescal.run.ensemble.model_failures` counts). With these and the
        rounds' own failed runs, every target is -inf where the nearest run failed
        (:class:`~bayescal.posterior.runnable.Runnable`): no chain, acquisition or posterior
        mass where the model does not run.
    """
    if final_likelihood is not None and run_loglik is not None:
        raise ValueError("give final_likelihood or run_loglik, not both")
    rng = np.random.default_rng(seed)
    X, Y = np.asarray(X, float), np.asarray(Y, float)
    F = np.zeros((0, X.shape[1])) if failed is None else np.asarray(failed, float).reshape(-1, X.shape[1])
    # every target -inf where the nearest run failed (X, F read when a target is made: the runs then)
    make_likelihood, final_likelihood = (_where_runs(f, lambda: (X, F)) for f in (make_likelihood,
                                                                                    final_likelihood))
    space = priors.space if isinstance(priors, Priors) else priors
    rows: list[dict[str, Any]] = []
    prev, converged, idata = None, False, None
    for r in range(max_rounds + 1):
        _seed_emulator(emulator, int(rng.integers(2**31)))
        emulator.fit(X, Y)
        like = make_likelihood(emulator)
        backend = None if backend_dir is None else Path(backend_dir) / f"round{r}.h5"
        if backend is not None:
            backend.parent.mkdir(parents=True, exist_ok=True)
        ps = _round_chain(like, priors, n_walkers, int(rng.integers(2**31)), backend, moves, X,
                          min_steps, max_steps, progress, n_particles)
        idata = ps.to_inference_data(predictive=False)
        u = unit_samples(idata, space).values
        # the chain's stored log posterior, in the same (chain, draw) order as u
        score, sd_ll = _acquisition(like, u, get_group(idata, "sample_stats")["lp"].values.reshape(-1))
        rows.append(_round_row(X.shape[0], u, sd_ll, prev, ps))
        row = rows[-1]
        sure = not row["sd_loglik_q90"] >= sd_loglik_max  # NaN (no loglik_sd): the shift rule alone
        if prev is not None and row["mean_shift"] < tol and row["sd_change"] < tol and sure:
            converged = True
            break
        prev = (row["mean"], row["sd"])
        if r == max_rounds:
            break
        pick = select_batch(u, score, n_new, spacing) if np.isfinite(sd_ll).any() else \
            u[rng.choice(u.shape[0], size=n_new, replace=False)]
        y_new, ok, models = _new_runs(simulate, pick, Y.shape[1:])
        if not ok.any():
            warnings.warn(f"refinement round {r}: all {pick.shape[0]} new runs failed", PosteriorWarning,
                          stacklevel=2)
        rows[-1].update(_heldout(like, pick[ok], y_new[ok]))
        X = np.vstack([X, pick[ok]])
        Y = np.concatenate([Y, y_new[ok]])
        F = np.vstack([F, pick[models]])
    history = _history(rows, space.labels, tol, sd_loglik_max, converged)
    chain = dict(priors=priors, n_walkers=n_walkers, backend_dir=backend_dir, moves=moves,
                 min_steps=min_steps, max_steps=max_steps, progress=progress)
    emulator, idata = _posterior(emulator, ps, X, Y, history, int(rng.integers(2**31)), chain,
                                 make_likelihood, run_loglik, within, local_min, final_likelihood,
                                 n_particles, max_draws)
    return Refinement(idata=idata, emulator=emulator, X=X, Y=Y, history=history, converged=converged)


def _new_runs(simulate: Callable, pick: np.ndarray, shape: tuple[int, ...]):
    """A round's new runs: their outputs (k, *shape), which finished, and which failed as the
    model's own failure (``simulate`` may say so: refine's docstring; else every failed run)."""
    got = simulate(pick)
    y, models = got if isinstance(got, tuple) else (got, None)
    y = np.asarray(y, dtype=float).reshape(pick.shape[0], *shape)
    ok = np.isfinite(y.reshape(pick.shape[0], -1)).all(axis=1)
    return y, ok, ~ok if models is None else ~ok & np.asarray(models, bool)


def _round_row(n_train: int, u: np.ndarray, sd_ll: np.ndarray, prev, ps) -> dict[str, Any]:
    """A round's line of the history: its posterior's moments and quantiles, their change from
    the previous round's (``prev``: mean, sd), sd[log L]'s q90 and its chain's length and tau."""
    mean, sd = u.mean(0), u.std(0)
    shift = np.inf if prev is None else float(np.max(np.abs(mean - prev[0]) / sd))
    spread = np.inf if prev is None else float(np.max(np.abs(sd / prev[1] - 1)))
    q90 = float(np.nanquantile(sd_ll, 0.9)) if np.isfinite(sd_ll).any() else np.nan
    return dict(n_train=n_train, mean=mean, sd=sd, q05=np.quantile(u, 0.05, 0), q95=np.quantile(u, 0.95, 0),
                mean_shift=shift, sd_change=spread, sd_loglik_q90=q90, n_steps=ps.iteration,
                tau_max=float(np.nanmax(ps.autocorr_time())), heldout_error=np.nan, heldout_z=np.nan)


def _where_runs(make: Callable[[Any], Any] | None, runs: Callable[[], tuple[np.ndarray, np.ndarray]]):
    """``make`` (emulator -> target) made -inf where the nearest run failed (:mod:`.runnable`):
    ``runs()`` gives the finished and failed runs' unit-cube points when a target is made."""
    if make is None:
        return None
    return lambda e: only_where_runs(make(e), *runs())


class InBox:
    """A log-likelihood of unit-cube points, -inf outside the box ``[lo, hi]``; its other
    attributes (pointwise terms, observed data, ``loglik_sd``) are the wrapped one's."""

    def __init__(self, loglik: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray) -> None:
        self.loglik, self.lo, self.hi = loglik, np.asarray(lo, float), np.asarray(hi, float)

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u)
        out = np.full(u.shape[0], -np.inf)
        inside = np.all((u >= self.lo) & (u <= self.hi), axis=1)
        if inside.any():
            out[inside] = np.asarray(self.loglik(u[inside]), dtype=float).reshape(-1)
        return out

    def __getattr__(self, name: str) -> Any:
        if name == "loglik":  # not yet set (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self.loglik, name)


def local_runs(ll: np.ndarray, d: int, within: float | None = None, n_min: int = 40) -> np.ndarray:
    """Boolean mask of the runs within ``within`` nats of the best (default ``chi2.ppf(0.999, d)``),
    at least the ``n_min`` best; failed runs (NaN or -inf) never."""
    ll = np.where(np.isfinite(ll), ll, -np.inf)
    if not np.isfinite(ll).any():
        return np.zeros(ll.size, bool)
    keep = ll >= ll.max() - _width(d, within)
    best = np.argsort(-ll, kind="stable")[:n_min]
    keep[best[np.isfinite(ll[best])]] = True
    return keep


def _width(d: int, within: float | None) -> float:
    """``within`` nats, or by default ``chi2.ppf(0.999, d)``: twice the 99.9 % drop of a
    d-dimensional Gaussian posterior's log density below its maximum."""
    from scipy.stats import chi2

    return float(chi2.ppf(0.999, d)) if within is None else float(within)


def _local_posterior(emulator, X, Y, run_loglik, make_likelihood, priors, n_walkers, seed: int, backend_dir,
                     moves: str, min_steps: int, max_steps: int, progress: bool, within, n_min: int):
    """The local emulator (module docstring), its chain, and what it was fitted on (history attrs)."""
    from sklearn.base import clone

    d = X.shape[1]
    walkers = n_walkers or max(2 * d + 2, 32)  # PosteriorSampler's default
    n_min = max(n_min, walkers + walkers % 2)  # every walker starts at a run, inside the box
    within = _width(d, within)
    keep = local_runs(np.asarray(run_loglik(Y), dtype=float).reshape(-1), d, within, n_min)
    local = clone(emulator)
    _seed_emulator(local, seed)
    local.fit(X[keep], Y[keep])
    lo, hi = X[keep].min(0), X[keep].max(0)
    lo, hi = np.clip(lo - 0.1 * (hi - lo), 0.0, 1.0), np.clip(hi + 0.1 * (hi - lo), 0.0, 1.0)
    backend = _for_training(None if backend_dir is None else Path(backend_dir) / "round_local.h5", X, Y, seed)
    ps = _round_chain(InBox(make_likelihood(local), lo, hi), priors, n_walkers, seed, backend, moves, X[keep],
                      min_steps, max_steps, progress)
    info = {"local_runs": int(keep.sum()), "local_within": within,
            "local_box_volume": float(np.prod(hi - lo)),
            "local_rule": f"the posterior's emulator: the runs within {within:.1f} nats of the best run (at "
                          f"least the best {n_min}), sampled inside their box padded by 10 %"}
    return local, ps, info


def _posterior(emulator, ps, X, Y, history: xr.Dataset, seed: int, chain: dict, make_likelihood, run_loglik,
               within, local_min: int, final_likelihood, n_particles: int, max_draws) -> tuple[Any, Any]:
    """The emulator and InferenceData :func:`refine` returns: the last round's chain ``ps``, or a
    chain on the local emulator (``run_loglik``) or on ``final_likelihood``'s target."""
    c = chain
    args = (c["moves"], X, c["min_steps"], c["max_steps"], c["progress"])
    if run_loglik is not None:  # the posterior's chain: on the local emulator
        emulator, ps, info = _local_posterior(emulator, X, Y, run_loglik, make_likelihood, c["priors"],
                                              c["n_walkers"], seed, c["backend_dir"], c["moves"],
                                              c["min_steps"], c["max_steps"], c["progress"], within,
                                              local_min)
        history.attrs.update(info)
    elif final_likelihood is not None:  # the posterior's chain: the final emulator, another target
        final = None if c["backend_dir"] is None else Path(c["backend_dir"]) / "round_final.h5"
        backend = _for_training(final, X, Y, seed, history.sizes["round"])
        ps = _round_chain(final_likelihood(emulator), c["priors"], c["n_walkers"], seed, backend, *args,
                          n_particles)
        history.attrs["final_target"] = "final_likelihood of the last emulator (chain round_final.h5)"
    # its InferenceData with the pointwise log-likelihood and predictive draws; the last round's
    # chain warned already (a local or final chain is new: its warnings stand)
    with warnings.catch_warnings():
        fresh = run_loglik is not None or final_likelihood is not None
        warnings.simplefilter("default" if fresh else "ignore", PosteriorWarning)
        return emulator, ps.to_inference_data(max_draws=max_draws)


def _for_training(backend: Path | None, X: np.ndarray, Y: np.ndarray, seed: int,
                  rounds: int = 0) -> Path | None:
    """``backend``, the chain after the rounds (final or local), for the emulator of the runs
    ``X``, ``Y`` after ``rounds`` rounds, sampled from ``seed``: a chain there of another emulator
    -- left by a run of fewer or more rounds, whose rounds (seeded) are this run's first ones, their
    runs and chains kept -- is removed with its tempered start (files this module wrote), and the
    digest written beside it (``<name>.json``) before the chain starts, so a killed chain still
    continues."""
    if backend is None:
        return None
    h = hashlib.sha256(np.ascontiguousarray(X, dtype=float).tobytes())
    h.update(np.ascontiguousarray(Y, dtype=float).tobytes())
    h.update(f"{int(seed)} {int(rounds)}".encode())
    mark = backend.with_suffix(".json")
    try:
        ours = json.loads(mark.read_text()).get("training") == h.hexdigest()
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        for f in (backend, *backend.parent.glob(f"{backend.stem}_tempered*.nc")):
            f.unlink(missing_ok=True)
        tmp = mark.with_name(mark.name + ".tmp")
        tmp.write_text(json.dumps({"training": h.hexdigest(), "runs": int(X.shape[0])}))
        os.replace(tmp, mark)
    return backend


def _round_chain(like, priors, n_walkers, seed: int, backend, moves: str, X: np.ndarray, min_steps: int,
                 max_steps: int, progress: bool, n_particles: int = 0) -> PosteriorSampler:
    """One round's chain on the emulated posterior: started at the best training runs, or (with
    ``n_particles``) at particles of a tempered SMC on it (saved beside the backend as
    ``<round>_tempered.nc``)."""
    from .site_calibration import adapt_independence, first_moves, tempered_posterior

    ps = PosteriorSampler(like, priors, n_walkers=n_walkers, seed=seed, backend=backend,
                          moves=first_moves(moves, min_steps))
    if n_particles:
        path = None if backend is None else Path(backend).with_name(Path(backend).stem + "_tempered.nc")
        X = tempered_posterior(like, priors, n_particles, seed, path, progress).walkers(ps.n_walkers, seed)
    if moves == "independence":
        adapt_independence(ps, min_steps, X, seed, progress)
    return ps.run_adaptive(max_steps, initial=X, min_steps=min_steps, progress=progress)


def _heldout(like: Any, u: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """The emulator's log-likelihood error at a round's new runs before it saw them: the rms of
    emulated minus exact (nats), and the median of its size over ``sd[log L]`` (0.67 if that sd
    is right; larger: the emulator is surer than it should be). NaN without ``of_outputs`` (the
    exact log-likelihood of outputs) or ``loglik_sd``."""
    if not (hasattr(like, "of_outputs") and hasattr(like, "loglik_sd")) or u.shape[0] == 0:
        return {}
    err = np.asarray(like(u), float) - np.asarray(like.of_outputs(y), float)
    z = np.abs(err) / np.maximum(np.asarray(like.loglik_sd(u), float), 1e-12)
    ok = np.isfinite(err)
    if not ok.any():
        return {}
    return {"heldout_error": float(np.sqrt(np.mean(err[ok] ** 2))), "heldout_z": float(np.median(z[ok]))}


def _history(rows: list[dict], labels: list[str], tol: float, sd_max: float, converged: bool) -> xr.Dataset:
    per_param = ("mean", "sd", "q05", "q95")
    data = {k: (("round", "parameter"), np.array([row[k] for row in rows])) for k in per_param}
    data.update({k: ("round", np.array([row[k] for row in rows])) for k in rows[0] if k not in per_param})
    ds = xr.Dataset(data, coords={"round": np.arange(len(rows)), "parameter": list(labels)})
    for k in per_param:
        ds[k].attrs["units"] = "unit cube"
    ds["sd_loglik_q90"].attrs["units"] = "nats"
    ds["heldout_error"].attrs.update(units="nats", long_name="rms of emulated minus exact log L at the "
                                     "round's new runs, before fitting them")
    ds["heldout_z"].attrs["long_name"] = ("median |emulated - exact log L| / sd[log L] at the round's "
                                          "new runs (0.67: an honest sd)")
    ds.attrs.update(tol=tol, sd_loglik_max=sd_max, criterion=CRITERION, converged=int(converged),
                    acquisition="posterior density x sd of the log-likelihood (emulator)")
    return ds
