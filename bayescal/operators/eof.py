"""Empirical orthogonal functions of an ensemble's maps and Dagon et al.'s cost in EOF space.

Dagon et al. (2020, Sect. 3.2 and 4.1–4.2) reduce each output variable's ensemble of mean maps to
a few EOFs and emulate the principal components (PCs):

- Eq. (3): ``X = U s V`` with ``X`` the area-weighted anomalies (members x cells) about the
  ensemble mean, ``U`` the PCs, ``s`` the singular values, ``V`` the EOFs;
- Eq. (5): observations in the same space, ``U_obs = X_obs (s V)^-1 = X_obs V^T s^-1``, with the
  observed anomalies taken about the *ensemble* mean;
- Eq. (6): ``J(p) = sum_v sum_m lambda_vm ((U_vm(p) - U_obs,vm) / sigma(U_obs*,vm))^2``, with
  ``lambda`` the fraction of variance of each mode and ``sigma`` the spread of the observed PCs
  over the observational years.

Area weighting multiplies each cell by ``sqrt(area / mean area)``, so squared anomalies are
area-weighted and the modes are those of the area-weighted covariance.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

__all__ = ["EOFBasis", "eof_cost"]


@dataclass
class EOFBasis:
    """The leading EOFs of one variable's ensemble of maps.

    Build with :meth:`fit`; ``mean`` (cell), ``weight`` (cell), ``s`` (mode), ``V`` (mode, cell)
    and ``fraction`` (mode; the fraction of the ensemble's variance each mode explains).
    """

    mean: np.ndarray
    weight: np.ndarray
    s: np.ndarray
    V: np.ndarray
    fraction: np.ndarray

    @classmethod
    def fit(cls, maps: np.ndarray, area: np.ndarray, n_modes: int | None = 3,
            variance: float = 0.95) -> EOFBasis:
        """EOFs of ``maps`` (members, cells) with cell ``area``.

        ``n_modes`` fixes the number of modes (Dagon: 3); ``None`` keeps the fewest that explain
        ``variance`` of it.
        """
        maps = np.asarray(maps, dtype=float)
        area = np.asarray(area, dtype=float)
        if maps.ndim != 2 or maps.shape[1] != area.size:
            raise ValueError(f"EOFBasis.fit: maps must be (members, {area.size} cells), got {maps.shape}")
        if not np.isfinite(maps).all():
            raise ValueError("EOFBasis.fit: maps hold NaN/inf (drop failed members first)")
        weight = np.sqrt(area / area.mean())
        mean = maps.mean(axis=0)
        _, s, V = np.linalg.svd((maps - mean) * weight, full_matrices=False)
        frac = s**2 / np.sum(s**2)
        k = n_modes if n_modes is not None else int(np.searchsorted(np.cumsum(frac), variance) + 1)
        k = min(k, s.size)
        return cls(mean=mean, weight=weight, s=s[:k], V=V[:k], fraction=frac[:k])

    @property
    def n_modes(self) -> int:
        return int(self.s.size)

    def project(self, maps: np.ndarray) -> np.ndarray:
        """PCs of ``maps`` (..., cells) in this basis (Eq. 5); the ensemble's own give its ``U``."""
        return ((np.asarray(maps, dtype=float) - self.mean) * self.weight) @ self.V.T / self.s

    def reconstruct(self, pcs: np.ndarray) -> np.ndarray:
        """Maps (..., cells) from PCs (..., modes): the ensemble mean plus the modes' patterns."""
        return self.mean + (np.asarray(pcs, dtype=float) * self.s) @ self.V / self.weight

    def to_dataset(self, name: str) -> xr.Dataset:
        """This basis as netCDF-ready variables prefixed by ``name``."""
        return xr.Dataset({
            f"{name}_mean": ("cell", self.mean), f"{name}_weight": ("cell", self.weight),
            f"{name}_s": (f"{name}_mode", self.s), f"{name}_eof": ((f"{name}_mode", "cell"), self.V),
            f"{name}_fraction": (f"{name}_mode", self.fraction)})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset, name: str) -> EOFBasis:
        return cls(mean=ds[f"{name}_mean"].values, weight=ds[f"{name}_weight"].values,
                   s=ds[f"{name}_s"].values, V=ds[f"{name}_eof"].values,
                   fraction=ds[f"{name}_fraction"].values)


def eof_cost(predicted: Mapping[str, np.ndarray], observed: Mapping[str, np.ndarray],
             obs_sd: Mapping[str, np.ndarray], fraction: Mapping[str, np.ndarray]) -> np.ndarray:
    """Dagon et al.'s Eq. (6): the variance-weighted, normalised squared PC error summed over
    variables and modes.

    Parameters
    ----------
    predicted : mapping variable -> array (..., modes)
        PCs of the model or the emulator at the points being scored.
    observed, obs_sd, fraction : mapping variable -> array (modes,)
        Observed PCs (Eq. 5), their spread over the observational years and each mode's fraction
        of variance ``lambda``.

    Returns
    -------
    ndarray (...,)
        ``J`` at each point.
    """
    total = 0.0
    for v, pcs in predicted.items():
        z = (np.asarray(pcs, dtype=float) - observed[v]) / obs_sd[v]
        total = total + (fraction[v] * z**2).sum(axis=-1)
    return np.asarray(total)
