"""The observation operator: model output -> summary vector, observations -> (vector, sigma).

A likelihood compares a short vector of summaries of the model output with the same summaries
of the observations, each with its sigma. :class:`BiomeSummaries` is the one the pipeline uses
for the embedded global model: log area-weighted biome means of each observed variable (the
products' spread as sigma, floored), and optionally decadal (or annual) means of global NBP against GCB 2024
(Seiler Eq. 16) with the decade's mean annual sigma — fully correlated annual errors, the
conservative choice — or, with ``gcb_errors="independent"``, sqrt(sum sigma^2) / n (about the
mean annual sigma / sqrt(10)).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr

from ..observations.products import ObservationError, Observations, observed_regional_means, regional_means

__all__ = ["BiomeSummaries", "decades"]


def decades(first: int, last: int, length: int = 10) -> list[tuple[int, int]]:
    """``[(first, first + length - 1), ...]`` up to ``last`` (the last block may be shorter)."""
    return [(a, min(a + length - 1, last)) for a in range(first, last + 1, length)]


@dataclass(frozen=True)
class BiomeSummaries:
    """Log biome means of ``variables`` (+ decadal global NBP with ``gcb_years``).

    Parameters
    ----------
    variables : sequence of str
        Observed model variables (``gpp``, ``lai``, ``hfls`` ...).
    sigma_floor : float
        Floor of the relative sigma of each biome mean.
    gcb_years : (int, int), optional
        Add decadal means of ``nbp_global`` over these years, observed by GCB 2024 NBP.
    gcb_errors : {"correlated", "independent"}, default "correlated"
        The annual GCB errors within a block: fully correlated (sigma of the mean = mean sigma)
        or independent (sqrt(sum sigma^2) / n).
    gcb_block : int, default 10
        Years per NBP block: 10 for decadal means (Seiler), 1 for every year (the likelihood
        then sees the year-to-year variability too; the two error choices coincide).
    coverage : Observations, optional
        Products whose gaps the summaries follow: where a product of a variable has missing
        cells or months, that product's biome means -- observed and modelled alike -- are taken
        over the cells and months it observes (each cell's mean over its observed months, the
        cells with any weighted by area), and a variable's summary is the mean over its products
        that observe the biome. Without it (or without gaps) every cell and month counts.
    """

    variables: Sequence[str]
    sigma_floor: float = 0.03
    gcb_years: tuple[int, int] | None = None
    gcb_errors: str = "correlated"
    gcb_block: int = 10
    coverage: Observations | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.gcb_errors not in ("correlated", "independent"):
            raise ValueError(f"gcb_errors must be 'correlated' or 'independent', got {self.gcb_errors!r}")
        if self.gcb_block < 1:
            raise ValueError(f"gcb_block must be >= 1 year, got {self.gcb_block}")
        gappy = [] if self.coverage is None else [  # found once: of_model runs on every ensemble
            v for v in self.variables if any(bool(p.data.isnull().any()) for p in self.coverage[v])]
        object.__setattr__(self, "_gappy_variables", gappy)

    def blocks(self) -> list[tuple[int, int]]:
        return decades(*self.gcb_years, self.gcb_block) if self.gcb_years else []

    def _nbp_blocks(self, nbp: xr.DataArray) -> np.ndarray:
        return np.stack([nbp.sel(year=slice(a, b)).mean("year").values for a, b in self.blocks()], axis=-1)

    def _gappy(self) -> list[str]:
        """The variables with a product that has gaps (their summaries follow them)."""
        return self._gappy_variables

    def of_model(self, ds: xr.Dataset) -> np.ndarray:
        """Summaries of model output on (member, cell, time): (member, summary)."""
        y = regional_means(ds, list(self.variables)).values
        gappy = self._gappy()
        if gappy:  # the same cells and months as the observations (``coverage``)
            n_r = y.shape[-1] // len(self.variables)
            for v in gappy:
                i = list(self.variables).index(v)
                y[..., i * n_r:(i + 1) * n_r] = _product_means(self.coverage[v], ds, ds[v])
        if self.gcb_years:
            y = np.concatenate([y, self._nbp_blocks(ds["nbp_global"])], axis=-1)
        return y

    def of_observations(self, obs: Observations, grid: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Observed summaries and their sigma; ``grid`` holds the cells' ``biome`` and ``area``."""
        with np.errstate(invalid="ignore", divide="ignore"):  # a mean <= 0: named below
            o, s = observed_regional_means(obs, list(self.variables), grid["biome"], grid["area"],
                                           floor=self.sigma_floor)
            o, s = o.values.copy(), s.values.copy()
            gappy = self._gappy()
            n_r = o.size // len(self.variables)
            for v in gappy:
                i = list(self.variables).index(v)
                sl = slice(i * n_r, (i + 1) * n_r)
                o[sl], s[sl] = _product_means(obs[v], grid, None, self.sigma_floor)
        _refuse_nonpositive(o, s, obs, list(self.variables), np.unique(grid["biome"].values))
        if self.gcb_years:
            from ..observations.gcb import load_gcb2024

            gcb = load_gcb2024()
            ob = self._nbp_blocks(gcb["nbp"])
            sig = [gcb["nbp_sigma"].sel(year=slice(a, b)).values for a, b in self.blocks()]
            if self.gcb_errors == "correlated":
                sb = np.array([s.mean() for s in sig])
            else:
                sb = np.array([np.sqrt((s**2).sum()) / s.size for s in sig])
            o, s = np.concatenate([o, ob]), np.concatenate([s, sb])
        return o, s


