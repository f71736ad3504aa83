"""One line of progress for an optimiser's runs: how many of the budget, the best misfit so far,
the time spent and an estimate of the time left."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

__all__ = ["BudgetProgress"]


class BudgetProgress:
    """Count evaluations as they are made and ``say`` a progress line.

    Parameters
    ----------
    say : callable
        Receives each line (e.g. ``print``).
    budget : int, optional
        The most evaluations the optimiser may make; with it the line gives the time left.
    label : str
        The line's first word (``"optimize"``).
    best : str
        What the smallest value is called (``"best misfit"``, ``"best -log L"``).
    every : float
        Seconds between lines (0: a line per update); the update that spends the budget always
        says its line.
    """

    def __init__(self, say: Callable[[str], None], budget: int | None = None, label: str = "optimize",
                 best: str = "best misfit", every: float = 0.0) -> None:
        self.say, self.budget, self.label, self.best_name, self.every = say, budget, label, best, every
        self.n, self.best = 0, np.inf
        self.start = self.last = time.monotonic()

    def update(self, values: np.ndarray) -> None:
        """Record a batch's misfits (NaN: failed) and say a line if ``every`` seconds have passed."""
        values = np.atleast_1d(np.asarray(values, float))
        self.n += values.size
        if np.isfinite(values).any():
            self.best = min(self.best, float(np.nanmin(values)))
        now = time.monotonic()
        spent_budget = self.budget is not None and self.n >= self.budget
        if now - self.last < self.every and not spent_budget:  # the budget's last line always
            return
        self.last, spent = now, now - self.start
        of = f" of {self.budget}" if self.budget else ""
        left = ("" if not self.budget or self.n >= self.budget
                else f", about {spent / self.n * (self.budget - self.n):.0f} s left")
        self.say(f"  {self.label}: {self.n}{of} runs, {self.best_name} {self.best:.6g}, {spent:.0f} s{left}")
