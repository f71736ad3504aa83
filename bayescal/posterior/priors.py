"""Independent priors on the free parameters, in unit-cube coordinates; TOML in."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from ..parameters import ParameterSpace, family
from .errors import PosteriorError

__all__ = ["PRIOR_KINDS", "Priors"]

PRIOR_KINDS = ("uniform", "truncnorm", "beta", "loguniform")


class Priors:
    """Independent priors on the free parameters, evaluated in unit-cube coordinates.

    Parameters
    ----------
    space : ParameterSpace
    spec : mapping, optional
        Keys are labels (``"vmax[BDL-EVG]"``) or family names (``"vmax"``, all its free values);
        values are ``{"dist": "uniform"}`` (the default for every parameter),
        ``{"dist": "truncnorm", "mean": m, "sd": s}`` (physical units, truncated to the bounds),
        ``{"dist": "beta", "a": a, "b": b}`` (on the [lower, upper] interval) or
        ``{"dist": "loguniform"}`` (density proportional to 1/x on the bounds, lower > 0).
    """

    def __init__(self, space: ParameterSpace, spec: Mapping[str, Mapping[str, Any]] | None = None) -> None:
        self.space = space
        self.spec = dict(spec or {})
        labels = space.labels
        lo, hi = space.lower, space.upper
        self._dists: dict[int, Any] = {}
        self.kinds = ["uniform"] * len(labels)
        for key, s in self.spec.items():
            idx = [i for i, lab in enumerate(labels) if lab == key or family(lab) == key]
            if not idx:
                raise PosteriorError(f"prior for {key!r}: no free parameter of that label or family")
            if not isinstance(s, Mapping) or "dist" not in s:
                raise PosteriorError(f"prior for {key!r} must be a table with a 'dist' key")
            kind = s["dist"]
            if kind not in PRIOR_KINDS:
                raise PosteriorError(f"prior for {key!r}: dist must be one of {PRIOR_KINDS}, got {kind!r}")
            allowed = {
                "uniform": set(),
                "truncnorm": {"mean", "sd"},
                "beta": {"a", "b"},
                "loguniform": set(),
            }[kind]
            extra = set(s) - allowed - {"dist"}
            missing = allowed - set(s)
            if extra or missing:
                raise PosteriorError(
                    f"prior for {key!r} ({kind}): "
                    + (f"unknown keys {sorted(extra)} " if extra else "")
                    + (f"missing keys {sorted(missing)}" if missing else "")
                )
            for i in idx:
                self.kinds[i] = kind
                w = hi[i] - lo[i]
                if kind == "truncnorm":
                    if s["sd"] <= 0:
                        raise PosteriorError(f"prior for {labels[i]!r}: sd must be positive")
                    m, sd = (s["mean"] - lo[i]) / w, s["sd"] / w
                    self._dists[i] = stats.truncnorm(-m / sd, (1 - m) / sd, loc=m, scale=sd)
                elif kind == "beta":
                    if s["a"] <= 0 or s["b"] <= 0:
                        raise PosteriorError(f"prior for {labels[i]!r}: beta a and b must be positive")
                    self._dists[i] = stats.beta(s["a"], s["b"])
                elif kind == "loguniform":
                    if lo[i] <= 0:
                        raise PosteriorError(
                            f"prior for {labels[i]!r}: loguniform needs a positive lower bound"
                        )
                    self._dists[i] = _LogUniformUnit(lo[i], hi[i])

    @property
    def n(self) -> int:
        return self.space.n_free

    def logpdf(self, u: np.ndarray) -> np.ndarray:
        """Log prior density of unit-cube points ``u`` (points, parameters); -inf outside [0, 1]."""
        u = np.atleast_2d(np.asarray(u, dtype=float))
        out = np.zeros(u.shape[0])
        inside = np.all((u >= 0) & (u <= 1), axis=1)
        for i, dist in self._dists.items():
            out += dist.logpdf(np.clip(u[:, i], 0, 1))
        out[~inside] = -np.inf
        return out

    def sample(self, n: int, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """``n`` independent draws in unit-cube coordinates."""
        rng = np.random.default_rng(seed)
        u = rng.random((n, self.n))
        for i, dist in self._dists.items():
            u[:, i] = dist.ppf(u[:, i])
        return u

    def sd(self) -> np.ndarray:
        """Prior standard deviation of each parameter in unit-cube coordinates."""
        return np.array(
            [self._dists[i].std() if i in self._dists else np.sqrt(1 / 12) for i in range(self.n)]
        )

    @classmethod
    def from_toml(cls, path: str | Path, space: ParameterSpace) -> Priors:
        """Read the ``[priors]`` table of a TOML file (``[priors.vmax] dist = "beta" ...``)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"prior file {path} does not exist")
        with path.open("rb") as f:
            data = tomllib.load(f)
        try:
            return cls(space, data.get("priors", {}))
        except PosteriorError as err:
            raise PosteriorError(f"{path}: {err}") from None


class _LogUniformUnit:
    """Log-uniform density on [lo, hi] expressed in the linear unit coordinate u."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi
        self._d = stats.loguniform(lo, hi)

    def logpdf(self, u: np.ndarray) -> np.ndarray:
        return self._d.logpdf(self.lo + u * (self.hi - self.lo)) + np.log(self.hi - self.lo)

    def ppf(self, q: np.ndarray) -> np.ndarray:
        return (self._d.ppf(q) - self.lo) / (self.hi - self.lo)

    def std(self) -> float:
        return self._d.std() / (self.hi - self.lo)
