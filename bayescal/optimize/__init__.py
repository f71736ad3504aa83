"""Optimisers of the papers, run through the same runner: GA, DFO-LS, CMA-ES, differential evolution.

Every optimiser minimises a misfit over the unit cube of a :class:`~bayescal.parameters.ParameterSpace`
and returns an :class:`OptimizationResult` whose ``history`` is one xarray Dataset on
``member`` (one row per model run; ``evaluation`` counts them from 1): the unit-cube point,
the physical values, the misfit, status, wall time, batch and start. The history is also the
emulator's training set (:meth:`OptimizationResult.training_data`, with Seiler's "drop failed
runs and the worst 25 %" rule as an option).

The objective is any callable ``objective(u (k, d)) -> misfit (k,)`` or ``-> residuals (k, m)``
(misfit = sum of squares) or an ``xarray.Dataset`` with ``misfit`` and optionally ``residuals``,
``status`` and ``reason``; NaN marks a failed member. :class:`ModelObjective` builds one from a
simulator and observation products through :func:`bayescal.run.ensemble.run_ensemble`, so each batch
of an optimiser is one ensemble (serial, process pool or Dask) and, given a ``workdir``, every
finished run is kept on disk.

Methods
-------
* :func:`genetic_algorithm` -- Seiler (2025) Section 2.3 (R package GA, Scrucca 2013): defaults as
  chromosome 1, fitness-proportional selection with linear scaling (Eqs. 2-6), local arithmetic
  crossover (Eqs. 7-8), uniform random mutation of one gene, elitism, and GA's scaling cap
  (``sfactor``); a JSON checkpoint per generation.
* :func:`dfols` -- DFO-LS (Cartis et al. 2019) on the residual vector (Oliver et al.), noisy-problem
  settings and soft restarts, several starting points.
* :func:`cma_es` -- CMA-ES (package ``cma``), each population one batch.
* :func:`differential_evolution` -- :func:`scipy.optimize.differential_evolution`, vectorised.

Layout: :mod:`.objective` (the misfit through the runner), :mod:`.history` (recorder and
result), :mod:`.loop` (the one ask -> run -> tell -> checkpoint loop), :mod:`.ga` (the GA as
ask/tell state), :mod:`.methods` (DFO-LS, CMA-ES, differential evolution), :mod:`.twin`
(Oliver et al.'s twin metrics). Budgets (``max_evaluations``) are hard limits everywhere.

Resuming: the GA restarts from its last checkpoint. The other methods are deterministic given the
seed, so a killed run resumes by *replay*: call it again with the same seed and ``workdir`` and
every evaluation already on disk is read instead of run (their own arithmetic is negligible next
to a model run). Either way the resumed result equals the uninterrupted one.

Twin-experiment metrics (Oliver et al.): :func:`baseline_misfit` (misfit of the noise alone,
averaged over noise realisations), :func:`evaluations_to_baseline` and :func:`recovery` (a
parameter is recovered once every later improving evaluation stays within +-5 % of its range
around the truth).
"""

from .ga import (
    GeneticAlgorithm,
    genetic_algorithm,
    linear_scaling,
    local_arithmetic_crossover,
    selection_probabilities,
    uniform_mutation,
)
from .history import OptimizationResult, Recorder
from .loop import run_strategy
from .methods import cma_es, dfols, differential_evolution
from .objective import ModelObjective, OptimizeError
from .twin import baseline_misfit, evaluations_to_baseline, recovery

__all__ = [
    "GeneticAlgorithm",
    "ModelObjective",
    "OptimizationResult",
    "OptimizeError",
    "Recorder",
    "baseline_misfit",
    "cma_es",
    "dfols",
    "differential_evolution",
    "evaluations_to_baseline",
    "genetic_algorithm",
    "linear_scaling",
    "local_arithmetic_crossover",
    "recovery",
    "run_strategy",
    "selection_probabilities",
    "uniform_mutation",
]
