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
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..observations.products import Observations, observed_regional_means, regional_means

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
    """

    variables: Sequence[str]
    sigma_floor: float = 0.03
    gcb_years: tuple[int, int] | None = None
    gcb_errors: str = "correlated"
    gcb_block: int = 10

    def __post_init__(self) -> None:
        if self.gcb_errors not in ("correlated", "independent"):
            raise ValueError(f"gcb_errors must be 'correlated' or 'independent', got {self.gcb_errors!r}")
        if self.gcb_block < 1:
            raise ValueError(f"gcb_block must be >= 1 year, got {self.gcb_block}")

    def blocks(self) -> list[tuple[int, int]]:
        return decades(*self.gcb_years, self.gcb_block) if self.gcb_years else []

    def _nbp_blocks(self, nbp: xr.DataArray) -> np.ndarray:
        return np.stack([nbp.sel(year=slice(a, b)).mean("year").values for a, b in self.blocks()], axis=-1)

    def of_model(self, ds: xr.Dataset) -> np.ndarray:
        """Summaries of model output on (member, cell, time): (member, summary)."""
        y = regional_means(ds, list(self.variables)).values
        if self.gcb_years:
            y = np.concatenate([y, self._nbp_blocks(ds["nbp_global"])], axis=-1)
        return y

    def of_observations(self, obs: Observations, grid: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
        """Observed summaries and their sigma; ``grid`` holds the cells' ``biome`` and ``area``."""
        o, s = observed_regional_means(obs, list(self.variables), grid["biome"], grid["area"],
                                       floor=self.sigma_floor)
        o, s = o.values, s.values
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
