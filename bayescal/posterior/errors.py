"""Errors and warnings of the posterior modules."""

from __future__ import annotations

__all__ = ["PosteriorError", "PosteriorWarning"]


class PosteriorError(ValueError):
    """Invalid input to a likelihood, prior or sampler."""


class PosteriorWarning(UserWarning):
    """A posterior that should not be trusted as it is (short chains, emulator extrapolation)."""
