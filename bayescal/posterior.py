"""Priors, likelihoods, emcee sampling to ArviZ InferenceData, emulator trust (refinement: its own module).

The sampler works in the unit cube of the free parameters (``ParameterSpace.to_unit``), where
every prior has support [0, 1]; results are reported in physical units.

Which likelihood?

* :class:`GaussianLikelihood` — when the model's outputs (or their reduced components) can be
  compared with observations that have an error model: ``y_obs ~ N(f(theta), sigma_obs^2 +
  sigma_emulator^2(theta) + sigma_discrepancy^2)``. This is a proper likelihood; credible
  intervals mean what they say if the sigmas are honest. Use it whenever you can.
* :class:`ScoreLikelihood` — for AMBER/ILAMB-style misfits (``1 - score``), which have no
  error model: the pseudo-likelihood ``exp(-misfit / T)``. The temperature ``T`` sets the
  width. Rule (DFO-LS paper): ``T`` = the baseline misfit, the misfit of the truth against
  noisy observations, i.e. what noise alone costs; misfit differences of one baseline are one
  e-fold of probability (:func:`baseline_temperature`). The sampled target is the emulator's
  *mean* misfit, ``-m/T``. The "expected likelihood" ``log E[exp(-f/T)] = -m/T + s^2/(2 T^2)``
  is not offered: it rewards emulator ignorance and pulls posterior mass into untrained regions
  (issue 15: means 1-6 sd off). The emulator's uncertainty is spent on choosing new runs
  instead (:func:`bayescal.refinement.refine`). With a misfit that is a Gaussian negative
  log-likelihood and ``T = 1`` the posterior is the exact one.

Both likelihoods give ``loglik_sd(u)``: the standard deviation of the log-likelihood caused by
the emulator's predictive uncertainty, which drives the acquisition of new runs.

:class:`PosteriorSampler` runs :class:`emcee.EnsembleSampler` with a vectorised log-probability,
a differential-evolution / stretch move mix (suited to ridge-shaped, correlated posteriors; see
``benchmarks/bench_posterior.py``), walkers started at the best design points, and emcee's HDF5
backend as checkpoint so a killed run resumes. :meth:`PosteriorSampler.to_inference_data`
discards burn-in and thins from the integrated autocorrelation time.
"""

from __future__ import annotations

import tomllib
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import arviz as az
import emcee
import numpy as np
import xarray as xr
from scipy import stats
from threadpoolctl import threadpool_limits

from .parameters import ParameterSpace, family, split_label

__all__ = [
    "PosteriorError",
    "PosteriorWarning",
    "Priors",
    "GaussianLikelihood",
    "ScoreLikelihood",
    "baseline_temperature",
    "PosteriorSampler",
    "unit_samples",
    "diagnose",
    "emulator_trust",
    "default_moves",
]

PRIOR_KINDS = ("uniform", "truncnorm", "beta", "loguniform")


class PosteriorError(ValueError):
    """Invalid input to a likelihood, prior or sampler."""


class PosteriorWarning(UserWarning):
    """A posterior that should not be trusted as it is (short chains, emulator extrapolation)."""


