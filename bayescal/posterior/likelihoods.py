"""Gaussian and score (pseudo-)likelihoods of emulated or exact outputs, with their emulator sd."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..parameters import ParameterSpace
from .errors import PosteriorError

__all__ = ["GaussianLikelihood", "ScoreLikelihood", "baseline_temperature"]


def _emulate(emulator: Any, u: np.ndarray, with_sd: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean (and sd, zeros without) of an emulator or a plain callable at ``u``, as (n, p)."""
    if hasattr(emulator, "predict"):
        if with_sd:
            m, s = emulator.predict(u, return_std=True)
        else:
            m, s = emulator.predict(u), None
    elif callable(emulator):
        m, s = emulator(u), None
    else:
        raise PosteriorError("the emulator must have predict(u, return_std=True) or be callable")
    m = np.asarray(m, dtype=float).reshape(u.shape[0], -1)
    s = np.zeros_like(m) if s is None else np.asarray(s, dtype=float).reshape(m.shape)
    return m, s


def _check_parameters(emulator: Any, space: ParameterSpace | None) -> None:
    labels = getattr(emulator, "parameters_", None)
    if space is not None and labels is not None and list(labels) != list(space.labels):
        missing = [p for p in space.labels if p not in labels]
        extra = [p for p in labels if p not in space.labels]
        raise PosteriorError(
            "the emulator was fitted to other parameters than the space being sampled"
            + (f"; the space has {missing[:5]} it lacks" if missing else "")
            + (f"; it has {extra[:5]} the space lacks" if extra else "")
            + ("" if missing or extra else "; same parameters in another order")
        )


