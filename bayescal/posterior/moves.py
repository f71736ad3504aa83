"""emcee moves: the default mix of emcee's own (DE + stretch) and how moves are written in a
posterior's attributes; beyond emcee's own, differential evolution in random subspaces (DREAM's
crossover) and independence proposals from a mixture fitted to a pilot chain.

On the exact posterior of a DALEC twin (a thin, curved ridge in 11 dimensions; emcee's DE +
stretch moves accept ~1 % of proposals) :class:`DESubspaceMove` with ``scale`` 0.5 moves the chain
3.3 times as far per model run (mean squared jump, whitened; ``python benchmarks/bench_site_moves.py``,
docs/site.md).
"""

from __future__ import annotations

import emcee
import numpy as np
from emcee.moves.mh import MHMove
from emcee.moves.red_blue import RedBlueMove
from scipy.special import expit

__all__ = ["DESubspaceMove", "IndependenceMove", "default_moves", "describe_moves"]


def default_moves() -> list[tuple[emcee.moves.Move, float]]:
    """Differential evolution (80 %) and the stretch move (20 %).

    DE follows correlated ridges (ter Braak 2006); the stretch move (Goodman & Weare 2010)
    keeps proposals affine-invariant when DE's differences collapse. emcee's DE-snooker move is
    not used: with it (DE 0.8 / snooker 0.2) the pooled sd on an exact correlated Gaussian was
    0.966 of the truth over 4 seeds, against 1.002 for DE alone and 0.999 for this mix
    (``tests/test_posterior.py::test_default_moves_have_the_right_width``).
    """
    return [(emcee.moves.DEMove(), 0.8), (emcee.moves.StretchMove(), 0.2)]


def describe_moves(moves) -> str:
    """The moves as text for the InferenceData's attributes: each move's own ``repr`` if it has
    one, else its class name, with its weight; never an object's address (the file must be the
    same bits on every run)."""
    items = default_moves() if not moves else moves
    items = [items] if isinstance(items, emcee.moves.Move) else list(items)
    items = [m if isinstance(m, tuple) else (m, 1.0) for m in items]
    names = [repr(m) if type(m).__repr__ is not object.__repr__ else type(m).__name__ for m, _ in items]
    return " / ".join(f"{name} {w:g}" for name, (_, w) in zip(names, items, strict=True))


