"""The one optimisation loop: ask a strategy for a batch, run it, tell the misfits, checkpoint.

A *strategy* is any object with ``ask() -> (k, d)`` unit-cube points, ``tell(misfit (k,))``,
``stop() -> bool`` and, if it can be checkpointed, ``state_dict() -> dict`` (JSON-able) and
``load_state(dict)``; ``progress(recorder) -> str`` is optional. ``cma``'s evolution strategy
and :class:`~bayescal.optimize.ga.GeneticAlgorithm` are used this way. Every batch is one call
of the objective (one ensemble through the runner).

Budgets are hard limits: when a batch would pass ``max_evaluations`` only its first members are
run, the strategy is not told the partial batch, and the loop stops.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .history import Recorder
from .objective import OptimizeError

__all__ = ["Strategy", "run_strategy"]


class Strategy(Protocol):
    """What :func:`run_strategy` needs of an optimiser."""

    def ask(self) -> np.ndarray: ...

    def tell(self, misfit: np.ndarray) -> None: ...

    def stop(self) -> bool: ...


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, rename)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _resume(strategy: Any, rec: Recorder, ckpt: Path) -> None:
    try:
        state = json.loads(ckpt.read_text())
        strategy_state, history = state["strategy"], state["history"]
    except (ValueError, KeyError) as err:
        raise OptimizeError(f"checkpoint {ckpt} is not a bayescal optimiser checkpoint ({err}); "
                            "remove it to start afresh") from err
    strategy.load_state(strategy_state)
    rec.load_dict(history)


def run_strategy(
    strategy: Any,
    rec: Recorder,
    *,
    max_evaluations: int | None = None,
    checkpoint: str | Path | None = None,
    progress: bool = False,
) -> None:
    """Run ``strategy`` to its own stop or the budget, recording every evaluation in ``rec``.

    Parameters
    ----------
    strategy : Strategy
        Ask/tell optimiser over the unit cube.
    rec : Recorder
        Calls the objective and keeps the history.
    max_evaluations : int, optional
        Hard budget of objective evaluations (the last batch is truncated to it).
    checkpoint : path, optional
        JSON file with the strategy's state and the history, written after every batch; if it
        exists the run resumes from it and ends as an uninterrupted run would. Needs a strategy
        with ``state_dict``/``load_state``.
    progress : bool
        Print one line per batch.
    """
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and not hasattr(strategy, "state_dict"):
        raise OptimizeError(f"{type(strategy).__name__} cannot be checkpointed; resume it by replay")
    if ckpt is not None and ckpt.exists():
        _resume(strategy, rec, ckpt)
    while not strategy.stop():
        remaining = np.inf if max_evaluations is None else max_evaluations - rec.n_evaluations
        if remaining <= 0:
            break
        X = np.asarray(strategy.ask(), dtype=float).reshape(-1, rec.n_dim)
        if X.shape[0] > remaining:
            rec(X[: int(remaining)])  # budget spent: the partial batch is recorded, not told
            break
        mis = rec(X)[0] if X.shape[0] else np.zeros(0)
        strategy.tell(mis)
        if ckpt is not None:
            write_json(ckpt, {"strategy": strategy.state_dict(), "history": rec.to_dict()})
        if progress and hasattr(strategy, "progress"):
            print(strategy.progress(rec))
