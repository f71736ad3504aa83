"""Tempered sequential Monte Carlo: a posterior with separated arms or modes, each with its mass.

An emcee chain started in one part of a posterior stays there when another part is separated
from it by a valley (the REFLEX-shaped living twin of docs/site.md: an arm where p8 is low and p9
high, a third of the posterior, that a chain started at the maximum-likelihood point never reached
in 80 autocorrelation times).
Tempering reaches such parts from the prior: particles drawn from the prior are moved through
the bridge ``prior(u) L(u)^beta`` from ``beta = 0`` to 1, reweighted and resampled at each step
(Del Moral, Doucet & Jasra 2006, J. R. Stat. Soc. B 68, 411; the adaptive schedule of Jasra et al.
2011, Scand. J. Stat. 38, 1: each step's ``beta`` keeps the effective sample size at a fixed
fraction). Mass moves between parts through the weights, not through MCMC crossing a valley.

The MCMC kernel at each temperature is differential-evolution Metropolis (ter Braak 2006,
Stat. Comput. 16, 239) on two halves in turn, each half's proposals built from the other half, so
each half-step is an exact Metropolis step given the other half. It runs until the particles have
made ``n_moves`` accepted moves on average. ``particles`` (Chopin's library, the usual Python
implementation) pins numpy < 2, so it cannot be a dependency here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.special import logsumexp

from ..parameters import ParameterSpace
from .priors import Priors

__all__ = ["TemperedSMC", "tempered_smc"]


@dataclass(frozen=True)
class TemperedSMC:
    """The result of :func:`tempered_smc`.

    Attributes
    ----------
    particles : ndarray (n, d)
        Equally weighted draws of the posterior, unit cube.
    log_likelihood : ndarray (n,)
    log_evidence : float
        The estimate of ``log integral prior(u) L(u) du``.
    betas : ndarray
        The temperatures, 0 first, 1 last.
    acceptance : ndarray
        The Metropolis acceptance rate at each temperature after the first.
    n_evaluations : int
        Log-likelihood evaluations (model runs on the direct route).
    """

    particles: np.ndarray
    log_likelihood: np.ndarray
    log_evidence: float
    betas: np.ndarray
    acceptance: np.ndarray
    n_evaluations: int

    def walkers(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` distinct particles at random: an emcee ensemble's start spread as the posterior is
        (ValueError when fewer than ``n`` particles are distinct)."""
        distinct = np.unique(self.particles, axis=0)
        if len(distinct) < n:
            raise ValueError(f"{len(distinct)} distinct particles, fewer than the {n} walkers: use more "
                             "particles")
        rng = np.random.default_rng(seed)
        return distinct[np.sort(rng.choice(len(distinct), n, replace=False))]

    def to_netcdf(self, path: str | Path, labels: list[str] | None = None) -> None:
        """Save (netCDF via h5netcdf): ``particles`` (particle, parameter; unit-cube values, the
        ``parameter`` coordinate the space's ``labels`` when given), ``log_likelihood``, ``beta``
        and ``acceptance`` (temperature); the evidence and evaluations as attributes."""
        acc = np.concatenate([[np.nan], self.acceptance])  # none at beta = 0
        coords = {} if labels is None else {"parameter": list(labels)}
        cube = {"units": "1", "long_name": "the parameter space's [0, 1] values (ParameterSpace.to_unit)"}
        xr.Dataset({"particles": (("particle", "parameter"), self.particles, cube),
                    "log_likelihood": ("particle", self.log_likelihood),
                    "beta": ("temperature", self.betas), "acceptance": ("temperature", acc)},
                   attrs={"log_evidence": self.log_evidence, "n_evaluations": self.n_evaluations,
                          "method": "adaptive tempered SMC (bayescal.posterior.smc)"}, coords=coords,
                   ).to_netcdf(path, engine="h5netcdf")

    @classmethod
    def from_netcdf(cls, path: str | Path) -> TemperedSMC:
        """What :meth:`to_netcdf` saved."""
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            return cls(ds["particles"].values, ds["log_likelihood"].values, float(ds.attrs["log_evidence"]),
                       ds["beta"].values, ds["acceptance"].values[1:], int(ds.attrs["n_evaluations"]))


