"""Hyper-parameters of the emulator network by Bayesian optimisation (Lu & Ricciuto 2019).

Lu & Ricciuto tuned their surrogate network's hyper-parameters with the tree-structured Parzen
estimator (TPE). :func:`tune_network` does the same with Optuna's TPE sampler (``pip install
"bayescal[tune]"``) over one of two search spaces:

``search="bayescal"`` (the default)
    Dagon's ReLU → tanh network with RMSprop: two widths in 4-32, the L2 penalty, the learning
    rate and the batch size; each trial is scored by the k-fold cross-validated mean squared error
    on standardised targets, without early stopping, and the best set is refitted on all points.
``search="lu_ricciuto"``
    Lu & Ricciuto's (2019, Sect. 3.2) space: 2 or 3 hidden ReLU layers of {10, 20, 40, 60, 80, 100}
    nodes (the third drawn only for 3 layers: a tree-structured space), Adam with a learning rate
    uniform in [0.001, 0.1], no L2, Keras' batch of 32, up to 800 epochs with early stopping after
    100 epochs without a better validation loss; each trial is scored by the mean squared error on
    a fixed 30 % of the points held out for validation (the network trains on the other 70 %), and
    the best trial's network is the one returned (its seed, its split).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import EmulatorError
from .nn import DagonNetwork, _split

__all__ = ["LU_RICCIUTO_FIXED", "SEARCHES", "network_params", "tune_network"]

SEARCHES = ("bayescal", "lu_ricciuto")
_LR_NODES = [10, 20, 40, 60, 80, 100]
#: Lu & Ricciuto's fixed settings: ReLU, Adam, no L2, Keras' batch and their epochs and patience
LU_RICCIUTO_FIXED = {"activation": "relu", "optimizer": "adam", "alpha": 0.0, "batch_size": 32,
                     "max_epochs": 800, "patience": 100, "validation_fraction": 0.3}


def _cv_error(params: dict[str, Any], X: np.ndarray, Z: np.ndarray, folds: list[np.ndarray], seed: int,
              weights: np.ndarray) -> float:
    err = 0.0
    for test in folds:
        train = np.setdiff1d(np.arange(len(X)), test)
        net = DagonNetwork(**params, validation_fraction=0.0, random_state=seed).fit(X[train], Z[train])
        err += float((weights * (net.predict(X[test]).reshape(len(test), -1) - Z[test]) ** 2).sum())
    return err / len(X)


def _validation_error(params: dict[str, Any], X: np.ndarray, Y: np.ndarray, seed: int,
                      weights: np.ndarray) -> float:
    """Weighted mean squared error (standardised targets) on the network's held-out points, at its
    best epoch; the network is fitted on ``Y`` as the returned one, so the best trial's is that one."""
    net = DagonNetwork(**params, random_state=seed).fit(X, Y)
    val, _ = _split(len(X), params["validation_fraction"], np.random.default_rng(seed))
    Y = Y.reshape(len(X), -1)
    z = (net.predict(X[val]).reshape(len(val), -1) - Y[val]) / (Y.std(0) + 1e-12)
    return float((weights * z**2).sum() / len(val))


def _bayescal_params(trial, max_epochs: int) -> dict[str, Any]:
    return {"hidden": (trial.suggest_int("hidden1", 4, 32), trial.suggest_int("hidden2", 4, 32)),
            "alpha": trial.suggest_float("alpha", 1e-6, 1.0, log=True),
            "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [4, 8, 16, 32]),
            "max_epochs": max_epochs, "patience": max_epochs}


def _lu_ricciuto_params(trial, max_epochs: int) -> dict[str, Any]:
    layers = trial.suggest_categorical("layers", [2, 3])
    hidden = [trial.suggest_categorical(f"n{i}", _LR_NODES) for i in range(1, layers + 1)]
    return {**LU_RICCIUTO_FIXED, "hidden": tuple(hidden), "max_epochs": max_epochs,
            "learning_rate": trial.suggest_float("learning_rate", 0.001, 0.1)}


def network_params(search: str, best_params: dict[str, Any], max_epochs: int | None = None) -> dict[str, Any]:
    """The :class:`DagonNetwork` keyword arguments of a trial's ``best_params`` in ``search``
    (``max_epochs`` as in :func:`tune_network`); e.g. to refit another trial of ``info["trials"]``."""
    import optuna

    trial = optuna.trial.FixedTrial(best_params)
    if search == "lu_ricciuto":
        return _lu_ricciuto_params(trial, max_epochs or LU_RICCIUTO_FIXED["max_epochs"])
    return {**_bayescal_params(trial, max_epochs or 1500), "validation_fraction": 0.0}