def _refuse_nonpositive(o: np.ndarray, s: np.ndarray, obs: Observations, variables: list[str],
                        labels: np.ndarray) -> None:
    """An ObservationError naming the variable, biome and products of the first observed summary
    that is not finite: the log of a biome mean that is not positive (a product of the other sign
    convention, or an undeclared fill value), found before any model run."""
    bad = np.flatnonzero(~(np.isfinite(o) & np.isfinite(s)))
    if not bad.size:
        return
    n_r = o.size // len(variables)
    v, r = variables[int(bad[0]) // n_r], int(bad[0]) % n_r
    biome = str(labels[r]) if labels.size == n_r else f"number {r}"
    if np.isfinite(o[bad[0]]):  # the mean is, its sigma is not (a relative sigma of zero values)
        raise ObservationError(f"the sigma of the observed mean of {v!r} over biome {biome!r} is not finite "
                               "(its products' relative sigma: sigma / |value| of values of zero?); give "
                               "the products a sigma_floor")
    names = ", ".join(f"{p.name!r} (values {float(p.data.min()):.3g} to {float(p.data.max()):.3g})"
                      for p in obs[v])
    raise ObservationError(f"the observed mean of {v!r} over biome {biome!r} is not positive ({len(bad)} "
                           f"summaries so): the likelihood compares log biome means. Its products: {names}. "
                           "A product of the other sign convention (uptake as negative?) or an undeclared "
                           "fill value (the product's fill_value)?")


def _product_means(products, where: xr.Dataset, model: xr.DataArray | None, floor: float = 0.0):
    """Log biome means over each product's observed cells and months, averaged over the products
    that observe each biome: of ``model`` (member, cell, time) -> (member, biome), or (``model``
    None) of the products themselves -> (biome,) values and their sigma (the products' spread, or
    the one product's median relative sigma, and ``floor``, in quadrature, as
    :func:`~bayescal.observations.products.observed_regional_means`). ``where`` holds ``biome``
    and ``area`` on ``cell``."""
    labels = np.unique(where["biome"].values)
    per, seen = [], []
    for p in products:
        d = p.data.transpose("cell", "time")
        mask = d.notnull().values
        at = {"cell": d["cell"].values, "time": d["time"].values}
        x = d.values[None] if model is None else model.sel(at).transpose(..., "cell", "time").values
        n = mask.sum(-1)
        tm = np.where(mask, x, 0.0).sum(-1) / np.maximum(n, 1)  # each cell's mean over its months
        cells = {"cell": d["cell"].values}
        w = ((where["biome"].sel(cells).values[None, :] == labels[:, None]) * (n > 0)
             * where["area"].sel(cells).values)  # (biome, cell): the cells observed at all
        total = w.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            per.append(np.log(tm @ w.T / np.where(total > 0, total, 1.0)))
        seen.append(total > 0)
    seen = np.array(seen)  # (product, biome): which products enter each biome's mean
    if not seen.any(axis=0).all():
        names = ", ".join(p.name for p in products)
        raise ObservationError(f"no product of {products[0].variable!r} ({names}) has a value in biome "
                               f"{str(labels[~seen.any(axis=0)][0])!r}: its summary "
                               "cannot be formed; drop the variable or give a product that covers it")
    k, on = seen.sum(axis=0), seen[:, None, :]
    per = np.stack(per)  # (product, member, biome)
    mean = np.where(on, per, 0.0).sum(axis=0) / k
    if model is not None:
        return mean
    dev = np.where(on, per - mean, 0.0)[:, 0]
    sd = np.sqrt((dev**2).sum(axis=0) / np.maximum(k - 1, 1))
    rel = [float((p.sigma / np.abs(p.data)).median()) if p.sigma is not None else 0.0 for p in products]
    one = np.array([rel[int(np.argmax(seen[:, j]))] for j in range(labels.size)])
    return mean[0], np.sqrt(np.where(k > 1, sd, one) ** 2 + floor**2)
