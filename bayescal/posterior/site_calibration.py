"""Site calibration: maximum likelihood, the error model, emcee, and validation on held-out years.

The steps (docs/site.md), each a function of a simulator returning series on (member, time):

1. :func:`maximum_likelihood` -- CMA-ES on the log-likelihood with the observation errors alone;
2. :func:`~bayescal.operators.timeseries.estimate_error_model` at that point -- each product's discrepancy
   and residual autocorrelation (empirical Bayes);
3. :func:`sample_posterior` -- emcee on the exact model with the full error model, started at
   the particles of a tempered SMC from the prior (or in a small ball around the
   maximum-likelihood point);
4. :func:`validation` -- posterior-predictive bands on the validation years (model draws plus the
   error model's noise) against the observations: coverage of annual sums, daily RMSE of the
   posterior mean against the defaults', the width of the annual-NEE interval.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr

from ..operators.timeseries import SeriesLikelihood, SeriesOperator
from ..parameters import ParameterSpace
from ..run.ensemble import reason_group
from .smc import TemperedSMC

__all__ = ["EmulatedSeriesLikelihood", "SeriesPosteriorLikelihood", "emulated_values", "maximum_likelihood",
           "model_values", "sample_posterior", "series_log_likelihood", "tempered_posterior", "validation"]

MAX_DRAWS = 1000
"""Retained posterior draws of the site route at most (thinned further beyond): the
InferenceData's pointwise log-likelihood and predictive draws run the model at each."""

#: the direct route's emcee move sets (``posterior.moves``), the default first
SITE_MOVES = ("independence", "de_subspace", "de_stretch")

Values = Callable[[np.ndarray], np.ndarray]  # unit-cube points (k, d) -> operator values (k, n), NaN: failed


def model_values(simulator: Callable, space: ParameterSpace, operator: SeriesOperator, *,
                 arrays: Callable | None = None) -> Values:
    """The model's values at unit-cube points (rows of failed members are NaN).

    ``arrays``, if given, is the simulator's fast path: ``theta -> ({variable: (member, time)
    array}, failed (member,))`` with the same values as ``simulator`` returns in its Dataset
    (:meth:`bayescal.models.dalec.DalecModel.output_arrays`).
    """

    def f(u: np.ndarray) -> np.ndarray:
        y = values_of(u)
        f.runs += len(y)
        failed = ~np.isfinite(y).all(axis=1)
        if failed.any():  # counted by reason, for the report's table of runs and failures
            why = f.reasons if f.reasons is not None else np.full(len(y), "non-finite output")
            f.failures.update(reason_group(str(r) or "non-finite output") for r in np.asarray(why)[failed])
        if f.after is not None:
            f.after(f)
        return y

    def values_of(u: np.ndarray) -> np.ndarray:
        theta = space.expand(space.from_unit(np.clip(np.atleast_2d(u), 0.0, 1.0)))
        if arrays is not None:
            out, failed = arrays(theta)
            y = operator.of_arrays(out)
            y[failed] = np.nan
            f.reasons = np.where(failed, "a pool went negative or non-finite", "")
            return y
        ds = simulator(theta)
        f.reasons = ds["reason"].values.astype(str) if "reason" in ds else None
        if any(v not in ds for v in operator.variables):  # every member failed before any output
            return np.full((ds.sizes["member"], operator.y.size), np.nan)
        y = operator.of_model(ds)
        y[ds["status"].values != "done"] = np.nan
        return y

    f.reasons = None  # the last call's failure reason per member ("": done), for the optimiser's history
    f.runs, f.failures = 0, Counter()  # every call's members, and the failed ones' reasons
    f.after = None  # called with f after each call (the site route saves its counts)
    return f


def emulated_values(emulator) -> Values:
    """An output emulator's mean at unit-cube points (``route = "emulator"``)."""
    return lambda u: emulator.predict(np.clip(np.atleast_2d(u), 0.0, 1.0))


