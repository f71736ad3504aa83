"""Lu & Ricciuto's (2019) hyper-parameter search: TPE over 2-3 ReLU layers of <= 100 nodes, Adam,
a 30 % validation split (``tune_network(search="lu_ricciuto")``)."""

import numpy as np
import pytest

from bayescal.emulators import EmulatorError, load_emulator
from bayescal.emulators.nn import DagonNetwork

NODES = {10, 20, 40, 60, 80, 100}


def _data():
    rng = np.random.default_rng(4)
    X = rng.uniform(size=(20, 3))
    return X, np.stack([np.sin(3 * X[:, 0]) + X[:, 1], X[:, 2] ** 2, X[:, 0] * X[:, 1]], axis=1)


def test_lu_ricciuto_search_stays_in_its_space_and_is_reproducible():
    pytest.importorskip("optuna")
    from bayescal.emulators.tuning import network_params, tune_network

    X, Y = _data()
    a, info = tune_network(X, Y, n_trials=8, seed=3, max_epochs=40, n_ensemble=2, search="lu_ricciuto")
    b, _ = tune_network(X, Y, n_trials=8, seed=3, max_epochs=40, n_ensemble=2, search="lu_ricciuto")
    np.testing.assert_array_equal(a.predict(X), b.predict(X))
    assert info["search"] == "lu_ricciuto" and info["n_trials"] == len(info["trials"]) == 8
    for t in info["trials"]:
        p = t["params"]
        assert p["layers"] in (2, 3) and 0.001 <= p["learning_rate"] <= 0.1
        assert {k for k in p if k.startswith("n")} == {f"n{i}" for i in range(1, p["layers"] + 1)}
        assert {p[f"n{i}"] for i in range(1, p["layers"] + 1)} <= NODES
        net = DagonNetwork(**network_params("lu_ricciuto", p, 40))
        assert (net.activation, net.optimizer, net.alpha) == ("relu", "adam", 0.0)
        assert net.validation_fraction == 0.3
        assert len(net.hidden) == p["layers"] and (net.max_epochs, net.patience) == (40, 100)
    assert info["best_value"] == min(t["value"] for t in info["trials"])
    # the returned ensemble's first network is the best trial's, scored on its 30 % held out (6 of 20)
    p = info["best_params"]
    assert a.hidden == tuple(p[f"n{i}"] for i in range(1, p["layers"] + 1)) and a.n_ensemble == 2
    one = DagonNetwork(**network_params("lu_ricciuto", p, 40), random_state=3).fit(X, Y)
    for name, v in one.weights_[0].items():
        np.testing.assert_array_equal(a.weights_[0][name], v)
    assert one.validation_loss_ == pytest.approx(info["best_value"], rel=1e-9)  # equal weights
    assert one.validation_loss_curve_.size == one.n_epochs_ <= 40
    with pytest.raises(EmulatorError, match="not one of"):
        tune_network(X, Y, n_trials=1, search="hyperopt")


def test_deeper_relu_adam_network_learns_and_round_trips(tmp_path):
    X, Y = _data()
    rng = np.random.default_rng(5)
    X = np.vstack([X, rng.uniform(size=(180, 3))])
    Y = np.stack([np.sin(3 * X[:, 0]) + X[:, 1], X[:, 2] ** 2, X[:, 0] * X[:, 1]], axis=1)
    net = DagonNetwork(hidden=(20, 10, 10), activation="relu", optimizer="adam", learning_rate=0.01,
                       alpha=0.0, max_epochs=400, patience=50, validation_fraction=0.3).fit(X, Y)
    assert net.validation_loss_ < 0.05 and len(net.weights_[0]) == 8
    net.save(tmp_path / "lr.nc")
    back = load_emulator(tmp_path / "lr.nc")
    assert (back.hidden, back.activation, back.optimizer) == ((20, 10, 10), "relu", "adam")
    np.testing.assert_array_equal(back.predict(X), net.predict(X))
    with pytest.raises(ValueError, match="optimizer 'sgd'"):
        DagonNetwork(optimizer="sgd", max_epochs=1).fit(X, Y)
