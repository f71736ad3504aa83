"""Dagon et al.'s emulator network: two hidden layers, ReLU then tanh, RMSprop, L2, early stopping.

scikit-learn's :class:`~sklearn.neural_network.MLPRegressor` uses one activation for every hidden
layer, and Dagon et al. (2020, Sect. 3.2) found the ReLU → tanh pair better than either alone, so
the network is written here: a few dozen lines of numpy with the gradients by hand. Defaults are
the paper's: RMSprop with learning rate 0.005, batches of 30, L2 regularisation, early stopping on
a held-out 20 % of the training points, hidden widths in the paper's 5-15 range. Any number of
hidden layers, ReLU everywhere and Adam are options: Lu & Ricciuto's (2019) networks
(:func:`bayescal.emulators.tuning.tune_network` with ``search="lu_ricciuto"``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from sklearn.base import BaseEstimator, RegressorMixin

from .base import _as_inputs, _json_params, _NetCDFState, check_fitted, register

__all__ = ["DagonNetwork"]

_ACTIVATIONS = ("relu-tanh", "relu", "tanh")
_OPTIMIZERS = ("rmsprop", "adam")
_ADAM = (0.9, 0.999, 1e-7)  # beta1, beta2, epsilon (Keras' defaults)


def _layer_names(n_hidden: int) -> list[str]:
    return [f"{p}{i}" for i in range(1, n_hidden + 2) for p in ("W", "b")]


def _split(n: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Held-out and training indices: the first ``round(fraction * n)`` of a permutation (none
    below 10 points); the first draw of a network's generator."""
    order = rng.permutation(n)
    n_val = int(round(fraction * n)) if n >= 10 else 0
    return order[:n_val], order[n_val:]


def adam_step(w: dict, g: dict, state: dict, learning_rate: float) -> None:
    """One Adam step (Kingma & Ba 2015, Algorithm 1) on the arrays of ``w`` in place.

    Parameters
    ----------
    w, g : dict of name -> ndarray
        Weights and their gradients.
    state : dict
        Moment estimates and step count; pass ``{}`` before the first step.
    learning_rate : float
        The step size (Kingma & Ba's alpha).
    """
    b1, b2, eps = _ADAM
    t = state["t"] = state.get("t", 0) + 1
    for name, grad in g.items():
        m = state[f"m_{name}"] = b1 * state.get(f"m_{name}", 0.0) + (1 - b1) * grad
        v = state[f"v_{name}"] = b2 * state.get(f"v_{name}", 0.0) + (1 - b2) * grad**2
        w[name] -= learning_rate * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)


def rmsprop_step(w: dict, g: dict, state: dict, learning_rate: float) -> None:
    """One RMSprop step (rho = 0.9, epsilon = 1e-7, as Keras) on ``w`` in place; ``state`` as
    :func:`adam_step`."""
    for name, grad in g.items():
        sq = state[name] = 0.9 * state.get(name, 0.0) + 0.1 * grad**2
        w[name] -= learning_rate * grad / (np.sqrt(sq) + 1e-7)