class SeriesPosteriorLikelihood:
    """``f(u (k, d)) -> (k,)``: the log-likelihood of the values at unit-cube points (-inf: failed).

    For the InferenceData it also gives the per-value terms and posterior-predictive draws at the
    retained draws (:meth:`pointwise_predictive`: the model, or emulator, runs once per distinct
    point) and the observations with their coordinates (:meth:`observed_data`).
    """

    def __init__(self, values: Values, likelihood: SeriesLikelihood) -> None:
        self.values, self.likelihood = values, likelihood
        self.observed = likelihood.operator.y

    def __call__(self, u: np.ndarray) -> np.ndarray:
        return self.likelihood(self.values(u))

    def pointwise_predictive(self, u: np.ndarray, rng=None,
                             batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        u = np.atleast_2d(u)
        uniq, inverse = np.unique(u, axis=0, return_inverse=True)
        vals = np.vstack([self.values(uniq[i:i + batch]) for i in range(0, uniq.shape[0], batch)])
        vals = vals[np.ravel(inverse)]
        return self.likelihood.pointwise(vals), self.likelihood.predictive(vals, rng)

    def observed_data(self) -> xr.Dataset:
        return self.likelihood.observed_data()

    def constant_data(self) -> xr.Dataset:
        return self.likelihood.constant_data()


class EmulatedSeriesLikelihood(SeriesPosteriorLikelihood):
    """:class:`SeriesPosteriorLikelihood` of an output emulator, with the sd of the
    log-likelihood its predictive uncertainty causes (:meth:`loglik_sd`): what
    :func:`~bayescal.posterior.refinement.refine` needs to choose model runs
    (``posterior.route = "emulator"``). The emulator's error is never in the error model.

    ``target="mean"``: the log-likelihood of the emulator's mean. ``target="expected"``: the
    log-likelihood averaged over the emulator's predictive sd
    (:meth:`~bayescal.operators.timeseries.SeriesLikelihood.expected`), which falls where the
    emulator has no runs; the site route samples it after the rounds (docs/site.md).
    The pointwise terms and predictive draws are the mean's either way.
    """

    def __init__(self, emulator, likelihood: SeriesLikelihood, target: str = "mean") -> None:
        if target not in ("mean", "expected"):
            raise ValueError(f"target must be 'mean' or 'expected', got {target!r}")
        super().__init__(emulated_values(emulator), likelihood)
        self.emulator, self.target = emulator, target

    def __call__(self, u: np.ndarray) -> np.ndarray:
        if self.target == "mean":
            return super().__call__(u)
        return self.likelihood.expected(*self._predict(u))

    def loglik_sd(self, u: np.ndarray) -> np.ndarray:
        return self.likelihood.loglik_sd(*self._predict(u))

    def of_outputs(self, values: np.ndarray) -> np.ndarray:
        """The exact log-likelihood of model values (rows), as :func:`refine` checks its rounds."""
        return self.likelihood(values)

    def _predict(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The emulator's mean and predictive sd at unit-cube points."""
        return self.emulator.predict(np.clip(np.atleast_2d(u), 0.0, 1.0), return_std=True)


def series_log_likelihood(values: Values, likelihood: SeriesLikelihood) -> SeriesPosteriorLikelihood:
    """``f(u (k, d)) -> (k,)``: the log-likelihood of the values at unit-cube points (-inf: failed)."""
    return SeriesPosteriorLikelihood(values, likelihood)


def maximum_likelihood(values: Values, space: ParameterSpace, operator: SeriesOperator, *,
                       seed: int = 0, max_evaluations: int = 2000, pop_size: int = 24,
                       say: Callable[[str], None] | None = None):
    """CMA-ES (from the defaults) on minus the log-likelihood with observation errors only.

    ``say``, if given, receives a progress line at most every 5 s (runs of the budget, the best
    -log L, time spent and left: :class:`~bayescal.optimize.progress.BudgetProgress`). Returns the
    :class:`~bayescal.optimize.OptimizationResult`.
    """
    from ..optimize import cma_es
    from ..optimize.progress import BudgetProgress

    loglik = series_log_likelihood(values, SeriesLikelihood(operator))
    progress = BudgetProgress(say or (lambda line: None), max_evaluations, "maximum likelihood",
                              "best -log L", every=5.0)

    def misfit(u: np.ndarray):
        ll = loglik(u)
        out = np.where(np.isfinite(ll), -ll, np.nan)
        progress.update(out)
        reasons = getattr(values, "reasons", None)
        if reasons is None or len(reasons) != len(out):
            return out
        ok = np.isfinite(out)  # the model's own reason for each failed run, kept in the history
        why = np.where(ok, "", np.where(reasons != "", reasons, "non-finite misfit"))
        return xr.Dataset({"misfit": ("point", out), "status": ("point", np.where(ok, "done", "failed")),
                           "reason": ("point", why)})

    # stops when a generation's -log L and the recent best agree within 0.01 nats (converged: a
    # fixed budget of 2,000 left DE-Hai's optimum 800-1,400 nats short of the maximum)
    return cma_es(misfit, space, x0="default", sigma0=0.2, pop_size=pop_size,
                  max_evaluations=max_evaluations, seed=seed, options={"tolfun": 1e-2, "tolfunhist": 1e-2})


def sample_posterior(log_likelihood: Callable, space: ParameterSpace, start_u: np.ndarray | None, *,
                     n_walkers: int, n_steps: int, max_steps: int | None = None, seed: int = 0,
                     ball: float = 0.02, backend: str | Path | None = None, progress: bool = False,
                     moves: str = "independence", start: str = "optimum", n_particles: int = 1000,
                     tempered: str | Path | None = None):
    """emcee (bayescal's :class:`~bayescal.posterior.PosteriorSampler`) on the log-likelihood, from a
    ball around ``start_u`` or from a tempered SMC's particles.

    Runs ``n_steps``, then (with ``max_steps``) on until the chain is 50 autocorrelation times
    long or ``max_steps`` is reached. With ``backend`` (an HDF5 file) every step is saved there
    and a killed run continues from its last step (the same chain as an uninterrupted run).
    ``start``:

    - ``"optimum"``: the walkers start in a ball of sd ``ball`` around ``start_u``;
    - ``"tempered"``: :func:`~bayescal.posterior.smc.tempered_smc` with ``n_particles`` first (a
      posterior's separated parts, each with its mass; saved to ``tempered``, a netCDF file,
      and read from it on a rerun), the walkers start at distinct particles drawn at random. An
      emcee chain does not cross a valley between parts; started in each part with its share of
      walkers, the independence proposal fitted to it moves walkers between them.

    ``moves``:

    - ``"independence"``: the first half of the ``n_steps`` adapts, the rest is the posterior.
      A pilot of ``n_steps / 16`` steps with :class:`~bayescal.posterior.DESubspaceMove`, then an
      :class:`~bayescal.posterior.IndependenceMove` fitted to the second half of the chain so far
      proposes half the steps and DE in subspaces the other half; the proposal is refitted at
      ``n_steps / 8``, ``/ 4`` and ``/ 2`` (each fit covers more of the posterior) and fixed from
      ``n_steps / 2`` on. The posterior, its autocorrelation times and its 50 tau count from
      there. At DE-Hai the autocorrelation time is 5 times shorter than DE-subspace's alone
      (``benchmarks/bench_site_direct.py``, docs/site.md).
    - ``"de_subspace"``: :class:`~bayescal.posterior.DESubspaceMove` throughout.
    - ``"de_stretch"``: :func:`~bayescal.posterior.default_moves` throughout.

    ``progress`` shows emcee's progress bar with its ETA. Returns the sampler (InferenceData via
    ``to_inference_data``).
    """
    from . import PosteriorSampler

    if start not in ("optimum", "tempered"):
        raise ValueError(f"start must be 'optimum' or 'tempered', got {start!r}")
    rng = np.random.default_rng(seed)
    chosen = first_moves(moves, n_steps)
    smc = tempered_posterior(log_likelihood, space, n_particles, seed, tempered, progress) \
        if start == "tempered" else None
    sampler = PosteriorSampler(log_likelihood, space, n_walkers=n_walkers, seed=rng, backend=backend,
                               moves=chosen)
    if smc is not None:
        init = smc.walkers(sampler.n_walkers, rng)
    else:
        init = start_u + ball * rng.standard_normal((sampler.n_walkers, space.n_free))
        init = np.clip(init, 1e-6, 1 - 1e-6)
    if moves == "independence":
        adapt_independence(sampler, n_steps, init, seed, progress)
    sampler.run(n_steps, initial=init, progress=progress)
    if max_steps is not None and max_steps > n_steps:
        # the first length check at max(n_steps, 1000) steps, as run_adaptive's default
        sampler.run_adaptive(max_steps=max_steps, min_steps=min(max(n_steps, 1000), max_steps),
                             progress=progress)
    return sampler


def tempered_posterior(log_likelihood: Callable, space, n_particles: int, seed: int,
                       path: str | Path | None = None, progress: bool = False) -> TemperedSMC:
    """:func:`~bayescal.posterior.smc.tempered_smc`, or its result saved at ``path`` by an earlier
    run (then no model runs); saved there when computed. A killed SMC continues from the last
    temperature it finished (``<path stem>_progress.nc``), bit for bit."""
    from .smc import tempered_smc

    if path is not None and Path(path).exists():
        return TemperedSMC.from_netcdf(path)
    say = (lambda line: print("  tempered SMC:", line, flush=True)) if progress else None
    # 5 accepted moves per particle and temperature: the start needs each part and roughly its
    # mass; the chain's independence proposal, fitted to the chain, moves walkers between parts
    # a kill in the SMC keeps the temperatures done: its state after each is in <path>_progress.nc
    progress_file = None if path is None else Path(path).with_name(Path(path).stem + "_progress.nc")
    smc = tempered_smc(log_likelihood, space, n_particles=n_particles, n_moves=5.0, seed=seed, say=say,
                       checkpoint=progress_file)
    if path is not None:
        tmp = Path(path).with_suffix(".partial")
        smc.to_netcdf(tmp, labels=list(space.labels))
        tmp.replace(path)  # complete or absent: a kill while writing leaves no half file
        progress_file.unlink()  # bayescal's own file, its state now in tempered.nc
    return smc


def first_moves(moves: str, n_steps: int) -> list | None:
    """The moves a chain of the named set (:data:`SITE_MOVES`) starts with (None: emcee's
    :func:`~bayescal.posterior.default_moves`); ValueError for an unknown set, or for
    ``"independence"`` with fewer than 32 steps to adapt in."""
    from . import DESubspaceMove

    if moves not in SITE_MOVES:
        raise ValueError(f"moves must be one of {SITE_MOVES}, got {moves!r}")
    if moves == "independence" and n_steps < 32:
        raise ValueError(f"moves 'independence' needs n_steps >= 32 (its 16th is the pilot), got {n_steps}")
    return None if moves == "de_stretch" else [(DESubspaceMove(), 1.0)]


def adapt_independence(sampler, n_steps: int, init: np.ndarray, seed: int, progress: bool) -> None:
    """The ``"independence"`` moves' adaptation: a DE-subspace pilot of ``n_steps / 16``, the
    proposal fitted to the second half of the chain at ``n_steps / 16, / 8, / 4, / 2``, fixed
    after. Each fit reads the chain's first ``m`` steps only, as the backend holds them after a
    restart: a resumed run makes the same fits and goes on as it would have."""
    from . import DESubspaceMove, IndependenceMove

    d, half = sampler.space.n_free, n_steps // 2
    for i, m in enumerate((half // 8, half // 4, half // 2, half)):
        sampler.run(m, initial=init if i == 0 else None, progress=progress)
        q = IndependenceMove(seed=seed).fit(sampler.sampler.get_chain()[m // 2:m].reshape(-1, d))
        sampler.adapt([(q, 0.5), (DESubspaceMove(), 0.5)], at=m)


def validation(draws: xr.Dataset, defaults: xr.Dataset, observed: dict[str, xr.DataArray],
               error_sd: dict[str, float], error_rho: dict[str, float], years: tuple[int, int],
               rng: np.random.Generator,
               periods: dict[str, dict[str, xr.DataArray]] | None = None) -> tuple[xr.Dataset, dict]:
    """Posterior-predictive bands and the REFLEX metrics on ``years``.

    Parameters
    ----------
    draws : Dataset (member, time)
        The model at posterior draws (failed members dropped).
    defaults : Dataset (member=1, time)
        The model at the default parameters.
    observed : {variable: DataArray on time}
        Observed daily values (gap-filled where the files are: every day has a value), e.g. NEE
        and GPP of the first product of each variable.
    error_sd, error_rho : {variable: float}
        Each variable's daily predictive error (sqrt(sigma^2 + s^2) at the median sigma) and AR(1)
        coefficient; the predictive draws add this noise, the annual sums its AR(1) sum.
    periods : {variable: {"month" | "year": DataArray on time}}, optional
        Products of a variable's months or years (``period = "month"``: each value the mean per
        day over the period holding its date): the observed monthly and annual values of a
        variable none of whose days are observed in ``years`` (an annual value from twelve
        observed months if no product of years).
    """
    sel = {"time": slice(str(years[0]), str(years[1]))}
    out, summary = {}, {}
    for v, obs in observed.items():
        m = draws[v].sel(sel)
        o = obs.reindex(time=m["time"].values)  # NaN: a day without observation (or a year without any)
        sd, rho = float(error_sd[v]), float(error_rho[v])
        pred = m + _ar1_noise(rng, m.shape, sd, rho)
        out[f"{v}_daily"] = pred.quantile([0.05, 0.5, 0.95], dim="member")
        out[f"{v}_observed_daily"] = o
        daily = str(obs.attrs.get("units", m.attrs.get("units", "")))
        how = period_aggregation(daily)
        for name, freq in (("monthly", "MS"), ("annual", "YS")):
            dim = f"time_{name}"  # each time scale on its own axis (no alignment across them)
            q = getattr(pred.resample(time=freq), how)().quantile([0.05, 0.5, 0.95], dim="member")
            attrs = {"units": period_units(daily, name), "cell_methods": f"time: {how}"}
            out[f"{v}_{name}"] = q.rename(time=dim).assign_attrs(attrs)
            seen = _observed_period(o, freq, how).rename(time=dim)
            if not seen.notnull().any() and (periods or {}).get(v):  # no observed day: the periods'
                seen = _observed_of_periods(periods[v], name, how, out[f"{v}_{name}"][dim], m["time"].values)
            out[f"{v}_observed_{name}"] = seen.assign_attrs({**o.attrs, **attrs})
        summary[v] = _validation_metrics(out, v, m, o, defaults[v].sel(sel).isel(member=0))
    bands = xr.Dataset(out)
    axes = (("time", "day"), ("time_monthly", "start of the month"), ("time_annual", "start of the year"))
    for t, what in axes:
        if t in bands.coords:  # CF: cf-xarray finds each by its axis
            bands[t].attrs.update(standard_name="time", axis="T", long_name=what)
    return bands, summary


def _observed_period(o: xr.DataArray, freq: str, how: str) -> xr.DataArray:
    """A month's or year's observed value: a flux's sum only where every day of it is observed
    (else NaN, not a part-sum); a state's mean of the days observed in a month (an 8-day LAI
    composite has 3-4 a month), and in a year where 9 or more of its months have one."""
    if how == "sum":
        complete = o.notnull().resample(time=freq).min().astype(bool)
        return o.resample(time=freq).sum().where(complete)
    mean = o.resample(time=freq).mean()
    if freq == "MS":
        return mean
    return mean.where(o.resample(time="MS").count().resample(time="YS").map(lambda c: (c > 0).sum()) >= 9)


def _observed_of_periods(products: dict[str, xr.DataArray], name: str, how: str,
                         index: xr.DataArray, model_days: np.ndarray) -> xr.DataArray:
    """The observed monthly or annual values (``name``) on ``index`` (the bands' period starts)
    from products of months or years (per-day means): a flux's per-day mean times the model's
    days in the period (``model_days``: a ``noleap`` model has no 29 February, as its band
    does not), a state's mean; a year from its twelve months if no product of years has it (a
    state's months weighted by their days)."""
    import pandas as pd

    days = pd.DatetimeIndex(model_days)
    if name == "annual" and "year" not in products:  # twelve observed months make a year
        starts = pd.date_range(pd.Timestamp(index.values[0]), periods=12 * index.size, freq="MS")
        months = _observed_of_periods(products, "monthly", how, xr.DataArray(starts, dims="t"), model_days)
        n = pd.Series(1, index=days).resample("MS").sum().reindex(starts, fill_value=0).to_numpy()
        per_day = months.values if how == "sum" else months.values * n  # a mean's day-sum
        x = per_day.reshape(index.size, 12)
        value = x.sum(axis=1) / (1.0 if how == "sum" else n.reshape(index.size, 12).sum(axis=1))
        return xr.DataArray(np.where(np.isfinite(x).all(axis=1), value, np.nan), dims=index.dims,
                            coords={index.dims[0]: index.values})
    values = products.get({"monthly": "month", "annual": "year"}[name])
    out = np.full(index.size, np.nan)
    if values is not None:
        per = {"monthly": "M", "annual": "Y"}[name]
        periods = pd.DatetimeIndex(values["time"].values).to_period(per)
        n = pd.Series(1, index=days.to_period(per)).groupby(level=0).sum().reindex(periods, fill_value=0)
        n = n.to_numpy().astype(float)
        n[n == 0] = np.nan  # a period the model does not simulate: no observed value for its band
        x = values.values * (n if how == "sum" else np.where(np.isnan(n), np.nan, 1.0))
        pos = pd.DatetimeIndex(index.values).get_indexer(periods.start_time)
        out[pos[pos >= 0]] = x[pos >= 0]
    return xr.DataArray(out, dims=index.dims, coords={index.dims[0]: index.values})


#: a rate per day at the end of a unit: "d-1", "day-1" (CF/UDUNITS), "/d", "/day"
_PER_DAY = re.compile(r"(?:\s+(?:d|day)-1|\s*/\s*(?:d|day))\s*$")


def period_aggregation(daily: str) -> str:
    """How a month or year of daily values is one value: ``sum`` for a rate per day (a carbon
    flux in gC m-2 d-1, gC m-2 day-1 or gC/m2/d: its annual sum in gC m-2 yr-1), ``mean`` for
    anything else (LAI in m2 m-2, latent heat in W m-2: a year's mean, not 365 of them added)."""
    return "sum" if _PER_DAY.search(daily) else "mean"


def period_units(daily: str, period: str) -> str:
    """Units of a monthly or annual value of daily values: ``gC m-2 d-1`` -> ``gC m-2 month-1`` /
    ``gC m-2 yr-1`` (sums); other units unchanged (means)."""
    if period_aggregation(daily) == "mean":
        return daily
    m = _PER_DAY.search(daily)
    per = {"monthly": "month", "annual": "yr"}[period]
    return daily[:m.start()] + (f"/{per}" if "/" in m.group() else f" {per}-1")


def _validation_metrics(out: dict, v: str, m: xr.DataArray, o: xr.DataArray, default: xr.DataArray) -> dict:
    """REFLEX's metrics on the observed days and complete observed years (None: nothing observed)."""
    ann, obs_ann = out[f"{v}_annual"], out[f"{v}_observed_annual"]
    full = obs_ann.notnull()
    inside = ((obs_ann >= ann.sel(quantile=0.05)) & (obs_ann <= ann.sel(quantile=0.95)))[full]
    seen = o.notnull()
    rmse = float(np.sqrt(((m.mean("member") - o) ** 2)[seen].mean())) if seen.any() else np.nan
    rmse_default = float(np.sqrt(((default - o) ** 2)[seen].mean())) if seen.any() else np.nan

    def val(x: float) -> float | None:
        return None if not np.isfinite(x) else float(x)

    return {
        "annual_coverage_90": val(float(inside.mean())) if inside.size else None,
        "annual_interval_width_mean": float((ann.sel(quantile=0.95) - ann.sel(quantile=0.05)).mean()),
        "rmse_daily_posterior_mean": val(rmse),
        "rmse_daily_defaults": val(rmse_default),
        "rmse_reduction": val(1.0 - rmse / rmse_default) if rmse_default > 0 else None,
        "observed_annual": [val(x) for x in obs_ann.values],
        "predicted_annual_median": [float(x) for x in ann.sel(quantile=0.5).values],
        "validation_observed_days": int(seen.sum()),
        "validation_complete_years": int(full.sum()),
    }


def _ar1_noise(rng: np.random.Generator, shape: tuple[int, int], sd: float, rho: float) -> np.ndarray:
    """Stationary AR(1) noise on (member, time) with marginal sd ``sd`` (a recursive filter)."""
    from scipy.signal import lfilter

    e = rng.standard_normal(shape) * sd * np.sqrt(1.0 - rho**2)
    e[:, 0] = rng.standard_normal(shape[0]) * sd
    return lfilter([1.0], [1.0, -rho], e, axis=1)
