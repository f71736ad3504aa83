"""Where the model runs, learnt from its runs: an emulated log-likelihood that is -inf where the
model is taken to fail.

An emulator is fitted on the runs that finished; a failed run (a spin-up that did not converge, a
program that exits with an error) gives it nothing, so the emulated posterior can keep mass where
the model cannot run, and a refinement would keep sending its new runs there, round after round.
:class:`Runnable` takes a unit-cube point as failing when the nearest of the model's runs
(finished or failed, Euclidean in the unit cube) failed -- a 1-nearest-neighbour classifier, the
boundary halfway between the runs on either side -- and gives it log-likelihood -inf: the chains
leave the region, the acquisition sends no run there, and the posterior is the prior restricted
to where the model runs (as history matching rules such points out, and Seiler's genetic
algorithm drops them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["Runnable", "only_where_runs"]


class Runnable:
    """``loglik`` where the nearest run finished, -inf where it failed.

    Parameters
    ----------
    loglik : callable
        Log-likelihood of unit-cube points ``(k, d) -> (k,)``; its other attributes (pointwise
        terms, ``loglik_sd``, observed data) are this object's.
    done, failed : ndarray (n, d)
        Unit-cube points of the runs that finished and of those that failed.
    """

    def __init__(self, loglik: Callable[[np.ndarray], np.ndarray], done: np.ndarray,
                 failed: np.ndarray) -> None:
        from scipy.spatial import cKDTree

        self.loglik = loglik
        done, failed = np.atleast_2d(np.asarray(done, float)), np.atleast_2d(np.asarray(failed, float))
        self._tree = cKDTree(np.vstack([done, failed]))  # one query: the nearest run, and its outcome
        self._failed = np.r_[np.zeros(done.shape[0], bool), np.ones(failed.shape[0], bool)]

    def runs(self, u: np.ndarray) -> np.ndarray:
        """Whether the model is taken to run at each point of ``u`` (k, d): its nearest run finished."""
        _, nearest = self._tree.query(np.atleast_2d(np.asarray(u, float)))
        return ~self._failed[nearest]

    def __call__(self, u: np.ndarray) -> np.ndarray:
        u = np.atleast_2d(u)
        out = np.full(u.shape[0], -np.inf)
        ok = self.runs(u)
        if ok.any():
            out[ok] = np.asarray(self.loglik(u[ok]), dtype=float).reshape(-1)
        return out

    def __getattr__(self, name: str) -> Any:
        if name == "loglik":  # not yet set (copying): no recursion
            raise AttributeError(name)
        return getattr(self.loglik, name)


def only_where_runs(loglik: Callable[[np.ndarray], np.ndarray], done: np.ndarray,
                    failed: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``loglik`` as :class:`Runnable` when some run failed; unchanged when none did."""
    return Runnable(loglik, done, failed) if np.asarray(failed).size else loglik