def _per_observation(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` (a scalar, or one per observation) on the observations' shape; a
    :class:`PosteriorError` naming it when its length is another."""
    a = np.asarray(value, dtype=float)
    try:
        return np.broadcast_to(a, shape).copy()
    except ValueError:
        raise PosteriorError(f"{name} has shape {a.shape}; give one value, or one per observation "
                             f"({shape[0]})") from None


class GaussianLikelihood:
    """Gaussian likelihood of observations given emulated (or exactly computed) outputs.

    ``log L = -1/2 sum_k [(y_k - m_k)^2 / v_k + log(2 pi v_k)]`` with
    ``v_k = sigma_k^2 + s_k(u)^2 + discrepancy_k^2``.

    Parameters
    ----------
    emulator : emulator or callable
        ``predict(u, return_std=True)`` giving (points, outputs) mean and sd (a
        :class:`~bayescal.emulators.GPEmulator` or :class:`~bayescal.emulators.SVDEmulator`), or a
        callable ``f(u) -> (points, outputs)`` for an exact, cheap model.
    observed : array_like, shape (outputs,)
    sigma : float or array_like
        Observation standard deviation(s).
    discrepancy : float or array_like
        Model-discrepancy standard deviation(s) (default 0).
    space : ParameterSpace, optional
        When given, the emulator's parameter labels must match the space's free labels.
    emulator_variance : bool
        Include the emulator's predictive variance (default True).
    dim : str
        Name of the observations' dimension in the InferenceData (default ``"summary"``).
    coords : mapping, optional
        Coordinates of the observations on ``dim`` for the InferenceData: ``{dim: labels}`` and
        any others (``{"variable": [...], "region": [...]}``), each one value per observation.
        Default: integer labels.
    units : str or sequence of str, optional
        Units of the observations (one for all, or one each: then also a ``units`` coordinate).

    Besides the log-likelihood (``__call__``) it gives, for the InferenceData of a posterior,
    the per-observation terms (:meth:`pointwise`, whose sum over observations is the
    log-likelihood), posterior-predictive draws (:meth:`predictive`: the emulated mean plus
    Gaussian noise of the likelihood's variance ``v_k``), and the observations with their
    coordinates (:meth:`observed_data`, :meth:`constant_data`).
    """

    def __init__(
        self,
        emulator: Any,
        observed: Any,
        sigma: Any,
        discrepancy: Any = 0.0,
        space: ParameterSpace | None = None,
        emulator_variance: bool = True,
        dim: str = "summary",
        coords: Mapping[str, Any] | None = None,
        units: str | Sequence[str] | None = None,
    ) -> None:
        _check_parameters(emulator, space)
        self.emulator = emulator
        self.observed = np.atleast_1d(np.asarray(observed, dtype=float))
        self.dim = dim
        self.coords = {k: np.asarray(v) for k, v in (coords or {}).items()}
        self.units = units
        for k, v in self.coords.items():
            if v.shape != (self.observed.size,):
                raise PosteriorError(f"coordinate {k!r} has shape {v.shape}; need one value per "
                                     f"observation ({self.observed.size})")
        self.sigma = _per_observation(sigma, "sigma", self.observed.shape)
        self.discrepancy = _per_observation(discrepancy, "discrepancy", self.observed.shape)
        self.emulator_variance = emulator_variance
        if not np.all(np.isfinite(self.observed)):
            raise PosteriorError("observed values must be finite (drop missing observations)")
        if (
            np.any(self.sigma < 0)
            or np.any(self.discrepancy < 0)
            or np.any(self.sigma + self.discrepancy <= 0)
        ):
            raise PosteriorError("sigma and discrepancy must be >= 0 and not both zero")

    def __call__(self, u: np.ndarray) -> np.ndarray:
        m, s = _emulate(self.emulator, u, self.emulator_variance)
        if m.shape[1] != self.observed.size:
            raise PosteriorError(
                f"the emulator gives {m.shape[1]} outputs for {self.observed.size} observations"
            )
        v = self.sigma**2 + self.discrepancy**2 + s**2
        return -0.5 * (((self.observed - m) ** 2) / v + np.log(2 * np.pi * v)).sum(axis=1)

    def of_outputs(self, outputs: np.ndarray) -> np.ndarray:
        """The log-likelihood of outputs (points, outputs) computed by the model itself: no
        emulator variance. :func:`~bayescal.posterior.refinement.refine` compares it with the
        emulated value at each round's new runs."""
        Y = np.atleast_2d(np.asarray(outputs, dtype=float))
        v = self.sigma**2 + self.discrepancy**2
        return -0.5 * (((self.observed - Y) ** 2) / v + np.log(2 * np.pi * v)).sum(axis=1)

    def _mean_var(self, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        m, s = _emulate(self.emulator, np.atleast_2d(u), self.emulator_variance)
        if m.shape[1] != self.observed.size:
            raise PosteriorError(
                f"the emulator gives {m.shape[1]} outputs for {self.observed.size} observations"
            )
        return m, self.sigma**2 + self.discrepancy**2 + s**2

    def pointwise(self, u: np.ndarray) -> np.ndarray:
        """Per-observation log-likelihood terms (points, observations); rows sum to ``self(u)``."""
        return self.pointwise_predictive(u)[0]

    def predictive(self, u: np.ndarray, rng: Any = None) -> np.ndarray:
        """Posterior-predictive draws (points, observations): ``m(u) + N(0, v(u))``."""
        return self.pointwise_predictive(u, rng)[1]

    def pointwise_predictive(self, u: np.ndarray, rng: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`pointwise` and :meth:`predictive` from one emulator call."""
        m, v = self._mean_var(u)
        ll = -0.5 * (((self.observed - m) ** 2) / v + np.log(2 * np.pi * v))
        rng = np.random.default_rng(rng)
        return ll, m + np.sqrt(v) * rng.standard_normal(m.shape)

    def _coords(self) -> dict[str, Any]:
        coords = {k: (self.dim, v) for k, v in self.coords.items() if k != self.dim}
        coords[self.dim] = self.coords.get(self.dim, np.arange(self.observed.size))
        if self.units is not None and not isinstance(self.units, str):
            coords["units"] = (self.dim, np.asarray(self.units, dtype=str))
        return coords

    def _units(self) -> str:
        if self.units is None:
            return ""
        if isinstance(self.units, str):
            return self.units
        uniq = sorted(set(map(str, self.units)))
        return uniq[0] if len(uniq) == 1 else "see the units coordinate"

    def observed_data(self, name: str = "y") -> xr.Dataset:
        """The observations on their named dimension, with coordinates and units."""
        y = xr.DataArray(self.observed, dims=self.dim, coords=self._coords(),
                         attrs={"units": self._units(), "long_name": "observed value"})
        return xr.Dataset({name: y})

    def constant_data(self) -> xr.Dataset:
        """The likelihood's fixed sds per observation: ``sigma`` and ``discrepancy``."""
        coords, units = self._coords(), self._units()
        return xr.Dataset({
            "sigma": xr.DataArray(self.sigma, dims=self.dim, coords=coords,
                                  attrs={"units": units, "long_name": "observation error sd"}),
            "discrepancy": xr.DataArray(self.discrepancy, dims=self.dim, coords=coords,
                                        attrs={"units": units, "long_name": "model discrepancy sd"}),
        })

    def loglik_sd(self, u: np.ndarray) -> np.ndarray:
        """Sd of the log-likelihood over the emulator's predictive distribution, per point.

        With independent Gaussian emulator errors ``e_k ~ N(0, s_k^2)`` and ``v_k = sigma_k^2 +
        discrepancy_k^2``, ``Var log L = sum_k (r_k^2 s_k^2 + s_k^4 / 2) / v_k^2`` exactly
        (``r = y - m``).
        """
        m, s = _emulate(self.emulator, u, True)
        v = self.sigma**2 + self.discrepancy**2
        r = self.observed - m
        return np.sqrt((((r * s) ** 2 + 0.5 * s**4) / v**2).sum(axis=1))

    def emulator_ratio(self, u: np.ndarray) -> np.ndarray:
        """Largest ratio of emulator sd to the observation + discrepancy sd, per point."""
        _, s = _emulate(self.emulator, u, True)
        return (s / np.sqrt(self.sigma**2 + self.discrepancy**2)).max(axis=1)


class ScoreLikelihood:
    """Pseudo-likelihood ``exp(-misfit / T)`` of an emulated misfit (e.g. ``1 - AMBER score``).

    Parameters
    ----------
    emulator : GPEmulator or callable
        Emulator of the misfit (lower is better).
    temperature : float
        ``T``; see :func:`baseline_temperature` for the documented rule.
    space : ParameterSpace, optional
        Checks the emulator's parameter labels.
    emulator_variance : bool
        ``False`` (default): the target is the emulator's mean misfit, ``-m/T``. ``True``: the
        pessimistic target ``-(m + s)/T`` (the 84 % quantile of the misfit), which penalises
        uncertainty instead of rewarding it. The expectation ``-m/T + s^2/(2 T^2)`` is
        deliberately not offered (module docstring).
    """

    def __init__(
        self,
        emulator: Any,
        temperature: float,
        space: ParameterSpace | None = None,
        emulator_variance: bool = False,
    ) -> None:
        _check_parameters(emulator, space)
        if not temperature > 0:
            raise PosteriorError(f"temperature must be positive, got {temperature}")
        self.emulator = emulator
        self.temperature = float(temperature)
        self.emulator_variance = emulator_variance

    def __call__(self, u: np.ndarray) -> np.ndarray:
        m, s = _emulate(self.emulator, u, self.emulator_variance)
        return -(m[:, 0] + (s[:, 0] if self.emulator_variance else 0.0)) / self.temperature

    def loglik_sd(self, u: np.ndarray) -> np.ndarray:
        """Sd of the log-likelihood over the emulator's predictive distribution: ``s / T``."""
        _, s = _emulate(self.emulator, u, True)
        return s[:, 0] / self.temperature

    def emulator_ratio(self, u: np.ndarray) -> np.ndarray:
        return self.loglik_sd(u)


def baseline_temperature(baseline_misfits: Any) -> float:
    """Temperature from the baseline misfit: the misfit noise alone causes (DFO-LS paper).

    ``baseline_misfits`` are misfits of the true (or best) parameters against several noise
    realisations of the observations; the temperature is their mean. With it, parameter sets
    whose misfit exceeds the best by one baseline are ``e`` times less probable.
    """
    b = np.asarray(baseline_misfits, dtype=float)
    if b.size == 0 or not np.all(np.isfinite(b)) or b.mean() <= 0:
        raise PosteriorError("baseline misfits must be finite with a positive mean")
    return float(b.mean())