class DESubspaceMove(RedBlueMove):
    """Differential evolution along a random subset of the coordinates (DREAM's crossover).

    Each walker's proposal is ``x + gamma * m * (x_j - x_k)`` with ``x_j``, ``x_k`` two different
    walkers of the complementary half-ensemble and ``m`` a random 0/1 mask: each coordinate is
    moved with probability ``CR``, drawn per proposal from ``crossover`` (at least one coordinate
    moves). ``gamma = scale * 2.38 / sqrt(2 d')`` for the ``d'`` coordinates moved (ter Braak 2006;
    Vrugt et al. 2009), and ``gamma = 1`` with probability ``jump`` (a jump between modes). The
    mask and ``gamma`` do not depend on ``x`` and the difference is symmetric in distribution, so
    the proposal is symmetric: the move keeps the target invariant, as emcee's ``DEMove`` does.

    Parameters
    ----------
    scale : float, default 0.5
        Multiplies DREAM's optimal ``2.38 / sqrt(2 d')``; below 1 on thin ridges, where full
        DE steps are almost all rejected.
    crossover : sequence of float, default (1/3, 2/3, 1)
        The crossover probabilities ``CR``, each drawn with equal chance.
    jump : float, default 0.1
        Probability of ``gamma = 1``.
    sigma : float, default 1e-6
        sd of a Gaussian jitter on the moved coordinates (keeps the chain irreducible).
    """

    def __init__(self, scale: float = 0.5, crossover: tuple[float, ...] = (1 / 3, 2 / 3, 1.0),
                 jump: float = 0.1, sigma: float = 1e-6, **kwargs) -> None:
        if not scale > 0 or not 0 <= jump <= 1 or not all(0 < c <= 1 for c in crossover):
            raise ValueError("scale must be > 0, jump in [0, 1] and every crossover in (0, 1]")
        self.scale, self.jump, self.sigma = float(scale), float(jump), float(sigma)
        self.crossover = np.asarray(crossover, dtype=float)
        super().__init__(**kwargs)

    def __repr__(self) -> str:
        cr = ", ".join(f"{c:.3g}" for c in self.crossover)
        return (f"DESubspaceMove(scale={self.scale:g}, crossover=({cr}), jump={self.jump:g}, "
                f"sigma={self.sigma:g})")

    def get_proposal(self, s: np.ndarray, c: list[np.ndarray], random) -> tuple[np.ndarray, np.ndarray]:
        """Proposals for the walkers ``s`` from the complementary ensemble ``c`` (emcee's API;
        ``random`` is the sampler's ``numpy.random.RandomState``)."""
        c = np.concatenate(c, axis=0)
        ns, nc, d = s.shape[0], c.shape[0], s.shape[1]
        j = random.randint(nc, size=ns)
        k = (j + 1 + random.randint(nc - 1, size=ns)) % nc  # a second, different walker
        cr = self.crossover[random.randint(self.crossover.size, size=ns)]
        mask = random.random_sample((ns, d)) < cr[:, None]
        none = ~mask.any(axis=1)
        mask[np.flatnonzero(none), random.randint(d, size=int(none.sum()))] = True
        gamma = self.scale * 2.38 / np.sqrt(2.0 * mask.sum(axis=1))
        gamma = np.where(random.random_sample(ns) < self.jump, 1.0, gamma)
        step = gamma[:, None] * (c[j] - c[k]) + self.sigma * random.standard_normal((ns, d))
        return s + mask * step, np.zeros(ns)