def tempered_smc(log_likelihood: Callable[[np.ndarray], np.ndarray], priors: Priors | ParameterSpace, *,
                 n_particles: int = 2000, ess: float = 0.5, n_moves: float = 10.0, max_mcmc_steps: int = 200,
                 seed: int | np.random.Generator | None = None,
                 say: Callable[[str], None] | None = None,
                 checkpoint: str | Path | None = None) -> TemperedSMC:
    """Draws of ``prior x likelihood`` on the unit cube by adaptive likelihood tempering.

    Parameters
    ----------
    log_likelihood : callable
        ``f(u (k, d)) -> (k,)``, vectorised over points; ``-inf`` or NaN marks a failed run.
    priors : Priors or ParameterSpace
        A ParameterSpace means uniform priors on its bounds.
    n_particles : int
        Particles (each temperature's MCMC step runs the likelihood at each).
    ess : float
        Each temperature step keeps this fraction of ``n_particles`` as effective sample size.
    n_moves : float
        Mean accepted Metropolis moves per particle at each temperature.
    max_mcmc_steps : int
        Metropolis steps at one temperature at most (a warning-free cap: the acceptance rates
        are returned).
    seed : int or Generator, optional
    say : callable, optional
        Receives one line per temperature.
    checkpoint : path, optional
        The state after each temperature (particles, temperatures, the random generator's state)
        is saved there; a call that finds it continues from it (same arguments), and its result
        is bit for bit the uninterrupted one's. The file stays after the last temperature.
    """
    priors = priors if isinstance(priors, Priors) else Priors(priors)
    if not 0 < ess < 1:
        raise ValueError(f"ess must be in (0, 1), got {ess}")
    rng = np.random.default_rng(seed)
    target = _Target(log_likelihood, priors)
    state = _load_state(checkpoint, n_particles, priors.n, rng) if checkpoint else None
    if state is None:
        u = priors.sample(n_particles, rng)
        ll = target.loglik(u)
        betas, acc, log_z, scale = [0.0], [], 0.0, 1.0
    else:
        u, ll, betas, acc, log_z, scale, target.n_evaluations = state
    while betas[-1] < 1.0:
        beta = _next_beta(ll, betas[-1], ess * n_particles)
        logw = np.where(np.isfinite(ll), (beta - betas[-1]) * ll, -np.inf)
        log_z += logsumexp(logw) - np.log(n_particles)
        keep = _systematic(np.exp(logw - logsumexp(logw)), rng)
        u, ll = u[keep], ll[keep]
        u, ll, a, scale = _move(target, u, ll, beta, n_moves, max_mcmc_steps, scale, rng)
        betas.append(beta)
        acc.append(a)
        if checkpoint:
            _save_state(checkpoint, u, ll, betas, acc, log_z, scale, target.n_evaluations, rng)
        if say is not None:
            say(f"beta {beta:.3g}: acceptance {a:.2f}, {target.n_evaluations} evaluations")
    return TemperedSMC(u, ll, float(log_z), np.array(betas), np.array(acc), target.n_evaluations)


