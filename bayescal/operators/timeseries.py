"""Time series at a site: the observation operator and a Gaussian likelihood with an error model.

:class:`SeriesOperator` turns model output on (member, time) into one vector of the observed
values of chosen years, daily or aggregated (weekly, monthly, annual means of the observed days),
and the products into (vector, sigma). An aggregate's sigma is that of a mean of independent
daily errors, ``sqrt(sum sigma_i^2) / n``.

:class:`SeriesLikelihood` is Gaussian with a model-data *error model* per product (docs/site.md):

* discrepancy: each value's sd is ``tau = sqrt(sigma_obs^2 + s^2)``, ``s`` the product's
  model-data discrepancy (sigma inflation);
* autocorrelation: standardised residuals ``z = (y - m) / tau`` follow an AR(1) with coefficient
  ``rho`` along consecutive periods of a product (exact Gaussian AR(1) density, restarted after
  every gap).

:func:`estimate_error_model` sets ``s`` and ``rho`` from residuals (method of moments), as the
site workflow does at the maximum-likelihood point (empirical Bayes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from ..observations.products import ObservationError, Product
from ..readers.series import PERIOD_FREQUENCY

__all__ = ["AGGREGATES", "SeriesLikelihood", "SeriesOperator", "estimate_error_model"]

AGGREGATES = ("daily", "weekly", "monthly", "annual")
#: a product's period (what one of its values stands for: ``Product.attrs["period"]``) as an aggregate
_AGGREGATE_OF = {"day": "daily", "week": "weekly", "month": "monthly", "year": "annual"}
_FREQ = {aggregate: PERIOD_FREQUENCY[period] for period, aggregate in _AGGREGATE_OF.items()}


def period_rows(time: pd.DatetimeIndex, period: str, model_time: pd.DatetimeIndex
                ) -> tuple[sparse.csr_matrix, np.ndarray]:
    """The model's days each value stands for: rows (value, model day) that average the days of
    the ``period`` holding each time (``"day"``: the day itself), and which values have them all.

    Returns the rows of the values that have (``(inside.sum(), model_time.size)``) and ``inside``,
    a mask over ``time``: a value whose period the model's days do not cover (its day missing, a
    month or year cut by the model's first or last day) is left out. A model calendar without
    29 February (``noleap``) covers a period without it.
    """
    if period == "day":
        pos = model_time.get_indexer(time)
        inside = pos >= 0
        pos = pos[inside]
        return sparse.csr_matrix((np.ones(pos.size), (np.arange(pos.size), pos)),
                                 shape=(pos.size, model_time.size)), inside
    per = time.to_period(_FREQ[_AGGREGATE_OF[period]])
    first, last = per.start_time.normalize(), per.end_time.normalize()
    i0 = model_time.searchsorted(first)
    i1 = model_time.searchsorted(last, side="right")
    feb29 = pd.to_datetime({"year": first.year, "month": 2, "day": 28}) + pd.Timedelta(days=1)
    leap = (first.is_leap_year & (feb29 >= first) & (feb29 <= last)).astype(int)  # a day noleap lacks
    whole = (last - first).days.to_numpy() + 1
    covered = (first >= model_time[0]) & (last <= model_time[-1]) if model_time.size else False
    inside = np.asarray(covered & (i1 - i0 >= whole - np.asarray(leap)), dtype=bool)
    i0, n = i0[inside], (i1 - i0)[inside]
    rows = np.repeat(np.arange(n.size), n)
    cols = np.repeat(i0 - np.concatenate([[0], np.cumsum(n)[:-1]]), n) + np.arange(n.sum())
    return sparse.csr_matrix((np.repeat(1.0 / n, n), (rows, cols)), shape=(n.size, model_time.size)), inside


class SeriesOperator:
    """Model output (member, time) -> observed values of ``years``, daily or aggregated.

    Parameters
    ----------
    products : sequence of Product
        Series on ``time`` (daily), each naming the model variable it observes.
    time : array of datetime64
        The model's daily time axis.
    years : (first, last)
        Years whose observations enter (e.g. the calibration years).
    aggregate : {"daily", "weekly", "monthly", "annual"}
    """

    def __init__(self, products: Sequence[Product], time: np.ndarray, years: tuple[int, int],
                 aggregate: str = "daily") -> None:
        if aggregate not in AGGREGATES:
            raise ObservationError(f"aggregate must be one of {AGGREGATES}, got {aggregate!r}")
        if not products:
            raise ObservationError("a series operator needs at least one product")
        self.products, self.aggregate, self.years = list(products), aggregate, tuple(years)
        model_time = pd.DatetimeIndex(time)
        rows, y, var, prod, consecutive, start = [], [], [], [], [], []
        for k, p in enumerate(self.products):
            w, yk, vk, cons, tk = self._product_rows(p, model_time)
            rows.append(w)
            y.append(yk)
            var.append(vk)
            prod.append(np.full(yk.size, k))
            consecutive.append(cons)
            start.append(tk)
        self.weights = sparse.vstack(rows).tocsr()  # (n values, n model days)
        self.y, self.sigma = np.concatenate(y), np.sqrt(np.concatenate(var))
        self.product_index = np.concatenate(prod)
        self.consecutive = np.concatenate(consecutive)  # previous value: same product, previous period
        self.time = np.concatenate(start).astype("datetime64[ns]")  # first day of each value's period
        self.variables = [p.variable for p in self.products]
        self._rows_cache: list | None = None

    def coords(self, dim: str = "observation") -> dict:
        """Coordinates of the values on ``dim``: period start, variable, product and units."""
        pi = self.product_index
        return {
            dim: np.arange(self.y.size),
            "time": (dim, self.time, {"long_name": f"first day of the {self.aggregate} period"}),
            "variable": (dim, np.array([self.products[k].variable for k in pi], dtype=str)),
            "product": (dim, np.array([self.products[k].name for k in pi], dtype=str)),
            "units": (dim, np.array([self.products[k].units for k in pi], dtype=str)),
        }

    def units(self) -> str:
        """The values' units: the one all products share, else "see the units coordinate"."""
        uniq = sorted({p.units for p in self.products})
        return uniq[0] if len(uniq) == 1 else "see the units coordinate"

    def _product_rows(self, p: Product, model_time: pd.DatetimeIndex):
        label = f"product {p.name!r} ({p.variable})"
        if p.data.dims != ("time",):
            raise ObservationError(f"{label}: a series product must be on ('time',), got {p.data.dims}")
        t = pd.DatetimeIndex(p.data["time"].values)
        sel = (t.year >= self.years[0]) & (t.year <= self.years[1]) & p.data.notnull().values
        period = p.attrs.get("period", "day")
        days, inside = period_rows(t[sel], period, model_time)
        if period != "day" and inside.any() and not inside.all():  # (days of a daily one: SiteContext says)
            import warnings

            warnings.warn(f"{label}: {int((~inside).sum())} value(s) of a {period} that the model's days "
                          f"({model_time[0]:%Y-%m-%d} to {model_time[-1]:%Y-%m-%d}) do not wholly cover are "
                          f"left out, the first {t[sel][~inside][0]:%Y-%m-%d}", UserWarning, stacklevel=3)
        if not inside.any():
            raise ObservationError(f"{label}: no observed day in {self.years[0]}-{self.years[1]} "
                                   "within the model's period (no overlap in time)")
        t_obs = t[sel][inside]
        val, var = p.data.values[sel][inside], (p.sigma.values[sel][inside] ** 2 if p.sigma is not None else
                                                np.zeros(inside.sum()))
        # the coarser of the value's own period and the aggregate's
        freq = _FREQ[max(self.aggregate, _AGGREGATE_OF[period], key=AGGREGATES.index)]
        codes, uniq = pd.factorize(t_obs.to_period(freq), sort=True)
        n = np.bincount(codes)
        mean = sparse.csr_matrix((1.0 / n[codes], (codes, np.arange(codes.size))),
                                 shape=(uniq.size, codes.size))
        w = (mean @ days).tocsr()
        yk = np.bincount(codes, weights=val) / n
        vk = np.bincount(codes, weights=var) / n**2
        cons = np.concatenate([[False], np.diff(uniq.asi8) == 1])  # period ordinals: consecutive
        return w, yk, vk, cons, np.asarray(uniq.start_time.values)

    def of_model(self, ds: xr.Dataset) -> np.ndarray:
        """Model values (member, n) matching :attr:`y`; NaN where the model output is NaN."""
        for k, v in enumerate(self.variables):
            if v not in ds:
                raise ObservationError(f"the model output has no variable {v!r} for product "
                                       f"{self.products[k].name!r}")
        return self.of_arrays({v: ds[v].transpose("member", "time").values for v in set(self.variables)})

    def of_arrays(self, arrays: Mapping[str, np.ndarray]) -> np.ndarray:
        """:meth:`of_model` of ``{variable: (member, time) array}`` on the model's days."""
        out = np.empty((next(iter(arrays.values())).shape[0], self.y.size))
        for v, idx, w in self._rows():
            # a daily product's rows pick one day each: a gather (half the sparse product's time)
            out[:, idx] = arrays[v][:, w] if isinstance(w, np.ndarray) else (w @ arrays[v].T).T
        return out

    def _rows(self) -> list[tuple[str, np.ndarray, sparse.csr_matrix | np.ndarray]]:
        """Per product: its variable, its values' positions and its rows of :attr:`weights`, or
        the day each row picks when every row is one day with weight 1 (made once: the direct
        route calls :meth:`of_arrays` tens of thousands of times)."""
        if self._rows_cache is None:
            self._rows_cache = []
            for k, v in enumerate(self.variables):
                i = np.flatnonzero(self.product_index == k)
                w = self.weights[i]
                if np.array_equal(np.diff(w.indptr), np.ones(len(i), dtype=w.indptr.dtype)) \
                        and np.all(w.data == 1.0):
                    w = w.indices.copy()
                self._rows_cache.append((v, i, w))
        return self._rows_cache


