"""Seiler's real-valued genetic algorithm (R package GA, Scrucca 2013) as an ask/tell strategy.

Operators (Seiler 2025, Sect. 2.3): fitness-proportional selection with linear scaling
(Eqs. 2-6, and GA's cap of the best scaled fitness at ``sfactor`` times the mean), local
arithmetic crossover (Eqs. 7-8), uniform mutation of one gene, elitism.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..parameters import ParameterSpace
from .history import OptimizationResult, Recorder, dimension, result, start_point
from .loop import run_strategy
from .objective import OptimizeError

__all__ = [
    "GeneticAlgorithm",
    "genetic_algorithm",
    "linear_scaling",
    "local_arithmetic_crossover",
    "selection_probabilities",
    "uniform_mutation",
]


def linear_scaling(fitness: np.ndarray, sfactor: float | None = 2.0) -> np.ndarray:
    """Linearly scaled fitness ``f' = a f + b`` keeping the mean, as GA's ``gareal_lsSelection``.

    Negative fitnesses are first shifted so the minimum is zero (as GA does). Then, if the best
    fitness exceeds ``sfactor`` times the mean, ``max f' = sfactor * mean`` (GA's branch, which
    stops one outstanding chromosome from taking the whole next generation); otherwise
    ``min f' = 0`` (Seiler's Eqs. 3-6: ``a = mean / delta``, ``b = -f_min mean / delta``,
    ``delta = mean - f_min``). ``sfactor=None`` always uses Eqs. 3-6. Equal fitnesses scale to ones.
    """
    f = np.asarray(fitness, dtype=float)
    if f.min() < 0:
        f = f - f.min()
    fbar, fmin, fmax = f.mean(), f.min(), f.max()
    if sfactor is not None and fmax > sfactor * fbar and fmax - fbar > 0:
        delta = fmax - fbar
        return ((sfactor - 1.0) * fbar / delta) * f + fbar * (fmax - sfactor * fbar) / delta
    delta = fbar - fmin
    if not np.isfinite(delta) or delta <= 1e-300 * max(1.0, abs(fbar)):
        return np.ones_like(f)
    return (fbar / delta) * f - fmin * fbar / delta


def selection_probabilities(fitness: np.ndarray, sfactor: float | None = 2.0) -> np.ndarray:
    """Fitness-proportional selection probabilities ``|f'_i| / sum_j |f'_j|`` (Eq. 2)."""
    fs = np.abs(linear_scaling(fitness, sfactor))
    total = fs.sum()
    return np.full(fs.size, 1.0 / fs.size) if total <= 0 else fs / total


def local_arithmetic_crossover(
    p1: np.ndarray, p2: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Offspring ``a P1 + (1 - a) P2`` and ``a P2 + (1 - a) P1`` with a random ``a`` per gene (Eqs. 7-8).

    ``p1`` and ``p2`` are (pairs, genes); every offspring gene lies between its parents' genes.
    """
    a = rng.random(p1.shape)
    return a * p1 + (1.0 - a) * p2, a * p2 + (1.0 - a) * p1