def _save_state(path, u, ll, betas, acc, log_z, scale, n_evaluations, rng) -> None:
    """The SMC's state after a temperature, complete or absent (written aside, then renamed)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    xr.Dataset({"particles": (("particle", "parameter"), u), "log_likelihood": ("particle", ll),
                "beta": ("temperature", np.asarray(betas)),
                "acceptance": ("temperature", np.concatenate([[np.nan], acc]))},
               attrs={"log_evidence": log_z, "scale": scale, "n_evaluations": n_evaluations,
                      "rng_state": json.dumps(rng.bit_generator.state)}).to_netcdf(tmp, engine="h5netcdf")
    tmp.replace(path)


def _load_state(path, n_particles: int, d: int, rng: np.random.Generator):
    """The state :func:`_save_state` wrote (``rng`` set to its generator's state), or None: no
    file, or one of another number of particles or values (then overwritten)."""
    path = Path(path)
    if not path.is_file():
        return None
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        if ds["particles"].shape != (n_particles, d):
            return None
        rng.bit_generator.state = json.loads(ds.attrs["rng_state"])
        return (ds["particles"].values.copy(), ds["log_likelihood"].values.copy(), list(ds["beta"].values),
                list(ds["acceptance"].values[1:]), float(ds.attrs["log_evidence"]), float(ds.attrs["scale"]),
                int(ds.attrs["n_evaluations"]))


class _Target:
    """The tempered log-density's two parts, counting likelihood evaluations."""

    def __init__(self, log_likelihood: Callable, priors: Priors) -> None:
        self.f, self.priors, self.n_evaluations = log_likelihood, priors, 0

    def loglik(self, u: np.ndarray) -> np.ndarray:
        out = np.full(len(u), -np.inf)
        inside = np.all((u > 0) & (u < 1), axis=1)
        if inside.any():
            ll = np.asarray(self.f(u[inside]), dtype=float)
            out[inside] = np.where(np.isnan(ll), -np.inf, ll)
            self.n_evaluations += int(inside.sum())
        return out


def _next_beta(ll: np.ndarray, beta: float, ess_target: float) -> float:
    """The largest next temperature (<= 1) whose incremental weights keep ``ess_target``."""
    finite = ll[np.isfinite(ll)]

    def ess_at(b: float) -> float:
        lw = (b - beta) * (finite - finite.max())
        w = np.exp(lw)
        return w.sum() ** 2 / (w ** 2).sum()

    if len(finite) == 0:
        raise ValueError("tempered_smc: the log-likelihood is -inf or NaN at every particle")
    if ess_at(1.0) >= ess_target:
        return 1.0
    lo, hi = beta, 1.0
    for _ in range(60):  # bisection to ~1e-18 of the interval
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ess_at(mid) >= ess_target else (lo, mid)
    return max(lo, np.nextafter(beta, 1.0))


def _systematic(w: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Systematic resampling: indices of ``len(w)`` draws with probabilities ``w``."""
    n = len(w)
    positions = (rng.random() + np.arange(n)) / n
    return np.minimum(np.searchsorted(np.cumsum(w), positions), n - 1)


def _move(target: _Target, u: np.ndarray, ll: np.ndarray, beta: float, n_moves: float, max_steps: int,
          scale: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float, float]:
    """DE Metropolis in random subspaces on ``prior x L^beta`` until ``n_moves`` mean accepted moves.

    Each half of the particles proposes ``x + gamma m (x_a - x_b)`` from two particles of the other
    half, ``m`` a random mask (each coordinate with a crossover probability drawn from 1/3, 2/3,
    1; DREAM, Vrugt et al. 2009) and ``gamma = scale 2.38 / sqrt(2 d')`` (1 one time in ten).
    ``scale`` is tuned between steps towards an acceptance of 0.25; returns the particles, their
    log-likelihoods, the acceptance rate and the last scale.
    """
    n, d = u.shape
    lp = target.priors.logpdf(u)
    accepted, tried = 0.0, 0
    while accepted / n < n_moves and tried < max_steps:
        perm, acc_step = rng.permutation(n), 0
        for half, other in ((perm[: n // 2], perm[n // 2:]), (perm[n // 2:], perm[: n // 2])):
            m = len(half)
            a, b = rng.choice(other, m), rng.choice(other, m)
            mask = rng.random((m, d)) < rng.choice([1 / 3, 2 / 3, 1.0], m)[:, None]
            mask[np.arange(m), rng.integers(0, d, m)] = True
            gamma = np.where(rng.random(m) < 0.1, 1.0, scale * 2.38 / np.sqrt(2 * mask.sum(1)))[:, None]
            prop = u[half] + mask * (gamma * (u[a] - u[b]) + 1e-6 * rng.standard_normal((m, d)))
            ll_p = target.loglik(prop)
            lp_p = np.where(np.isfinite(ll_p), target.priors.logpdf(np.clip(prop, 0, 1)), -np.inf)
            log_ratio = beta * (ll_p - ll[half]) + lp_p - lp[half]
            ok = np.isfinite(ll_p) & (np.log(rng.random(m)) < np.nan_to_num(log_ratio, nan=-np.inf))
            idx = half[ok]
            u[idx], ll[idx], lp[idx] = prop[ok], ll_p[ok], lp_p[ok]
            acc_step += ok.sum()
        accepted += acc_step
        scale = float(np.clip(scale * np.exp(2 * (acc_step / n - 0.25)), 1e-3, 2.0))
        tried += 1
    return u, ll, accepted / (n * max(tried, 1)), scale