class SeriesLikelihood:
    """Gaussian log-likelihood of model values against a :class:`SeriesOperator`'s observations.

    Parameters
    ----------
    operator : SeriesOperator
    discrepancy : array (n_products,), optional
        Model-data discrepancy sd ``s`` of each product (default 0).
    rho : array (n_products,), optional
        AR(1) coefficient of each product's standardised residuals (default 0).
    emulator_sd : array (n,), optional
        A fixed sd of each value added in quadrature to sigma and the discrepancy (default 0), e.g.
        an emulator's known error. The site workflow's emulator route does not use it: it refines
        the emulator with model runs instead (:meth:`loglik_sd` guides them).
    """

    def __init__(self, operator: SeriesOperator, discrepancy=None, rho=None, emulator_sd=None) -> None:
        n_p = len(operator.products)
        self.operator = operator
        self.discrepancy = np.zeros(n_p) if discrepancy is None else np.asarray(discrepancy, float)
        self.rho = np.zeros(n_p) if rho is None else np.asarray(rho, float)
        if self.discrepancy.shape != (n_p,) or self.rho.shape != (n_p,):
            raise ObservationError(f"discrepancy and rho need one value per product ({n_p})")
        if (self.discrepancy < 0).any() or (np.abs(self.rho) >= 1).any():
            raise ObservationError("discrepancy must be >= 0 and |rho| < 1")
        pi = operator.product_index
        self.emulator_sd = np.zeros(pi.size) if emulator_sd is None else np.asarray(emulator_sd, float)
        if self.emulator_sd.shape != (pi.size,) or (self.emulator_sd < 0).any():
            raise ObservationError(f"emulator_sd needs one value >= 0 per observed value ({pi.size})")
        self.tau = np.sqrt(operator.sigma**2 + self.discrepancy[pi] ** 2 + self.emulator_sd**2)
        if not (self.tau > 0).all():
            raise ObservationError("every observation needs sigma > 0 or a discrepancy > 0")
        r = np.where(operator.consecutive, self.rho[pi], 0.0)
        self._r, self._innov = r, 1.0 - r**2
        self._const = -0.5 * pi.size * np.log(2 * np.pi) - np.log(self.tau).sum() - 0.5 * np.log(
            self._innov).sum()

    def standardised(self, model_values: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(model_values) - self.operator.y) / self.tau

    def __call__(self, model_values: np.ndarray) -> np.ndarray:
        """Log-likelihood of each row of ``model_values`` (member, n); -inf where it has NaN."""
        z = self.standardised(model_values)
        prev = np.concatenate([np.zeros((z.shape[0], 1)), z[:, :-1]], axis=1)
        e = z - self._r * prev
        ll = self._const - 0.5 * (e**2 / self._innov).sum(axis=1)
        return np.where(np.isfinite(ll), ll, -np.inf)

    def loglik_sd(self, model_values: np.ndarray, model_sd: np.ndarray) -> np.ndarray:
        """Sd of the log-likelihood per row when each value is uncertain with sd ``model_sd``
        (an emulator's predictive sd; independent Gaussian errors).

        First order in the gradient ``g = d log L / d m`` of the AR(1) density plus the
        second-order term of independent values: ``Var = sum g^2 sd^2 + sum sd^4 / (2 tau^4)``
        (exact for ``rho = 0``: :meth:`bayescal.posterior.GaussianLikelihood.loglik_sd`'s formula).
        """
        z = self.standardised(model_values)
        sd = np.atleast_2d(np.asarray(model_sd, float))
        prev = np.concatenate([np.zeros((z.shape[0], 1)), z[:, :-1]], axis=1)
        w = (z - self._r * prev) / self._innov  # minus d log L / d e_i, and e_(i+1) holds -r z_i
        g = -w + np.concatenate([self._r[1:] * w[:, 1:], np.zeros((z.shape[0], 1))], axis=1)
        q = sd / self.tau
        return np.sqrt(((g * q) ** 2).sum(axis=1) + 0.5 * (q**4).sum(axis=1))

    def expected(self, model_values: np.ndarray, model_sd: np.ndarray) -> np.ndarray:
        """The log-likelihood averaged over the values' uncertainty: ``E[log L(m + e)]`` for
        independent Gaussian errors ``e`` of sd ``model_sd`` (an emulator's predictive sd).

        Exact for the AR(1) density: with ``q = sd / tau`` each innovation's square gains
        ``q_i^2 + r_i^2 q_(i-1)^2`` on average, so ``E[log L] = log L(m) - 1/2 sum_i (q_i^2 +
        r_i^2 q_(i-1)^2) / (1 - r_i^2)``. It equals the log-likelihood where the sd is 0 and falls
        where the values are uncertain (Jensen: below ``log E[L]``); rows with NaN give -inf.
        """
        q2 = (np.atleast_2d(np.asarray(model_sd, float)) / self.tau) ** 2
        prev = np.concatenate([np.zeros((q2.shape[0], 1)), q2[:, :-1]], axis=1)
        penalty = 0.5 * ((q2 + self._r**2 * prev) / self._innov).sum(axis=1)
        out = self(model_values) - penalty
        return np.where(np.isfinite(out), out, -np.inf)

    def pointwise(self, model_values: np.ndarray) -> np.ndarray:
        """Per-value log-likelihood terms (member, n): the AR(1) density's conditional terms
        ``log p(z_i | z_(i-1))``, whose sum over values is :meth:`__call__` (NaN where the model
        value is)."""
        z = self.standardised(model_values)
        prev = np.concatenate([np.zeros((z.shape[0], 1)), z[:, :-1]], axis=1)
        e = z - self._r * prev
        return (-0.5 * np.log(2 * np.pi) - np.log(self.tau) - 0.5 * np.log(self._innov)
                - 0.5 * e**2 / self._innov)

    def predictive(self, model_values: np.ndarray, rng=None) -> np.ndarray:
        """Posterior-predictive draws (member, n): the model values plus the error model's noise,
        ``tau`` times a standardised AR(1) along each product's consecutive periods."""
        m = np.atleast_2d(np.asarray(model_values, float))
        rng = np.random.default_rng(rng)
        eps = rng.standard_normal(m.shape) * np.sqrt(self._innov)
        z = np.empty_like(eps)
        z[:, 0] = eps[:, 0]
        for i in range(1, z.shape[1]):
            z[:, i] = self._r[i] * z[:, i - 1] + eps[:, i]
        return m + self.tau * z

    def observed_data(self, name: str = "y", dim: str = "observation") -> xr.Dataset:
        """The observed values on ``dim`` with time, variable, product and units coordinates."""
        y = xr.DataArray(self.operator.y, dims=dim, coords=self.operator.coords(dim),
                         attrs={"units": self.operator.units(), "long_name": "observed value",
                                "aggregate": self.operator.aggregate})
        return xr.Dataset({name: y})

    def constant_data(self, dim: str = "observation") -> xr.Dataset:
        """Per value: observation sd, total sd ``tau`` and AR(1) coefficient; per product: ``s``, ``rho``."""
        op, units = self.operator, self.operator.units()
        coords = op.coords(dim)
        return xr.Dataset(
            {
                "sigma": xr.DataArray(op.sigma, dims=dim, coords=coords,
                                      attrs={"units": units, "long_name": "observation error sd"}),
                "tau": xr.DataArray(self.tau, dims=dim, coords=coords,
                                    attrs={"units": units, "long_name": "sd of observation error and "
                                           "discrepancy"}),
                "ar1": xr.DataArray(self._r, dims=dim, coords=coords, attrs={
                    "long_name": "AR(1) coefficient on the previous value (0: restart)"}),
                "discrepancy": ("product_name", self.discrepancy, {"long_name": "model discrepancy sd"}),
                "rho": ("product_name", self.rho, {"long_name": "AR(1) coefficient of the residuals"}),
            },
            coords={"product_name": [p.name for p in op.products]},
        )