def uniform_mutation(chromosomes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Replace one random gene of each chromosome by a uniform draw in [0, 1]."""
    out = np.array(chromosomes, dtype=float, copy=True)
    rows = np.arange(out.shape[0])
    out[rows, rng.integers(out.shape[1], size=out.shape[0])] = rng.random(out.shape[0])
    return out


class GeneticAlgorithm:
    """GA state (population, fitness, generation, generator) and one step: ask/tell.

    ``ask`` breeds the next generation (after the first) and returns the chromosomes whose
    fitness is unknown; ``tell`` stores minus their misfits. Failed members (NaN misfit) get the
    worst fitness of their generation. Parameters as in :func:`genetic_algorithm`.
    """

    def __init__(self, x_first: np.ndarray | None, d: int, *, pop_size: int, n_generations: int,
                 p_crossover: float, p_mutation: float, elitism: int, sfactor: float | None,
                 seed: int | np.random.Generator) -> None:
        self.settings = {"d": d, "pop_size": pop_size, "p_crossover": p_crossover,
                         "p_mutation": p_mutation, "elitism": elitism,
                         "include_default": x_first is not None, "sfactor": sfactor}
        self.n_generations = n_generations
        self.rng = np.random.default_rng(seed)
        self.pop = self.rng.random((pop_size, d))
        if x_first is not None:
            self.pop[0] = x_first
        self.fit = np.full(pop_size, np.nan)
        self.generation = 0  # generations evaluated
        self._todo = np.zeros(0, dtype=int)

    def stop(self) -> bool:
        return self.generation >= self.n_generations

    def ask(self) -> np.ndarray:
        if self.generation > 0:
            self._breed()
        self._todo = np.flatnonzero(np.isnan(self.fit))
        return self.pop[self._todo]

    def tell(self, misfit: np.ndarray) -> None:
        fit = self.fit.copy()
        fit[self._todo] = -np.asarray(misfit, dtype=float)
        bad = ~np.isfinite(fit)
        if bad.any():
            fit[bad] = fit[~bad].min() if (~bad).any() else 0.0  # all failed: uniform selection
        self.fit = fit
        self.generation += 1

    def _breed(self) -> None:
        s, rng = self.settings, self.rng
        n, n_elite = s["pop_size"], s["elitism"]
        order = np.argsort(-self.fit, kind="stable")
        _, uniq = np.unique(self.pop[order], axis=0, return_index=True)
        elite_idx = order[np.sort(uniq)[:n_elite]]
        elite, elite_fit = self.pop[elite_idx].copy(), self.fit[elite_idx].copy()
        sel = rng.choice(n, size=n, replace=True, p=selection_probabilities(self.fit, s["sfactor"]))
        pop, fit = self.pop[sel].copy(), self.fit[sel].copy()
        n_pairs = n // 2
        pairs = rng.permutation(n)[: 2 * n_pairs].reshape(n_pairs, 2)
        pairs = pairs[rng.random(n_pairs) < s["p_crossover"]]
        if pairs.size:
            pop[pairs[:, 0]], pop[pairs[:, 1]] = local_arithmetic_crossover(pop[pairs[:, 0]],
                                                                            pop[pairs[:, 1]], rng)
            fit[pairs.ravel()] = np.nan
        mut = np.flatnonzero(rng.random(n) < s["p_mutation"])
        if mut.size:
            pop[mut] = uniform_mutation(pop[mut], rng)
            fit[mut] = np.nan
        if n_elite:
            worst = np.argsort(np.where(np.isnan(fit), np.inf, fit), kind="stable")[:n_elite]
            pop[worst], fit[worst] = elite, elite_fit
        self.pop, self.fit = pop, fit

    def state_dict(self) -> dict[str, Any]:
        return {"settings": self.settings, "generation": self.generation, "population": self.pop.tolist(),
                "fitness": [None if np.isnan(v) else float(v) for v in self.fit],
                "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict[str, Any]) -> None:
        if state["settings"] != self.settings:
            raise OptimizeError(f"checkpoint settings {state['settings']} differ from {self.settings}; "
                                "remove the checkpoint to start afresh")
        self.pop = np.asarray(state["population"], dtype=float).reshape(self.pop.shape)
        self.fit = np.asarray([np.nan if v is None else v for v in state["fitness"]], dtype=float)
        self.rng.bit_generator.state = state["rng"]
        self.generation = int(state["generation"])

    def progress(self, rec: Recorder) -> str:
        return (f"GA generation {self.generation}: best misfit {-self.fit.max():.6g}, "
                f"mean {-self.fit.mean():.6g}, {rec.n_evaluations} runs")


def genetic_algorithm(
    objective: Callable,
    space: ParameterSpace | None = None,
    *,
    n_dim: int | None = None,
    pop_size: int = 50,
    n_generations: int = 100,
    p_crossover: float = 0.8,
    p_mutation: float = 0.1,
    elitism: int | None = None,
    sfactor: float | None = 2.0,
    include_default: bool = True,
    max_evaluations: int | None = None,
    seed: int | np.random.Generator = 0,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> OptimizationResult:
    """Seiler's real-valued genetic algorithm (R package GA defaults), minimising the misfit.

    Chromosomes are unit-cube points; fitness is minus the misfit (Seiler's score-based fitness
    up to a constant when the objective uses ``measure="score"``). Chromosomes left unchanged
    keep their fitness and are not rerun (as in GA; Seiler's 25 x 100 GA made 2,040 runs, not
    2,500). Each generation is one batch through the objective.

    Parameters
    ----------
    objective : callable
        See :mod:`bayescal.optimize`.
    space : ParameterSpace, optional
        Gives the dimension, the defaults (chromosome 1) and parameter labels.
    n_dim : int, optional
        Dimension when no space is given (chromosome 1 is then the centre).
    pop_size, n_generations : int
        Population size and number of generations (GA defaults 50 and 100; Seiler 100 and 25).
    p_crossover, p_mutation : float
        GA defaults 0.8 and 0.1.
    elitism : int, optional
        Chromosomes kept unchanged; GA default ``max(1, round(0.05 pop_size))``.
    sfactor : float or None, default 2.0
        GA's linear-scaling cap (best scaled fitness at most ``sfactor`` x the mean); None uses
        Seiler's Eqs. 3-6 alone (see :func:`linear_scaling`).
    include_default : bool, default True
        Chromosome 1 of generation 1 is the default parameter set.
    max_evaluations : int, optional
        Hard budget of model runs (the last generation is truncated to it).
    seed : int or numpy.random.Generator
    checkpoint : path, optional
        JSON file written after every generation; if it exists the run resumes from it (with
        the same settings) and gives the result of an uninterrupted run.
    progress : bool
        Print one line per generation.
    """
    d = dimension(space, n_dim)
    if pop_size < 2:
        raise OptimizeError(f"pop_size must be >= 2, got {pop_size}")
    if n_generations < 1:
        raise OptimizeError(f"n_generations must be >= 1, got {n_generations}")
    for name, p in (("p_crossover", p_crossover), ("p_mutation", p_mutation)):
        if not 0.0 <= p <= 1.0:
            raise OptimizeError(f"{name} must be in [0, 1], got {p}")
    if sfactor is not None and not sfactor > 1.0:
        raise OptimizeError(f"sfactor must be > 1 or None, got {sfactor}")
    n_elite = max(1, round(0.05 * pop_size)) if elitism is None else int(elitism)
    if not 0 <= n_elite < pop_size:
        raise OptimizeError(f"elitism must be in [0, pop_size), got {n_elite}")
    first = start_point(space, d, "default") if include_default else None
    ga = GeneticAlgorithm(first, d, pop_size=pop_size, n_generations=n_generations,
                          p_crossover=p_crossover, p_mutation=p_mutation, elitism=n_elite,
                          sfactor=sfactor, seed=seed)
    rec = Recorder(objective, d)
    run_strategy(ga, rec, max_evaluations=max_evaluations, checkpoint=checkpoint, progress=progress)
    return result(rec, space, "genetic_algorithm", f"{ga.generation} generations")