@register
class DagonNetwork(_NetCDFState, RegressorMixin, BaseEstimator):
    """Feed-forward regressor ``x -> ReLU -> tanh -> linear`` (one or several outputs).

    Parameters
    ----------
    hidden : tuple of int, default (12, 12)
        Widths of the hidden layers (one or more; Dagon et al.'s network has two).
    activation : {"relu-tanh", "relu", "tanh"}, default "relu-tanh"
        ``"relu-tanh"``: ReLU on the first hidden layer, tanh on the others (Dagon et al.);
        ``"relu"`` or ``"tanh"``: that function on every hidden layer (Lu & Ricciuto use ReLU).
    optimizer : {"rmsprop", "adam"}, default "rmsprop"
        The stochastic gradient method: RMSprop (Dagon et al.) or Adam (Lu & Ricciuto), both
        with Keras' defaults apart from the learning rate (:func:`rmsprop_step`, :func:`adam_step`).
    alpha : float, default 1e-4
        L2 penalty on the weights (per training point, as in Keras' ``l2``).
    learning_rate : float, default 0.005
        Step of the optimiser (Dagon et al.'s choice for RMSprop).
    batch_size : int, default 30
    max_epochs : int, default 3000
    patience : int, default 200
        Epochs without a better validation loss before training stops; the best weights are kept.
    validation_fraction : float, default 0.2
        Training points held out for early stopping (none when fewer than 10 points); the same
        points for every network of one ``random_state``.
    random_state : int, default 0
        Seed of the initial weights, the validation split and the batch order.
    n_ensemble : int, default 1
        Networks trained from different seeds (``random_state + i``) whose predictions are
        averaged; with a few dozen training runs the average is much better than any one
        (``benchmarks/bench_lu_ricciuto.py``: variance-weighted test R2 0.85 for one, 0.92 for five,
        from 20 runs).

    Attributes
    ----------
    loss_curve_, validation_loss_curve_ : ndarray (epochs,)
        The learning curves of the first network: mean squared error (standardised outputs) on
        its training points and on its held-out points after each epoch (Lu & Ricciuto's
        learning curves); saved with the network.

    Notes
    -----
    Inputs are the unit cube; outputs are standardised inside (each column to zero mean, unit
    sd) and returned in their own units. The network gives a mean only (``supports_uq`` is False).
    """

    supports_uq = False

    def __init__(self, hidden: tuple[int, ...] = (12, 12), alpha: float = 1e-4,
                 learning_rate: float = 0.005, batch_size: int = 30, max_epochs: int = 3000,
                 patience: int = 200, validation_fraction: float = 0.2, random_state: int = 0,
                 n_ensemble: int = 1, activation: str = "relu-tanh", optimizer: str = "rmsprop"):
        self.hidden = hidden
        self.activation = activation
        self.optimizer = optimizer
        self.alpha = alpha
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.n_ensemble = n_ensemble

    # ------------------------------------------------------------------ network
    def hidden_activations(self) -> list[str]:
        """The activation of each hidden layer of the fitted network (Fig. 2 of the report)."""
        check_fitted(self, "weights_")
        return self._activations(len(self.weights_[0]) // 2 - 1)

    def _activations(self, n_hidden: int) -> list[str]:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"DagonNetwork: activation {self.activation!r} is not one of {_ACTIVATIONS}")
        if self.activation == "relu-tanh":
            return ["relu"] + ["tanh"] * (n_hidden - 1)
        return [self.activation] * n_hidden

    def _forward(self, w: dict[str, np.ndarray], X: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """The hidden layers' outputs (``X`` first) and the network's output."""
        n_hidden = len(w) // 2 - 1
        hs = [X]
        for i, act in enumerate(self._activations(n_hidden), start=1):
            a = hs[-1] @ w[f"W{i}"] + w[f"b{i}"]
            hs.append(np.maximum(a, 0.0) if act == "relu" else np.tanh(a))
        return hs, hs[-1] @ w[f"W{n_hidden + 1}"] + w[f"b{n_hidden + 1}"]

    def _gradients(self, w, X, Y, n_total):
        """Gradients of the batch loss (mean squared error + L2 per point of ``n_total``), by hand."""
        hs, out = self._forward(w, X)
        acts = self._activations(len(hs) - 1)
        d = 2.0 * (out - Y) / (X.shape[0] * Y.shape[1])
        lam = 2.0 * self.alpha / n_total
        g = {}
        for i in range(len(hs), 0, -1):
            g[f"W{i}"], g[f"b{i}"] = hs[i - 1].T @ d + lam * w[f"W{i}"], d.sum(0)
            if i > 1:
                h = hs[i - 1]
                d = (d @ w[f"W{i}"].T) * ((h > 0.0) if acts[i - 2] == "relu" else (1.0 - h**2))
        return g

    def _loss(self, w, X, Y) -> float:
        return float(np.mean((self._forward(w, X)[1] - Y) ** 2))

    def fit(self, X: Any, y: Any) -> DagonNetwork:
        """Train on unit-cube points ``X`` (n, d) and targets ``y`` (n,) or (n, k)."""
        X = _as_inputs(X)
        Y = np.asarray(y, dtype=float)
        self._single = Y.ndim == 1
        Y = Y.reshape(X.shape[0], -1)
        self.y_mean_, self.y_sd_ = Y.mean(axis=0), Y.std(axis=0) + 1e-12
        Z = (Y - self.y_mean_) / self.y_sd_
        fits = [self._train(X, Z, self.random_state + i) for i in range(self.n_ensemble)]
        self.weights_ = [f[0] for f in fits]
        self.n_epochs_ = max(f[1] for f in fits)
        self.validation_loss_ = float(np.mean([f[2] for f in fits]))
        self.loss_curve_, self.validation_loss_curve_ = (np.asarray(c, float) for c in fits[0][3])
        self.n_features_in_ = X.shape[1]
        return self

    def _init_weights(self, d: int, k: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """He-normal weights into a ReLU layer, sd 1/sqrt(fan-in) into a tanh or the output layer;
        zero biases."""
        widths = [d, *self.hidden, k]
        scale = [2.0 if a == "relu" else 1.0 for a in self._activations(len(self.hidden))] + [1.0]
        w = {}
        for i, (fan_in, fan_out, c) in enumerate(zip(widths[:-1], widths[1:], scale, strict=True), start=1):
            w[f"W{i}"] = rng.normal(0, np.sqrt(c / fan_in), (fan_in, fan_out))
            w[f"b{i}"] = np.zeros(fan_out)
        return w

    def _train(self, X: np.ndarray, Z: np.ndarray, seed: int) -> tuple[dict, int, float, tuple]:
        """One network from ``seed``: its best weights, epochs run, best validation loss and the
        learning curves (training loss, validation loss per epoch)."""
        if self.optimizer not in _OPTIMIZERS:
            raise ValueError(f"DagonNetwork: optimizer {self.optimizer!r} is not one of {_OPTIMIZERS}")
        step = adam_step if self.optimizer == "adam" else rmsprop_step
        rng = np.random.default_rng(seed)
        val, tr = _split(X.shape[0], self.validation_fraction, rng)
        w = self._init_weights(X.shape[1], Z.shape[1], rng)
        state: dict = {}
        best, best_w, since = np.inf, {name: v.copy() for name, v in w.items()}, 0
        epochs, curve, val_curve = 0, [], []
        for _ in range(self.max_epochs):
            epochs += 1
            perm = rng.permutation(tr)
            for lo in range(0, perm.size, self.batch_size):
                b = perm[lo: lo + self.batch_size]
                step(w, self._gradients(w, X[b], Z[b], tr.size), state, self.learning_rate)
            curve.append(self._loss(w, X[tr], Z[tr]))
            loss = self._loss(w, X[val], Z[val]) if val.size else curve[-1]
            val_curve.append(loss)
            if loss < best - 1e-9:
                best, best_w, since = loss, {name: v.copy() for name, v in w.items()}, 0
            else:
                since += 1
                if since >= self.patience:
                    break
        return best_w, epochs, best, (curve, val_curve)

    def predict(self, X: Any) -> np.ndarray:
        """Mean prediction, (n,) or (n, k) as the training targets."""
        check_fitted(self, "weights_")
        X = _as_inputs(X, n_features=self.n_features_in_)
        out = np.mean([self._forward(w, X)[1] for w in self.weights_], axis=0) * self.y_sd_ + self.y_mean_
        return out[:, 0] if self._single else out

    # ------------------------------------------------------------------ state
    def to_dataset(self) -> xr.Dataset:
        """The fitted network as a Dataset (weights, scaling, parameters as JSON; no pickle)."""
        check_fitted(self, "weights_")
        import json

        data = {name: (("ensemble", *[f"{name}_{i}" for i in range(self.weights_[0][name].ndim)]),
                       np.stack([w[name] for w in self.weights_])) for name in self.weights_[0]}
        data |= {"y_mean": ("output", self.y_mean_), "y_sd": ("output", self.y_sd_),
                 "loss_curve": ("epoch", self.loss_curve_),
                 "validation_loss_curve": ("epoch", self.validation_loss_curve_)}
        return xr.Dataset(data, attrs={"emulator": "DagonNetwork", "params": json.dumps(_json_params(self)),
                                       "single_output": int(self._single), "n_epochs": self.n_epochs_})

    @classmethod
    def from_dataset(cls, ds: xr.Dataset) -> DagonNetwork:
        import json

        params = json.loads(ds.attrs["params"])
        params["hidden"] = tuple(params["hidden"])
        net = cls(**params)
        names = _layer_names(len(net.hidden))
        net.weights_ = [{name: ds[name].values[i] for name in names} for i in range(ds.sizes["ensemble"])]
        net.y_mean_, net.y_sd_ = ds["y_mean"].values, ds["y_sd"].values
        net._single = bool(ds.attrs["single_output"])
        net.n_features_in_ = net.weights_[0]["W1"].shape[0]
        net.n_epochs_ = int(ds.attrs["n_epochs"])
        empty = np.zeros(0)  # files written before the curves were kept
        net.loss_curve_, net.validation_loss_curve_ = (ds[v].values if v in ds else empty
                                                       for v in ("loss_curve", "validation_loss_curve"))
        return net