class IndependenceMove(MHMove):
    """Independence Metropolis-Hastings from a Student-t mixture fitted to earlier draws.

    Every walker proposes a fresh point ``u' ~ q`` whatever its position ``u``, accepted with
    probability ``min(1, p(u') q(u) / (p(u) q(u')))``. ``q`` is a mixture of multivariate
    Student-t densities in logit coordinates of the unit cube (so every proposal is inside the
    cube), with the means and covariances of a Gaussian mixture (scikit-learn's
    ``GaussianMixture``) fitted by :meth:`fit` to draws of a pilot chain, covariances inflated
    by ``inflate**2`` and heavy tails (``df``) so that the tails the pilot missed stay reachable.
    Once fitted, ``q`` is fixed: the chain that follows is a Markov chain with the posterior as
    its stationary distribution, whatever the fit's quality (a poor fit only lowers acceptance).
    Where ``q`` is close to the posterior, accepted proposals jump across it in one step: at
    DE-Hai (18 DALEC values), mixed 1:1 with :class:`DESubspaceMove` and fitted as the site
    route does, the autocorrelation time falls from ~1,000 steps (DE moves alone) to ~200
    (``python benchmarks/bench_site_direct.py``, docs/site.md).

    Parameters
    ----------
    n_components : int, default 4
        Mixture components (fewer when the pilot has fewer than ``20 * d`` draws per component).
    df : float, default 5
        Degrees of freedom of each Student-t component.
    inflate : float, default 1.2
        Scale factor of each component's covariance's square root.
    seed : int, default 0
        Seed of the mixture fit (k-means initialisation): the same pilot gives the same ``q``.
    """

    def __init__(self, n_components: int = 4, df: float = 5.0, inflate: float = 1.2, seed: int = 0) -> None:
        if n_components < 1 or not df > 0 or not inflate > 0:
            raise ValueError("n_components must be >= 1, df > 0 and inflate > 0")
        self.n_components, self.df, self.inflate = int(n_components), float(df), float(inflate)
        self.seed = seed
        super().__init__(self._proposal)

    def __repr__(self) -> str:
        return (f"IndependenceMove(n_components={self.n_components}, df={self.df:g}, "
                f"inflate={self.inflate:g}, seed={self.seed})")

    def fit(self, u: np.ndarray) -> IndependenceMove:
        """Fit ``q`` to unit-cube draws ``u`` (n, d) of a pilot chain; returns self."""
        from sklearn.mixture import GaussianMixture
        from threadpoolctl import threadpool_limits

        u = np.asarray(u, dtype=float)
        if u.ndim != 2 or u.shape[0] < 2 * u.shape[1] + 2:
            raise ValueError(f"need at least 2 d + 2 draws (n, d) to fit the proposal, got shape {u.shape}")
        y = _logit(np.clip(u, _EDGE, 1 - _EDGE))  # draws on a face: fitted as 1e-12 inside it
        k = int(max(1, min(self.n_components, u.shape[0] // (20 * u.shape[1]))))
        with threadpool_limits(1):  # BLAS and OpenMP (k-means' sums): the same bits on every machine
            gm = GaussianMixture(k, covariance_type="full", reg_covar=1e-6, random_state=self.seed).fit(y)
        self.weights_, self.means_ = gm.weights_, gm.means_
        self.chol_ = np.linalg.cholesky(gm.covariances_) * self.inflate
        self.n_features_in_ = u.shape[1]
        return self

    def logpdf(self, u: np.ndarray) -> np.ndarray:
        """log q(u) (unit-cube density: the logit's Jacobian included; -inf on the cube's faces)."""
        from scipy.special import gammaln

        u = np.atleast_2d(np.asarray(u, dtype=float))
        inside = ((u > 0) & (u < 1)).all(axis=1)
        u = np.where(inside[:, None], u, 0.5)  # a face's density is set to -inf below
        y, d, df = _logit(u), u.shape[1], self.df
        z = np.linalg.solve(self.chol_[None], (y[:, None, :] - self.means_[None])[..., None])[..., 0]
        m = (z**2).sum(-1)  # (n, k) squared Mahalanobis distances
        logdet = np.log(np.diagonal(self.chol_, axis1=1, axis2=2)).sum(-1)
        comp = (np.log(self.weights_) + gammaln((df + d) / 2) - gammaln(df / 2) - d / 2 * np.log(df * np.pi)
                - logdet - (df + d) / 2 * np.log1p(m / df))
        out = np.logaddexp.reduce(comp, axis=1) - (np.log(u) + np.log1p(-u)).sum(1)
        return np.where(inside, out, -np.inf)

    def sample(self, n: int, random) -> np.ndarray:
        """``n`` draws of ``q`` (``random``: a ``numpy.random.RandomState``, as emcee passes)."""
        d = self.means_.shape[1]
        comp = random.choice(self.weights_.size, size=n, p=self.weights_)
        z = random.standard_normal((n, d))
        scale = np.sqrt(random.chisquare(self.df, size=n) / self.df)
        y = self.means_[comp] + np.einsum("nij,nj->ni", self.chol_[comp], z) / scale[:, None]
        return expit(y)

    def _proposal(self, u: np.ndarray, random) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "chol_"):
            raise RuntimeError("IndependenceMove is not fitted: call fit(pilot_draws) first")
        new = self.sample(u.shape[0], random)
        # a draw rounded onto a face (a logit above ~37 or below ~-745) is rejected: the walker
        # stays (its proposal is its own position, with a factor that refuses it)
        face = ~((new > 0) & (new < 1)).all(axis=1)
        new[face] = u[face]
        return new, np.where(face, -np.inf, self.logpdf(u) - self.logpdf(new))


_EDGE = 1e-12  # pilot draws on a face are fitted this far inside it


def _logit(u: np.ndarray) -> np.ndarray:
    return np.log(u) - np.log1p(-u)
