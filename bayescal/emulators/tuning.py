"""Hyper-parameters of the emulator network by Bayesian optimisation (Lu & Ricciuto 2019).

Lu & Ricciuto tuned their surrogate network's hyper-parameters with the tree-structured Parzen
estimator (TPE). :func:`tune_network` does the same with Optuna's TPE sampler (``pip install
"bayescal[tune]"``): each trial's hyper-parameters are scored by the k-fold cross-validated mean
squared error of a :class:`~bayescal.emulators.nn.DagonNetwork` on standardised targets, and the
best set is refitted on all points.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import EmulatorError
from .nn import DagonNetwork

__all__ = ["tune_network"]


def _cv_error(params: dict[str, Any], X: np.ndarray, Z: np.ndarray, folds: list[np.ndarray], seed: int,
              weights: np.ndarray) -> float:
    err = 0.0
    for test in folds:
        train = np.setdiff1d(np.arange(len(X)), test)
        net = DagonNetwork(**params, validation_fraction=0.0, random_state=seed).fit(X[train], Z[train])
        err += float((weights * (net.predict(X[test]).reshape(len(test), -1) - Z[test]) ** 2).sum())
    return err / len(X)


def tune_network(X: np.ndarray, Y: np.ndarray, n_trials: int = 60, cv: int = 5, seed: int = 0,
                 max_epochs: int = 1500, weights: np.ndarray | None = None, n_ensemble: int = 5
                 ) -> tuple[DagonNetwork, dict[str, Any]]:
    """Tune and fit a :class:`DagonNetwork` from unit-cube ``X`` (n, d) to ``Y`` (n,) or (n, k).

    Parameters
    ----------
    n_trials : int
        TPE trials (each costs ``cv`` network fits).
    cv : int
        Folds of the cross-validation that scores a trial.
    seed : int
        Seed of the sampler, the folds and every network.
    max_epochs : int
        Epochs per fit (the trials run without early stopping: a fold has too few points to
        hold some out).
    weights : array (k,), optional
        Weight of each (standardised) target in the cross-validated error; for SVD modes, their
        share of the variance makes the error that of the reconstructed field. Default equal.
    n_ensemble : int, default 5
        Networks (seeds) averaged in the returned fit; the trials score single networks.

    Returns
    -------
    network : DagonNetwork
        Fitted on all points with the best hyper-parameters (``n_ensemble`` seeds averaged).
    info : dict
        ``best_params``, ``best_cv_mse`` (standardised targets, weighted), ``default_cv_mse`` (the network's
        defaults, scored the same way) and ``n_trials``.
    """
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the installation
        raise EmulatorError("tune_network needs Optuna: pip install 'bayescal[tune]'") from None
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    if len(X) < 2 * cv:
        raise EmulatorError(f"tune_network: {len(X)} points are too few for {cv}-fold cross-validation")
    Z = (Y - Y.mean(0)) / (Y.std(0) + 1e-12)
    w = np.ones(Z.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    folds = np.array_split(np.random.default_rng(seed).permutation(len(X)), cv)

    def params_of(trial) -> dict[str, Any]:
        return {"hidden": (trial.suggest_int("hidden1", 4, 32), trial.suggest_int("hidden2", 4, 32)),
                "alpha": trial.suggest_float("alpha", 1e-6, 1.0, log=True),
                "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
                "batch_size": trial.suggest_categorical("batch_size", [4, 8, 16, 32]),
                "max_epochs": max_epochs, "patience": max_epochs}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: _cv_error(params_of(t), X, Z, folds, seed, w), n_trials=n_trials)
    best = params_of(optuna.trial.FixedTrial(study.best_params))
    default = {"max_epochs": max_epochs, "patience": max_epochs}
    net = DagonNetwork(**best, validation_fraction=0.0, random_state=seed, n_ensemble=n_ensemble)
    net.fit(X, Y if Y.shape[1] > 1 else Y[:, 0])
    info = {"best_params": study.best_params, "best_cv_mse": float(study.best_value),
            "default_cv_mse": _cv_error(default, X, Z, folds, seed, w), "n_trials": n_trials}
    return net, info
