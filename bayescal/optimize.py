"""Optimisers of the papers, run through the same runner: GA, DFO-LS, CMA-ES, differential evolution.

Every optimiser minimises a misfit over the unit cube of a :class:`~bayescal.parameters.ParameterSpace`
and returns an :class:`OptimizationResult` whose ``history`` is one xarray Dataset on
``evaluation``: the unit-cube point, the physical values, the misfit, status, wall time, batch and
start. The history is also the emulator's training set (:meth:`OptimizationResult.training_data`,
with Seiler's "drop failed runs and the worst 25 %" rule as an option).

The objective is any callable ``objective(u (k, d)) -> misfit (k,)`` or ``-> residuals (k, m)``
(misfit = sum of squares) or an ``xarray.Dataset`` with ``misfit`` and optionally ``residuals``,
``status`` and ``reason``; NaN marks a failed member. :class:`ModelObjective` builds one from a
simulator and observation products through :func:`bayescal.ensemble.run_ensemble`, so each batch
of an optimiser is one ensemble (serial, process pool or Dask) and, given a ``workdir``, every
finished run is kept on disk.

Methods
-------
* :func:`genetic_algorithm` -- Seiler (2025) Section 2.3 (R package GA, Scrucca 2013): defaults as
  chromosome 1, fitness-proportional selection with linear scaling (Eqs. 2-6), local arithmetic
  crossover (Eqs. 7-8), uniform random mutation of one gene, elitism; a JSON checkpoint per generation.
* :func:`dfols` -- DFO-LS (Cartis et al. 2019) on the residual vector (Oliver et al.), noisy-problem
  settings and soft restarts, several starting points.
* :func:`cma_es` -- CMA-ES (package ``cma``), each population one batch.
* :func:`differential_evolution` -- :func:`scipy.optimize.differential_evolution`, vectorised.

Resuming: the GA restarts from its last checkpoint. The other methods are deterministic given the
seed, so a killed run resumes by *replay*: call it again with the same seed and ``workdir`` and
every evaluation already on disk is read instead of run (their own arithmetic is negligible next
to a model run). Either way the resumed result equals the uninterrupted one.

Twin-experiment metrics (Oliver et al.): :func:`baseline_misfit` (misfit of the noise alone,
averaged over noise realisations), :func:`evaluations_to_baseline` and :func:`recovery` (a
parameter is recovered once every later improving evaluation stays within +-5 % of its range
around the truth).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .ensemble import EnsembleStore, run_ensemble
from .observations import Observations, Product
from .parameters import ParameterSpace
from .scores import residuals as residual_vector
from .scores import score

__all__ = [
    "ModelObjective",
    "OptimizationResult",
    "OptimizeError",
    "baseline_misfit",
    "cma_es",
    "dfols",
    "differential_evolution",
    "evaluations_to_baseline",
    "genetic_algorithm",
    "linear_scaling",
    "local_arithmetic_crossover",
    "recovery",
    "selection_probabilities",
    "uniform_mutation",
]


class OptimizeError(ValueError):
    """Invalid optimiser input (names the argument that is wrong)."""


# ----------------------------------------------------------------------------- objective
class ModelObjective:
    """Misfit of a simulator against observation products, evaluated through the runner.

    Parameters
    ----------
    simulator : callable
        ``simulator(theta (k, n_values)) -> Dataset`` (e.g. ``LandCarbonModel``).
    space : ParameterSpace
        Maps unit-cube points of its free parameters to full parameter vectors.
    observations : Observations or sequence of Product
        The products to fit.
    measure : {"residuals", "score"}, default "residuals"
        ``"residuals"``: Oliver et al.'s regionally normalised residual vector
        (:func:`bayescal.scores.residuals`), misfit = sum of squares (what DFO-LS needs);
        ``"score"``: ``1 - overall`` AMBER/ILAMB score (Seiler's GA fitness is the score).
    regions : xarray.DataArray, optional
        Region of each cell for the residuals (default the ``biome`` coordinate).
    workdir : path, optional
        Keep every batch as an :class:`~bayescal.ensemble.EnsembleStore` named by a hash of its
        points; a repeated batch (a resumed optimisation) is read, not run. Default: a temporary
        directory per batch.
    executor : None, int or distributed.Client
        As in :func:`~bayescal.ensemble.run_ensemble`.
    batch_size : int, default 32
        Members per simulator call.
    """

    def __init__(
        self,
        simulator: Callable[[np.ndarray], xr.Dataset],
        space: ParameterSpace,
        observations: Observations | Sequence[Product],
        measure: str = "residuals",
        regions: xr.DataArray | None = None,
        workdir: str | Path | None = None,
        executor=None,
        batch_size: int = 32,
    ) -> None:
        if measure not in ("residuals", "score"):
            raise OptimizeError(f"measure must be 'residuals' or 'score', got {measure!r}")
        self.simulator = simulator
        self.space = space
        self.observations = (observations if isinstance(observations, Observations)
                             else Observations(observations))
        self.measure = measure
        self.regions = regions
        self.workdir = None if workdir is None else Path(workdir)
        self.executor = executor
        self.batch_size = batch_size

    def _run(self, theta: np.ndarray, where: Path) -> xr.Dataset:
        keep = self.observations.variables
        run_ensemble(self.simulator, theta, where, executor=self.executor, batch_size=self.batch_size,
                     keep=keep, progress=False)
        return EnsembleStore(where).load()

    def __call__(self, u: np.ndarray) -> xr.Dataset:
        """Misfit (and residuals) of unit-cube points ``u`` (k, d)."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        if u.shape[1] != self.space.n_free:
            raise OptimizeError(f"objective: points have {u.shape[1]} values, the space has "
                                f"{self.space.n_free} free parameters")
        theta = self.space.expand(self.space.from_unit(np.clip(u, 0.0, 1.0)))
        if self.workdir is None:
            with tempfile.TemporaryDirectory() as tmp:
                ens = self._run(theta, Path(tmp) / "batch")
        else:
            key = hashlib.sha1(np.ascontiguousarray(theta).tobytes()).hexdigest()[:16]
            ens = self._run(theta, self.workdir / f"batch_{key}")
        status = ens["status"].values.astype(str)
        reason = ens["reason"].values.astype(str)
        out = xr.Dataset({"status": ("member", status), "reason": ("member", reason)})
        ok = status == "done"
        if self.measure == "residuals":
            if ok.any():
                r = residual_vector(ens.isel(member=np.flatnonzero(ok)), self.observations, self.regions)
                full = np.full((u.shape[0], r.sizes["residual"]), np.nan)
                full[ok] = r.values
                out["residuals"] = (("member", "residual"), full)
                out["misfit"] = ("member", (full**2).sum(axis=1))
            else:
                out["misfit"] = ("member", np.full(u.shape[0], np.nan))
        else:
            mis = np.full(u.shape[0], np.nan)
            if ok.any():
                mis[ok] = score(ens.isel(member=np.flatnonzero(ok)), self.observations)["misfit"].values
            out["misfit"] = ("member", mis)
        return out


def _evaluate(
    objective: Callable, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
    """Call ``objective`` and normalise its answer to (misfit, residuals, status, reason)."""
    out = objective(u)
    k = u.shape[0]
    res = None
    if isinstance(out, xr.Dataset):
        mis = np.asarray(out["misfit"].values, dtype=float)
        if "residuals" in out:
            res = np.asarray(out["residuals"].values, dtype=float)
        status = out["status"].values.astype(str) if "status" in out else None
        reason = out["reason"].values.astype(str) if "reason" in out else None
    else:
        arr = np.asarray(out, dtype=float)
        if arr.ndim == 2 and arr.shape[0] == k:
            res = arr
            mis = (arr**2).sum(axis=1)
        elif arr.shape == (k,):
            mis = arr
        else:
            raise OptimizeError(f"objective returned shape {arr.shape} for {k} points; expected ({k},) "
                                f"misfits or ({k}, m) residuals")
        status = reason = None
    if mis.shape != (k,):
        raise OptimizeError(f"objective returned {mis.shape} misfits for {k} points")
    bad = ~np.isfinite(mis)
    if status is None:
        status = np.where(bad, "failed", "done")
    status = np.where(bad, "failed", status)
    if reason is None:
        reason = np.where(bad, "non-finite misfit", "")
    return mis, res, status, reason


class _Recorder:
    """Calls the objective and keeps the evaluation history."""

    def __init__(self, objective: Callable, n_dim: int) -> None:
        self.objective = objective
        self.n_dim = n_dim
        self.t0 = time.perf_counter()
        self.u: list[np.ndarray] = []
        self.misfit: list[np.ndarray] = []
        self.status: list[np.ndarray] = []
        self.reason: list[np.ndarray] = []
        self.time: list[np.ndarray] = []
        self.batch: list[np.ndarray] = []
        self.start: list[np.ndarray] = []
        self.n_batches = 0
        self.current_start = 0

    @property
    def n_evaluations(self) -> int:
        return int(sum(len(m) for m in self.misfit))

    def __call__(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        u = np.atleast_2d(np.asarray(u, dtype=float))
        mis, res, status, reason = _evaluate(self.objective, u)
        k = u.shape[0]
        self.u.append(u.copy())
        self.misfit.append(mis)
        self.status.append(status)
        self.reason.append(reason)
        self.time.append(np.full(k, time.perf_counter() - self.t0))
        self.batch.append(np.full(k, self.n_batches))
        self.start.append(np.full(k, self.current_start))
        self.n_batches += 1
        return mis, res, status

    def to_dict(self) -> dict[str, Any]:
        return {"u": [x.tolist() for x in self.u], "misfit": [x.tolist() for x in self.misfit],
                "status": [x.tolist() for x in self.status], "reason": [x.tolist() for x in self.reason],
                "time": [x.tolist() for x in self.time], "batch": [x.tolist() for x in self.batch],
                "start": [x.tolist() for x in self.start], "n_batches": self.n_batches}

    def load_dict(self, d: dict[str, Any]) -> None:
        self.u = [np.asarray(x, dtype=float).reshape(-1, self.n_dim) for x in d["u"]]
        self.misfit = [np.asarray(x, dtype=float) for x in d["misfit"]]
        self.status = [np.asarray(x, dtype=str) for x in d["status"]]
        self.reason = [np.asarray(x, dtype=str) for x in d["reason"]]
        self.time = [np.asarray(x, dtype=float) for x in d["time"]]
        self.batch = [np.asarray(x, dtype=int) for x in d["batch"]]
        self.start = [np.asarray(x, dtype=int) for x in d["start"]]
        self.n_batches = int(d["n_batches"])
        if self.time:
            self.t0 = time.perf_counter() - float(self.time[-1][-1])

    def history(self, space: ParameterSpace | None, method: str) -> xr.Dataset:
        labels = space.labels if space is not None else [f"x{i}" for i in range(self.n_dim)]

        def cat(xs: list[np.ndarray], dt) -> np.ndarray:
            return np.concatenate(xs) if xs else np.zeros(0, dtype=dt)

        u = np.concatenate(self.u) if self.u else np.zeros((0, self.n_dim))
        mis = cat(self.misfit, float)
        n = mis.size
        best = np.fmin.accumulate(np.where(np.isfinite(mis), mis, np.inf)) if n else mis
        ds = xr.Dataset(
            {
                "u": (("evaluation", "parameter"), u, {"long_name": "unit-cube value"}),
                "misfit": ("evaluation", mis),
                "best_misfit": ("evaluation", best, {"long_name": "best misfit so far"}),
                "status": ("evaluation", cat(self.status, str).astype(str)),
                "reason": ("evaluation", cat(self.reason, str).astype(str)),
                "time": ("evaluation", cat(self.time, float),
                         {"units": "s", "long_name": "wall time since start"}),
                "batch": ("evaluation", cat(self.batch, int)),
                "start": ("evaluation", cat(self.start, int), {"long_name": "starting point (DFO-LS)"}),
            },
            coords={"evaluation": np.arange(1, n + 1), "parameter": labels},
            attrs={"method": method},
        )
        if space is not None and n:
            ds["theta"] = (("evaluation", "parameter"), space.from_unit(np.clip(u, 0.0, 1.0)),
                            {"long_name": "parameter value"})
        return ds


@dataclass
class OptimizationResult:
    """What an optimiser found and every evaluation it made.

    Attributes
    ----------
    method : str
    u : numpy.ndarray
        Best point in the unit cube.
    x : numpy.ndarray or None
        Best point in parameter units (when a space was given).
    fun : float
        Best misfit.
    history : xarray.Dataset
        One row per evaluation (``u``, ``theta``, ``misfit``, ``best_misfit``, ``status``,
        ``reason``, ``time``, ``batch``, ``start``).
    message : str
    """

    method: str
    u: np.ndarray
    x: np.ndarray | None
    fun: float
    history: xr.Dataset
    message: str = ""

    @property
    def n_evaluations(self) -> int:
        return int(self.history.sizes["evaluation"])

    def training_data(
        self, drop_failed: bool = True, drop_worst: float = 0.0
    ) -> tuple[xr.DataArray, xr.DataArray]:
        """The history as emulator training data: unit-cube points and misfits.

        Parameters
        ----------
        drop_failed : bool, default True
            Leave out failed evaluations.
        drop_worst : float, default 0.0
            Fraction of the worst (highest-misfit) evaluations to leave out; Seiler trains on the
            GA's runs after dropping failed runs and the worst 25 % (``drop_worst=0.25``).
            Repeated points are kept once.

        Returns
        -------
        X : xarray.DataArray (member, parameter)
        y : xarray.DataArray (member) misfit
        """
        if not 0.0 <= drop_worst < 1.0:
            raise OptimizeError(f"drop_worst must be in [0, 1), got {drop_worst}")
        h = self.history
        keep = np.ones(h.sizes["evaluation"], dtype=bool)
        if drop_failed:
            keep &= h["status"].values == "done"
        _, first = np.unique(h["u"].values, axis=0, return_index=True)
        uniq = np.zeros_like(keep)
        uniq[first] = True
        keep &= uniq
        idx = np.flatnonzero(keep)
        if drop_worst > 0 and idx.size:
            mis = h["misfit"].values[idx]
            n_keep = int(np.ceil(idx.size * (1.0 - drop_worst)))
            idx = np.sort(idx[np.argsort(mis, kind="stable")[:n_keep]])
        X = xr.DataArray(h["u"].values[idx], dims=("member", "parameter"),
                         coords={"parameter": h["parameter"].values}, name="u")
        y = xr.DataArray(h["misfit"].values[idx], dims="member", name="misfit")
        return X, y


def _dimension(space: ParameterSpace | None, n_dim: int | None) -> int:
    if space is not None:
        return space.n_free
    if n_dim is None or n_dim < 1:
        raise OptimizeError("give a ParameterSpace or n_dim >= 1")
    return int(n_dim)


def _start(space: ParameterSpace | None, d: int, x0, name: str = "x0") -> np.ndarray:
    """Starting unit-cube point: 'default' (the space's defaults), or given unit values."""
    if isinstance(x0, str):
        if x0 != "default":
            raise OptimizeError(f"{name} must be 'default' or unit-cube values, got {x0!r}")
        return space.to_unit(space.default) if space is not None else np.full(d, 0.5)
    arr = np.asarray(x0, dtype=float)
    if arr.shape != (d,) or np.any(arr < 0) or np.any(arr > 1):
        raise OptimizeError(f"{name} must be {d} values in [0, 1] (unit cube), got shape {arr.shape}")
    return arr


def _result(rec: _Recorder, space: ParameterSpace | None, method: str, message: str) -> OptimizationResult:
    hist = rec.history(space, method)
    mis = hist["misfit"].values
    if not np.isfinite(mis).any():
        raise OptimizeError(f"{method}: every evaluation failed; see history reasons: "
                            f"{sorted(set(hist['reason'].values.tolist()))[:3]}")
    i = int(np.nanargmin(np.where(np.isfinite(mis), mis, np.nan)))
    u = hist["u"].values[i]
    x = space.from_unit(u) if space is not None else None
    return OptimizationResult(method, u, x, float(mis[i]), hist, message)


# ------------------------------------------------------------------------- genetic algorithm
def linear_scaling(fitness: np.ndarray) -> np.ndarray:
    """Linearly scaled fitness ``f' = a f + b`` (Seiler Eqs. 3-6).

    ``a = mean / delta``, ``b = -f_min mean / delta`` with ``delta = mean - f_min``: the mean is
    kept and the minimum maps to zero. Equal fitnesses scale to ones.
    """
    f = np.asarray(fitness, dtype=float)
    fbar, fmin = f.mean(), f.min()
    delta = fbar - fmin
    if not np.isfinite(delta) or delta <= 1e-300 * max(1.0, abs(fbar)):
        return np.ones_like(f)
    return (fbar / delta) * f - fmin * fbar / delta


def selection_probabilities(fitness: np.ndarray) -> np.ndarray:
    """Fitness-proportional selection probabilities from linearly scaled fitness (Eq. 2).

    As in the R package GA, ``P_i = |f'_i| / sum_j |f'_j|``, so a negative mean fitness (minus a
    misfit) selects the same way as a positive one.
    """
    fs = np.abs(linear_scaling(fitness))
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


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


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
    include_default: bool = True,
    seed: int | np.random.Generator = 0,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> OptimizationResult:
    """Seiler's real-valued genetic algorithm (R package GA defaults), minimising the misfit.

    Chromosomes are unit-cube points; fitness is minus the misfit (so it is Seiler's score-based
    fitness up to a constant when the objective uses ``measure="score"``). Each generation:
    fitness-proportional selection with linear scaling (Eqs. 2-6), local arithmetic crossover of
    random pairs with probability ``p_crossover`` (Eqs. 7-8), uniform mutation of one gene with
    probability ``p_mutation``, and the ``elitism`` best chromosomes of the previous generation
    replacing the worst. Chromosomes left unchanged keep their fitness and are not rerun (as in
    GA; Seiler's 25 x 100 GA made 2,040 runs, not 2,500). Failed members get the worst fitness of
    their generation. Each generation is one batch through the objective.

    Parameters
    ----------
    objective : callable
        See the module docstring.
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
    include_default : bool, default True
        Chromosome 1 of generation 1 is the default parameter set.
    seed : int or numpy.random.Generator
    checkpoint : path, optional
        JSON file written after every generation; if it exists the run resumes from it (with
        the same settings) and gives the result of an uninterrupted run.
    progress : bool
        Print one line per generation.
    """
    d = _dimension(space, n_dim)
    if pop_size < 2:
        raise OptimizeError(f"pop_size must be >= 2, got {pop_size}")
    if n_generations < 1:
        raise OptimizeError(f"n_generations must be >= 1, got {n_generations}")
    for name, p in (("p_crossover", p_crossover), ("p_mutation", p_mutation)):
        if not 0.0 <= p <= 1.0:
            raise OptimizeError(f"{name} must be in [0, 1], got {p}")
    n_elite = max(1, round(0.05 * pop_size)) if elitism is None else int(elitism)
    if not 0 <= n_elite < pop_size:
        raise OptimizeError(f"elitism must be in [0, pop_size), got {n_elite}")
    settings = {"d": d, "pop_size": pop_size, "p_crossover": p_crossover, "p_mutation": p_mutation,
                "elitism": n_elite, "include_default": include_default}
    rng = np.random.default_rng(seed)
    rec = _Recorder(objective, d)
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and ckpt.exists():
        state = json.loads(ckpt.read_text())
        if state["settings"] != settings:
            raise OptimizeError(f"checkpoint {ckpt}: settings {state['settings']} differ from {settings}; "
                                "remove the file to start afresh")
        pop = np.asarray(state["population"], dtype=float).reshape(pop_size, d)
        fit = np.asarray([np.nan if v is None else v for v in state["fitness"]], dtype=float)
        rng.bit_generator.state = state["rng"]
        rec.load_dict(state["history"])
        first_gen = int(state["generation"]) + 1
        evaluate_first = False
    else:
        pop = rng.random((pop_size, d))
        if include_default:
            pop[0] = _start(space, d, "default")
        fit = np.full(pop_size, np.nan)
        first_gen = 1
        evaluate_first = True

    def evaluate(pop: np.ndarray, fit: np.ndarray) -> np.ndarray:
        todo = np.flatnonzero(np.isnan(fit))
        if todo.size:
            mis, _, _ = rec(pop[todo])
            fit = fit.copy()
            fit[todo] = -mis
        bad = ~np.isfinite(fit)
        if bad.any():
            fit = fit.copy()
            fit[bad] = fit[~bad].min() if (~bad).any() else -np.inf
            # all failed: equal fitness, uniform selection
            fit[~np.isfinite(fit)] = 0.0
        return fit

    gen = first_gen
    if evaluate_first:
        fit = evaluate(pop, fit)
    else:
        gen -= 1  # the checkpointed generation is evaluated; breed the next one
    while True:
        if ckpt is not None:
            _write_json(ckpt, {"settings": settings, "generation": gen, "population": pop.tolist(),
                               "fitness": [None if np.isnan(v) else float(v) for v in fit],
                               "rng": rng.bit_generator.state, "history": rec.to_dict()})
        if progress:
            print(f"GA generation {gen}: best misfit {-fit.max():.6g}, mean {-fit.mean():.6g}, "
                  f"{rec.n_evaluations} runs")
        if gen >= n_generations:
            break
        order = np.argsort(-fit, kind="stable")
        _, uniq = np.unique(pop[order], axis=0, return_index=True)
        elite_idx = order[np.sort(uniq)[:n_elite]]
        elite, elite_fit = pop[elite_idx].copy(), fit[elite_idx].copy()
        sel = rng.choice(pop_size, size=pop_size, replace=True, p=selection_probabilities(fit))
        pop, fit = pop[sel].copy(), fit[sel].copy()
        n_pairs = pop_size // 2
        pairs = rng.permutation(pop_size)[: 2 * n_pairs].reshape(n_pairs, 2)
        pairs = pairs[rng.random(n_pairs) < p_crossover]
        if pairs.size:
            o1, o2 = local_arithmetic_crossover(pop[pairs[:, 0]], pop[pairs[:, 1]], rng)
            pop[pairs[:, 0]], pop[pairs[:, 1]] = o1, o2
            fit[pairs.ravel()] = np.nan
        mut = np.flatnonzero(rng.random(pop_size) < p_mutation)
        if mut.size:
            pop[mut] = uniform_mutation(pop[mut], rng)
            fit[mut] = np.nan
        if n_elite:
            worst = np.argsort(np.where(np.isnan(fit), np.inf, fit), kind="stable")[:n_elite]
            pop[worst], fit[worst] = elite, elite_fit
        gen += 1
        fit = evaluate(pop, fit)
    return _result(rec, space, "genetic_algorithm", f"{n_generations} generations")


# --------------------------------------------------------------------------------- DFO-LS
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
    seed: int = 0,
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
    seed : int
        DFO-LS draws from numpy's global generator; it is seeded with this for the call and
        restored afterwards.

    Notes
    -----
    A failed run returns a penalty residual vector: three times the largest absolute residual
    seen so far in each component (1 if none yet), so DFO-LS steps away from it.
    """
    import dfols as _dfols

    d = _dimension(space, n_dim)
    x0s = np.atleast_2d(_start(space, d, starts) if isinstance(starts, str) else np.asarray(starts, float))
    if x0s.shape[1] != d or np.any(x0s < 0) or np.any(x0s > 1):
        raise OptimizeError(f"starts must be (s, {d}) unit-cube points, got shape {x0s.shape}")
    if max_evaluations < d + 2:
        raise OptimizeError(f"max_evaluations must be >= n + 2 = {d + 2} (DFO-LS needs n + 1 to start)")
    rec = _Recorder(objective, d)
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
    saved = np.random.get_state()  # noqa: NPY002
    try:
        for s, x0 in enumerate(x0s):
            rec.current_start = s
            np.random.seed(seed + s)  # noqa: NPY002
            sol = _dfols.solve(fun, x0, bounds=(np.zeros(d), np.ones(d)), rhobeg=rhobeg, rhoend=rhoend,
                               maxfun=max_evaluations, user_params=params, objfun_has_noise=noisy,
                               do_logging=False)
            messages.append(f"start {s}: {sol.msg}")
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    return _result(rec, space, "dfols", "; ".join(messages))


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
    options : dict, optional
        Further ``cma`` options.
    """
    import cma

    d = _dimension(space, n_dim)
    start = _start(space, d, x0)
    rng = np.random.default_rng(seed)
    opts = {"bounds": [0.0, 1.0], "maxfevals": max_evaluations, "verbose": -9, "seed": np.nan,
            "randn": lambda *shape: rng.standard_normal(shape), "verb_log": 0, "verb_disp": 0}
    if pop_size is not None:
        opts["popsize"] = int(pop_size)
    opts.update(options or {})
    es = cma.CMAEvolutionStrategy(start, sigma0, opts)
    rec = _Recorder(objective, d)
    while not es.stop() and rec.n_evaluations < max_evaluations:
        X = np.asarray(es.ask())
        mis, _, _ = rec(np.clip(X, 0.0, 1.0))
        ok = np.isfinite(mis)
        if not ok.any():
            raise OptimizeError("cma_es: every member of a population failed; see the history reasons")
        pen = mis.copy()
        pen[~ok] = mis[ok].max() + (np.ptp(mis[ok]) or 1.0)
        es.tell(list(X), pen.tolist())
    return _result(rec, space, "cma_es", str(dict(es.stop())))


# ------------------------------------------------------------------- differential evolution
def differential_evolution(
    objective: Callable,
    space: ParameterSpace | None = None,
    *,
    n_dim: int | None = None,
    pop_size: int = 15,
    max_generations: int = 100,
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
    x0 : unit-cube point, "default" or None
        Member of the initial population (default the space's defaults).
    seed : int
    tol : float
    **kwargs
        Further arguments of scipy's function (``strategy``, ``mutation``, ``recombination``).
        Failed members get ``inf``. No polishing (it would spend runs on finite differences).
    """
    from scipy.optimize import differential_evolution as _de

    d = _dimension(space, n_dim)
    start = None if x0 is None else _start(space, d, x0)
    rec = _Recorder(objective, d)

    def fun(x: np.ndarray) -> np.ndarray:
        mis, _, _ = rec(np.asarray(x).T)
        return np.where(np.isfinite(mis), mis, np.inf)

    sol = _de(fun, [(0.0, 1.0)] * d, popsize=pop_size, maxiter=max_generations, tol=tol,
              rng=np.random.default_rng(seed), x0=start, vectorized=True, updating="deferred",
              polish=False, **kwargs)
    return _result(rec, space, "differential_evolution", str(sol.message))


# ------------------------------------------------------------------------ twin metrics
def baseline_misfit(
    truth: xr.Dataset,
    realisations: Sequence[Observations],
    measure: str = "residuals",
    regions: xr.DataArray | None = None,
) -> xr.DataArray:
    """Misfit of the noise alone (Oliver et al. Sect. 2.5): the true run against noisy products.

    Parameters
    ----------
    truth : xarray.Dataset
        Noise-free simulation at the true parameters (with or without a ``member`` dimension).
    realisations : sequence of Observations
        Noisy products, one set per noise realisation (e.g. ``make_twin`` with different seeds).
    measure : {"residuals", "score"}

    Returns
    -------
    xarray.DataArray
        Misfit per realisation; ``attrs["mean"]`` is the baseline (their average).
    """
    if not realisations:
        raise OptimizeError("baseline_misfit: give at least one noise realisation")
    sim = truth if "member" in truth.dims else truth.expand_dims(member=[0])
    vals = []
    for obs in realisations:
        if measure == "residuals":
            vals.append(float((residual_vector(sim, obs, regions) ** 2).sum("residual").values[0]))
        elif measure == "score":
            vals.append(float(score(sim, obs)["misfit"].values[0]))
        else:
            raise OptimizeError(f"measure must be 'residuals' or 'score', got {measure!r}")
    out = xr.DataArray(np.array(vals), dims="realisation", name="baseline_misfit")
    out.attrs["mean"] = float(np.mean(vals))
    return out


def _select_start(history: xr.Dataset, start: int | None) -> xr.Dataset:
    if start is None:
        return history
    return history.isel(evaluation=np.flatnonzero(history["start"].values == start))


def evaluations_to_baseline(history: xr.Dataset, baseline: float, start: int | None = None) -> int | None:
    """Number of evaluations until the misfit first reaches ``baseline`` (None if never).

    With ``start``, only that DFO-LS start's evaluations are counted.
    """
    h = _select_start(history, start)
    mis = h["misfit"].values
    hit = np.flatnonzero(np.isfinite(mis) & (mis <= baseline))
    return int(hit[0] + 1) if hit.size else None


def recovery(
    history: xr.Dataset,
    truth_u: np.ndarray,
    tolerance: float = 0.05,
    start: int | None = None,
) -> xr.Dataset:
    """Parameter recovery (Oliver et al.): recovered once every later improving evaluation stays close.

    Improving ("successful") evaluations are those that lower the best misfit so far. A parameter
    counts as recovered at the first improving evaluation after which every improving evaluation
    lies within ``tolerance`` (fraction of the parameter's range) of the truth.

    Returns
    -------
    xarray.Dataset
        ``recovered`` (parameter, bool), ``evaluations`` (parameter; evaluations needed, NaN if
        not recovered) and ``final_error`` (unit-cube distance of the best point to the truth).
    """
    h = _select_start(history, start)
    truth_u = np.asarray(truth_u, dtype=float)
    u = h["u"].values
    if truth_u.shape != (u.shape[1],):
        raise OptimizeError(f"truth_u must have {u.shape[1]} values, got {truth_u.shape}")
    mis = np.where(np.isfinite(h["misfit"].values), h["misfit"].values, np.inf)
    prev = np.concatenate([[np.inf], np.minimum.accumulate(mis)[:-1]])
    improving = np.flatnonzero(mis < prev)
    close = np.abs(u[improving] - truth_u) <= tolerance  # (n_improving, d)
    # from the end: all later improving evaluations close
    tail_ok = np.flip(np.logical_and.accumulate(np.flip(close, axis=0), axis=0), axis=0)
    recovered = tail_ok[-1] if improving.size else np.zeros(u.shape[1], dtype=bool)
    evals = np.full(u.shape[1], np.nan)
    # tail_ok is monotone in time (once all later ones are close it stays so): first True per column
    evals[recovered] = improving[np.argmax(tail_ok[:, recovered], axis=0)] + 1
    err = np.abs(u[improving[-1]] - truth_u) if improving.size else np.full(u.shape[1], np.nan)
    return xr.Dataset(
        {"recovered": ("parameter", recovered), "evaluations": ("parameter", evals),
         "final_error": ("parameter", err)},
        coords={"parameter": h["parameter"].values},
        attrs={"tolerance": tolerance, "n_recovered": int(recovered.sum())},
    )