# -------------------------------------------------------------------------------------- priors
class Priors:
    """Independent priors on the free parameters, evaluated in unit-cube coordinates.

    Parameters
    ----------
    space : ParameterSpace
    spec : mapping, optional
        Keys are labels (``"vmax[BDL-EVG]"``) or family names (``"vmax"``, all its free values);
        values are ``{"dist": "uniform"}`` (the default for every parameter),
        ``{"dist": "truncnorm", "mean": m, "sd": s}`` (physical units, truncated to the bounds),
        ``{"dist": "beta", "a": a, "b": b}`` (on the [lower, upper] interval) or
        ``{"dist": "loguniform"}`` (density proportional to 1/x on the bounds, lower > 0).
    """

    def __init__(self, space: ParameterSpace, spec: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.space = space
        self.spec = dict(spec or {})
        labels = space.labels
        lo, hi = space.lower, space.upper
        self._dists: dict[int, Any] = {}
        self.kinds = ["uniform"] * len(labels)
        for key, s in self.spec.items():
            idx = [i for i, lab in enumerate(labels) if lab == key or family(lab) == key]
            if not idx:
                raise PosteriorError(f"prior for {key!r}: no free parameter of that label or family")
            if not isinstance(s, Mapping) or "dist" not in s:
                raise PosteriorError(f"prior for {key!r} must be a table with a 'dist' key")
            kind = s["dist"]
            if kind not in PRIOR_KINDS:
                raise PosteriorError(f"prior for {key!r}: dist must be one of {PRIOR_KINDS}, got {kind!r}")
            allowed = {
                "uniform": set(),
                "truncnorm": {"mean", "sd"},
                "beta": {"a", "b"},
                "loguniform": set(),
            }[kind]
            extra = set(s) - allowed - {"dist"}
            missing = allowed - set(s)
            if extra or missing:
                raise PosteriorError(
                    f"prior for {key!r} ({kind}): "
                    + (f"unknown keys {sorted(extra)} " if extra else "")
                    + (f"missing keys {sorted(missing)}" if missing else "")
                )
            for i in idx:
                self.kinds[i] = kind
                w = hi[i] - lo[i]
                if kind == "truncnorm":
                    if s["sd"] <= 0:
                        raise PosteriorError(f"prior for {labels[i]!r}: sd must be positive")
                    m, sd = (s["mean"] - lo[i]) / w, s["sd"] / w
                    self._dists[i] = stats.truncnorm(-m / sd, (1 - m) / sd, loc=m, scale=sd)
                elif kind == "beta":
                    if s["a"] <= 0 or s["b"] <= 0:
                        raise PosteriorError(f"prior for {labels[i]!r}: beta a and b must be positive")
                    self._dists[i] = stats.beta(s["a"], s["b"])
                elif kind == "loguniform":
                    if lo[i] <= 0:
                        raise PosteriorError(
                            f"prior for {labels[i]!r}: loguniform needs a positive lower bound"
                        )
                    self._dists[i] = _LogUniformUnit(lo[i], hi[i])

    @property
    def n(self) -> int:
        return self.space.n_free

    def logpdf(self, u: np.ndarray) -> np.ndarray:
        """Log prior density of unit-cube points ``u`` (points, parameters); -inf outside [0, 1]."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.zeros(u.shape[0])
        inside = np.all((u >= 0) & (u <= 1), axis=1)
        for i, dist in self._dists.items():
            out += dist.logpdf(np.clip(u[:, i], 0, 1))
        out[~inside] = -np.inf
        return out

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` independent draws in unit-cube coordinates."""
        rng = np.random.default_rng(seed)
        u = rng.random((n, self.n))
        for i, dist in self._dists.items():
            u[:, i] = dist.ppf(u[:, i])
        return u

    def sd(self) -> np.ndarray:
        """Prior standard deviation of each parameter in unit-cube coordinates."""
        return np.array(
            [self._dists[i].std() if i in self._dists else np.sqrt(1 / 12) for i in range(self.n)]
        )

    @classmethod
    def from_toml(cls, path: str | Path, space: ParameterSpace) -> Priors:
        """Read the ``[priors]`` table of a TOML file (``[priors.vmax] dist = "beta" ...``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"prior file {path} does not exist")
        with path.open("rb") as f:
            data = tomllib.load(f)
        try:
            return cls(space, data.get("priors", {}))
        except PosteriorError as err:
            raise PosteriorError(f"{path}: {err}") from None


class _LogUniformUnit:
    """Log-uniform density on [lo, hi] expressed in the linear unit coordinate u."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self._d = stats.loguniform(lo, hi)

    def logpdf(self, u: np.ndarray) -> np.ndarray:
        return self._d.logpdf(self.lo + u * (self.hi - self.lo)) + np.log(self.hi - self.lo)

    def ppf(self, q: np.ndarray) -> np.ndarray:
        return (self._d.ppf(q) - self.lo) / (self.hi - self.lo)

    def std(self) -> float:
        return self._d.std() / (self.hi - self.lo)


# --------------------------------------------------------------------------------- likelihoods
def _emulate(emulator: Any, u: np.ndarray, with_sd: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean (and sd, zeros without) of an emulator or a plain callable at ``u``, as (n, p)."""
    if hasattr(emulator, "predict"):
        if with_sd:
            m, s = emulator.predict(u, return_std=True)
        else:
            m, s = emulator.predict(u), None
    elif callable(emulator):
        m, s = emulator(u), None
    else:
        raise PosteriorError("the emulator must have predict(u, return_std=True) or be callable")
    m = np.asarray(m, dtype=float).reshape(u.shape[0], -1)
    s = np.zeros_like(m) if s is None else np.asarray(s, dtype=float).reshape(m.shape)
    return m, s


def _check_parameters(emulator: Any, space: ParameterSpace | None) -> None:
    labels = getattr(emulator, "parameters_", None)
    if space is not None and labels is not None and list(labels) != list(space.labels):
        missing = [p for p in space.labels if p not in labels]
        extra = [p for p in labels if p not in space.labels]
        raise PosteriorError(
            "the emulator was fitted to other parameters than the space being sampled"
            + (f"; the space has {missing[:5]} it lacks" if missing else "")
            + (f"; it has {extra[:5]} the space lacks" if extra else "")
            + ("" if missing or extra else "; same parameters in another order")
        )


class GaussianLikelihood:
    """Gaussian likelihood of observations given emulated (or exactly computed) outputs.

    ``log L = -1/2 sum_k [(y_k - m_k)^2 / v_k + log(2 pi v_k)]`` with
    ``v_k = sigma_k^2 + s_k(u)^2 + discrepancy_k^2``.

    Parameters
    ----------
    emulator : emulator or callable
        ``predict(u, return_std=True)`` giving (points, outputs) mean and sd (a
        :class:`~bayescal.emulators.GPEmulator` or :class:`~bayescal.emulators.SVDEmulator`), or a
        callable ``f(u) -> (points, outputs)`` for an exact, cheap model.
    observed : array_like, shape (outputs,)
    sigma : float or array_like
        Observation standard deviation(s).
    discrepancy : float or array_like
        Model-discrepancy standard deviation(s) (default 0).
    space : ParameterSpace, optional
        When given, the emulator's parameter labels must match the space's free labels.
    emulator_variance : bool
        Include the emulator's predictive variance (default True).
    """

    def __init__(
        self,
        emulator: Any,
        observed: Any,
        sigma: Any,
        discrepancy: Any = 0.0,
        space: ParameterSpace | None = None,
        emulator_variance: bool = True,
    ) -> None:
        _check_parameters(emulator, space)
        self.emulator = emulator
        self.observed = np.atleast_1d(np.asarray(observed, dtype=float))
        self.sigma = np.broadcast_to(np.asarray(sigma, dtype=float), self.observed.shape).copy()
        self.discrepancy = np.broadcast_to(np.asarray(discrepancy, dtype=float), self.observed.shape).copy()
        self.emulator_variance = emulator_variance
        if not np.all(np.isfinite(self.observed)):
            raise PosteriorError("observed values must be finite (drop missing observations)")
        if (
            np.any(self.sigma < 0)
            or np.any(self.discrepancy < 0)
            or np.any(self.sigma + self.discrepancy <= 0)
        ):
            raise PosteriorError("sigma and discrepancy must be >= 0 and not both zero")

    def __call__(self, u: np.ndarray) -> np.ndarray:
        m, s = _emulate(self.emulator, u, self.emulator_variance)
        if m.shape[1] != self.observed.size:
            raise PosteriorError(
                f"the emulator gives {m.shape[1]} outputs for {self.observed.size} observations"
            )
        v = self.sigma**2 + self.discrepancy**2 + s**2
        return -0.5 * (((self.observed - m) ** 2) / v + np.log(2 * np.pi * v)).sum(axis=1)

    def loglik_sd(self, u: np.ndarray) -> np.ndarray:
        """Sd of the log-likelihood over the emulator's predictive distribution, per point.

        With independent Gaussian emulator errors ``e_k ~ N(0, s_k^2)`` and ``v_k = sigma_k^2 +
        discrepancy_k^2``, ``Var log L = sum_k (r_k^2 s_k^2 + s_k^4 / 2) / v_k^2`` exactly
        (``r = y - m``).
        """
        m, s = _emulate(self.emulator, u, True)
        v = self.sigma**2 + self.discrepancy**2
        r = self.observed - m
        return np.sqrt((((r * s) ** 2 + 0.5 * s**4) / v**2).sum(axis=1))

    def emulator_ratio(self, u: np.ndarray) -> np.ndarray:
        """Largest ratio of emulator sd to the observation + discrepancy sd, per point."""
        _, s = _emulate(self.emulator, u, True)
        return (s / np.sqrt(self.sigma**2 + self.discrepancy**2)).max(axis=1)


class ScoreLikelihood:
    """Pseudo-likelihood ``exp(-misfit / T)`` of an emulated misfit (e.g. ``1 - AMBER score``).

    Parameters
    ----------
    emulator : GPEmulator or callable
        Emulator of the misfit (lower is better).
    temperature : float
        ``T``; see :func:`baseline_temperature` for the documented rule.
    space : ParameterSpace, optional
        Checks the emulator's parameter labels.
    emulator_variance : bool
        ``False`` (default): the target is the emulator's mean misfit, ``-m/T``. ``True``: the
        pessimistic target ``-(m + s)/T`` (the 84 % quantile of the misfit), which penalises
        uncertainty instead of rewarding it. The expectation ``-m/T + s^2/(2 T^2)`` is
        deliberately not offered (module docstring).
    """

    def __init__(
        self,
        emulator: Any,
        temperature: float,
        space: ParameterSpace | None = None,
        emulator_variance: bool = False,
    ) -> None:
        _check_parameters(emulator, space)
        if not temperature > 0:
            raise PosteriorError(f"temperature must be positive, got {temperature}")
        self.emulator = emulator
        self.temperature = float(temperature)
        self.emulator_variance = emulator_variance

    def __call__(self, u: np.ndarray) -> np.ndarray:
        m, s = _emulate(self.emulator, u, self.emulator_variance)
        return -(m[:, 0] + (s[:, 0] if self.emulator_variance else 0.0)) / self.temperature

    def loglik_sd(self, u: np.ndarray) -> np.ndarray:
        """Sd of the log-likelihood over the emulator's predictive distribution: ``s / T``."""
        _, s = _emulate(self.emulator, u, True)
        return s[:, 0] / self.temperature

    def emulator_ratio(self, u: np.ndarray) -> np.ndarray:
        return self.loglik_sd(u)


def baseline_temperature(baseline_misfits: Any) -> float:
    """Temperature from the baseline misfit: the misfit noise alone causes (DFO-LS paper).

    ``baseline_misfits`` are misfits of the true (or best) parameters against several noise
    realisations of the observations; the temperature is their mean. With it, parameter sets
    whose misfit exceeds the best by one baseline are ``e`` times less probable.
    """
    b = np.asarray(baseline_misfits, dtype=float)
    if b.size == 0 or not np.all(np.isfinite(b)) or b.mean() <= 0:
        raise PosteriorError("baseline misfits must be finite with a positive mean")
    return float(b.mean())


# ------------------------------------------------------------------------------------ sampler
def default_moves() -> list[tuple[emcee.moves.Move, float]]:
    """Differential evolution (80 %) and the stretch move (20 %).

    DE follows correlated ridges (ter Braak 2006); the stretch move (Goodman & Weare 2010)
    keeps proposals affine-invariant when DE's differences collapse. emcee's DE-snooker move is
    not used: with it (DE 0.8 / snooker 0.2) the pooled sd on an exact correlated Gaussian was
    0.966 of the truth over 4 seeds, against 1.002 for DE alone and 0.999 for this mix
    (``tests/test_posterior.py::test_default_moves_have_the_right_width``).
    """
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)]


