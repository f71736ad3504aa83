"""The posterior in the likelihood-informed subspace (step 3 of :mod:`.history_matching`).

With the uniform prior mapped to a standard normal ``z = Phi^-1(u)``, the directions of the
expected Gauss-Newton Hessian ``H = E[J^T V^-1 J]`` with the largest eigenvalues are sampled with
emcee (Cui et al. 2014; Zahm et al. 2022); the others keep their prior, and their linearised
effect on each summary is added to its variance (``complement_sd``), so no value is fixed or
dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import emcee
import numpy as np
from scipy.special import ndtr, ndtri
from threadpoolctl import threadpool_limits

from .backends import HDFBackend, kept_open
from .diagnostics import integrated_time
from .sampler import default_moves, progress_bar

__all__ = ["Subspace", "SubspacePosterior", "informed_subspace", "subspace_posterior"]


# ------------------------------------------------------------------ likelihood-informed subspace
@dataclass
class Subspace:
    """Likelihood-informed directions in the prior-whitened coordinates ``z = Phi^-1(u)``.

    Attributes
    ----------
    basis : ndarray (d, r)
        Orthonormal informed directions (columns), largest eigenvalue first.
    eigenvalues : ndarray (d,)
        Of the expected Gauss-Newton Hessian ``E[J^T V^-1 J]`` (nats per unit prior sd squared).
    complement_sd : ndarray (k,)
        Sd of each summary over the prior of the other directions (linearised): the noise floor
        they add to the likelihood.
    """

    basis: np.ndarray
    eigenvalues: np.ndarray
    complement_sd: np.ndarray

    @property
    def rank(self) -> int:
        return int(self.basis.shape[1])

    def to_unit(self, a: np.ndarray, xi: np.ndarray | None = None) -> np.ndarray:
        """Unit-cube points from informed coordinates ``a`` (n, r); the other directions at their
        prior mean, or from prior draws ``xi`` (n, d) projected onto them."""
        z = np.atleast_2d(a) @ self.basis.T
        if xi is not None:
            z = z + xi - (xi @ self.basis) @ self.basis.T
        return ndtr(z)


def _clip_unit(u: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    return np.clip(u, eps, 1 - eps)


def _jacobian_z(emulator: Any, u: np.ndarray, h: float = 1e-4) -> np.ndarray:
    """d mean / d z at unit-cube points (m, k, d) by one-sided differences in u (one predict call)."""
    u = _clip_unit(np.atleast_2d(u))
    m, d = u.shape
    step = np.where(u + h <= 1.0, h, -h)  # (m, d)
    pts = np.repeat(u[:, None, :], d + 1, axis=1)
    idx = np.arange(d)
    pts[:, idx + 1, idx] += step
    f = np.asarray(emulator.predict(pts.reshape(-1, d)), float).reshape(m, d + 1, -1)
    J_u = (f[:, 1:, :] - f[:, :1, :]) / step[:, :, None]  # (m, d, k)
    dens = np.exp(-0.5 * ndtri(u) ** 2) / np.sqrt(2 * np.pi)  # du/dz
    return np.swapaxes(J_u * dens[:, :, None], 1, 2)


def informed_subspace(emulator: Any, points: np.ndarray, sigma: Any, discrepancy: Any = 0.0,
                      floor: float = 0.3, max_rank: int | None = None) -> Subspace:
    """The fewest directions whose complement adds at most ``floor`` sigma to any summary.

    Parameters
    ----------
    emulator : emulator
        Of the summaries, ``predict(u)`` and ``predict(u, return_std=True)``.
    points : ndarray (m, d)
        Unit-cube points where the posterior lives (e.g. the best of the final region); the
        Hessian and the complement's effect are averaged over them.
    sigma, discrepancy : array_like (k,)
    floor : float
        Largest complement sd allowed, in units of each summary's sigma.
    max_rank : int, optional
        Upper bound on the rank (default: d).
    """
    J = _jacobian_z(emulator, points)  # (m, k, d)
    _, s = emulator.predict(_clip_unit(points), return_std=True)
    sig = np.broadcast_to(np.asarray(sigma, float), s.shape[1:])
    v = sig**2 + np.asarray(discrepancy, float) ** 2 + s**2  # (m, k)
    H = np.einsum("mkd,mk,mke->de", J, 1.0 / v, J) / J.shape[0]
    lam, V = np.linalg.eigh(H)
    lam, V = lam[::-1], V[:, ::-1]
    B2 = np.einsum("mkd,de->mke", J, V) ** 2  # squared effect of each direction per point/summary
    tail = np.cumsum(B2[..., ::-1], axis=-1)[..., ::-1].mean(0)  # (k, d): sum over j >= r
    tail = np.concatenate([tail, np.zeros((tail.shape[0], 1))], axis=1)
    comp_sd = np.sqrt(tail)  # column r: complement of the first r directions
    good = np.flatnonzero(np.all(comp_sd <= floor * sig[:, None], axis=0))
    r = int(good[0]) if good.size else V.shape[1]
    r = max(1, min(r, max_rank or V.shape[1]))
    return Subspace(V[:, :r], lam, comp_sd[:, r])


@dataclass
class SubspacePosterior:
    """Result of :func:`subspace_posterior`.

    Attributes
    ----------
    u : ndarray (chains, draws, d)
        Posterior samples of every value (unit cube): informed directions from the chain, the
        others drawn from their prior.
    loglik : ndarray (chains, draws)
        Emulated log-likelihood of the informed coordinates of each sample.
    subspace : Subspace
    tau : ndarray (r,)
        Integrated autocorrelation times of the informed coordinates.
    n_steps, burn, thin : int
    emulator_sd : ndarray (k,)
        The emulator sd used in the likelihood (its rms over the starting points).
    """

    u: np.ndarray
    loglik: np.ndarray
    subspace: Subspace
    tau: np.ndarray
    n_steps: int
    burn: int
    thin: int
    emulator_sd: np.ndarray

    @property
    def converged(self) -> bool:
        """The chain is at least 50 autocorrelation times long."""
        return bool(self.n_steps >= 50 * np.nanmax(self.tau))


def subspace_posterior(emulator: Any, observed: Any, sigma: Any, subspace: Subspace, start: np.ndarray,
                       discrepancy: Any = 0.0, n_walkers: int | None = None, min_steps: int = 1000,
                       max_steps: int = 6000, seed: int | None = 0,
                       backend_path: str | Path | None = None, progress: bool = False) -> SubspacePosterior:
    """emcee on the emulated Gaussian likelihood in the informed subspace (module docstring).

    ``log p(a) = -|a|^2/2 - 1/2 sum_k (z_k - m_k(u(a)))^2 / v_k`` with ``v = sigma^2 +
    discrepancy^2 + s_k^2 + complement_sd^2`` (emulator sd ``s`` fixed at its rms over ``start``
    so each step needs only the emulator mean). The chain grows from ``min_steps`` by half its
    length until it is 50 autocorrelation times long or ``max_steps``. With ``backend_path``
    every step is kept in an emcee HDF5 file and a killed run resumes from it, bit for bit (each
    length decision reads only the steps up to the length it decides on). ``progress`` shows
    emcee's progress bar (steps, rate, ETA) for each stretch of the chain.
    """
    with threadpool_limits(1, user_api="blas"):
        return _subspace_posterior(emulator, observed, sigma, subspace, start, discrepancy, n_walkers,
                                   min_steps, max_steps, seed, backend_path, progress)


def _backend(path: str | Path | None, n_walkers: int, r: int) -> tuple[Any, int]:
    """An emcee HDF5 backend at ``path`` and the steps it holds (a damaged or other-shaped file
    is started afresh)."""
    if path is None:
        return None, 0
    path = Path(path)
    backend = HDFBackend(str(path))
    done = 0
    if path.exists():
        try:
            done = backend.whole_iteration() if backend.shape == (n_walkers, r) else 0
        except PermissionError:  # this user's, not the file's: said, the chain kept
            raise
        except (KeyError, AttributeError, OSError, ValueError):
            done = 0
    if not done:
        path.unlink(missing_ok=True)
        backend.reset(n_walkers, r)
    return backend, done


def _subspace_posterior(emulator, observed, sigma, subspace, start, discrepancy, n_walkers, min_steps,
                        max_steps, seed, backend_path=None, progress=False) -> SubspacePosterior:
    rng = np.random.default_rng(seed)
    obs = np.atleast_1d(np.asarray(observed, float))
    _, s = emulator.predict(_clip_unit(start), return_std=True)
    s_rms = np.sqrt((s**2).mean(0))
    v = (np.broadcast_to(np.asarray(sigma, float), obs.shape) ** 2 + np.asarray(discrepancy, float) ** 2
         + s_rms**2 + subspace.complement_sd**2)

    def log_prob(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m = np.asarray(emulator.predict(_clip_unit(subspace.to_unit(a))), float)
        ll = -0.5 * (((obs - m) ** 2) / v).sum(1)
        return np.column_stack([ll - 0.5 * (a**2).sum(1), ll])

    r = subspace.rank
    n_walkers = n_walkers or max(2 * r + 2, 32)
    a0 = ndtri(_clip_unit(start)) @ subspace.basis
    lp0 = log_prob(a0)[:, 0]
    a0 = a0[np.argsort(-lp0)[:n_walkers]]
    if a0.shape[0] < n_walkers:
        extra = a0[rng.integers(a0.shape[0], size=n_walkers - a0.shape[0])]
        a0 = np.vstack([a0, extra + 0.01 * rng.standard_normal(extra.shape)])
    backend, done = _backend(backend_path, n_walkers, r)
    sampler = emcee.EnsembleSampler(n_walkers, r, log_prob, vectorize=True, moves=default_moves(),
                                    backend=backend)
    sampler.log_prob_fn = log_prob  # directly: emcee's wrapper prints every walker on an exception
    state_seed = int(rng.integers(2**31))  # drawn either way: a resumed run uses the rng alike
    if not done:  # a resumed chain continues with the random state its backend stored
        sampler.random_state = np.random.RandomState(state_seed).get_state()
    target = min_steps
    while True:
        if sampler.iteration < target:
            init = None if sampler.iteration else a0
            with kept_open(backend):
                sampler.run_mcmc(init, target - sampler.iteration,
                                 **progress_bar(progress, sampler.iteration, target))
        if target >= max_steps:
            break
        tau = integrated_time(sampler.get_chain()[:target])
        need = int(np.ceil(1.05 * 50 * np.nanmax(tau)))
        if target >= need:
            break
        target = min(max_steps, max(need, target * 3 // 2))
    return _subspace_result(sampler, subspace, s_rms, rng, target)


def _subspace_result(sampler: emcee.EnsembleSampler, subspace: Subspace, s_rms: np.ndarray,
                     rng: np.random.Generator, n: int) -> SubspacePosterior:
    """The chain's first ``n`` steps: burn-in 2 tau_max, thinning tau_min / 2; the complement
    drawn from its prior per sample."""
    chain = sampler.get_chain()[:n]
    tau = integrated_time(chain)
    burn = min(int(2 * np.nanmax(tau)), n // 2)
    thin = max(1, int(0.5 * np.nanmin(tau)))
    a = np.swapaxes(chain[burn::thin], 0, 1)  # (chains, draws, r)
    blobs = np.asarray(sampler.get_blobs()[:n], float)[burn::thin]
    ll = np.swapaxes(blobs, 0, 1).reshape(a.shape[:2])
    flat = a.reshape(-1, a.shape[-1])
    xi = rng.standard_normal((flat.shape[0], subspace.basis.shape[0]))
    u = subspace.to_unit(flat, xi).reshape(a.shape[0], a.shape[1], -1)
    return SubspacePosterior(u, ll, subspace, tau, n, burn, thin, s_rms)