def tune_network(X: np.ndarray, Y: np.ndarray, n_trials: int | None = None, cv: int = 5, seed: int = 0,
                 max_epochs: int | None = None, weights: np.ndarray | None = None, n_ensemble: int = 5,
                 search: str = "bayescal") -> tuple[DagonNetwork, dict[str, Any]]:
    """Tune and fit a :class:`DagonNetwork` from unit-cube ``X`` (n, d) to ``Y`` (n,) or (n, k).

    Parameters
    ----------
    n_trials : int, optional
        TPE trials; default 60 for ``"bayescal"`` (each costs ``cv`` network fits), 100 for
        ``"lu_ricciuto"`` (one fit each), Lu & Ricciuto's number.
    cv : int
        Folds of the cross-validation that scores a ``"bayescal"`` trial (unused by
        ``"lu_ricciuto"``, which scores on its 30 % validation split).
    seed : int
        Seed of the sampler, the folds or the validation split, and every network.
    max_epochs : int, optional
        Epochs per fit: default 1500 for ``"bayescal"`` (its trials run without early stopping:
        a fold has too few points to hold some out), 800 for ``"lu_ricciuto"`` (with early stopping).
    weights : array (k,), optional
        Weight of each (standardised) target in a trial's error; for SVD modes, their share of the
        variance makes the error that of the reconstructed field. Default equal.
    n_ensemble : int, default 5
        Networks (seeds ``seed``, ``seed + 1``, ...) averaged in the returned fit; the trials
        score single networks (for ``"lu_ricciuto"`` the first is the best trial's network).
    search : {"bayescal", "lu_ricciuto"}, default "bayescal"
        The search space and score (module docstring).

    Returns
    -------
    network : DagonNetwork
        Fitted on all points with the best hyper-parameters (``n_ensemble`` seeds averaged).
    info : dict
        ``search``, ``best_params`` (the trial's values; :func:`network_params` turns them into
        the network's arguments), ``best_value`` (the best trial's score: standardised targets,
        weighted), ``n_trials`` and ``trials`` (each trial's ``params`` and ``value``); for
        ``"bayescal"`` also ``best_cv_mse`` (= ``best_value``) and ``default_cv_mse`` (the
        network's defaults, scored the same way).
    """
    try:
        import optuna
    except ImportError:  # pragma: no cover - depends on the installation
        raise EmulatorError("tune_network needs Optuna: pip install 'bayescal[tune]'") from None
    if search not in SEARCHES:
        raise EmulatorError(f"tune_network: search {search!r} is not one of {SEARCHES}")
    lu = search == "lu_ricciuto"
    n_trials = n_trials or (100 if lu else 60)
    max_epochs = max_epochs or (LU_RICCIUTO_FIXED["max_epochs"] if lu else 1500)
    X = np.asarray(X, dtype=float)
    Y = np.asarray(Y, dtype=float).reshape(len(X), -1)
    if len(X) < (10 if lu else 2 * cv):
        raise EmulatorError(f"tune_network: {len(X)} points are too few for the {search!r} search")
    Z = (Y - Y.mean(0)) / (Y.std(0) + 1e-12)
    Yfit = Y if Y.shape[1] > 1 else Y[:, 0]
    w = np.ones(Z.shape[1]) if weights is None else np.asarray(weights, dtype=float)
    w = w / w.sum()
    folds = np.array_split(np.random.default_rng(seed).permutation(len(X)), cv)
    if lu:
        def objective(t) -> float:
            return _validation_error(_lu_ricciuto_params(t, max_epochs), X, Yfit, seed, w)
    else:
        def objective(t) -> float:
            return _cv_error(_bayescal_params(t, max_epochs), X, Z, folds, seed, w)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    best = network_params(search, study.best_params, max_epochs)
    net = DagonNetwork(**best, random_state=seed, n_ensemble=n_ensemble)
    net.fit(X, Yfit)
    info = {"search": search, "best_params": study.best_params, "best_value": float(study.best_value),
            "n_trials": n_trials, "trials": [{"params": t.params, "value": t.value} for t in study.trials]}
    if not lu:
        default = {"max_epochs": max_epochs, "patience": max_epochs}
        info |= {"best_cv_mse": info["best_value"],
                 "default_cv_mse": _cv_error(default, X, Z, folds, seed, w)}
    return net, info
