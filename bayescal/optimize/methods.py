"""DFO-LS, CMA-ES and differential evolution on the unit cube, each batch through the objective.

CMA-ES runs as an ask/tell strategy in :func:`~bayescal.optimize.loop.run_strategy`; DFO-LS is
sequential (one evaluation per call, ``maxfun`` per start); scipy's differential evolution is
vectorised (one generation per call). In all three ``max_evaluations`` is a hard limit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..parameters import ParameterSpace
from ..parameters.design import int_seed
from .history import OptimizationResult, Recorder, dimension, result, start_point
from .loop import run_strategy
from .objective import OptimizeError

__all__ = ["cma_es", "dfols", "differential_evolution"]


def dfols(
    objective: Callable,
    space: ParameterSpace | None = None,
    *,
    n_dim: int | None = None,
    starts: np.ndarray | str = "default",
    max_evaluations: int = 70,
    noisy: bool = True,
    soft_restarts: bool = True,
    rhobeg: float = 0.1,
    rhoend: float = 1e-8,
    user_params: dict | None = None,
    seed: int | np.random.Generator = 0,
) -> OptimizationResult:
    """DFO-LS (Cartis et al. 2019) on the residual vector, from one or several starting points.

    The unit cube is the box (so the trust region is in units of parameter range). Each start
    runs up to ``max_evaluations`` sequential evaluations; the history's ``start`` says which.

    Parameters
    ----------
    objective : callable
        Must return residual vectors (``ModelObjective(measure="residuals")``); a plain misfit is
        used as a one-element residual ``sqrt(misfit)``.
    starts : (s, d) unit-cube points or "default"
    max_evaluations : int, default 70
        Per start (Oliver et al. stopped at 70).
    noisy : bool, default True
        DFO-LS's noisy-objective settings (slower trust-region shrinking, restarts on).
    soft_restarts : bool, default True
        Allow soft restarts (only move some interpolation points).
    rhobeg, rhoend : float
        Initial and final trust-region radius in unit-cube units.
    user_params : dict, optional
        Further DFO-LS ``user_params`` (they override the above).
    seed : int or numpy.random.Generator
        DFO-LS draws from numpy's global generator; it is seeded with this (a Generator: its next
        draw) for the call and restored afterwards.

    Notes
    -----
    A failed run returns a penalty residual vector: three times the largest absolute residual
    seen so far in each component (1 if none yet), so DFO-LS steps away from it.
    """
    import dfols as _dfols

    d = dimension(space, n_dim)
    x0s = start_point(space, d, starts) if isinstance(starts, str) else np.asarray(starts, float)
    x0s = np.atleast_2d(x0s)
    if x0s.shape[1] != d or np.any(x0s < 0) or np.any(x0s > 1):
        raise OptimizeError(f"starts must be (s, {d}) unit-cube points, got shape {x0s.shape}")
    if max_evaluations < d + 2:
        raise OptimizeError(f"max_evaluations must be >= n + 2 = {d + 2} (DFO-LS needs n + 1 to start)")
    rec = Recorder(objective, d)
    worst: dict[str, np.ndarray] = {}

    def fun(x: np.ndarray) -> np.ndarray:
        mis, res, _ = rec(x[None, :])
        r = np.sqrt(np.atleast_1d(mis)) if res is None else res[0]
        if np.all(np.isfinite(r)):
            worst["abs"] = np.maximum(worst.get("abs", np.abs(r)), np.abs(r))
            return r
        return 3.0 * worst.get("abs", np.ones(r.shape if r.size else 1))

    params = {"restarts.use_restarts": bool(noisy or soft_restarts),
              "restarts.use_soft_restarts": bool(soft_restarts)}
    params.update(user_params or {})
    messages = []
    # DFO-LS draws from numpy's global generator: seed it for the call, then restore it
    saved, first = np.random.get_state(), int_seed(seed)  # noqa: NPY002
    try:
        for s, x0 in enumerate(x0s):
            rec.current_start = s
            np.random.seed(first + s)  # noqa: NPY002
            sol = _dfols.solve(fun, x0, bounds=(np.zeros(d), np.ones(d)), rhobeg=rhobeg, rhoend=rhoend,
                               maxfun=max_evaluations, user_params=params, objfun_has_noise=noisy,
                               do_logging=False)
            messages.append(f"start {s}: {sol.msg}")
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    return result(rec, space, "dfols", "; ".join(messages))


# --------------------------------------------------------------------------------- CMA-ES
def cma_es(
    objective: Callable,
    space: ParameterSpace | None = None,
    *,
    n_dim: int | None = None,
    x0: np.ndarray | str = "default",
    sigma0: float = 0.3,
    pop_size: int | None = None,
    max_evaluations: int = 1000,
    seed: int = 0,
    options: dict | None = None,
) -> OptimizationResult:
    """CMA-ES (package ``cma``) on the unit cube; each population is one batch.

    Bounds are handled by ``cma``'s boundary transformation. A failed member gets the worst
    misfit of its population plus its spread. Randomness comes only from
    ``numpy.random.default_rng(seed)`` (passed as ``cma``'s ``randn``), so the same seed gives the
    same run and a killed run resumes by replay (see the module docstring).

    Parameters
    ----------
    x0 : unit-cube point or "default"
    sigma0 : float, default 0.3
        Initial step size in unit-cube units.
    pop_size : int, optional
        Default ``cma``'s ``4 + 3 ln d`` (Oliver et al. used 10).
    max_evaluations : int, default 1000
        Hard budget: the last population is truncated to it.
    options : dict, optional
        Further ``cma`` options.
    """
    import cma

    d = dimension(space, n_dim)
    start = start_point(space, d, x0)
    rng = np.random.default_rng(seed)
    opts = {"bounds": [0.0, 1.0], "maxfevals": max_evaluations, "verbose": -9, "seed": np.nan,
            "randn": lambda *shape: rng.standard_normal(shape), "verb_log": 0, "verb_disp": 0}
    if pop_size is not None:
        opts["popsize"] = int(pop_size)
    opts.update(options or {})
    strategy = _CMAStrategy(cma.CMAEvolutionStrategy(start, sigma0, opts))
    rec = Recorder(objective, d)
    run_strategy(strategy, rec, max_evaluations=max_evaluations)
    return result(rec, space, "cma_es", str(dict(strategy.es.stop())) or "evaluation budget spent")


class _CMAStrategy:
    """``cma``'s evolution strategy in the unit cube: points are clipped for the objective, failed
    members get the worst misfit of their population plus its spread."""

    def __init__(self, es) -> None:
        self.es = es
        self._X: list[np.ndarray] = []

    def stop(self) -> bool:
        return bool(self.es.stop())

    def ask(self) -> np.ndarray:
        self._X = self.es.ask()
        return np.clip(np.asarray(self._X), 0.0, 1.0)

    def tell(self, misfit: np.ndarray) -> None:
        ok = np.isfinite(misfit)
        if not ok.any():
            raise OptimizeError("cma_es: every member of a population failed")
        pen = np.array(misfit, dtype=float)
        pen[~ok] = misfit[ok].max() + (np.ptp(misfit[ok]) or 1.0)
        self.es.tell(list(self._X), pen.tolist())


# ------------------------------------------------------------------- differential evolution
def differential_evolution(
    objective: Callable,
    space: ParameterSpace | None = None,
    *,
    n_dim: int | None = None,
    pop_size: int = 15,
    max_generations: int = 100,
    max_evaluations: int | None = None,
    x0: np.ndarray | str | None = "default",
    seed: int = 0,
    tol: float = 0.01,
    **kwargs,
) -> OptimizationResult:
    """:func:`scipy.optimize.differential_evolution`, vectorised: each generation is one batch.

    Parameters
    ----------
    pop_size : int, default 15
        scipy's population multiplier (``pop_size * d`` members).
    max_generations : int, default 100
    max_evaluations : int, optional
        Hard budget of model runs (the last generation is truncated to it).
    x0 : unit-cube point, "default" or None
        Member of the initial population (default the space's defaults).
    seed : int
    tol : float
    **kwargs
        Further arguments of scipy's function (``strategy``, ``mutation``, ``recombination``).
        Failed members get ``inf``. No polishing (it would spend runs on finite differences).
    """
    from scipy.optimize import differential_evolution as _de

    d = dimension(space, n_dim)
    start = None if x0 is None else start_point(space, d, x0)
    rec = Recorder(objective, d)

    budget = np.inf if max_evaluations is None else int(max_evaluations)

    def fun(x: np.ndarray) -> np.ndarray:
        X = np.asarray(x).T
        remaining = budget - rec.n_evaluations
        if X.shape[0] > remaining:
            if remaining > 0:
                rec(X[: int(remaining)])
            raise _BudgetSpent
        mis, _, _ = rec(X)
        return np.where(np.isfinite(mis), mis, np.inf)

    try:
        sol = _de(fun, [(0.0, 1.0)] * d, popsize=pop_size, maxiter=max_generations, tol=tol,
                  rng=np.random.default_rng(seed), x0=start, vectorized=True, updating="deferred",
                  polish=False, **kwargs)
        message = str(sol.message)
    except _BudgetSpent:
        message = f"evaluation budget of {max_evaluations} spent"
    return result(rec, space, "differential_evolution", message)


class _BudgetSpent(Exception):
    """Raised inside scipy's loop when the evaluation budget is spent."""