#: the pairs of consecutive periods a product needs for its AR(1) ``rho`` to be estimated (with
#: fewer, as of an 8-day LAI product's daily values, ``rho`` is 0: not estimable)
MIN_RHO_PAIRS = 3


def consecutive_pairs(operator: SeriesOperator) -> np.ndarray:
    """Per product, how many of its values follow the previous period's (what ``rho`` is
    estimated from; :data:`MIN_RHO_PAIRS`)."""
    return np.bincount(operator.product_index[operator.consecutive],
                       minlength=len(operator.products)).astype(int)


def estimate_error_model(operator: SeriesOperator, model_values: np.ndarray,
                         rho_max: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Discrepancy ``s`` and AR(1) ``rho`` per product from the residuals of one model run.

    ``s^2 = max(0, mean(r^2) - mean(sigma^2))`` (what the observation errors do not explain) and
    ``rho`` the lag-1 correlation of the standardised residuals over consecutive periods, clipped
    to [0, rho_max] (0 for a product with fewer than :data:`MIN_RHO_PAIRS` consecutive pairs).
    """
    r = np.asarray(model_values, float).reshape(-1) - operator.y
    pi, n_p = operator.product_index, len(operator.products)
    s, rho = np.zeros(n_p), np.zeros(n_p)
    for k in range(n_p):
        i = np.flatnonzero(pi == k)
        s[k] = np.sqrt(max(0.0, float(np.mean(r[i] ** 2) - np.mean(operator.sigma[i] ** 2))))
        tau = np.sqrt(operator.sigma[i] ** 2 + s[k] ** 2)
        z = r[i] / tau
        c = operator.consecutive[i][1:]
        if c.sum() >= MIN_RHO_PAIRS:
            a, b = z[1:][c], z[:-1][c]
            rho[k] = float(np.clip(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)), 0.0, rho_max))
    return s, rho