class PosteriorSampler:
    """emcee ensemble sampler of ``prior x likelihood`` in unit-cube coordinates.

    Parameters
    ----------
    log_likelihood : callable
        ``f(u) -> (points,)`` log-likelihood of unit-cube points (vectorised), e.g. a
        :class:`GaussianLikelihood`.
    priors : Priors or ParameterSpace
        A ParameterSpace means uniform priors on its bounds.
    n_walkers : int, optional
        Default ``max(2 * n_parameters + 2, 32)``, rounded up to even; fewer than twice the
        dimension is an error.
    moves : list of (emcee move, weight), optional
        Default :func:`default_moves`.
    backend : path, optional
        emcee HDF5 backend file: every step is written; running again resumes from it.
    seed : int or numpy.random.Generator, optional
    """

    def __init__(
        self,
        log_likelihood: Callable[[np.ndarray], np.ndarray],
        priors: Priors | ParameterSpace,
        n_walkers: int | None = None,
        moves: list | None = None,
        backend: str | Path | None = None,
        seed: int | np.random.Generator | None = None,
    ) -> None:
        self.log_likelihood = log_likelihood
        self.priors = priors if isinstance(priors, Priors) else Priors(priors)
        self.space = self.priors.space
        d = self.space.n_free
        if n_walkers is None:
            n_walkers = max(2 * d + 2, 32)
            n_walkers += n_walkers % 2
        if n_walkers < 2 * d:
            raise PosteriorError(f"need at least 2 x {d} = {2 * d} walkers, got {n_walkers}")
        self.n_walkers = int(n_walkers)
        self.moves = moves
        self.backend_path = None if backend is None else Path(backend)
        self.seed = seed
        self._sampler: emcee.EnsembleSampler | None = None

    # ------------------------------------------------------------------ log-probability
    def log_prob(self, u: np.ndarray) -> np.ndarray:
        """(points, 3): log posterior, log-likelihood, log prior (the last two as emcee blobs)."""
        u = np.atleast_2d(u)
        lp = self.priors.logpdf(u)
        ll = np.full(u.shape[0], -np.inf)
        ok = np.isfinite(lp)
        if ok.any():
            ll[ok] = np.asarray(self.log_likelihood(u[ok]), dtype=float).reshape(-1)
        bad = ok & np.isnan(ll)
        if bad.any() or np.any(ll == np.inf):
            i = int(np.flatnonzero(bad | (ll == np.inf))[0])
            pars = dict(zip(self.space.labels, self.space.from_unit(u[i]).round(6).tolist(), strict=True))
            raise PosteriorError(f"log-likelihood is {ll[i]} (not finite) at {pars}")
        return np.column_stack([lp + ll, ll, lp])

    # ------------------------------------------------------------------ running
    def initial_state(
        self, candidates: np.ndarray | None = None, seed: int | np.random.Generator | None = None
    ):
        """Walkers at the best of ``candidates`` (unit cube, e.g. the design), or prior draws.

        With fewer distinct candidates than walkers, the rest are drawn in a small ball (1 % of
        the range) around the best ones.
        """
        rng = np.random.default_rng(seed)
        d = self.space.n_free
        if candidates is None:
            cand = self.priors.sample(4 * self.n_walkers, rng)
        else:
            cand = np.atleast_2d(np.asarray(candidates, dtype=float))
            if cand.shape[1] != d:
                raise PosteriorError(
                    f"initial points have {cand.shape[1]} parameters; the space has {d} free"
                )
            outside = np.flatnonzero(~np.isfinite(self.priors.logpdf(cand)))
            if outside.size:
                raise PosteriorError(
                    f"{outside.size} initial point(s) are outside the prior (first: point {outside[0]}); "
                    "walkers must start inside the unit cube where the prior is positive"
                )
        cand = np.unique(cand, axis=0)
        lp = self.log_prob(cand)[:, 0]
        order = np.argsort(-lp)
        best = cand[order[: self.n_walkers]]
        if best.shape[0] < self.n_walkers:
            extra = best[rng.integers(best.shape[0], size=self.n_walkers - best.shape[0])]
            extra = np.clip(extra + rng.normal(0, 0.01, extra.shape), 0, 1)
            best = np.vstack([best, extra])
        if not np.isfinite(self.log_prob(best)[:, 0]).all():
            raise PosteriorError("some initial walkers have zero posterior probability")
        return best

    def run(
        self, n_steps: int, initial: np.ndarray | None = None, progress: bool = False
    ) -> PosteriorSampler:
        """Run until the chain holds ``n_steps`` steps, continuing the chain this sampler already
        holds (in memory, or in its backend file after a restart).

        ``initial`` are candidate starting points (unit cube), e.g. the emulator's training
        design; the best ``n_walkers`` of them start the walkers.
        """
        # one BLAS thread: the sampler's linear algebra is on small matrices (walkers x training
        # runs), where OpenBLAS's threads cost more than they give, and many times more on a
        # busy machine (a 30-run SVD-GP step took 20x longer with 2 threads beside another job)
        with threadpool_limits(1, user_api="blas"):
            return self._run(n_steps, initial, progress)

    def _run(self, n_steps: int, initial: np.ndarray | None, progress: bool) -> PosteriorSampler:
        if self._sampler is not None and self._sampler.iteration:
            if self._sampler.iteration < n_steps:
                self._sampler.run_mcmc(None, n_steps - self._sampler.iteration, progress=progress, store=True)
            return self
        d = self.space.n_free
        backend = None
        done = 0
        if self.backend_path is not None:
            backend = emcee.backends.HDFBackend(str(self.backend_path))
            if self.backend_path.exists():
                try:
                    done = backend.iteration
                except (KeyError, AttributeError, OSError):
                    done = 0
                if done and backend.shape != (self.n_walkers, d):
                    raise PosteriorError(
                        f"checkpoint {self.backend_path} holds {backend.shape[0]} walkers x "
                        f"{backend.shape[1]} "
                        f"parameters; this sampler has {self.n_walkers} x {d}. Use another file."
                    )
            if not done:
                backend.reset(self.n_walkers, d)
        rng = np.random.default_rng(self.seed)
        sampler = emcee.EnsembleSampler(
            self.n_walkers,
            d,
            self.log_prob,
            vectorize=True,
            moves=self.moves or default_moves(),
            backend=backend,
        )
        self._sampler = sampler
        if done >= n_steps:
            return self
        start = None
        if not done:  # a resumed run continues with the random state stored in the checkpoint
            sampler.random_state = np.random.RandomState(int(rng.integers(2**31))).get_state()
            start = self.initial_state(initial, rng)
        sampler.run_mcmc(start, n_steps - done, progress=progress, store=True)
        return self

    def run_adaptive(
        self,
        max_steps: int = 20000,
        initial: np.ndarray | None = None,
        min_steps: int = 1000,
        factor: float = 50.0,
        progress: bool = False,
    ) -> PosteriorSampler:
        """Run until the chain is ``factor`` autocorrelation times long (emcee's advice).

        Starts with ``min_steps`` and extends the chain (by at least half its length) until it
        holds ``factor * max(tau)`` steps or ``max_steps``. A chain that is still too short is
        reported by :meth:`to_inference_data` as a :class:`PosteriorWarning`.
        """
        if min_steps > max_steps:
            raise PosteriorError(f"min_steps ({min_steps}) must not exceed max_steps ({max_steps})")
        self.run(min_steps, initial=initial, progress=progress)
        while self.iteration < max_steps:
            need = int(np.ceil(1.05 * factor * np.nanmax(self.autocorr_time())))
            if self.iteration >= need:
                break
            self.run(min(max_steps, max(need, self.iteration * 3 // 2)), progress=progress)
        return self

    @property
    def sampler(self) -> emcee.EnsembleSampler:
        if self._sampler is None:
            raise PosteriorError("run the sampler first")
        return self._sampler

    @property
    def iteration(self) -> int:
        return self.sampler.iteration

    def autocorr_time(self) -> np.ndarray:
        """Integrated autocorrelation time per parameter (no length check; see :meth:`to_inference_data`)."""
        return self.sampler.get_autocorr_time(tol=0)

    # ------------------------------------------------------------------ output
    def to_inference_data(
        self, burn: int | None = None, thin: int | None = None, n_prior: int = 2000, observed: Any = None
    ) -> az.InferenceData:
        """Posterior as ArviZ InferenceData in physical units.

        ``burn`` defaults to twice the largest autocorrelation time, ``thin`` to half the
        smallest (emcee's advice). A :class:`PosteriorWarning` is issued when the chain is
        shorter than 50 autocorrelation times.

        Groups: ``posterior`` (one variable per parameter family, per-PFT families on a
        ``<family>_group`` dimension; walkers are chains), ``sample_stats`` (``lp``,
        ``loglik``, ``log_prior``, ``acceptance_rate``), ``prior`` (``n_prior`` draws),
        ``observed_data`` (the likelihood's observations, when it has them) and
        ``constant_data`` (bounds).
        """
        s = self.sampler
        n = s.iteration
        tau = self.autocorr_time()
        if n < 50 * np.nanmax(tau):
            warnings.warn(
                f"chain of {n} steps is shorter than 50 autocorrelation times "
                f"(max tau {np.nanmax(tau):.1f}); "
                "estimates are unreliable - run longer",
                PosteriorWarning,
                stacklevel=2,
            )
        burn = int(2 * np.nanmax(tau)) if burn is None else int(burn)
        thin = max(1, int(0.5 * np.nanmin(tau))) if thin is None else int(thin)
        if burn >= n:
            burn = n // 2
        chain = s.get_chain(discard=burn, thin=thin)  # (draw, walker, d)
        blobs = s.get_blobs(discard=burn, thin=thin)  # (draw, walker, 2)
        lp = s.get_log_prob(discard=burn, thin=thin)
        u = np.swapaxes(chain, 0, 1)  # (chain, draw, d)
        post = _to_families(self.space, u)
        acc = np.broadcast_to(s.acceptance_fraction[:, None], u.shape[:2])
        sample_stats = {
            "lp": lp.T,
            "loglik": np.swapaxes(blobs[..., 0], 0, 1),
            "log_prior": np.swapaxes(blobs[..., 1], 0, 1),
            "acceptance_rate": acc,
        }
        prior_u = self.priors.sample(n_prior, self.seed)[None]
        obs = observed if observed is not None else getattr(self.log_likelihood, "observed", None)
        dims = {k: [f"{k}_group"] for k, v in post.items() if v.ndim == 3}
        coords = _family_coords(self.space)
        with warnings.catch_warnings():
            # emcee routinely has more walkers ("chains") than thinned draws
            warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
            idata = az.from_dict(
                posterior=post,
                sample_stats=sample_stats,
                prior=_to_families(self.space, prior_u),
                observed_data={"y": np.asarray(obs)} if obs is not None else None,
                constant_data={"lower": self.space.lower, "upper": self.space.upper},
                coords={
                    **coords,
                    "parameter": self.space.labels,
                    "observation": np.arange(np.size(obs)) if obs is not None else [0],
                },
                dims={**dims, "lower": ["parameter"], "upper": ["parameter"], "y": ["observation"]},
            )
        idata.posterior.attrs.update(
            burn=burn,
            thin=thin,
            n_steps=n,
            n_walkers=self.n_walkers,
            tau_max=float(np.nanmax(tau)),
            tau_min=float(np.nanmin(tau)),
            sampler="emcee",
            moves=str(self.moves or "DE 0.8 / stretch 0.2"),
        )
        units = {p.name: p.units for p in self.space}
        for var in idata.posterior.data_vars:
            idata.posterior[var].attrs["units"] = units.get(var, "")
        return idata


def _family_coords(space: ParameterSpace) -> dict[str, list[str]]:
    coords: dict[str, list[str]] = {}
    for lab in space.labels:
        fam, grp = split_label(lab)
        if grp:
            coords.setdefault(f"{fam}_group", []).append(grp)
    return coords


def _to_families(space: ParameterSpace, u: np.ndarray) -> dict[str, np.ndarray]:
    """Unit-cube samples (chain, draw, d) to physical values per family."""
    x = space.from_unit(u.reshape(-1, u.shape[-1])).reshape(u.shape)
    out: dict[str, list[int]] = {}
    vector: set[str] = set()
    for j, lab in enumerate(space.labels):
        fam, grp = split_label(lab)
        out.setdefault(fam, []).append(j)
        if grp:
            vector.add(fam)
    return {fam: (x[..., idx] if fam in vector else x[..., idx[0]]) for fam, idx in out.items()}


def unit_samples(idata: az.InferenceData, space: ParameterSpace, group: str = "posterior") -> xr.DataArray:
    """Samples of an InferenceData group as unit-cube values on (sample, parameter)."""
    ds = getattr(idata, group)
    cols = []
    for lab in space.labels:
        fam, grp = split_label(lab)
        if fam not in ds:
            raise PosteriorError(f"{group} has no variable {fam!r} for parameter {lab!r}")
        v = ds[fam].sel({f"{fam}_group": grp}) if grp else ds[fam]
        cols.append(v.values.reshape(-1))
    x = np.column_stack(cols)
    return xr.DataArray(space.to_unit(x), dims=("sample", "parameter"), coords={"parameter": space.labels})


# ---------------------------------------------------------------------------------- diagnostics
def diagnose(idata: az.InferenceData, rhat_max: float = 1.01, ess_min: float = 400) -> xr.Dataset:
    """R-hat, bulk and tail ESS per parameter value; warns when any is out of bounds.

    Walkers are treated as chains (as ``arviz.from_emcee`` does); emcee's walkers are not
    independent, so also look at the autocorrelation times in ``idata.posterior.attrs``.
    """
    post = idata.posterior
    rhat = az.rhat(post)
    ess_b = az.ess(post, method="bulk")
    ess_t = az.ess(post, method="tail")
    rows = []
    for var in post.data_vars:
        r, eb, et = rhat[var], ess_b[var], ess_t[var]
        if r.ndim:
            dim = r.dims[0]
            for k in range(r.sizes[dim]):
                rows.append((f"{var}[{r[dim].values[k]}]", float(r[k]), float(eb[k]), float(et[k])))
        else:
            rows.append((var, float(r), float(eb), float(et)))
    labels, r, eb, et = zip(*rows, strict=True)
    ds = xr.Dataset(
        {
            "r_hat": ("parameter", list(r)),
            "ess_bulk": ("parameter", list(eb)),
            "ess_tail": ("parameter", list(et)),
        },
        coords={"parameter": list(labels)},
    )
    bad_r = [lab for lab, v in zip(labels, r, strict=True) if not v <= rhat_max]
    bad_e = [lab for lab, v in zip(labels, eb, strict=True) if not v >= ess_min]
    if bad_r or bad_e:
        warnings.warn(
            (f"R-hat > {rhat_max} for {bad_r[:5]}; " if bad_r else "")
            + (f"bulk ESS < {ess_min:g} for {bad_e[:5]}; " if bad_e else "")
            + "run the chains longer before trusting these estimates",
            PosteriorWarning,
            stacklevel=2,
        )
    ds.attrs.update(rhat_max=rhat_max, ess_min=ess_min, ok=int(not (bad_r or bad_e)))
    return ds


def emulator_trust(
    u: Any, X_train: np.ndarray, likelihood: Any = None, ratio_max: float = 1.0, fraction_max: float = 0.1
) -> dict[str, float]:
    """Where does posterior mass sit relative to the emulator's training data?

    Returns the fractions of posterior samples (unit cube) that lie outside the training
    design's bounding box, that are farther from any training point than 95 % of training
    points are from their nearest neighbour (a cheap proxy for "outside the training hull"),
    and, with a likelihood that has ``emulator_ratio``, whose emulator sd exceeds ``ratio_max``
    times the likelihood's own scale. Warns when any fraction exceeds ``fraction_max``.
    """
    u = np.asarray(u.values if isinstance(u, xr.DataArray) else u, dtype=float)
    X = np.asarray(X_train, dtype=float)
    lo, hi = X.min(0), X.max(0)
    outside_box = float(np.mean(np.any((u < lo) | (u > hi), axis=1)))
    d_train = _nearest(X, X, exclude_self=True)
    d_post = _nearest(u, X)
    far = float(np.mean(d_post > np.quantile(d_train, 0.95)))
    out = {"outside_box": outside_box, "far_from_training": far}
    if likelihood is not None and hasattr(likelihood, "emulator_ratio"):
        out["emulator_uncertain"] = float(np.mean(likelihood.emulator_ratio(u) > ratio_max))
    bad = {k: v for k, v in out.items() if v > fraction_max}
    if bad:
        warnings.warn(
            f"posterior mass where the emulator is not trustworthy: {bad}; add simulator runs there "
            "(refine) before trusting the posterior",
            PosteriorWarning,
            stacklevel=2,
        )
    return out


def _nearest(A: np.ndarray, B: np.ndarray, exclude_self: bool = False, chunk: int = 2048) -> np.ndarray:
    out = np.empty(A.shape[0])
    b2 = (B * B).sum(1)
    for i in range(0, A.shape[0], chunk):
        a = A[i : i + chunk]
        d2 = (a * a).sum(1)[:, None] + b2[None] - 2 * a @ B.T
        if exclude_self:
            d2[np.arange(a.shape[0]), np.arange(i, i + a.shape[0])] = np.inf
        out[i : i + chunk] = np.sqrt(np.maximum(d2.min(1), 0))
    return out


def __getattr__(name: str) -> Any:
    # refine and Refinement live in bayescal.refinement (which imports this module)
    if name in ("refine", "Refinement"):
        from . import refinement

        return getattr(refinement, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
